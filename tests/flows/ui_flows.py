"""Workflows the web page's tests drive: a gated step, a suspend with a schema, hostile outputs."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel, Field

import graphflow as gf

REGISTRY = gf.Registry()

GATES: dict[str, threading.Event] = {}
"""Gates that ``pass_gate`` steps wait on, by name; a test opens one to let its step complete."""

XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'
"""An output (and a step name) that must show as text, never run."""


def gate(name: str) -> threading.Event:
    """The gate called ``name`` (created closed)."""
    return GATES.setdefault(name, threading.Event())


def open_all_gates() -> None:
    """Let every waiting step finish (tests call it at teardown)."""
    for event in GATES.values():
        event.set()


class Approval(BaseModel):
    approved: bool
    reviewer: str = Field(description="Who decided")
    count: int = 1


@gf.function(registry=REGISTRY)
def pass_gate(name: str) -> str:
    gate(name).wait(60)
    return f"gate {name} opened"


@gf.function(registry=REGISTRY)
def shout(text: str) -> str:
    return text.upper()


@gf.function(registry=REGISTRY)
def hostile(text: str) -> dict[str, str]:
    return {"html": text}


@gf.workflow(registry=REGISTRY)
async def gated(wf: gf.Workflow, data: dict[str, Any]) -> str:
    await wf.do("Prepare", shout, {"text": "ready"})
    opened = await wf.do("Wait for gate", pass_gate, {"name": data["gate"]})
    await wf.do("After gate", shout, {"text": opened})
    return opened


@gf.workflow(registry=REGISTRY)
async def approval(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
    greeting = await wf.do("Greet", shout, {"text": f"hello {data['name']}"})
    decision = await wf.suspend("Manager approval", schema=Approval)
    return {"greeting": greeting, "approved": decision.approved, "by": decision.reviewer}


@gf.workflow(registry=REGISTRY)
async def hostile_run(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, str]:
    return await wf.do(XSS, hostile, {"text": XSS})


@gf.workflow(registry=REGISTRY)
async def parent_run(wf: gf.Workflow, data: dict[str, Any]) -> str:
    result: str = await wf.do("Run child", "gated", {"gate": data["gate"]})
    return result


@gf.function(registry=REGISTRY)
def review(text: str) -> str:
    step = gf.current_step().step_name
    gf.branch("done" if step.endswith("#2") else "retry")
    return text


looping = gf.workflow_graph(
    name="looping",
    nodes={"draft": "shout", "review": "review", "publish": "shout"},
    config={
        "draft": {"input": {"text": "draft"}, "next": "review"},
        "review": {
            "input": {"text": gf.ref("draft")},
            "next": {"retry": "draft", "done": "publish"},
            "loop": {"max_iterations": 3},
        },
        "publish": {"input": {"text": "published"}},
    },
    registry=REGISTRY,
)


branching = gf.workflow_graph(
    name="branching",
    nodes={"start": "shout", "loud": "shout", "quiet": "shout", "end": "shout"},
    config={
        "start": {"next": {"loud": "loud", "quiet": "quiet"}, "branch": lambda output: "loud"},
        "loud": {"input": {"text": "loud"}, "next": "end"},
        "quiet": {"input": {"text": "quiet"}, "next": "end"},
        "end": {"input": {"text": "end"}},
    },
    registry=REGISTRY,
)
