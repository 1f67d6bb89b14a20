"""One run in memory: its recorded history, the steps it issues, and how a step is executed.

A step is *issued* (name checked for duplicates and against the recorded history), then either
replayed from its record or executed: attempts with retries, backoff and timeout, and exactly one
durable write when it finishes (plus one per failed attempt).
"""

from __future__ import annotations

import contextvars
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import pydantic
import pydantic_core

from ..errors import (
    DuplicateStepError,
    ErrorInfo,
    GraphflowError,
    InputValidationError,
    NonDeterminismError,
    NonRetryableError,
    StepFailed,
    StepTimeout,
)
from ..functions import StepOptions
from ..store.base import AttemptRecord, Fence, RunRecord, StepRecord
from .context import StepInfo, enter_step, exit_step
from .host import RunHost

__all__ = ("Closing", "ReportedError", "RunExecution", "StepCall", "error_info")


_NOW_MARK: contextvars.ContextVar[tuple[object, float]] = contextvars.ContextVar(
    "graphflow_now_mark"
)


class ReportedError(Exception):
    """A failure reported as an ``ErrorInfo`` (by a worker process or a child run), kept as is."""

    def __init__(self, info: ErrorInfo, *, retryable: bool) -> None:
        super().__init__(info.message)
        self.info = info
        self.retryable = retryable


class Closing(BaseException):
    """Unwinds a run whose engine is closing or lost its lease: nothing more may be issued."""


