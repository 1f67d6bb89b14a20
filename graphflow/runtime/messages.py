"""Messages and events inside a run: ``wf.receive`` and ``wf.set_event``.

A receive is a durable wait like a suspend: recorded (``suspended``, with its topic as input and its
deadline as ``wake_at``) before it waits, it parks the run when nothing else in it executes. A
message is *taken* in one transaction with the receive's completion (its output is the message), so
it is received exactly once, in the order sent, and replay returns the recorded message. A timeout
completes the receive with ``null`` (``None``), recorded so replay agrees. A message sent before
the receive waits is kept and taken at once.

An event is a step too (kind ``event``): its value and the step are written together, so a replay
does not publish an older value again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..durations import Duration, to_seconds
from ..errors import InputValidationError
from ..store.base import StepRecord, receive_input
from .execution import RunExecution, Wait
from .waiting import (
    ended_record,
    park_when_idle,
    record_waiting,
    until_changed,
    wait_detail,
    waiting_record,
)

__all__ = ("receive", "set_event")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


async def receive(
    execution: RunExecution,
    name: str,
    topic: str,
    timeout: Duration | None = None,
    schema: Any = None,
) -> Any:
    """Wait for the next message on ``topic``; its data (validated by ``schema``), or ``None``.

    Raises:
        InputValidationError: the message does not match ``schema`` (the same on replay).
    """
    adapter: TypeAdapter[Any] | None = TypeAdapter(schema) if schema is not None else None
    seconds = None if timeout is None else to_seconds(timeout)
    seq, parents = execution.issue(name, "receive", None)
    recorded = execution.replay.recorded(name)
    if recorded is not None and recorded.state == "completed":
        execution.completed(name, parents, recorded.finished_at)
        return _load(execution, name, topic, adapter, recorded.output)
    if execution.dry:
        await execution.stop_point(name, "receive", None, parents)
    if recorded is None:
        deadline = None if seconds is None else execution.host.clock.time() + seconds
        waiting = waiting_record(
            execution, name, seq, parents, "receive", deadline, wait_detail(adapter, seconds)
        )
        recorded = dataclasses.replace(waiting, input=receive_input(topic))
        # A message sent before the run got here is taken at once: one write, no wait.
        done = await _take(execution, recorded, topic)
        if done is None:
            await record_waiting(execution, recorded)
            done = await _wait(execution, recorded, topic)
    else:
        done = await _wait(execution, recorded, topic)
    execution.completed(name, parents, done.finished_at)
    return _load(execution, name, topic, adapter, done.output)


async def _take(execution: RunExecution, recorded: StepRecord, topic: str) -> StepRecord | None:
    """Take the oldest message on ``topic`` into the receive's completion, if one waits."""
    done = ended_record(execution, recorded, state="completed", output=None, error=None)
    with execution.working():
        output = await execution.host.store.take_message(
            execution.fence, execution.replay.with_markers(done), topic
        )
    if output is None:
        return None
    execution.host.step_changed(execution.run_id)
    return dataclasses.replace(done, output=output)


async def _wait(execution: RunExecution, recorded: StepRecord, topic: str) -> StepRecord:
    """Until a message is taken or the deadline passes (completed with ``null``, recorded)."""
    name, deadline = recorded.name, recorded.wake_at
    clock = execution.host.clock
    execution.add_wait(name, Wait("receive", deadline, topic))
    try:
        look = True  # the first look covers a message sent before this wait was registered
        while True:
            if look or execution.take_delivery(name) is not None:
                done = await _take(execution, recorded, topic)
                if done is not None:
                    return done
            look = False
            if deadline is not None and clock.time() >= deadline:
                done = ended_record(
                    execution, recorded, state="completed", output="null", error=None
                )
                await execution.record_step(done)
                execution.host.step_changed(execution.run_id)
                return done
            if await park_when_idle(execution):
                continue
            await until_changed(execution, deadline, _message_waiting(execution, topic))
    finally:
        execution.remove_wait(name)


def _message_waiting(execution: RunExecution, topic: str) -> Callable[[], Awaitable[bool]]:
    """Looks in the store for a message on ``topic`` sent by another process."""

    async def look() -> bool:
        if not await execution.host.store.has_message(execution.run_id, topic):
            return False
        execution.message_arrived(topic)
        return True

    return look


def _load(
    execution: RunExecution,
    name: str,
    topic: str,
    adapter: TypeAdapter[Any] | None,
    raw: str | None,
) -> Any:
    if raw is None or raw == "null" or adapter is None:
        return json.loads(raw or "null")
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise InputValidationError(
            what=f"message on topic {topic!r}",
            errors=[dict(error) for error in exc.errors(include_url=False)],
            workflow=execution.workflow,
            run_id=execution.run_id,
            step=name,
        ) from exc


async def set_event(
    execution: RunExecution, name: str, key: str, value: Any, *, in_body: bool = False
) -> None:
    """Publish ``value`` as the run's event ``key`` (once: a replay publishes nothing again).

    ``in_body``: called by a step's body, which runs again only when it had not finished (its
    events then are this run's, not the lost ones): published again, over its record.
    """
    seq, parents = execution.issue(name, "event", None)
    recorded = execution.replay.recorded(name)
    if recorded is not None and recorded.state == "completed" and not in_body:
        execution.completed(name, parents, recorded.finished_at)
        return
    if execution.dry:
        await execution.stop_point(name, "event", None, parents)
    raw = _ANY.dump_json(value).decode()
    now = execution.host.clock.time()
    step = StepRecord(
        run_id=execution.run_id,
        name=name,
        seq=seq,
        kind="event",
        function=None,
        state="completed",
        attempts=1,
        input=json.dumps({"key": key}),
        output=raw,
        parents=parents,
        started_at=now,
        finished_at=now,
    )
    with execution.working():
        await execution.host.store.set_event(
            execution.fence, execution.replay.with_markers(step), key, raw
        )
    execution.host.step_changed(execution.run_id)
    execution.completed(name, parents, now)
