"""Building steps: what each kind of ``wf.do`` target (and each graph node) executes.

Every builder returns a ``StepCall`` for ``run_step``: an RPC step runs a registered function in
this engine's worker, an inline step calls a callable at once, a child step starts a linked run
and waits for it, a remote step queues a job for another worker that serves the function.
"""

from __future__ import annotations

import inspect
import json
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .._json import dump_any, load_any
from .._types import JSON
from ..errors import ErrorInfo, StoreUnavailableError
from ..functions import Function, StepOptions, TypedIO, WorkflowDefinition
from ..store.base import JobRecord
from .attempts import StepCall
from .context import current_step
from .execution import RunExecution
from .failures import ReportedError

__all__ = ("NO_OPTIONS", "child_run_id", "child_step", "inline_step", "remote_step", "rpc_step")

NO_OPTIONS = StepOptions()
"""``wf.do`` given no options: the function's own settings apply unchanged."""

_CHILD_NAMESPACE = uuid.UUID("0b7d3c55-2f7e-4d8a-a2f4-5f1f0c3c9e21")
_JOB_NAMESPACE = uuid.UUID("5d2b8c1e-7a43-4f0e-9f5e-2c6a1b9d3e77")
_INLINE_IO: weakref.WeakKeyDictionary[Any, TypedIO] = weakref.WeakKeyDictionary()


def rpc_step(
    execution: RunExecution,
    name: str,
    fn: Function[..., Any],
    data: JSON,
    options: StepOptions,
    *,
    kind: str = "rpc",
) -> StepCall:
    """A step that runs registered function ``fn`` as a job of this engine's worker."""
    return StepCall(
        name=name,
        kind=kind,
        function=fn.name,
        call=_RpcCall(execution, name, fn, data),
        dump=fn.io.dump_output,
        load=fn.io.load_output,
        options=options.over(fn.options) if options is not NO_OPTIONS else fn.options,
        gate=execution.host.gates.gate(fn, data),
    )


class _RpcCall:
    """An RPC step's call: validate its input, take a job slot, invoke the function.

    An object, not a closure: one allocation per step instead of a function and its six cells,
    so a fan-out in flight gives the cyclic garbage collector fewer objects to track.
    """

    __slots__ = ("data", "execution", "fn", "name")

    def __init__(
        self, execution: RunExecution, name: str, fn: Function[..., Any], data: JSON
    ) -> None:
        self.execution = execution
        self.name = name
        self.fn = fn
        self.data = data

    async def __call__(self) -> Any:
        execution = self.execution
        args, kwargs = self.fn.validate_input(
            self.data, workflow=execution.workflow, run_id=execution.run_id, step=self.name
        )
        host = execution.host
        slots = host.job_slots
        await slots.acquire()
        try:
            if execution.lease_doubtful():  # it may have lapsed while the slot was awaited
                await execution.leased()
            return await self.fn.invoke(args, kwargs, host.threads)
        finally:
            slots.release()


def inline_step(name: str, target: Callable[[], Any], options: StepOptions) -> StepCall:
    """A step that calls ``target`` (sync or async, no arguments) at once, in the workflow."""

    async def call() -> Any:
        result = target()
        if inspect.isawaitable(result):
            result = await result
        return result

    io = _inline_io(target)
    return StepCall(
        name=name,
        kind="inline",
        function=None,
        call=call,
        dump=io.dump_output if io else dump_any,
        load=io.load_output if io else load_any,
        options=options,
    )


def _inline_io(fn: Callable[..., Any]) -> TypedIO | None:
    if "return" not in getattr(fn, "__annotations__", {}):
        return None
    key = getattr(fn, "__code__", fn)
    try:
        io = _INLINE_IO.get(key)
        if io is None:
            io = _INLINE_IO[key] = TypedIO(fn)
        return io
    except TypeError:  # not weak-referenceable
        return TypedIO(fn)


def child_run_id(parent_run_id: str, step_name: str) -> str:
    """The child's run id: derived from the parent step, so replay finds the same child."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_run_id}\x00{step_name}"))


def child_step(
    execution: RunExecution,
    name: str,
    child: WorkflowDefinition,
    data: JSON,
    options: StepOptions,
) -> StepCall:
    """A step that starts (or finds) the child run and waits for it to end."""
    host = execution.host
    run_id = child_run_id(execution.run_id, name)

    async def call() -> Any:
        try:
            await host.start_run(child.name, data, run_id, (execution.run_id, name))
            status = await host.wait_run(run_id)
        except StoreUnavailableError as exc:
            raise execution.store_failed(exc) from exc  # not the step's failure: replayed later
        if status.state != "completed":
            info = status.error or ErrorInfo(
                type="RunFailed",
                message=f"child run {run_id!r} of workflow {child.name!r} ended {status.state}",
            )
            raise ReportedError(info, retryable=False)  # the child's failure is the step's
        return status.output

    return StepCall(
        name=name,
        kind="child",
        function=child.name,
        call=call,
        dump=dump_any,
        load=child.load_output,
        options=StepOptions(timeout=options.timeout),
    )


def _raw_json(value: Any) -> bytes:
    return str(value).encode()


def remote_step(
    execution: RunExecution, name: str, function: str, data: JSON, options: StepOptions
) -> StepCall:
    """A step whose attempts are queued as jobs for workers that serve ``function``."""
    host = execution.host

    async def call() -> str:
        try:
            return await queued()
        except StoreUnavailableError as exc:
            raise execution.store_failed(exc) from exc  # not the step's failure: replayed later

    async def queued() -> str:
        attempt = current_step().attempt
        job_id = str(uuid.uuid5(_JOB_NAMESPACE, f"{execution.run_id}\x00{name}\x00{attempt}"))
        await host.store.enqueue_job(
            JobRecord(
                job_id=job_id,
                run_id=execution.run_id,
                step_name=name,
                function=function,
                input=json.dumps(data),
                attempt=attempt,
                created_at=host.clock.time(),
            )
        )
        job = await host.wait_job(job_id)
        if job.state == "completed" and job.output is not None:
            return job.output
        info = ErrorInfo.model_validate_json(job.error or '{"type": "Error", "message": "?"}')
        raise ReportedError(info, retryable=job.retryable)

    return StepCall(
        name=name,
        kind="rpc",
        function=function,
        call=call,
        dump=_raw_json,
        load=load_any,
        options=options,
    )
