"""OpenTelemetry: run and step spans, their attributes and parentage, one trace across processes.

The SDK's in-memory exporter collects the spans. A tracer provider can be set only once per
process through the public API, so the fixture sets it and then puts the API's globals back
(``_TRACER_PROVIDER``, ``_TRACER_PROVIDER_SET_ONCE``: what OpenTelemetry's own test utilities do),
leaving the other tests untraced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

import graphflow as gf
from tests.flows.old_schemas import make_version
from tests.flows.traced_flows import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def _reset_globals() -> None:
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A configured SDK tracer provider exporting to memory, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_globals()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_globals()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'traced.db'}?durability=normal"


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    value: int = span.context.span_id
    return value


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    value: int = span.context.trace_id
    return value


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_a_run_is_a_span_with_a_child_span_per_attempt(
    spans: InMemorySpanExporter, url: str
) -> None:
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("traced", {"text": "hi"})
        assert (await engine.wait(run_id)).state == "completed"

    run = one(spans, "workflow traced")
    assert run.parent is None
    assert dict(run.attributes or {}) == {
        "graphflow.run_id": run_id,
        "graphflow.workflow": "traced",
        "graphflow.state": "completed",
    }
    first = one(spans, "step First")
    flaky = sorted(named(spans, "step Flaky"), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {})["graphflow.attempt"] for s in flaky] == [1, 2]
    for step in [first, *flaky]:
        assert parent_id(step) == span_id(run)
        assert trace_id(step) == trace_id(run)
    assert dict(first.attributes or {}) == {
        "graphflow.run_id": run_id,
        "graphflow.workflow": "traced",
        "graphflow.step": "First",
        "graphflow.attempt": 1,
    }
    assert flaky[0].status.status_code == StatusCode.ERROR
    assert [event.name for event in flaky[0].events] == ["exception"]
    assert (flaky[0].events[0].attributes or {})["exception.type"] == "ConnectionError"
    assert flaky[1].status.status_code == StatusCode.UNSET


async def test_spans_made_by_workflow_and_step_code_nest_under_graphflow_spans(
    spans: InMemorySpanExporter, url: str
) -> None:
    async with gf.Engine(url, registry=REGISTRY) as engine:
        await engine.run("nested", {"text": "hi"})
    run = one(spans, "workflow nested")
    in_workflow = one(spans, "inside the workflow")
    step = one(spans, "step Annotated")
    assert parent_id(in_workflow) == span_id(run)
    assert parent_id(step) == span_id(run)  # steps hang from the run, whatever code issued them
    assert parent_id(one(spans, "inside the step")) == span_id(step)  # sync: in a thread


async def test_a_failed_run_records_its_error(spans: InMemorySpanExporter, url: str) -> None:
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("failing", {"text": "abc"})
        assert (await engine.wait(run_id)).state == "failed"
    run = one(spans, "workflow failing")
    assert run.status.status_code == StatusCode.ERROR
    assert (run.attributes or {})["graphflow.state"] == "failed"
    assert "cannot handle 3 characters" in (run.status.description or "")
    step = one(spans, "step Broken")
    assert step.status.status_code == StatusCode.ERROR
    assert (step.events[0].attributes or {})["exception.type"] == "ValueError"


async def test_start_inside_a_span_makes_the_run_its_child(
    spans: InMemorySpanExporter, url: str
) -> None:
    tracer = trace.get_tracer("the caller")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        with tracer.start_as_current_span("handle request"):
            run_id = await engine.start("traced", {"text": "hi"})
        await engine.wait(run_id)
    caller = one(spans, "handle request")
    run = one(spans, "workflow traced")
    assert parent_id(run) == span_id(caller)
    assert trace_id(run) == trace_id(caller)


async def test_a_child_run_is_traced_under_the_step_that_started_it(
    spans: InMemorySpanExporter, url: str
) -> None:
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("parent", {"text": "hi"})
        assert (await engine.wait(run_id)).state == "completed"
    parent_run = one(spans, "workflow parent")
    child_step = one(spans, "step Child")
    child_run = one(spans, "workflow traced")
    assert parent_id(child_step) == span_id(parent_run)
    assert parent_id(child_run) == span_id(child_step)
    assert {trace_id(s) for s in spans.get_finished_spans()} == {trace_id(parent_run)}


async def test_a_resumed_run_continues_its_trace_and_replays_without_spans(
    spans: InMemorySpanExporter, url: str
) -> None:
    async with gf.Engine(url, registry=REGISTRY) as first:
        run_id = await first.start("approval", {"text": "hi"})
        async for status in first.watch(run_id):
            if status.state == "suspended":
                break
    async with gf.Engine(url, registry=REGISTRY) as second:
        await second.resume(run_id, {"approved": True})
        assert (await second.wait(run_id)).state == "completed"

    executions = sorted(named(spans, "workflow approval"), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["graphflow.state"] for s in executions] == [
        "suspended",
        "completed",
    ]
    root, resumed = executions
    assert root.parent is None
    assert parent_id(resumed) == span_id(root)
    assert trace_id(resumed) == trace_id(root)
    assert parent_id(one(spans, "step Before")) == span_id(root)  # executed once, not replayed
    assert parent_id(one(spans, "step After")) == span_id(resumed)


async def test_a_run_resumed_in_another_process_continues_the_same_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    tracer = trace.get_tracer("the caller")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        with tracer.start_as_current_span("handle request"):
            run_id = await engine.start("approval", {"text": "hi"})
        async for status in engine.watch(run_id):
            if status.state == "suspended":
                break
    caller = one(spans, "handle request")

    out = tmp_path / "spans.jsonl"
    resumed = subprocess.run(
        [sys.executable, "-m", "tests.flows.traced_flows", url, run_id, str(out)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    remote: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["name"] for s in remote] == ["step After", "workflow approval"]
    step, run = remote
    assert run["trace_id"] == step["trace_id"] == trace_id(caller)
    assert run["parent_id"] == span_id(caller)
    assert step["parent_id"] == run["span_id"]
    assert run["attributes"]["graphflow.run_id"] == run_id


async def test_graph_nodes_are_step_spans(spans: InMemorySpanExporter, url: str) -> None:
    graph = gf.workflow_graph(
        name="traced_graph",
        nodes={"a": "echo", "b": "echo"},
        config={"a": {"next": "b"}, "b": {"input": {"text": gf.ref("a")}}},
        registry=REGISTRY,
    )
    async with gf.Engine(url, registry=REGISTRY) as engine:
        await engine.run(graph, {"text": "hi"})
    run = one(spans, "workflow traced_graph")
    for node in ("a", "b"):
        assert parent_id(one(spans, f"step {node}")) == span_id(run)


async def test_nothing_is_traced_or_stored_without_a_tracer_provider(url: str) -> None:
    _reset_globals()
    exporter = InMemorySpanExporter()
    unset = TracerProvider()  # made but never set: graphflow must not use it
    unset.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = unset.get_tracer("the caller")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        with tracer.start_as_current_span("handle request"):
            run_id = await engine.start("traced", {"text": "hi"})
        await engine.wait(run_id)
        record = await engine.store.get_run(run_id)
    assert record is not None and record.trace_context is None
    assert [s.name for s in exporter.get_finished_spans()] == ["handle request"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
async def test_a_version_1_database_is_migrated_and_traced(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, spans: InMemorySpanExporter
) -> None:
    path = tmp_path / "v1.db" if backend == "sqlite" else None
    server = "pg_url" if backend == "postgres" else "mysql_url"
    url = f"sqlite:///{path}" if path is not None else request.getfixturevalue(server)
    async with gf.Engine(url, worker=False):
        pass
    make_version(1, url, path)
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("approval", {"text": "hi"})
        async for status in engine.watch(run_id):
            if status.state == "suspended":
                break
        record = await engine.store.get_run(run_id)
    assert record is not None and record.trace_context is not None
    assert "traceparent" in json.loads(record.trace_context)
    assert one(spans, "workflow approval").parent is None
