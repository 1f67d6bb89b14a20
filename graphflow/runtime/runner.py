"""Drive one run from its first (or replayed) step to a durable outcome."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeAlias, assert_never

import anyio
import pydantic
import pydantic_core

from .._json import find_problem, too_deep
from .._types import RunState
from ..errors import (
    LeaseLostError,
    NonDeterminismError,
    NonRetryableError,
    StoreUnavailableError,
    WorkflowDefinitionError,
)
from ..functions import WorkflowDefinition
from ..graph.spec import GraphWorkflow
from . import logs
from .execution import RunExecution
from .failures import Closing, contained, error_info, escaped
from .graph_runner import drive_graph
from .host import RunHost
from .tracing import start_run
from .workflow import ImperativeWorkflow, Workflow, running_workflow

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ("UNSET", "Definition", "cancel_run", "drive_run")

UNSET: Any = object()

_SHOWN_STEPS = 10
"""Unreplayed steps named in the error (the rest are counted)."""

Definition: TypeAlias = ImperativeWorkflow | GraphWorkflow
"""Every kind of workflow definition; ``kind`` tells them apart."""


def drive_run(
    host: RunHost,
    definition: WorkflowDefinition,
    execution: RunExecution,
    data: Any = UNSET,
) -> Awaitable[RunState | None]:
    """Run the workflow (replaying recorded steps) and store its outcome.

    Returns the state written, or ``None`` when the run was given up (engine closing, lease lost)
    and stays for another engine to finish, or when the store failed (``execution.store_fault``):
    a store fault is never the run's failure; the worker replays the run once the store is back.
    With tracing on, the execution is one span. (Not a coroutine itself: one frame less for
    every run in flight.)
    """
    if host.tracer is None:
        return _drive(host, definition, execution, data)
    return _traced_drive(host, host.tracer, definition, execution, data)


async def _traced_drive(
    host: RunHost,
    tracer: Tracer,
    definition: WorkflowDefinition,
    execution: RunExecution,
    data: Any,
) -> RunState | None:
    run = execution.run
    trace = start_run(tracer, run.run_id, run.workflow, run.trace_context)
    execution.traced(trace)
    state: RunState | None = None
    try:
        if run.trace_context is None:  # the first execution's span is the trace's root
            stored = trace.stored_context()
            if stored is not None:
                await host.store.set_trace_context(execution.fence, stored)
        with trace.current():
            state = await _drive(host, definition, execution, data)
        return state
    finally:
        trace.end(state)


async def _drive(
    host: RunHost, definition: WorkflowDefinition, execution: RunExecution, data: Any
) -> RunState | None:
    run = execution.run
    raw: bytes | None = None
    error: Exception | None = None
    try:
        with anyio.CancelScope() as scope:
            execution.bind_scope(scope)
            if data is UNSET:
                data = definition.validate_input(json.loads(run.input), run_id=run.run_id)
            raw = await _run_body(_kinded(definition), execution, data)
    except (Closing, LeaseLostError):
        pass
    except StoreUnavailableError as exc:
        execution.store_failed(exc)
    except Exception as exc:
        error = exc
    except BaseException as exc:
        if not escaped(exc):
            raise
        error = contained(exc, f"workflow {run.workflow!r}")
    if execution.store_fault is not None:
        return None
    if raw is not None and definition.kind == "imperative":
        error = error or _unreplayed(execution)
    return await _store_outcome(host, execution, raw, error)


async def _store_outcome(
    host: RunHost, execution: RunExecution, raw: bytes | None, error: Exception | None
) -> RunState | None:
    """Store how the execution ended: cancelled, failed, completed or parked (else nothing)."""
    try:
        if execution.cancelling:
            return await cancel_run(host, execution)
        if error is not None or (raw is not None and execution.fatal is not None):
            return await _end_run(host, execution, "failed", None, execution.fatal or error)
        if raw is not None:
            return await _end_run(host, execution, "completed", raw.decode(), None)
        if execution.parking is not None:
            return await _store_parked(host, execution)
    except LeaseLostError:
        pass
    except StoreUnavailableError as exc:
        execution.store_failed(exc)
    return None


def _unreplayed(execution: RunExecution) -> NonDeterminismError | None:
    """The error of a run that completed without issuing again every step it had recorded.

    Such a run ran other steps than those it recorded (names from random values or the time):
    its outcome cannot be trusted to be what a replay would give. Graph runs are checked by
    their graph's hash instead.
    """
    names = execution.replay.unissued()
    if not names:
        return None
    shown = ", ".join(repr(name) for name in names[:_SHOWN_STEPS])
    more = f" and {len(names) - _SHOWN_STEPS} more" if len(names) > _SHOWN_STEPS else ""
    return NonDeterminismError(
        workflow=execution.workflow,
        run_id=execution.run_id,
        step=names[0],
        recorded=f"step(s) {shown}{more}, which this replay never issued again",
        new="no step of those names (do step names depend on random values or the time?)",
    )


def _kinded(definition: WorkflowDefinition) -> Definition:
    """``definition`` as the class of its kind (the kinds are closed: these two)."""
    if isinstance(definition, ImperativeWorkflow | GraphWorkflow):
        return definition
    raise WorkflowDefinitionError(
        workflow=definition.name,
        problem=f"is of unknown kind {definition.kind!r}",
        fix="declare workflows with @gf.workflow or gf.workflow_graph(...)",
    )


async def _run_body(definition: Definition, execution: RunExecution, data: Any) -> bytes:
    """Run the workflow's own code (or graph) and return its output as JSON bytes."""
    execution.replay.begin()
    with running_workflow(Workflow(execution)) as handle:
        match definition.kind:
            case "imperative":
                value = await definition.fn(handle, data)
                try:
                    return _dump_output(definition, value)
                except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
                    raise NonRetryableError(
                        f"the output of workflow {definition.name!r} in run {execution.run_id!r}"
                        f" is not JSON-serialisable or does not match its return type: {exc}"
                    ) from exc
            case "graph":
                return await drive_graph(definition, execution, data)
            case _:
                assert_never(definition)


