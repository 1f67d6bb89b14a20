"""Drive one run from its first (or replayed) step to a durable outcome."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import anyio
import pydantic
import pydantic_core

from ..errors import LeaseLostError, NonRetryableError
from ..functions import WorkflowDefinition
from .execution import Closing, RunExecution, error_info
from .host import RunHost
from .workflow import DslWorkflow, Workflow, running_workflow

__all__ = ("UNSET", "execute_run")

UNSET: Any = object()


async def execute_run(
    host: RunHost,
    definition: WorkflowDefinition,
    execution: RunExecution,
    data: Any = UNSET,
) -> str | None:
    """Run the workflow function (replaying recorded steps) and store its outcome.

    Returns the state written, or ``None`` when the run was given up (engine closing, lease lost)
    and stays for another engine to finish.
    """
    run = execution.run
    raw: bytes | None = None
    error: Exception | None = None
    try:
        with anyio.CancelScope() as scope:
            execution.scope = scope
            if data is UNSET:
                data = definition.validate_input(json.loads(run.input), run_id=run.run_id)
            raw = await _execute(definition, execution, data)
    except (Closing, LeaseLostError):
        pass
    except Exception as exc:
        error = exc
    try:
        if execution.cancel_requested:
            return await cancel_run(host, execution)
        if error is not None or (raw is not None and execution.fatal is not None):
            return await _finish(host, execution, "failed", None, execution.fatal or error)
        if raw is not None:
            return await _finish(host, execution, "completed", raw.decode(), None)
        if execution.parked is not None:
            return await _park(host, execution)
    except LeaseLostError:
        pass
    return None


async def cancel_run(host: RunHost, execution: RunExecution) -> str:
    """Store a held run as cancelled, with every step it had in flight."""
    now = host.clock.time()
    for name, (base, attempts, started_at) in list(execution.live_at_cancel.items()):
        if name in execution.finished:
            continue  # it completed (or failed) before the cancel landed: keep that
        await host.store.record_step(
            execution.fence,
            replace(base, state="cancelled", attempts=attempts, started_at=started_at,
                    finished_at=now),
        )  # fmt: skip
    await host.store.cancel_steps(execution.run_id, now)
    await host.store.finish_run(execution.fence, state="cancelled", output=None, error=None, at=now)
    return "cancelled"


async def _park(host: RunHost, execution: RunExecution) -> str:
    assert execution.parked is not None
    state, wake_at, reason = execution.parked
    await host.store.finish_run(
        execution.fence,
        state=state,
        output=None,
        error=None,
        at=host.clock.time(),
        wake_at=wake_at,
        suspend_reason=reason,
        resumable=[
            name for name, (kind, _) in execution.waiting_at_park.items() if kind == "suspend"
        ],
    )
    return state


async def _execute(definition: WorkflowDefinition, execution: RunExecution, data: Any) -> bytes:
    with running_workflow(Workflow(execution)) as handle:
        return await _execute_in(definition, handle, execution, data)


async def _execute_in(
    definition: WorkflowDefinition, handle: Workflow, execution: RunExecution, data: Any
) -> bytes:
    if isinstance(definition, DslWorkflow):
        value = await definition.fn(handle, data)
        try:
            return definition.io.dump_output(value)
        except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
            raise NonRetryableError(
                f"the output of workflow {definition.name!r} in run {execution.run_id!r} is not"
                f" JSON-serialisable or does not match its return type: {exc}"
            ) from exc
    from .graph_runner import run_graph_workflow

    return await run_graph_workflow(definition, execution, data)


async def _finish(
    host: RunHost,
    execution: RunExecution,
    state: str,
    output: str | None,
    error: BaseException | None,
) -> str | None:
    try:
        await host.store.finish_run(
            execution.fence,
            state=state,
            output=output,
            error=None if error is None else error_info(error).model_dump_json(),
            at=host.clock.time(),
        )
    except LeaseLostError:
        return None
    return state
