"""Server-rendered HTML of the web page: the runs list, the run page and its live sections.

Every value that comes from a run (ids, names, inputs, outputs, errors) goes through ``escape``;
the page's only script is the static ``ui.js``, and the Content-Security-Policy forbids any other.
The run page is cut into sections (``summary``, ``graph``, ``steps``, ``actions``) that the live
updates replace one by one; each has a ``key`` that changes exactly when the section must be
redrawn (the ``actions`` key leaves a half-filled form alone while the run waits on it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

import networkx as nx

from .._types import JSON, RUN_STATES
from ..graph.render import to_mermaid
from ..runtime.status import RunStatus, StepStatus
from ..runtime.steps import child_run_id
from .forms import FormError, render_form
from .svg import draw

__all__ = (
    "Section",
    "Suspend",
    "graph_html",
    "not_found_page",
    "run_page",
    "run_sections",
    "runs_page",
)

_PREVIEW = 72


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """One live part of the run page."""

    key: str
    html: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspend:
    """A suspend the run waits on, with the JSON Schema its resume data must match."""

    reason: str
    schema: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class FormState:
    """What the user last submitted to one resume form, and what was wrong with it."""

    reason: str
    values: Mapping[str, str]
    errors: Sequence[FormError]


# --- small helpers --------------------------------------------------------------------------------


def run_url(root: str, run_id: str) -> str:
    """The path of a run's page (the id quoted: it may hold ``/``, ``?`` or ``#``)."""
    return f"{root}/ui/runs/{quote(run_id, safe='')}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    text = escape(moment.strftime("%Y-%m-%d %H:%M:%S"))
    return f'<time datetime="{escape(moment.isoformat())}">{text}</time>'


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _badge(state: str) -> str:
    return f'<span class="badge state-{escape(state)}">{escape(state)}</span>'


def _fold(value: JSON, fold_id: str) -> str:
    """A JSON value folded: a one-line preview that opens onto the pretty-printed whole."""
    if value is None:
        return '<span class="muted">—</span>'
    compact = json.dumps(value, ensure_ascii=False, default=str)
    pretty = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    preview = compact if len(compact) <= _PREVIEW else compact[: _PREVIEW - 1] + "…"
    return (
        f'<details class="fold" data-fold="{escape(fold_id)}"><summary><code>{escape(preview)}'
        f"</code></summary><pre>{escape(pretty)}</pre></details>"
    )


def _error(error: Any, fold_id: str) -> str:
    if error is None:
        return ""
    head = f"<strong>{escape(error.type)}</strong>: {escape(error.message)}"
    if not error.traceback:
        return f'<div class="error-text">{head}</div>'
    return (
        f'<details class="fold error-text" data-fold="{escape(fold_id)}"><summary>{head}</summary>'
        f"<pre>{escape(error.traceback)}</pre></details>"
    )


def _key(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def page(title: str, body: str, *, root: str, events: str | None = None) -> str:
    """A whole HTML document around ``body`` (already escaped)."""
    live = f' data-events="{escape(events)}"' if events else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)} · graphflow</title>"
        f'<link rel="stylesheet" href="{escape(root)}/ui/static/ui.css">'
        f'<script src="{escape(root)}/ui/static/ui.js" defer></script></head><body>'
        f'<header class="top"><a class="brand" href="{escape(root)}/ui">graphflow</a>'
        f'<a href="{escape(root)}/ui">Runs</a></header>'
        f"<main{live}>{body}</main></body></html>"
    )


# --- the runs list --------------------------------------------------------------------------------


def _filters(root: str, workflow: str, state: str, workflows: Sequence[str]) -> str:
    names = "".join(f'<option value="{escape(name)}">' for name in workflows)
    states = "".join(
        f'<option value="{s}"{" selected" if s == state else ""}>{s}</option>' for s in RUN_STATES
    )
    return (
        f'<form class="filters" method="get" action="{escape(root)}/ui">'
        '<label>Workflow <input type="text" name="workflow" list="gf-workflows"'
        f' value="{escape(workflow)}" autocomplete="off"></label>'
        f'<datalist id="gf-workflows">{names}</datalist>'
        f'<label>State <select name="state"><option value="">any</option>{states}</select></label>'
        '<button type="submit">Filter</button></form>'
    )


