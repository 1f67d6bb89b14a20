"""A content pipeline as a graph: fetch a feed, render every article in parallel, moderate, then
publish or reject.

```
fetch ──▶ render (for_each article, in parallel) ──▶ moderate ──approved──▶ publish
                                                              └─rejected──▶ reject
```

Run the demo (one clean feed, one that moderation rejects):

    python examples/content_pipeline.py

One feed from the command line, and the graph as DOT (or ``--format mermaid``):

    graphflow run examples/content_pipeline.py content_pipeline --input '{"feed": "tech"}'
    graphflow dot examples/content_pipeline.py content_pipeline
"""

from __future__ import annotations

import re
from typing import Any

import anyio
from pydantic import BaseModel

import graphflow as gf

FEEDS: dict[str, list[dict[str, str]]] = {
    "tech": [
        {"id": "a1", "title": "durable workflows in python", "body": "Steps survive crashes. "
         "Each completed step is stored once and never executed again."},
        {"id": "a2", "title": "sqlite is enough", "body": "WAL mode and a busy timeout go a long "
         "way. Most services never outgrow one file."},
        {"id": "a3", "title": "graphs from plain functions", "body": "Nodes are registered "
         "functions. Edges say what runs next, and branches say which way."},
    ],
    "spam": [
        {"id": "s1", "title": "weekly digest", "body": "Five links worth reading this week."},
        {"id": "s2", "title": "you won", "body": "Claim your free crypto prize now. Act fast."},
    ],
}  # fmt: skip

BANNED_WORDS = frozenset({"crypto", "prize"})


class Article(BaseModel):
    id: str
    title: str
    body: str


class Feed(BaseModel):
    name: str
    articles: list[Article]


class Rendered(BaseModel):
    id: str
    slug: str
    title: str
    summary: str
    words: int
    html: str


class Moderation(BaseModel):
    approved: list[str]
    flagged: list[str]


class Published(BaseModel):
    urls: list[str]


class Rejection(BaseModel):
    flagged: list[str]
    notified: str


@gf.function(retries=2, retry_delay="200ms")
def fetch_articles(feed: str, limit: int = 10) -> Feed:
    """Fetch a feed (simulated: a real one would call an HTTP API here)."""
    if feed not in FEEDS:
        raise gf.NonRetryableError(f"unknown feed {feed!r}: known feeds are {sorted(FEEDS)}")
    return Feed(name=feed, articles=[Article(**item) for item in FEEDS[feed][:limit]])


@gf.function
async def render_article(article: Article, site: str = "https://blog.example.com") -> Rendered:
    """Render one article: slug, title case, summary and HTML."""
    slug = re.sub(r"[^a-z0-9]+", "-", article.title.lower()).strip("-")
    summary = article.body.split(". ")[0].rstrip(".") + "."
    html = f"<article><h1>{article.title.title()}</h1><p>{article.body}</p></article>"
    await anyio.sleep(0.05)  # a real renderer would call a markdown or image service
    return Rendered(
        id=article.id,
        slug=f"{site}/{slug}",
        title=article.title.title(),
        summary=summary,
        words=len(article.body.split()),
        html=html,
    )


@gf.function
def moderate(articles: list[Rendered]) -> Moderation:
    """Flag articles with banned words; the branch key says where the graph goes next."""
    flagged = [a.id for a in articles if BANNED_WORDS & set(re.findall(r"\w+", a.html.lower()))]
    gf.branch("rejected" if flagged else "approved")
    return Moderation(approved=[a.id for a in articles if a.id not in flagged], flagged=flagged)


@gf.function
def publish(articles: list[Rendered]) -> Published:
    return Published(urls=[a.slug for a in articles])


@gf.function
def reject(flagged: list[str], feed: str) -> Rejection:
    return Rejection(flagged=flagged, notified=f"editors+{feed}@example.com")


content_pipeline = gf.workflow_graph(
    name="content_pipeline",
    description="Fetch a feed, render its articles in parallel, moderate, publish or reject",
    nodes={
        "fetch": fetch_articles,
        "render": render_article,
        "moderate": moderate,
        "publish": publish,
        "reject": reject,
    },
    config={
        "fetch": {"next": "render"},
        "render": {
            "for_each": lambda ref: ref("fetch", "articles"),
            "mode": "parallel",
            "input": lambda ref: {"article": ref("$item")},
            "next": "moderate",
        },
        "moderate": {
            "input": lambda ref: {"articles": ref("render")},
            "next": {"approved": "publish", "rejected": "reject"},
        },
        "publish": {"input": lambda ref: {"articles": ref("render")}},
        "reject": {
            "input": lambda ref: {
                "flagged": ref("moderate", "flagged"),
                "feed": ref("$input", "feed"),
            }
        },
    },
)


def demo(store: str | None = None) -> list[Any]:
    outputs = [gf.run("content_pipeline", {"feed": feed}, store=store) for feed in FEEDS]
    for feed, output in zip(FEEDS, outputs, strict=True):
        print(f"{feed}: {output}")
    return outputs


if __name__ == "__main__":
    demo()
