"""Durable waits: ``wf.sleep`` and ``wf.suspend``, and parking a run that only waits.

A wait is recorded before it begins (state ``sleeping``/``suspended`` with its deadline), so a crash
at any point resumes it correctly. Sleeps up to ``PARK_THRESHOLD`` stay in memory. Longer waits
*park* the run once nothing else in it is executing: the workflow coroutine is cancelled, the run is
stored as ``sleeping`` (or ``suspended``) with its earliest wake time and released. It is replayed
when it wakes, is resumed, or its suspend times out.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

import anyio
import anyio.lowlevel
from pydantic import TypeAdapter

from .._types import StepState
from ..durations import Duration, to_seconds
from ..errors import GraphflowError, StoreUnavailableError, SuspendTimeout
from ..store.base import StepRecord
from .execution import RunExecution, Wait
from .failures import error_info
from .resume import remember_schema

__all__ = (
    "PARK_THRESHOLD",
    "STORE_POLL",
    "ended_record",
    "park_when_idle",
    "record_end",
    "record_waiting",
    "sleep",
    "suspend",
    "until_changed",
    "wait_detail",
    "waiting_record",
)

PARK_THRESHOLD = 1.0
"""Sleeps longer than this (seconds) park the run instead of holding it in memory."""

STORE_POLL = 1.0
"""How often a waiting suspend that cannot park checks the store for a remote resume."""


async def sleep(execution: RunExecution, name: str, duration: Duration) -> None:
    """Wait ``duration`` durably."""
    seconds = to_seconds(duration)
    seq, parents = execution.issue(name, "sleep", None)
    recorded = execution.replay.recorded(name)
    if recorded is not None and recorded.state == "completed":
        execution.completed(name, parents, recorded.finished_at)
        return
    if execution.dry:
        await execution.stop_point(name, "sleep", None, parents)
    clock = execution.host.clock
    if recorded is None:
        now = clock.time()
        recorded = waiting_record(execution, name, seq, parents, "sleep", now + seconds, None)
        await record_waiting(execution, recorded)
    deadline = recorded.wake_at if recorded.wake_at is not None else clock.time()
    if deadline - clock.time() <= PARK_THRESHOLD:
        with execution.working():
            await clock.sleep_until(deadline)
    else:
        await _wait(execution, name, "sleep", deadline)
    await record_end(execution, recorded, parents, state="completed", output="null", error=None)


async def suspend(
    execution: RunExecution,
    reason: str,
    schema: Any = None,
    timeout: Duration | None = None,
    payload: Any = None,
) -> Any:
    """Wait for ``engine.resume(run_id, data)``; return ``data`` (validated by ``schema``).

    ``payload`` is stored as the suspend record's input, for whoever resumes it.
    """
    adapter: TypeAdapter[Any] | None = TypeAdapter(schema) if schema is not None else None
    seconds = None if timeout is None else to_seconds(timeout)
    seq, parents = execution.issue(reason, "suspend", None)
    recorded = execution.replay.recorded(reason)
    if recorded is not None and recorded.state == "completed":
        execution.completed(reason, parents, recorded.finished_at)
        return _load(adapter, recorded.output or "null")
    if execution.dry and (recorded is None or recorded.state == "suspended"):
        await execution.stop_point(reason, "suspend", None, parents)
    if recorded is None:
        deadline = None if seconds is None else execution.host.clock.time() + seconds
        recorded = waiting_record(
            execution, reason, seq, parents, "suspend", deadline, wait_detail(adapter, seconds)
        )
        if payload is not None:
            recorded = replace(recorded, input=json.dumps(payload))
        await record_waiting(execution, recorded)
    error = SuspendTimeout(
        workflow=execution.workflow,
        run_id=execution.run_id,
        step=reason,
        timeout=float(json.loads(recorded.detail or "{}").get("timeout") or 0),
    )
    if recorded.state == "suspended":
        outcome = await _wait(execution, reason, "suspend", recorded.wake_at)
        if outcome is not None:
            await record_end(
                execution, recorded, parents, state="completed", output=outcome, error=None
            )
            return _load(adapter, outcome)
        await record_end(execution, recorded, parents, state="failed", output=None, error=error)
    raise error


def wait_detail(adapter: TypeAdapter[Any] | None, seconds: float | None) -> str:
    """What a waiting step stores of its wait: the JSON Schema its data must pass, its timeout."""
    schema = remember_schema(adapter) if adapter is not None else None
    return json.dumps({"schema": schema, "timeout": seconds})


async def record_waiting(execution: RunExecution, record: StepRecord) -> None:
    """Store a wait before it begins (the run cannot park meanwhile)."""
    # Counted as working: the run must not park before this wait is stored and registered.
    with execution.working():
        await execution.record_step(record)
    execution.host.step_changed(execution.run_id)


def _load(adapter: TypeAdapter[Any] | None, raw: str) -> Any:
    return json.loads(raw) if adapter is None else adapter.validate_json(raw)


def waiting_record(
    execution: RunExecution,
    name: str,
    seq: int,
    parents: tuple[str, ...],
    kind: Literal["sleep", "suspend", "receive"],
    deadline: float | None,
    detail: str | None,
) -> StepRecord:
    """A wait's record as stored before it begins: ``sleeping``, else ``suspended``."""
    return StepRecord(
        run_id=execution.run_id,
        name=name,
        seq=seq,
        kind=kind,
        function=None,
        state="sleeping" if kind == "sleep" else "suspended",
        attempts=1,
        parents=parents,
        started_at=execution.host.clock.time(),
        wake_at=deadline,
        detail=detail,
    )


