"""Executing one step: replay it from its record, or run its attempts.

A step is *issued* (its name checked against the run's history), then either replayed from its
record or executed: attempts with retries, backoff and timeout, and exactly one durable write
when it finishes (plus one per failed attempt).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import anyio
import pydantic
import pydantic_core

from .._json import MAX_DEPTH
from ..errors import (
    ErrorInfo,
    GraphflowError,
    InputValidationError,
    LeaseLostError,
    NonRetryableError,
    StepFailed,
    StepTimeout,
    StoreUnavailableError,
)
from ..functions import StepOptions
from ..store.base import AttemptRecord, StepRecord
from . import logs
from .context import StepInfo, enter_step, exit_step
from .execution import LiveStep, RunExecution
from .failures import ReportedError, contained, error_info, escaped
from .gates import Gate

__all__ = ("StepCall", "run_step")

_NO_OPTIONS = StepOptions()

_Outcome: TypeAlias = tuple[bytes, str | None, Any]
"""A successful attempt: the result's JSON, its ``detail``, and the result as read back."""


@dataclass(slots=True, kw_only=True)
class StepCall:
    """How to execute one step: what to call and how to (de)serialise its result."""

    name: str
    kind: str
    function: str | None
    call: Callable[[], Awaitable[Any]]
    dump: Callable[[Any], bytes]
    load: Callable[[str | bytes], Any]
    options: StepOptions = _NO_OPTIONS
    input: str | None = None
    on_error: Callable[[ErrorInfo], Awaitable[Any]] | None = None
    parents: tuple[str, ...] | None = None
    """Run-graph parents; ``None``: the run's frontier (imperative runs)."""
    detail: Callable[[str | None, bytes], str | None] | None = None
    """Called with the selected branch and the result: the ``detail`` to store, or raise."""
    number_at_finish: bool = False
    """Take the step's position in ``status.steps`` when it finishes (graph nodes list in the
    order they were resolved), not when it is issued."""
    gate: Gate | None = None
    """Admits each attempt under the function's concurrency and rate limits (outside its
    timeout); the step is ``queued`` while it waits."""


_HOLDERS = uuid.UUID("0b7c3f5e-2d41-4a8e-9a61-5f3c9e0d7b24")
"""Namespace of the ids that step attempts hold concurrency slots under."""


