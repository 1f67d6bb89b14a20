"""The imperative DSL: ``@gf.workflow`` and the ``Workflow`` handle (``wf.do``, ``wf.now``...)."""

from __future__ import annotations

import contextvars
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, overload

from pydantic import TypeAdapter

from .._types import JSON
from ..cron import Cron
from ..durations import Duration, to_seconds
from ..errors import (
    ErrorInfo,
    PatchIdError,
    StepNameError,
    StepTargetError,
    UnknownFunctionError,
    WorkflowDefinitionError,
)
from ..functions import (
    DEFAULT_REGISTRY,
    Function,
    Registry,
    StepOptions,
    TypedIO,
    WorkflowDefinition,
    compile_io,
    definition_place,
    type_hints,
)
from ..limits import Concurrency, concurrency_option
from .attempts import StepCall, run_step
from .context import enter_step, exit_step, find_step
from .execution import RunExecution
from .steps import NO_OPTIONS, child_step, inline_step, remote_step, rpc_step
from .waiting import sleep, suspend

__all__ = (
    "ImperativeWorkflow",
    "Workflow",
    "check_name",
    "find_current_workflow",
    "numbered",
    "running_workflow",
    "workflow",
)

R = TypeVar("R")
M = TypeVar("M")
WorkflowFn = Callable[..., Awaitable[Any]]