def ended_record(
    execution: RunExecution,
    recorded: StepRecord,
    *,
    state: StepState,
    output: str | None,
    error: GraphflowError | None,
) -> StepRecord:
    """A wait's record once it ended (completed with ``output``, or failed with ``error``)."""
    return StepRecord(
        run_id=recorded.run_id,
        name=recorded.name,
        seq=recorded.seq,
        kind=recorded.kind,
        function=None,
        state=state,
        attempts=1,
        input=recorded.input,
        output=output,
        error=None if error is None else error_info(error).model_dump_json(),
        parents=recorded.parents,
        started_at=recorded.started_at,
        finished_at=execution.host.clock.time(),
        wake_at=recorded.wake_at,
        detail=recorded.detail,
    )


async def record_end(
    execution: RunExecution,
    recorded: StepRecord,
    parents: tuple[str, ...],
    *,
    state: StepState,
    output: str | None,
    error: GraphflowError | None,
) -> None:
    """Store a wait's end (completed with ``output``, or failed with ``error``)."""
    record = ended_record(execution, recorded, state=state, output=output, error=error)
    await execution.record_step(record)
    execution.host.step_changed(execution.run_id)
    if state == "completed":
        execution.completed(recorded.name, parents, record.finished_at)


async def _wait(
    execution: RunExecution, name: str, kind: Literal["sleep", "suspend"], deadline: float | None
) -> str | None:
    """Wait until ``deadline`` (returns ``None``) or a delivered resume (returns its JSON).

    Parks the run when nothing else in it executes and nothing changed for a few loop turns.
    """
    clock = execution.host.clock
    execution.add_wait(name, Wait(kind, deadline))
    try:
        while True:
            delivered = execution.take_delivery(name)
            if delivered is not None:
                return delivered
            if deadline is not None and clock.time() >= deadline:
                return None
            if await park_when_idle(execution):
                continue
            look = _resumed_elsewhere(execution, name) if kind == "suspend" else None
            await until_changed(execution, deadline, look)
    finally:
        execution.remove_wait(name)


async def park_when_idle(execution: RunExecution) -> bool:
    """Park the run if it stays idle (nothing executes, nothing changes) for a few loop turns.

    Returns whether the run moved while it looked, with nothing executing: the waiter must look
    again before it waits for a change, since the change it would wait for has come already.
    """
    progress = execution.progress
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
        if execution.is_working:
            return False  # what executes wakes the waiter when it ends
        if progress != execution.progress:
            return True
    execution.park()
    await anyio.lowlevel.checkpoint()  # the cancellation lands here
    return False


async def until_changed(
    execution: RunExecution,
    deadline: float | None,
    look_in_store: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Until the run changes in memory, ``deadline`` passes, or ``look_in_store`` finds news.

    What another process stores (a resume, a message) cannot reach this memory: ``look_in_store``
    looks for it every ``STORE_POLL`` seconds, delivers what it finds and says whether it did.
    """
    changed = execution.changed
    async with anyio.create_task_group() as tg:

        async def at_deadline(when: float) -> None:
            await execution.host.clock.sleep_until(when)
            tg.cancel_scope.cancel()

        async def poll_store(look: Callable[[], Awaitable[bool]]) -> None:
            while True:
                await anyio.sleep(STORE_POLL)
                try:
                    found = await look()
                except StoreUnavailableError:
                    continue  # a look missed while the store is out of reach: the next one
                if found:
                    tg.cancel_scope.cancel()

        if deadline is not None:
            tg.start_soon(at_deadline, deadline)
        if look_in_store is not None:
            tg.start_soon(poll_store, look_in_store)
        await changed.wait()
        tg.cancel_scope.cancel()


def _resumed_elsewhere(execution: RunExecution, name: str) -> Callable[[], Awaitable[bool]]:
    """Looks in the store for a resume of suspend ``name`` made by another process."""

    async def look() -> bool:
        step = await execution.host.store.get_step(execution.run_id, name)
        if step is None or step.state != "completed" or not step.output:
            return False
        execution.deliver(name, step.output)
        return True

    return look
