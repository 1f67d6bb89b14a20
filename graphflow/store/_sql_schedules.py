"""Schedules in the SQL store: definitions, and the compare-and-set that fires their ticks.

A tick is fired by moving the schedule's ``last_tick`` forward with a compare-and-set in the same
transaction that inserts the ticks' runs (whose ids are unique per tick): however many workers
see a tick, one of them moves it and exactly one run exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert

from ._sql_db import SqlDatabase
from ._tx import Tx
from .base import RunRecord, ScheduleRecord
from .dialects import Dialect
from .tables import RUNS

__all__ = ("ScheduleQueries",)

_COLUMNS = tuple(f.name for f in dataclasses.fields(ScheduleRecord))
_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(RunRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM gf_schedules"
# What a new definition replaces: never the name, the last tick, nor when it was created.
_DEFINITION = ("workflow", "cron", "timezone", "catch_up", "input", "static", "updated_at")


def _schedule(row: Sequence[Any]) -> ScheduleRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["static"] = bool(values["static"])
    return ScheduleRecord(**values)


def _insert_run(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(RUNS, ["run_id"])


class ScheduleQueries:
    """Schedule statements, mixed into ``SqlStore`` (which provides the database)."""

    _db: SqlDatabase

    async def save_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Insert, or update the definition of a schedule of the same kind; return it stored.

        A static schedule never replaces a dynamic one of the same name (the stored one wins).
        """
        params = {column: getattr(schedule, column) for column in _COLUMNS}

        def op(tx: Tx) -> ScheduleRecord:
            rows = tx.query(f"{_SELECT} WHERE name = :name", params)
            if not rows:
                tx.execute(
                    f"INSERT INTO gf_schedules ({', '.join(_COLUMNS)})"
                    f" VALUES ({', '.join(':' + c for c in _COLUMNS)})",
                    params,
                )
            elif _schedule(rows[0]).static == schedule.static:
                tx.execute(
                    "UPDATE gf_schedules SET "
                    + ", ".join(f"{c} = :{c}" for c in _DEFINITION)
                    + " WHERE name = :name",
                    params,
                )
            else:
                return _schedule(rows[0])
            self._db.dialect.notify(tx, f"schedule:{schedule.name}")
            return _schedule(tx.query(f"{_SELECT} WHERE name = :name", params)[0])

        result: ScheduleRecord = await self._db.write(op)
        return result

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule; ``False`` if there was none."""

        def op(tx: Tx) -> bool:
            removed = tx.execute("DELETE FROM gf_schedules WHERE name = :name", {"name": name})
            if removed:
                self._db.dialect.notify(tx, f"schedule:{name}")
            return bool(removed)

        return bool(await self._db.write(op))

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        rows = await self._db.read(lambda tx: tx.query(f"{_SELECT} ORDER BY name"))
        return [_schedule(row) for row in rows]

    async def fire_schedule(
        self, name: str, *, last_tick: float, through: float, runs: Sequence[RunRecord]
    ) -> bool:
        """Move the last tick and start the ticks' runs in one transaction (compare-and-set).

        Runs whose ids exist already are skipped; ``False`` if another engine moved it first.
        """
        inserts = [{column: getattr(run, column) for column in _RUN_COLUMNS} for run in runs]
        insert = self._db.prepare(_insert_run)
        moved = {"name": name, "last_tick": last_tick, "through": through}

        def op(tx: Tx) -> bool:
            if not tx.execute(
                "UPDATE gf_schedules SET last_tick = :through"
                " WHERE name = :name AND last_tick = :last_tick",
                moved,
            ):
                return False
            for params in inserts:
                tx.execute(insert, params)
            if inserts:
                self._db.dialect.notify(tx, f"schedule:{name}")
            return True

        return bool(await self._db.write(op))