class _FinalFailure(Exception):
    """An attempt failure that no retry can fix."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def run_step(execution: RunExecution, spec: StepCall) -> Any:
    """Replay ``spec`` from its record, or execute it; return its rehydrated result.

    Raises:
        StepFailed: the step failed after its last attempt (now or when recorded).
    """
    seq, parents = execution.issue(spec.name, spec.kind, spec.function, spec.parents)
    recorded = execution.replay.recorded(spec.name)
    if recorded is not None and recorded.state == "completed":
        execution.completed(spec.name, parents, recorded.finished_at)
        if execution.turn_due():
            await anyio.lowlevel.cancel_shielded_checkpoint()  # see RunExecution.turn_due
        return spec.load(recorded.output or "null")
    if recorded is not None and recorded.state == "failed" and recorded.error is not None:
        await _raise_failed(execution, spec, ErrorInfo.model_validate_json(recorded.error), None)
    if execution.dry:
        await execution.stop_point(spec.name, spec.kind, spec.function, parents)
    live = LiveStep(
        run_id=execution.run_id,
        name=spec.name,
        seq=seq,
        kind=spec.kind,
        function=spec.function,
        input=spec.input if recorded is None else recorded.input,
        parents=parents,
        attempt=0 if recorded is None else recorded.attempts,
        started_at=None if recorded is None else recorded.started_at,
        error=None if recorded is None else recorded.error,
    )
    value, record = await _attempts(execution, spec, live)
    execution.completed(spec.name, parents, record.finished_at)
    if execution.turn_due():
        await anyio.lowlevel.cancel_shielded_checkpoint()  # see RunExecution.turn_due
    return value


async def _attempts(
    execution: RunExecution, spec: StepCall, live: LiveStep
) -> tuple[Any, StepRecord]:
    """Attempt ``spec`` until it succeeds or fails for good, storing each outcome.

    Returns the result as the workflow receives it (rehydrated from its JSON) and its record.
    """
    clock = execution.host.clock
    retries = spec.options.retries or 0
    tried_here = False
    execution.step_began()
    try:
        while True:
            if execution.lease_doubtful():  # no attempt starts on a lease that may have lapsed
                await execution.leased()
            if tried_here:  # its body runs again: its steps too (a new execution replays them)
                execution.replay.forget_under(spec.name)
            tried_here = True
            live.attempt += 1
            started = clock.time()
            if live.started_at is None:
                live.started_at = started
            execution.attempt_began(live)
            try:
                raw, detail, value = await _gated_attempt(execution, spec, live)
            except LeaseLostError:
                raise  # the run is another engine's now: not a failure of the attempt
            except Exception as exc:
                final = isinstance(exc, _FinalFailure) or live.attempt > retries
                info = error_info(_cause(exc))
                logs.attempt_failed(
                    execution.run_id, execution.workflow, spec.name, live.attempt, info, final=final
                )
                error = info.model_dump_json()
                record = live.record(
                    "failed" if final else "running",
                    seq=_final_seq(execution, spec, live) if final else None,
                    error=error,
                    finished_at=clock.time() if final else None,
                )
                failed = AttemptRecord(
                    run_id=execution.run_id,
                    step_name=spec.name,
                    attempt=live.attempt,
                    error=error,
                    started_at=started,
                    finished_at=clock.time(),
                )
                await execution.record_step(record, failed)
                execution.host.step_changed(execution.run_id)
                if final:
                    execution.step_settled(spec.name)
                    await _raise_failed(execution, spec, info, _cause(exc))
                live.error = error
                await _backoff(execution, spec.options, live.attempt)
                continue
            record = live.record(
                "completed",
                seq=_final_seq(execution, spec, live),
                output=raw.decode(),
                finished_at=clock.time(),
                detail=detail,
            )
            await execution.record_step(record)
            execution.step_settled(spec.name)
            return value, record
    finally:
        execution.step_ended(spec.name)


def _cause(exc: Exception) -> BaseException:
    """The error an attempt failed with (unwrapped from ``_FinalFailure``)."""
    return exc.cause if isinstance(exc, _FinalFailure) else exc


def _gated_attempt(execution: RunExecution, spec: StepCall, live: LiveStep) -> Awaitable[_Outcome]:
    """One attempt, admitted first under the function's limits if it has any.

    (Not a coroutine itself, nor ``_traced_attempt``: two frames less for every step in flight.)
    """
    gate = spec.gate
    if gate is None:
        return _traced_attempt(execution, spec, live.attempt)
    return _admitted_attempt(execution, spec, live, gate)


async def _admitted_attempt(
    execution: RunExecution, spec: StepCall, live: LiveStep, gate: Gate
) -> _Outcome:
    """One attempt, admitted first (``queued`` meanwhile) under the function's limits.

    The slot is given back as soon as the call returns, before its outcome is stored.
    """
    run_id, name, attempt = execution.run_id, spec.name, live.attempt

    def hold() -> None:
        live.queued = True
        execution.attempt_began(live)  # status shows it queued

    try:
        slot = await gate.enter(
            lambda: str(uuid.uuid5(_HOLDERS, f"{run_id}\x00{name}\x00{attempt}")),
            what=f"input for function {spec.function!r} in step {name!r}",
            held=hold,
        )
    except InputValidationError as exc:
        raise _FinalFailure(exc) from exc
    except StoreUnavailableError as exc:
        raise execution.store_failed(exc) from exc  # the gate's store, not the step, failed
    finally:
        if live.queued:
            live.queued = False
            execution.attempt_began(live)
    try:
        return await _traced_attempt(execution, spec, attempt)
    finally:
        gate.leave(slot)


def _traced_attempt(execution: RunExecution, spec: StepCall, attempt: int) -> Awaitable[_Outcome]:
    """One attempt, in a span of its own when tracing is on."""
    trace = execution.trace
    if trace is None:
        return _attempt(execution, spec, attempt)
    return trace.attempt(spec.name, attempt, _attempt(execution, spec, attempt), _cause)


def _final_seq(execution: RunExecution, spec: StepCall, live: LiveStep) -> int:
    return execution.replay.take_seq() if spec.number_at_finish else live.seq


async def _attempt(execution: RunExecution, spec: StepCall, attempt: int) -> _Outcome:
    """One attempt: call, time out, serialise, read back; ``_FinalFailure`` if retrying can't help.

    The result is read back (rehydrated from its JSON) before it is stored, so a result that
    would be stored but could never be read again (nested too deep) fails the step instead.
    """
    info = StepInfo(
        run_id=execution.run_id, workflow=execution.workflow, step_name=spec.name, attempt=attempt
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
                    workflow=execution.workflow,
                    run_id=execution.run_id,
                    step=spec.name,
                    timeout=timeout,
                ) from exc
    except (NonRetryableError, InputValidationError) as exc:
        raise _FinalFailure(exc) from exc
    except ReportedError as exc:
        if not exc.retryable:
            raise _FinalFailure(exc) from exc
        raise
    except BaseException as exc:
        if not escaped(exc):
            raise
        raise _FinalFailure(contained(exc, f"step {spec.name!r}")) from None
    finally:
        exit_step(token)
    try:
        raw = spec.dump(value)
    except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
        raise _FinalFailure(
            NonRetryableError(
                f"the result of step {spec.name!r} in run {execution.run_id!r} is not"
                f" JSON-serialisable or does not match its declared return type: {exc}."
                " Return JSON-compatible data or a pydantic model"
            )
        ) from exc
    try:
        loaded = spec.load(raw)
    except pydantic.ValidationError as exc:
        raise _FinalFailure(
            NonRetryableError(
                f"the result of step {spec.name!r} in run {execution.run_id!r} cannot be read"
                f" back from its JSON: {exc}. Return JSON-compatible data nested at most"
                f" {MAX_DEPTH} levels deep"
            )
        ) from exc
    if spec.detail is None:
        return raw, None, loaded
    try:
        return raw, spec.detail(info.selected_branch, raw), loaded
    except GraphflowError as exc:
        raise _FinalFailure(exc) from exc


async def _backoff(execution: RunExecution, options: StepOptions, attempt: int) -> None:
    delay = (options.retry_delay or 0.0) * (options.backoff or 1.0) ** (attempt - 1)
    if delay > 0:
        clock = execution.host.clock
        await clock.sleep_until(clock.time() + delay)


async def _raise_failed(
    execution: RunExecution, spec: StepCall, info: ErrorInfo, cause: BaseException | None
) -> None:
    """Run the step's compensation, then raise ``StepFailed`` in the workflow."""
    if spec.on_error is not None:
        await spec.on_error(info)
    error = StepFailed(
        workflow=execution.workflow, run_id=execution.run_id, step=spec.name, error=info
    )
    raise error from cause