def _dump_output(definition: ImperativeWorkflow, value: Any) -> bytes:
    """The workflow's output as JSON, refused if it could not be read back (too deep)."""
    raw = definition.io.dump_output(value)
    if too_deep(raw):
        problem = find_problem(value)
        if problem is not None:
            raise pydantic_core.PydanticSerializationError(problem.message)
    return raw


async def cancel_run(host: RunHost, execution: RunExecution) -> RunState:
    """Store a held run as cancelled, with every step it had in flight."""
    now = host.clock.time()
    for live in execution.cancelled_steps():
        cancelled = live.record("cancelled", error=live.error, finished_at=now)
        await host.store.record_step(execution.fence, cancelled)
    await host.store.cancel_steps(execution.run_id, now)
    await host.store.end_run(execution.fence, state="cancelled", output=None, error=None, at=now)
    logs.run_state(execution.run_id, execution.workflow, "cancelled")
    return "cancelled"


async def _store_parked(host: RunHost, execution: RunExecution) -> RunState:
    """Store a run that left memory to wait, and release it."""
    parking = execution.parking
    assert parking is not None
    await host.store.park_run(
        execution.fence,
        state=parking.state,
        at=host.clock.time(),
        wake_at=parking.wake_at,
        suspend_reason=parking.reason,
        resumable=list(parking.resumable),
        receiving=list(parking.receiving),
    )
    why = (
        f"waiting on {parking.reason!r}" if parking.state == "suspended" else "until its wake time"
    )
    logs.run_state(execution.run_id, execution.workflow, parking.state, why=why)
    return parking.state


async def _end_run(
    host: RunHost,
    execution: RunExecution,
    state: RunState,
    output: str | None,
    error: BaseException | None,
) -> RunState | None:
    """Store the run's end (completed or failed) and release it."""
    info = None if error is None else error_info(error)
    try:
        await host.store.end_run(
            execution.fence,
            state=state,
            output=output,
            error=None if info is None else info.model_dump_json(),
            at=host.clock.time(),
        )
    except LeaseLostError:
        return None
    except StoreUnavailableError as exc:
        execution.store_failed(exc)
        return None
    if error is not None and execution.trace is not None:
        execution.trace.fail(error)
    logs.run_state(execution.run_id, execution.workflow, state, error=info)
    return state
