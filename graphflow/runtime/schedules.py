"""Cron schedules at run time: registering them, listing them, and the loop that fires ticks.

The loop runs in every worker engine. Each pass reads the schedules of the workflows the worker has,
works out which ticks are due on the engine's clock (``cron.due_ticks``) and fires them with the
store's compare-and-set, which also inserts the ticks' runs: one run per tick however many workers
fire. The runs are then claimed like any other (concurrency limits included).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from .._types import JSON
from ..cron import CatchUp, Cron, check_catch_up, due_ticks, scheduled_at, tick_run_id
from ..errors import ScheduleError, StoreError
from ..functions import Registry, WorkflowDefinition
from ..store.base import RunRecord, ScheduleRecord, Store
from .clock import Clock, until_set
from .status import to_datetime

__all__ = ("ScheduleInfo", "Scheduler", "schedule_info", "schedule_record", "tick_input")


class ScheduleInfo(BaseModel):
    """A schedule as ``engine.list_schedules()`` shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    workflow: str
    cron: str
    timezone: str
    catch_up: CatchUp
    next_tick: datetime | None
    """The next tick to come (UTC), after the last one handled and after now."""


def tick_input(tick: float, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """A tick's run input: ``{"scheduled_at": "YYYY-MM-DDTHH:MM:SSZ"} | input``."""
    return {"scheduled_at": scheduled_at(tick)} | dict(extra or {})


def schedule_record(
    name: str,
    definition: WorkflowDefinition,
    cron: Cron,
    *,
    catch_up: object,
    data: JSON,
    now: float,
    static: bool,
) -> ScheduleRecord:
    """Validate a schedule and build its record, registered ``now``.

    The input is checked against the workflow's type with a sample tick.

    Raises:
        ScheduleError: the catch-up policy is invalid or the input is not a mapping.
        InputValidationError: the tick input does not match the workflow's input type.
    """
    policy = check_catch_up(catch_up, schedule=name)
    if data is not None and not isinstance(data, Mapping):
        raise ScheduleError(
            schedule=name,
            problem=f"its input must be a mapping, got {data!r}",
            fix="pass input={...}: a tick's input is {'scheduled_at': ...} | input",
        )
    sample = tick_input(now, data)
    definition.validate_input(sample)
    return ScheduleRecord(
        name=name,
        workflow=definition.name,
        cron=cron.expression,
        timezone=cron.timezone,
        catch_up=policy,
        input=definition.dump_input(dict(data or {})),
        static=static,
        last_tick=now,
        created_at=now,
        updated_at=now,
    )


def schedule_info(record: ScheduleRecord, cron: Cron, now: float) -> ScheduleInfo:
    """The public view of a stored schedule."""
    return ScheduleInfo(
        name=record.name,
        workflow=record.workflow,
        cron=record.cron,
        timezone=record.timezone,
        catch_up=check_catch_up(record.catch_up, schedule=record.name),
        next_tick=to_datetime(cron.next_after(max(record.last_tick, now))),
    )


class Scheduler:
    """Fires the ticks of every schedule whose workflow this worker has."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        clock: Clock,
        poll: float,
        fired: Callable[[], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.poll = poll
        self._fired = fired
        self.changed = anyio.Event()
        self._crons: dict[tuple[str, str], Cron] = {}
        self._online_since = 0.0

    def cron(self, record: ScheduleRecord) -> Cron:
        """The parsed cron of a stored schedule (parsed once)."""
        key = (record.cron, record.timezone)
        cron = self._crons.get(key)
        if cron is None:
            cron = self._crons[key] = Cron.parse(record.cron, record.timezone, schedule=record.name)
        return cron

    def wake(self) -> None:
        """Re-read the schedules now (one was added, replaced or removed)."""
        self.changed.set()

    async def register_static(self) -> None:
        """Store the schedules declared in code (a new one's first tick comes after now)."""
        self._online_since = self.clock.time()
        for definition in list(self.registry.workflows):
            if definition.schedule is None:
                continue
            record = schedule_record(
                definition.name,
                definition,
                definition.schedule,
                catch_up="latest",
                data=None,
                now=self._online_since,
                static=True,
            )
            await self.store.save_schedule(record)

    def _fires(self, record: ScheduleRecord) -> bool:
        definition = self.registry.find_workflow(record.workflow)
        if definition is None:
            return False
        # A static schedule fires only where its workflow still declares one.
        return not record.static or definition.schedule is not None

    async def run(self) -> None:
        """Fire due ticks forever (the worker's schedule loop)."""
        while True:
            self.changed = anyio.Event()
            try:
                next_tick = await self.fire_due()
            except StoreError:
                next_tick = None
            await self._idle(next_tick)

    async def fire_due(self) -> float | None:
        """One pass: fire every due tick; return the next tick to wait for."""
        next_tick: float | None = None
        for record in await self.store.list_schedules():
            if not self._fires(record):
                continue
            try:
                cron = self.cron(record)
            except ScheduleError:
                continue  # stored by another version of the code: its workers fire it
            current: ScheduleRecord | None = record
            while current is not None:
                current = await self._fire_once(current, cron)
                if current is not None:
                    record = current
            upcoming = cron.next_after(max(record.last_tick, self.clock.time()))
            if upcoming is not None and (next_tick is None or upcoming < next_tick):
                next_tick = upcoming
        return next_tick

    async def _fire_once(self, record: ScheduleRecord, cron: Cron) -> ScheduleRecord | None:
        """Fire one batch of due ticks; the record moved on, or ``None`` when done."""
        now = self.clock.time()
        due = due_ticks(
            cron,
            last_tick=record.last_tick,
            now=now,
            online_since=self._online_since,
            catch_up=check_catch_up(record.catch_up, schedule=record.name),
        )
        if due is None:
            return None
        extra = json.loads(record.input or "{}")
        runs = [
            RunRecord(
                run_id=tick_run_id(record.name, tick),
                workflow=record.workflow,
                state="pending",
                input=json.dumps(tick_input(tick, extra)),
                created_at=now + i * 1e-6,
                updated_at=now,
            )
            for i, tick in enumerate(due.ticks)
        ]
        fired = await self.store.fire_schedule(
            record.name, last_tick=record.last_tick, through=due.through, runs=runs
        )
        if not fired:
            return None  # another worker moved it: read it again next pass
        if runs:
            self._fired()  # the ticks' runs wait, pending, for the claimer
        return replace(record, last_tick=due.through)

    async def _idle(self, next_tick: float | None) -> None:
        """Until the next tick (engine clock), a change, or a poll interval (other processes)."""
        await until_set(self.changed, self.clock, next_tick, self.poll)
