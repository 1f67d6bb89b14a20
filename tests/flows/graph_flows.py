"""Graph workflows for crash-recovery tests, and a small finished run for the render goldens.

As in ``crash_flows``: every node execution appends a line to ``$GF_CRASH_LOG``, and the kill
happens only while ``$GF_CRASH_MARKER`` does not exist, so the recovering process runs clean.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

import graphflow as gf

FAN_WIDTH = 20


def _log(line: str) -> None:
    with open(os.environ["GF_CRASH_LOG"], "a") as log:
        log.write(line + "\n")


def _logged(prefix: str) -> int:
    """How many lines of the execution log start with ``prefix``."""
    with open(os.environ["GF_CRASH_LOG"]) as log:
        return sum(1 for line in log if line.startswith(prefix))


def _die_once() -> None:
    marker = Path(os.environ["GF_CRASH_MARKER"])
    if not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)


@gf.function
async def graph_crash_seed(width: int) -> dict[str, int]:
    _log("node start")
    return {"base": 1000, "width": width}


@gf.function
async def graph_crash_work(i: int, base: int, kill_at: int) -> dict[str, int]:
    await asyncio.sleep(0.001 * (i % 5))
    if i == kill_at and not Path(os.environ["GF_CRASH_MARKER"]).exists():
        # Die once the other parallel nodes have run (and, very likely, been stored).
        while _logged("node w") < FAN_WIDTH - 1:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        _die_once()
    _log(f"node w{i}")
    return {"value": base + i}


@gf.function
async def graph_crash_total(values: list[int]) -> int:
    _log("node total")
    return sum(values)


graph_crash_fan = gf.workflow_graph(
    name="graph_crash_fan",
    nodes={
        "start": graph_crash_seed,
        **{f"w{i}": graph_crash_work for i in range(FAN_WIDTH)},
        "total": graph_crash_total,
    },
    config={
        "start": {"next": [f"w{i}" for i in range(FAN_WIDTH)]},
        **{
            f"w{i}": {
                "next": "total",
                "input": lambda ref, i=i: {
                    "i": i,
                    "base": ref("start", "base"),
                    "kill_at": ref("$input", "kill_at"),
                },
            }
            for i in range(FAN_WIDTH)
        },
        "total": {"input": {"values": [gf.ref(f"w{i}", "value") for i in range(FAN_WIDTH)]}},
    },
)


@gf.function
async def graph_crash_items(count: int) -> list[int]:
    _log("node items")
    return list(range(count))


@gf.function
async def graph_crash_square(n: int, kill_at: int) -> int:
    _log(f"item {n}")
    if n == kill_at:
        _die_once()
    return n * n


graph_crash_each = gf.workflow_graph(
    name="graph_crash_each",
    nodes={"items": graph_crash_items, "square": graph_crash_square},
    config={
        "items": {"next": "square", "input": {"count": gf.ref("$input", "count")}},
        "square": {
            "for_each": gf.ref("items"),
            "mode": "sequential",
            "input": {"n": gf.ref("$item"), "kill_at": gf.ref("$input", "kill_at")},
        },
    },
)


# --- a bounded loop: draft until the review approves, at most 3 passes ----------------------------


def _pass_number() -> int:
    """The loop pass of the running node: its step name is ``node``, ``node#2``, ``node#3``..."""
    name = gf.current_step().step_name
    return int(name.rpartition("#")[2]) if "#" in name else 1


@gf.function(name="loop_draft")
def loop_draft(topic: str, kill_at: int = 0) -> dict[str, Any]:
    version = _pass_number()
    _log(f"draft {version}")
    if version == kill_at:
        _die_once()
    return {"text": f"{topic} v{version}", "version": version}


@gf.function(name="loop_review")
def loop_review(text: str, version: int, needed: int) -> dict[str, Any]:
    _log(f"review {version}")
    gf.branch("done" if version >= needed else "retry")
    return {"reviewed": text, "version": version}


@gf.function(name="loop_publish")
def loop_publish(text: str) -> str:
    _log("publish")
    return f"published: {text}"


loop_article = gf.workflow_graph(
    name="loop_article",
    nodes={"draft": loop_draft, "review": loop_review, "publish": loop_publish},
    config={
        "draft": {
            "next": "review",
            "input": {
                "topic": gf.ref("$input", "topic"),
                "kill_at": gf.ref("$input", "kill_at", default=0),
            },
        },
        "review": {
            "next": {"retry": "draft", "done": "publish"},
            "loop": {"max_iterations": 3},
            "input": lambda ref: {
                "text": ref("draft", "text"),
                "version": ref("draft", "version"),
                "needed": ref("$input", "needed"),
            },
        },
        "publish": {"input": {"text": gf.ref("draft", "text")}},
    },
)


# --- a small finished run, rendered (the goldens in tests/test_graph_runs.py) ----------------

GOLDEN = gf.Registry()


@gf.function(registry=GOLDEN)
async def classify_plan(plan: str) -> str:
    gf.branch(plan)
    return plan


@gf.function(registry=GOLDEN, retries=1)
async def send_welcome(plan: str) -> str:
    if gf.current_step().attempt == 1:
        raise ConnectionError("mail server busy")
    return f"welcome to {plan}"


@gf.function(registry=GOLDEN)
async def upgrade_account(plan: str) -> str:
    return f"upgraded to {plan}"


@gf.function(registry=GOLDEN)
async def notify_user(data: dict[str, Any]) -> str:
    return "notified"


@gf.function(registry=GOLDEN)
async def undo_signup(error: dict[str, str]) -> str:
    return "undone"


gf.workflow_graph(
    name="golden_signup",
    nodes={
        "classify": "classify_plan",
        "upgrade": "upgrade_account",
        "welcome": "send_welcome",
        "notify": "notify_user",
        "undo": "undo_signup",
    },
    config={
        "classify": {
            "next": {"pro": ["upgrade", "welcome"], "basic": "welcome"},
            "on_error": "undo",
        },
        "upgrade": {"next": "notify", "input": {"plan": gf.ref("classify")}},
        "welcome": {"next": "notify", "input": {"plan": gf.ref("classify")}},
        "notify": {"input": lambda ref: {"data": {"welcome": ref("welcome")}}},
    },
    registry=GOLDEN,
)


async def golden_texts(url: str) -> tuple[str, str]:
    """Run ``golden_signup`` (basic plan) to completion; its run graph as DOT and Mermaid."""
    async with gf.Engine(url, registry=GOLDEN) as engine:
        run_id = await engine.start("golden_signup", {"plan": "basic"})
        status = await engine.wait(run_id, timeout=30)
        assert status.state == "completed", status.error
        graph = await engine.run_graph(run_id)
    return gf.to_dot(graph), gf.to_mermaid(graph)


if __name__ == "__main__":  # python -m tests.flows.graph_flows STORE_URL: print the goldens
    dot, mermaid = anyio.run(golden_texts, sys.argv[1])
    print(dot + mermaid, end="")