@dataclass(eq=False, kw_only=True)
class ImperativeWorkflow(WorkflowDefinition):
    """An imperative workflow: ``async def f(wf, data)`` and its typed output."""

    kind: ClassVar[Literal["imperative"]] = "imperative"
    fn: WorkflowFn
    io: TypedIO

    def load_output(self, raw: str | bytes) -> Any:
        """A run's stored output rehydrated into the function's return type."""
        return self.io.load_output(raw)

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Call the workflow function directly (with a ``Workflow`` you provide)."""
        return self.fn(*args, **kwargs)


@overload
def workflow(fn: WorkflowFn, /) -> ImperativeWorkflow: ...
@overload
def workflow(
    *,
    name: str | None = None,
    description: str | None = None,
    retention: Duration | None = None,
    schedule: str | None = None,
    concurrency: int | Concurrency | None = None,
    registry: Registry | None = None,
) -> Callable[[WorkflowFn], ImperativeWorkflow]: ...
def workflow(
    fn: WorkflowFn | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    retention: Duration | None = None,
    schedule: str | None = None,
    concurrency: int | Concurrency | None = None,
    registry: Registry | None = None,
) -> ImperativeWorkflow | Callable[[WorkflowFn], ImperativeWorkflow]:
    """Register ``async def f(wf, data)`` as a durable workflow.

    ``data`` is validated against its annotation when a run starts; the return value is stored as
    the run's output (validated against the return annotation). With ``retention`` (``"7d"``),
    worker engines delete its runs that long after they finished, in the background.

    ``schedule`` (a cron expression, in UTC) starts a run per tick, named after the workflow, once
    across every worker, with ``data == {"scheduled_at": "YYYY-MM-DDTHH:MM:SSZ"}``.
    ``concurrency`` (a number, or ``gf.Concurrency(N, key="path.in.input")``) caps the runs
    executing at once across every worker; the others wait as ``queued``.

    Raises:
        RegistrationError: the name is taken by another callable.
        ScheduleError: ``schedule`` is not a valid cron expression.
        LimitError: ``concurrency`` is invalid.
        WorkflowDefinitionError: the function is not ``async``.
        DurationError: ``retention`` is not a duration.
    """
    localns = dict(sys._getframe(1).f_locals)
    keep = None if retention is None else to_seconds(retention)

    def register(target: WorkflowFn) -> ImperativeWorkflow:
        if not inspect.iscoroutinefunction(target):
            raise WorkflowDefinitionError(
                workflow=name or str(getattr(target, "__name__", target)),
                problem="must be an async function",
                fix="declare it as `async def f(wf, data)`",
            )
        io = compile_io(
            target,
            what=f"workflow {name or target.__name__!r}",
            skip_first=True,
            localns=localns,
        )
        hints = type_hints(target, localns)
        params = list(inspect.signature(target).parameters)
        data_type = hints.get(params[1], Any) if len(params) > 1 else Any
        workflow_name = name or target.__name__
        definition = ImperativeWorkflow(
            name=workflow_name,
            description=description or inspect.getdoc(target),
            identity=f"{target.__module__}.{target.__qualname__}",
            defined_at=definition_place(target),
            input_adapter=TypeAdapter(data_type),
            schedule=None if schedule is None else Cron.parse(schedule, schedule=workflow_name),
            concurrency=concurrency_option(concurrency, where=f"@gf.workflow {workflow_name!r}"),
            fn=target,
            io=io,
            retention=keep,
        )
        (registry or DEFAULT_REGISTRY).add_workflow(definition)
        return definition

    return register if fn is None else register(fn)


_CURRENT: contextvars.ContextVar[Workflow | None] = contextvars.ContextVar(
    "graphflow_workflow", default=None
)


def find_current_workflow() -> Workflow | None:
    """The run whose code is executing here (its workflow function, or a step it runs in-process).

    ``None`` outside any run, and in a function a worker executes for a run of another process.
    """
    return _CURRENT.get()


@contextmanager
def running_workflow(handle: Workflow) -> Iterator[Workflow]:
    """Make ``handle`` the current workflow for the code inside (one run's execution).

    Outside any step: a child run held here may have been started from inside a step of its
    parent, whose context its task inherited.
    """
    token = _CURRENT.set(handle)
    step = enter_step(None)
    try:
        yield handle
    finally:
        exit_step(step)
        _CURRENT.reset(token)


def scoped(handle: Workflow, name: str) -> str:
    """``name`` as issued here: under the step of the run this code runs in, ``step/name``.

    A step's body (an inline step's callable, a graph node's function) may issue steps of its
    own. A replay returns the step's recorded result without running its body, so those are not
    issued again: their names say whose they are, so the replay knows it need not issue them,
    and a numbered name (``event:key#2``) counts the workflow's own calls apart from theirs.
    """
    step = find_step()
    if step is not None and step.run_id == handle.run_id:
        return f"{step.step_name}/{name}"
    return name


def numbered(handle: Workflow, name: str) -> str:
    """``name`` the first time in this execution, then ``name#2``, ``name#3``... in call order.

    Replays call in the same order, so they number alike: repeated operations (every model turn
    of an agent) get stable, unique step names. Counted apart under each step (``scoped``), which
    ``wf.do`` and ``wf.suspend`` then put the name under.
    """
    count = handle._execution.replay.number(scoped(handle, name))
    return name if count == 1 else f"{name}#{count}"


def check_name(execution: RunExecution, name: object, what: str = "step name") -> None:
    """Refuse a step name (or suspend reason) that is empty, not text, or reserved.

    Raises:
        StepNameError: the name cannot be used.
    """
    if not isinstance(name, str) or not name or name.endswith(":on_error"):
        raise StepNameError(
            workflow=execution.workflow, run_id=execution.run_id, name=name, what=what
        )


class Workflow:
    """The handle a workflow function receives: issues durable steps."""

    __slots__ = ("_execution",)

    def __init__(self, execution: RunExecution) -> None:
        self._execution = execution

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self._execution.run_id

    @property
    def workflow_name(self) -> str:
        """This run's workflow name."""
        return self._execution.workflow

    def now(self) -> datetime:
        """The time this point of the workflow was first reached: the same on replay."""
        return self._execution.now()

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new code path of the patch ``patch_id``.

        True in runs that reach this point under code that has the patch (new runs, and runs
        that recorded nothing past it); False in runs that recorded steps past this point
        without it, so they replay their old path unchanged. Every call with the same id in one
        run gives the same answer. The marker rides on the run's next step record: no write of
        its own. Remove the old branch once ``graphflow check`` shows no run on it.

        Raises:
            PatchIdError: ``patch_id`` is not a non-empty string.
        """
        execution = self._execution
        if not patch_id or not isinstance(patch_id, str):
            raise PatchIdError(
                workflow=execution.workflow, run_id=execution.run_id, patch_id=patch_id
            )
        return execution.replay.patched(patch_id)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Sleep durably: the run wakes at the stored time, in whatever process runs then.

        Sleeps longer than about a second park the run (no memory, no coroutine) until it wakes.

        Raises:
            DurationError: ``duration`` is not a valid duration.
        """
        check_name(self._execution, name)
        await sleep(self._execution, scoped(self, name), duration)

    @overload
    async def suspend(
        self,
        reason: str,
        *,
        schema: type[M],
        timeout: Duration | None = None,
        payload: JSON = None,
    ) -> M: ...
    @overload
    async def suspend(
        self,
        reason: str,
        *,
        schema: None = None,
        timeout: Duration | None = None,
        payload: JSON = None,
    ) -> JSON: ...
    async def suspend(
        self,
        reason: str,
        *,
        schema: Any = None,
        timeout: Duration | None = None,
        payload: JSON = None,
    ) -> Any:
        """Pause until ``engine.resume(run_id, data)``; return ``data``.

        ``reason`` names the suspend point (unique in the run, like a step name). With ``schema``,
        resume data is validated (and refused while the run stays suspended) and returned as an
        instance of it. ``timeout`` makes the suspend raise ``SuspendTimeout`` at that time.
        ``payload`` (JSON) is stored with the suspend, as its step's ``input``: what the one who
        resumes needs to see (the tool call to approve, the document to review).
        """
        check_name(self._execution, reason, "suspend reason")
        return await suspend(self._execution, scoped(self, reason), schema, timeout, payload)

    @overload
    async def receive(self, topic: str, timeout: None = None, *, schema: type[M]) -> M: ...
    @overload
    async def receive(self, topic: str, timeout: Duration, *, schema: type[M]) -> M | None: ...
    @overload
    async def receive(
        self, topic: str, timeout: Duration | None = None, schema: None = None
    ) -> JSON: ...
    async def receive(self, topic: str, timeout: Duration | None = None, schema: Any = None) -> Any:
        """Wait durably for the next message sent on ``topic`` (``engine.send``); return its data.

        Messages are taken once each, in the order sent; one sent before this call is kept and
        returned at once. With ``timeout``, ``None`` is returned when it passes first. With
        ``schema``, the data is returned as an instance of it (``send`` refuses data that fails it
        while this receive waits). The run parks while it waits, like a suspend, and replay
        returns the recorded message. Each call is a step named ``receive:<topic>`` (then
        ``receive:<topic>#2``...).

        Raises:
            InputValidationError: the message does not match ``schema``.
            DurationError: ``timeout`` is not a valid duration.
        """
        from .messages import receive

        check_name(self._execution, topic, "topic")
        name = scoped(self, numbered(self, f"receive:{topic}"))
        return await receive(self._execution, name, topic, timeout, schema)

    async def set_event(self, key: str, value: JSON) -> None:
        """Publish ``value`` (JSON) as this run's event ``key``: ``engine.get_event`` reads it.

        The latest value wins. Each call is a step named ``event:<key>`` (then ``event:<key>#2``
        ...), recorded with the value, so a replay does not publish an old value again.
        """
        from .messages import set_event

        check_name(self._execution, key, "event key")
        name = numbered(self, f"event:{key}")
        issued = scoped(self, name)
        await set_event(self._execution, issued, key, value, in_body=issued != name)

    @overload
    async def do(
        self,
        name: str,
        target: Function[..., Awaitable[R]],
        data: JSON = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> R: ...
    @overload
    async def do(
        self,
        name: str,
        target: Function[..., R],
        data: JSON = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> R: ...
    @overload
    async def do(
        self,
        name: str,
        target: str | WorkflowDefinition,
        data: JSON = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> Any: ...
    @overload
    async def do(
        self,
        name: str,
        target: Callable[[], Awaitable[R]],
        data: None = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> R: ...
    @overload
    async def do(
        self,
        name: str,
        target: Callable[[], R],
        data: None = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> R: ...
    async def do(
        self,
        name: str,
        target: Any,
        data: JSON = None,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        on_error: str | Function[..., Any] | None = None,
    ) -> Any:
        """Run a durable step named ``name`` and return its result.

        ``target`` is a registered function (name or object: an RPC step run as a job), a
        registered workflow (a child run), or any other callable taking no arguments (an inline
        step). Completed steps are never executed again: replay returns the stored result.

        Raises:
            StepFailed: the step failed after its last attempt.
            DuplicateStepError: ``name`` was already used in this run.
            NonDeterminismError: the recorded step was a different call.
        """
        execution = self._execution
        check_name(execution, name)
        name = scoped(self, name)
        options = (
            NO_OPTIONS
            if retries is None and retry_delay is None and backoff is None and timeout is None
            else StepOptions.build(
                retries=retries,
                retry_delay=retry_delay,
                backoff=backoff,
                timeout=timeout,
                where=f"step {name!r}",
            )
        )
        if isinstance(target, str) and await self._is_remote(target):
            spec = remote_step(execution, name, target, data, options)
        else:
            spec = self._spec(name, target, data, options)
        if on_error is not None:
            spec.on_error = self._compensation(name, on_error, data)
        return await run_step(execution, spec)

    async def _is_remote(self, target: str) -> bool:
        """Whether ``target`` is no local function or workflow, but another worker serves it."""
        host = self._execution.host
        if host.registry.find_function(target) or host.registry.find_workflow(target):
            return False
        return target in await host.remote_functions()

    def _spec(self, name: str, target: Any, data: JSON, options: StepOptions) -> StepCall:
        execution = self._execution
        registry = execution.host.registry
        if isinstance(target, str):
            fn = registry.find_function(target)
            if fn is None:
                child = registry.find_workflow(target)
                if child is not None:
                    return child_step(execution, name, child, data, options)
                raise UnknownFunctionError(
                    name=target,
                    workflow=execution.workflow,
                    run_id=execution.run_id,
                    step=name,
                    known=registry.function_names + registry.workflow_names,
                )
            return rpc_step(execution, name, fn, data, options)
        if isinstance(target, Function):
            return rpc_step(execution, name, target, data, options)
        if isinstance(target, WorkflowDefinition):
            return child_step(execution, name, target, data, options)
        if callable(target):
            if data is not None:
                raise StepTargetError(
                    workflow=execution.workflow,
                    run_id=execution.run_id,
                    step=name,
                    target=repr(target),
                    problem="is an inline callable, which takes no arguments, but got data",
                    fix="capture the values in a closure or register the function with"
                    " @gf.function",
                )
            return inline_step(name, target, options)
        raise StepTargetError(
            workflow=execution.workflow,
            run_id=execution.run_id,
            step=name,
            target=repr(target),
            problem="is not a function name, a registered function, a workflow or a callable",
            fix="pass one of those",
        )

    def _compensation(
        self, name: str, on_error: str | Function[..., Any], data: JSON
    ) -> Callable[[ErrorInfo], Awaitable[Any]]:
        async def compensate(error: ErrorInfo) -> Any:
            payload = {
                "error": {"type": error.type, "message": error.message},
                "step": name,
                "input": data,
            }
            target = on_error
            if isinstance(target, str):
                target = self._execution.host.registry.find_function(target) or target
            spec = self._spec(f"{name}:on_error", target, payload, NO_OPTIONS)
            return await run_step(self._execution, spec)

        return compensate