def _run_row(root: str, run: RunStatus) -> str:
    return (
        f'<tr data-run-id="{escape(run.run_id)}" data-state="{escape(run.state)}">'
        f'<td><a href="{escape(run_url(root, run.run_id))}">'
        f"<code>{escape(run.run_id)}</code></a></td>"
        f"<td>{escape(run.workflow)}</td><td>{_badge(run.state)}</td>"
        f"<td>{_when(run.created_at)}</td><td>{_when(run.finished_at)}</td>"
        f"<td>{_duration(run.started_at or run.created_at, run.finished_at)}</td></tr>"
    )


def runs_page(
    runs: Sequence[RunStatus],
    *,
    root: str,
    workflow: str,
    state: str,
    workflows: Sequence[str],
    newest: Mapping[str, str] | None,
    older: Mapping[str, str] | None,
) -> str:
    """The runs list, newest first, with its filters and links to the first and the next page."""
    if runs:
        rows = "".join(_run_row(root, run) for run in runs)
        table = (
            '<div class="scroll"><table class="runs"><thead><tr><th>Run</th><th>Workflow</th>'
            "<th>State</th><th>Created (UTC)</th><th>Finished (UTC)</th><th>Duration</th>"
            "</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    else:
        table = '<p class="empty">No runs match.</p>'
    links = []
    for label, query, rel in (("← Newest", newest, "first"), ("Older →", older, "next")):
        if query is not None:
            href = f"{root}/ui?{urlencode(query)}" if query else f"{root}/ui"
            links.append(f'<a rel="{rel}" href="{escape(href)}">{label}</a>')
    pager = f'<nav class="pager">{" ".join(links)}</nav>' if links else ""
    body = f"<h1>Runs</h1>{_filters(root, workflow, state, workflows)}{table}{pager}"
    return page("Runs", body, root=root)


# --- the run page ---------------------------------------------------------------------------------


def graph_html(graph: nx.DiGraph[Any]) -> str:
    """The run graph as inline SVG; if it cannot be drawn, its Mermaid text with a note."""
    if graph.number_of_nodes() == 0:
        return '<p class="empty">No steps yet.</p>'
    try:
        return draw(graph)
    except Exception as exc:  # the page must show, whatever the graph: the text instead
        return (
            f'<p class="note">The graph is not drawn here ({escape(str(exc))}); its Mermaid'
            f" text follows.</p><pre>{escape(to_mermaid(graph))}</pre>"
        )


def _summary(status: RunStatus, root: str) -> str:
    facts = [
        ("Run", f"<code>{escape(status.run_id)}</code>"),
        ("Created", _when(status.created_at)),
        ("Started", _when(status.started_at)),
        ("Finished", _when(status.finished_at)),
        ("Duration", _duration(status.started_at or status.created_at, status.finished_at)),
    ]
    if status.parent_run_id:
        href = run_url(root, status.parent_run_id)
        parent = f'<a href="{escape(href)}"><code>{escape(status.parent_run_id)}</code></a>'
        facts.append(("Parent run", parent))
    if status.owner is not None:
        css = "" if status.owner.alive else ' class="dead"'
        facts.append(("Owner", f"<span{css}>{escape(status.owner.summary)}</span>"))
    if status.state == "sleeping":
        facts.append(("Wakes", _when(status.wake_at)))
    if status.suspend_reason:
        facts.append(("Waiting on", f"<q>{escape(status.suspend_reason)}</q>"))
    facts += [
        ("Input", _fold(status.input, "run:input")),
        ("Output", _fold(status.output, "run:output")),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return (
        f'<h1><span class="workflow">{escape(status.workflow)}</span> {_badge(status.state)}</h1>'
        f'{_error(status.error, "run:error")}<dl class="facts">{items}</dl>'
    )


def _step_row(step: StepStatus, run_id: str, root: str) -> str:
    detail = escape(step.function or step.kind)
    if step.kind == "child":  # the child run's id derives from its parent step
        href = run_url(root, child_run_id(run_id, step.name))
        detail = f'<a href="{escape(href)}" title="the child run">{detail}</a>'
    if step.state == "running" and step.started_at is not None:
        timing = f"since {_when(step.started_at)}"
    else:
        timing = _duration(step.started_at, step.finished_at)
    earlier = ""
    if step.attempt_errors and (step.error is None or len(step.attempt_errors) > 1):
        lines = "".join(f"<li>{escape(str(e))}</li>" for e in step.attempt_errors)
        earlier = (
            f'<details class="fold" data-fold="{escape("attempts:" + step.name)}"><summary>'
            f"{len(step.attempt_errors)} failed attempt(s)</summary><ol>{lines}</ol></details>"
        )
    return (
        f'<tr data-step="{escape(step.name)}" data-state="{escape(step.state)}">'
        f'<td class="name">{escape(step.name)}</td><td class="muted">{detail}</td>'
        f'<td>{_badge(step.state)}</td><td class="num">{step.attempts}</td><td>{timing}</td>'
        f"<td>{_error(step.error, 'error:' + step.name)}{earlier}</td>"
        f"<td>{_fold(step.output, 'output:' + step.name)}</td></tr>"
    )


def _steps(status: RunStatus, root: str) -> str:
    if not status.steps:
        return '<h2>Steps</h2><p class="empty">No steps yet.</p>'
    rows = "".join(_step_row(step, status.run_id, root) for step in status.steps)
    return (
        '<h2>Steps</h2><div class="scroll"><table class="steps"><thead><tr><th>Step</th>'
        "<th>Function</th><th>State</th><th>Attempts</th><th>Duration</th><th>Error</th>"
        f"<th>Output</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _actions(
    status: RunStatus,
    suspends: Sequence[Suspend],
    root: str,
    form_state: FormState | None,
) -> str:
    base = run_url(root, status.run_id)
    parts = []
    for number, suspend in enumerate(suspends):
        mine = (
            form_state if form_state is not None and form_state.reason == suspend.reason else None
        )
        parts.append(
            render_form(
                action=f"{base}/resume",
                reason=suspend.reason,
                schema=suspend.schema,
                prefix=f"resume{number}",
                values=None if mine is None else mine.values,
                errors=() if mine is None else mine.errors,
            )
        )
    buttons = []
    if not status.done:
        buttons.append(
            f'<form method="post" action="{escape(base)}/cancel" class="inline"'
            ' data-confirm="Cancel this run? Nothing of it runs after this.">'
            '<button type="submit" class="danger" name="cancel">Cancel run</button></form>'
        )
    if status.steps:
        options = "".join(
            f'<option value="{escape(step.name)}">{escape(step.name)}</option>'
            for step in status.steps
        )
        buttons.append(
            f'<form method="post" action="{escape(base)}/fork" class="inline">'
            '<label>Fork from step <select name="from_step">'
            f"{options}</select></label>"
            ' <button type="submit" name="fork">Fork run</button></form>'
        )
    if buttons:
        parts.append(f'<div class="buttons">{"".join(buttons)}</div>')
    return "".join(parts)


def run_sections(
    status: RunStatus,
    graph: nx.DiGraph[Any],
    suspends: Sequence[Suspend],
    *,
    root: str,
    form_state: FormState | None = None,
) -> dict[str, Section]:
    """The run page's live sections, each with the key that says when to redraw it."""
    summary = _summary(status, root)
    drawn = graph_html(graph)
    steps = _steps(status, root)
    actions = _actions(status, suspends, root, form_state)
    actions_key = json.dumps(
        [status.state, [s.reason for s in suspends], [step.name for step in status.steps]]
    )
    return {
        "summary": Section(key=_key(summary), html=summary),
        "graph": Section(key=_key(drawn), html=drawn),
        "steps": Section(key=_key(steps), html=steps),
        "actions": Section(key=_key(actions_key), html=actions),
    }


def run_page(
    status: RunStatus, sections: Mapping[str, Section], *, root: str, notice: str | None = None
) -> str:
    """The whole run page; it follows the run live through ``/ui/runs/{run_id}/events``."""
    note = f'<div class="notice" role="status">{escape(notice)}</div>' if notice else ""
    body = note + "".join(
        f'<section id="{name}" data-key="{section.key}">{section.html}</section>'
        for name, section in sections.items()
    )
    events = None if status.done else f"{run_url(root, status.run_id)}/events"
    return page(f"{status.workflow} {status.run_id}", body, root=root, events=events)


def not_found_page(run_id: str, *, root: str) -> str:
    """The page for a run id that no run has."""
    body = (
        f"<h1>Run not found</h1><p>No run has the id <code>{escape(run_id)}</code>.</p>"
        f'<p><a href="{escape(root)}/ui">See all runs</a></p>'
    )
    return page("Run not found", body, root=root)
