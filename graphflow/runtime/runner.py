"""Drive one run from its first (or replayed) step to a durable outcome."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pydantic_core

from ..errors import LeaseLostError, NonRetryableError
from ..functions import WorkflowDefinition
from .execution import Closing, RunExecution, RunHost, error_info
from .workflow import DslWorkflow, Workflow

__all__ = ("UNSET", "execute_run")

UNSET: Any = object()


async def execute_run(
    host: RunHost,
    definition: WorkflowDefinition,
    execution: RunExecution,
    data: Any = UNSET,
) -> str | None:
    """Run the workflow function (replaying recorded steps) and store its outcome.

    Returns the final state written, or ``None`` when the run was given up (engine closing, lease
    lost) and stays for another engine to finish.
    """
    run = execution.run
    try:
        if data is UNSET:
            data = definition.validate_input(json.loads(run.input), run_id=run.run_id)
        raw = await _execute(definition, execution, data)
    except Closing:
        return None
    except LeaseLostError:
        return None
    except Exception as exc:
        return await _finish(host, execution, "failed", None, execution.fatal or exc)
    if execution.fatal is not None:
        return await _finish(host, execution, "failed", None, execution.fatal)
    return await _finish(host, execution, "completed", raw.decode(), None)


async def _execute(definition: WorkflowDefinition, execution: RunExecution, data: Any) -> bytes:
    if isinstance(definition, DslWorkflow):
        value = await definition.fn(Workflow(execution), data)
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