def error_info(exc: BaseException) -> ErrorInfo:
    """The stored form of an exception."""
    if isinstance(exc, ReportedError):
        return exc.info
    return ErrorInfo(
        type=type(exc).__name__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


class _FinalFailure(Exception):
    """An attempt failure that no retry can fix."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(kw_only=True)
class StepCall:
    """How to execute one step: what to call and how to (de)serialise its result."""

    name: str
    kind: str
    function: str | None
    call: Callable[[], Awaitable[Any]]
    dump: Callable[[Any], bytes]
    load: Callable[[str | bytes], Any]
    options: StepOptions = field(default_factory=StepOptions)
    input: str | None = None
    on_error: Callable[[ErrorInfo], Awaitable[Any]] | None = None
    parents: tuple[str, ...] | None = None
    """Run-graph parents; ``None``: the run's frontier (imperative runs)."""
    detail: Callable[[str | None, bytes], str | None] | None = None
    """Called with the selected branch and the result: the ``detail`` to store, or raise."""
    number_at_finish: bool = False
    """Take the step's position in ``status.steps`` when it finishes (graph nodes list in the
    order they were resolved), not when it is issued."""


class RunExecution:
    """The in-memory state of one run being executed by this engine."""

    def __init__(
        self, host: RunHost, run: RunRecord, fence: Fence, history: list[StepRecord]
    ) -> None:
        self.host = host
        self.run = run
        self.fence = fence
        self.history: dict[str, StepRecord] = {}
        self.next_seq = 0
        self.set_history(history)
        self.issued: set[str] = set()
        self.frontier: dict[str, None] = {}
        self.live: dict[str, tuple[StepRecord, int, float]] = {}
        self.fatal: GraphflowError | None = None
        self.start_mark = run.started_at or run.created_at
        self.finished: set[str] = set()
        # Parking: the run leaves memory when every active step is a long wait.
        self.executing = 0
        self.waiting: dict[str, tuple[str, float | None]] = {}
        self.delivered: dict[str, str] = {}
        self.progress = 0
        self.changed = anyio.Event()
        self.scope: anyio.CancelScope | None = None
        self.parked: tuple[str, float | None, str | None] | None = None
        self.waiting_at_park: dict[str, tuple[str, float | None]] = {}
        self.cancel_requested = False
        self.live_at_cancel: dict[str, tuple[StepRecord, int, float]] = {}

    def set_history(self, history: list[StepRecord]) -> None:
        """The run's recorded steps, replayed instead of executed."""
        self.history = {step.name: step for step in history}
        # New steps are numbered after every recorded one: a replayed gather issues its steps
        # in another interleaving than the first run did.
        self.next_seq = max((step.seq for step in history), default=-1) + 1

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    @property
    def workflow(self) -> str:
        """The run's workflow name."""
        return self.run.workflow

    def now(self) -> datetime:
        """The time this point of the workflow was first reached (deterministic on replay).

        Each branch of a gather keeps its own mark (a context variable, which tasks inherit), so
        a sibling's completion, replayed in another order, never moves it.
        """
        owner, mark = _NOW_MARK.get((None, 0.0))
        return datetime.fromtimestamp(mark if owner is self else self.start_mark, UTC)

    def signal(self) -> None:
        """Note progress (a step issued, finished, delivered): wakes waiters re-checking parking."""
        self.progress += 1
        self.changed.set()
        self.changed = anyio.Event()

    def stop(self, *, cancel: bool) -> None:
        """Stop the workflow at its next await: to cancel the run, or to park it."""
        if cancel:
            self.cancel_requested = True
            self.live_at_cancel = dict(self.live)
        if self.scope is not None:
            self.scope.cancel()

    def fail_run(self, error: GraphflowError) -> GraphflowError:
        """Remember an error that fails the run even if the workflow catches it."""
        if self.fatal is None:
            self.fatal = error
        return error

    # --- issuing ------------------------------------------------------------------------------

    def issue(
        self,
        name: str,
        kind: str,
        function: str | None,
        parents: tuple[str, ...] | None = None,
    ) -> tuple[int, tuple[str, ...]]:
        """Check and register a new step; return its sequence number and run-graph parents."""
        if self.host.closing or self.parked is not None or self.cancel_requested:
            raise Closing
        self.progress += 1
        if name in self.issued:
            raise self.fail_run(
                DuplicateStepError(workflow=self.workflow, run_id=self.run_id, step=name)
            )
        self.issued.add(name)
        recorded = self.history.get(name)
        if recorded is not None:
            self._check_deterministic(recorded, kind, function)
            return recorded.seq, recorded.parents
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq, tuple(self.frontier) if parents is None else parents

    def _check_deterministic(self, recorded: StepRecord, kind: str, function: str | None) -> None:
        if recorded.kind == kind and (kind == "inline" or recorded.function == function):
            return
        raise self.fail_run(
            NonDeterminismError(
                workflow=self.workflow,
                run_id=self.run_id,
                step=recorded.name,
                recorded=_describe(recorded.kind, recorded.function),
                new=_describe(kind, function),
            )
        )

    def completed(self, name: str, parents: tuple[str, ...], finished_at: float | None) -> None:
        """Advance the run-graph frontier and ``now()`` past a completed step."""
        for parent in parents:
            self.frontier.pop(parent, None)
        self.frontier[name] = None
        self.progress += 1
        if finished_at is not None:
            owner, mark = _NOW_MARK.get((None, 0.0))
            if owner is not self:
                mark = self.start_mark
            if finished_at > mark:
                _NOW_MARK.set((self, finished_at))

    # --- executing ----------------------------------------------------------------------------

    async def step(self, spec: StepCall) -> Any:
        """Replay ``spec`` from its record, or execute it; return its rehydrated result."""
        seq, parents = self.issue(spec.name, spec.kind, spec.function, spec.parents)
        recorded = self.history.get(spec.name)
        if recorded is not None and recorded.state == "completed":
            self.completed(spec.name, parents, recorded.finished_at)
            return spec.load(recorded.output or "null")
        if recorded is not None and recorded.state == "failed" and recorded.error is not None:
            await self._fail(spec, ErrorInfo.model_validate_json(recorded.error), None)
        base = recorded or StepRecord(
            run_id=self.run_id,
            name=spec.name,
            seq=seq,
            kind=spec.kind,
            function=spec.function,
            state="running",
            input=spec.input,
            parents=parents,
        )
        raw, record = await self._attempts(spec, base)
        self.completed(spec.name, parents, record.finished_at)
        return spec.load(raw)

    async def _attempts(self, spec: StepCall, base: StepRecord) -> tuple[bytes, StepRecord]:
        host = self.host
        options = spec.options
        retries = options.retries or 0
        attempt = base.attempts
        first_started = base.started_at
        host.in_flight += 1
        self.executing += 1
        try:
            while True:
                attempt += 1
                started = host.clock.time()
                first_started = first_started or started
                self.live[spec.name] = (base, attempt, first_started)
                host.step_changed(self.run_id)
                try:
                    raw, detail = await self._attempt(spec, attempt)
                except Exception as exc:
                    final = isinstance(exc, _FinalFailure) or attempt > retries
                    cause = exc.cause if isinstance(exc, _FinalFailure) else exc
                    info = error_info(cause)
                    record = _with_result(
                        base,
                        seq=self._finish_seq(spec, base) if final else base.seq,
                        state="failed" if final else "running",
                        attempts=attempt,
                        output=None,
                        error=info.model_dump_json(),
                        started_at=first_started,
                        finished_at=host.clock.time() if final else None,
                    )
                    failed = AttemptRecord(
                        run_id=self.run_id,
                        step_name=spec.name,
                        attempt=attempt,
                        error=info.model_dump_json(),
                        started_at=started,
                        finished_at=host.clock.time(),
                    )
                    await host.store.record_step(self.fence, record, failed)
                    host.step_changed(self.run_id)
                    if final:
                        self.finished.add(spec.name)
                        self.live.pop(spec.name, None)
                        await self._fail(spec, info, cause)
                    base = record
                    await self._backoff(options, attempt)
                    continue
                record = _with_result(
                    base,
                    seq=self._finish_seq(spec, base),
                    state="completed",
                    attempts=attempt,
                    output=raw.decode(),
                    error=None,
                    started_at=first_started,
                    finished_at=host.clock.time(),
                    detail=detail,
                )
                await host.store.record_step(self.fence, record)
                self.finished.add(spec.name)
                self.live.pop(spec.name, None)
                return raw, record
        finally:
            host.in_flight -= 1
            self.executing -= 1
            self.live.pop(spec.name, None)
            host.step_changed(self.run_id)
            if self.waiting:
                self.signal()

    def _finish_seq(self, spec: StepCall, base: StepRecord) -> int:
        if not spec.number_at_finish:
            return base.seq
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    async def _attempt(self, spec: StepCall, attempt: int) -> tuple[bytes, str | None]:
        info = StepInfo(
            run_id=self.run_id, workflow=self.workflow, step_name=spec.name, attempt=attempt
        )
        token = enter_step(info)
        try:
            timeout = spec.options.timeout
            if timeout is None:
                value = await spec.call()
            else:
                try:
                    with anyio.fail_after(timeout):
                        value = await spec.call()
                except TimeoutError as exc:
                    raise StepTimeout(
                        workflow=self.workflow, run_id=self.run_id, step=spec.name, timeout=timeout
                    ) from exc
        except (NonRetryableError, InputValidationError) as exc:
            raise _FinalFailure(exc) from exc
        except ReportedError as exc:
            if not exc.retryable:
                raise _FinalFailure(exc) from exc
            raise
        finally:
            exit_step(token)
        try:
            raw = spec.dump(value)
        except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
            raise _FinalFailure(
                NonRetryableError(
                    f"the result of step {spec.name!r} in run {self.run_id!r} is not"
                    f" JSON-serialisable or does not match its declared return type: {exc}."
                    " Return JSON-compatible data or a pydantic model"
                )
            ) from exc
        if spec.detail is None:
            return raw, None
        try:
            return raw, spec.detail(info.selected_branch, raw)
        except GraphflowError as exc:
            raise _FinalFailure(exc) from exc

    async def _backoff(self, options: StepOptions, attempt: int) -> None:
        delay = (options.retry_delay or 0.0) * (options.backoff or 1.0) ** (attempt - 1)
        if delay > 0:
            await self.host.clock.sleep_until(self.host.clock.time() + delay)

    async def _fail(self, spec: StepCall, info: ErrorInfo, cause: BaseException | None) -> None:
        if spec.on_error is not None:
            await spec.on_error(info)
        error = StepFailed(workflow=self.workflow, run_id=self.run_id, step=spec.name, error=info)
        raise error from cause


def _with_result(
    base: StepRecord,
    *,
    seq: int,
    state: str,
    attempts: int,
    output: str | None,
    error: str | None,
    started_at: float,
    finished_at: float | None,
    detail: str | None = None,
) -> StepRecord:
    # Built directly: dataclasses.replace costs several microseconds on the hot path.
    return StepRecord(
        run_id=base.run_id,
        name=base.name,
        seq=seq,
        kind=base.kind,
        function=base.function,
        state=state,
        attempts=attempts,
        input=base.input,
        output=output,
        error=error,
        parents=base.parents,
        started_at=started_at,
        finished_at=finished_at,
        detail=detail,
    )


def live_record(live: tuple[StepRecord, int, float]) -> StepRecord:
    """The record of a step executing now (state ``running``)."""
    base, attempts, started_at = live
    return replace(base, state="running", attempts=attempts, started_at=started_at)


def _describe(kind: str, function: str | None) -> str:
    return f"{kind} step" + (f" of {function!r}" if function else "")
