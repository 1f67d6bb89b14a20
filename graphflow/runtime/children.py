"""Child runs: ``wf.do(name, "other_workflow", data)`` starts a linked run and awaits its output."""

from __future__ import annotations

import uuid
from typing import Any

from .._types import JSON
from ..errors import ErrorInfo
from ..functions import StepOptions, WorkflowDefinition
from .execution import ReportedError, RunExecution, StepCall

__all__ = ("child_call", "child_run_id")

_NAMESPACE = uuid.UUID("0b7d3c55-2f7e-4d8a-a2f4-5f1f0c3c9e21")


def child_run_id(parent_run_id: str, step_name: str) -> str:
    """The child's run id: derived from the parent step, so replay finds the same child."""
    return str(uuid.uuid5(_NAMESPACE, f"{parent_run_id}\x00{step_name}"))


def child_call(
    execution: RunExecution,
    name: str,
    child: WorkflowDefinition,
    data: JSON,
    options: StepOptions,
) -> StepCall:
    """A step that starts (or finds) the child run and waits for it to end."""
    host = execution.host
    run_id = child_run_id(execution.run_id, name)
    io = getattr(child, "io", None)

    async def call() -> Any:
        await host.start_run(child.name, data, run_id, (execution.run_id, name))
        status = await host.wait_run(run_id)
        if status.state != "completed":
            info = status.error or ErrorInfo(
                type="RunFailed",
                message=f"child run {run_id!r} of workflow {child.name!r} ended {status.state}",
            )
            raise ReportedError(info, retryable=False)  # the child's failure is the step's
        return status.output

    from .workflow import _dump_any, _load_any

    return StepCall(
        name=name,
        kind="child",
        function=child.name,
        call=call,
        dump=_dump_any,
        load=io.load_output if io is not None else _load_any,
        options=StepOptions(timeout=options.timeout),
    )
