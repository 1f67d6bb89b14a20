"""Workflows for the tracing and logging tests; run as a module, it resumes a run in its own process.

``python -m tests.flows.traced_flows STORE_URL RUN_ID SPANS_FILE`` sets up an OpenTelemetry SDK
tracer provider, resumes the suspended run ``RUN_ID`` with ``{"approved": true}``, waits for it to
end and writes the spans it exported to ``SPANS_FILE``, one JSON object a line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from pydantic import BaseModel

import graphflow as gf

REGISTRY = gf.Registry()

SECRET = "s3cr3t-payload-7731"
"""A value put in inputs, outputs and resume data: it must never appear in an INFO record."""


class Approval(BaseModel):
    approved: bool


@gf.function(registry=REGISTRY)
def echo(text: str) -> str:
    return text


@gf.function(registry=REGISTRY)
def flaky(text: str) -> str:
    if gf.current_step().attempt == 1:
        raise ConnectionError("first attempt fails")
    return text


@gf.function(registry=REGISTRY)
def broken(text: str) -> str:
    raise ValueError(f"cannot handle {len(text)} characters")


@gf.function(registry=REGISTRY)
def annotated(text: str) -> str:
    from opentelemetry import trace

    with trace.get_tracer("user code").start_as_current_span("inside the step"):
        return text


@gf.workflow(registry=REGISTRY)
async def nested(wf: gf.Workflow, data: dict[str, Any]) -> str:
    from opentelemetry import trace

    with trace.get_tracer("user code").start_as_current_span("inside the workflow"):
        return await wf.do("Annotated", annotated, {"text": data["text"]})


@gf.workflow(registry=REGISTRY)
async def traced(wf: gf.Workflow, data: dict[str, Any]) -> str:
    first = await wf.do("First", echo, {"text": data["text"]})
    return await wf.do("Flaky", flaky, {"text": first}, retries=1)


@gf.workflow(registry=REGISTRY)
async def approval(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
    before = await wf.do("Before", echo, {"text": data["text"]})
    decision = await wf.suspend("Approve", schema=Approval)
    after = await wf.do("After", echo, {"text": f"{before} approved={decision.approved}"})
    return {"after": after}


@gf.workflow(registry=REGISTRY)
async def failing(wf: gf.Workflow, data: dict[str, Any]) -> str:
    return await wf.do("Broken", broken, {"text": data["text"]})


@gf.workflow(registry=REGISTRY)
async def parent(wf: gf.Workflow, data: dict[str, Any]) -> str:
    result: str = await wf.do("Child", "traced", {"text": data["text"]})
    return result


def _span_json(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent_id": span.parent.span_id if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
    }


async def _resume(url: str, run_id: str) -> None:
    async with gf.Engine(url, registry=REGISTRY, poll_interval=0.05) as engine:
        await engine.resume(run_id, {"approved": True})
        status = await engine.wait(run_id, timeout=60)
        assert status.state == "completed", status


def main(argv: Sequence[str]) -> None:
    """Resume ``RUN_ID`` under a fresh tracer provider and write what it exported."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    url, run_id, out = argv
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    anyio.run(_resume, url, run_id)
    with open(out, "w") as spans:
        for span in exporter.get_finished_spans():
            spans.write(json.dumps(_span_json(span)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
