"""The schedule API of the engine: ``add_schedule``, ``remove_schedule`` and ``list_schedules``.

Schedules are rows in the store, so every worker sharing it fires them (``runtime.schedules``);
static ones (``@gf.workflow(schedule=...)``) are written by each worker that opens with them, and
listed here from the code loaded even before a worker stored them.
"""

from __future__ import annotations

from collections.abc import Callable

from ._start import RunStarter
from ._types import JSON
from .cron import Cron
from .errors import GraphflowError, ScheduleError, ScheduleNotFoundError
from .functions import WorkflowDefinition
from .runtime.clock import Clock
from .runtime.schedules import ScheduleInfo, schedule_info, schedule_record
from .store.base import ScheduleRecord, Store

__all__ = ("Schedules",)


def _declared_in_code(name: str) -> ScheduleError:
    return ScheduleError(
        schedule=name,
        problem=f"it is declared in code with @gf.workflow(schedule=...) on workflow {name!r}",
        fix="change or remove the schedule= option there, or give a dynamic schedule another name",
    )


class Schedules:
    """Adds, removes and lists the schedules of one store."""

    def __init__(
        self,
        store: Store,
        starter: RunStarter,
        clock: Clock,
        changed: Callable[[], None] | None,
    ) -> None:
        self.store = store
        self.registry = starter.registry
        self.clock = clock
        self._starter = starter
        self._changed = changed or (lambda: None)
        """Tells this process's scheduler to re-read the schedules."""
        self._crons: dict[tuple[str, str], Cron] = {}

    def _static(self, name: str) -> WorkflowDefinition | None:
        definition = self.registry.find_workflow(name)
        return definition if definition is not None and definition.schedule is not None else None

    async def add(
        self,
        name: str,
        workflow: str | WorkflowDefinition,
        cron: str,
        data: JSON,
        timezone: str,
        catch_up: str,
    ) -> ScheduleInfo:
        """Validate and store a dynamic schedule (replacing one of that name, its last tick kept).

        Its first tick falls strictly after now (the engine's clock).

        Raises:
            UnknownWorkflowError: no workflow has that name here.
            ScheduleError: the cron expression, time zone or catch-up policy is invalid, or a
                schedule declared in code has the name.
            InputValidationError: the tick input does not match the workflow's input type.
        """
        if not name or "@" in name:
            raise GraphflowError(
                f"invalid schedule name {name!r}: give a non-empty name without '@' (a tick's"
                " run id is '{name}@{scheduled_at}')"
            )
        if self._static(name) is not None:
            raise _declared_in_code(name)
        definition = self._starter.definition(workflow)
        parsed = Cron.parse(cron, timezone, schedule=name)
        now = self.clock.time()
        record = schedule_record(
            name, definition, parsed, catch_up=catch_up, data=data, now=now, static=False
        )
        stored = await self.store.save_schedule(record)
        if stored.static:
            raise _declared_in_code(name)
        self._changed()
        return schedule_info(stored, parsed, now)

    async def remove(self, name: str) -> None:
        """Delete a dynamic schedule.

        Raises:
            ScheduleNotFoundError: no schedule has that name.
            ScheduleError: the schedule is declared in code.
        """
        stored = {record.name: record for record in await self.store.list_schedules()}
        if (name in stored and stored[name].static) or (
            name not in stored and self._static(name) is not None
        ):
            raise _declared_in_code(name)
        if not await self.store.remove_schedule(name):
            raise ScheduleNotFoundError(name=name)
        self._changed()

    async def list(self) -> list[ScheduleInfo]:
        """Stored schedules and those declared in the code loaded here, by name."""
        now = self.clock.time()
        infos: dict[str, ScheduleInfo] = {}
        for record in await self.store.list_schedules():
            try:
                infos[record.name] = schedule_info(record, self._cron(record), now)
            except ScheduleError:
                continue  # written by code whose cron this version cannot read
        for definition in self.registry.workflows:
            if definition.schedule is not None and definition.name not in infos:
                record = schedule_record(
                    definition.name, definition, definition.schedule, catch_up="latest",
                    data=None, now=now, static=True,
                )  # fmt: skip
                infos[record.name] = schedule_info(record, definition.schedule, now)
        return [infos[name] for name in sorted(infos)]

    def _cron(self, record: ScheduleRecord) -> Cron:
        key = (record.cron, record.timezone)
        if key not in self._crons:
            self._crons[key] = Cron.parse(record.cron, record.timezone, schedule=record.name)
        return self._crons[key]
