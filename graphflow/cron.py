"""Cron schedules as pure computation: parse, next tick, and which ticks a schedule owes.

Parsing and matching are cronsim's (it follows Debian's cron, DST transitions included); time zones
are ``zoneinfo``'s. Times are epoch seconds, like every timestamp of the engine's clock, so a
virtual clock drives schedules in tests. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ScheduleError

__all__ = (
    "CATCH_UP_LIMIT",
    "CatchUp",
    "Cron",
    "Due",
    "check_catch_up",
    "due_ticks",
    "scheduled_at",
    "tick_run_id",
)

CatchUp = Literal["latest", "all", "skip"]
"""What a schedule starts for ticks missed while no engine ran: the latest one, all, or none."""

CATCH_UP_LIMIT = 1_000
"""``catch_up="all"`` starts at most this many missed ticks (the latest ones)."""

_BATCH = 1_000
"""On-time ticks handed out per call: a clock that jumps a month still fires every tick, in
batches."""

# The aliases of Vixie cron's crontab(5); ``@reboot`` has no meaning for a durable schedule.
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated cron expression in an IANA time zone.

    Build it with ``Cron.parse``; ``expression`` is kept as written (aliases included).
    """

    expression: str
    timezone: str = "UTC"
    _fields: str = field(default="", repr=False, compare=False)
    _zone: ZoneInfo = field(default=ZoneInfo("UTC"), repr=False, compare=False)

    @classmethod
    def parse(cls, expression: object, timezone: object = "UTC", *, schedule: str) -> Cron:
        """Validate ``expression`` (5 fields or an ``@hourly``-style alias) and ``timezone``.

        Raises:
            ScheduleError: the expression or time zone is invalid, or the expression never
                matches; the message names the schedule and the expression.
        """
        if not isinstance(expression, str):
            raise ScheduleError(
                schedule=schedule, expression=repr(expression), problem="it is not a string"
            )
        zone = _zone(timezone, schedule=schedule, expression=expression)
        fields = _ALIASES.get(expression.strip().lower(), expression.strip())
        if len(fields.split()) != 5:
            raise ScheduleError(
                schedule=schedule,
                expression=expression,
                problem=f"it has {len(fields.split())} fields, not 5",
            )
        cron = cls(expression, str(timezone), fields, zone)
        try:
            first = cron.next_after(0.0)
        except CronSimError as exc:
            raise ScheduleError(schedule=schedule, expression=expression, problem=str(exc)) from exc
        if first is None:
            raise ScheduleError(
                schedule=schedule, expression=expression, problem="it never matches"
            )
        return cron

    def _iterate(self, start: float, *, reverse: bool = False) -> Iterator[float]:
        origin = datetime.fromtimestamp(start, UTC).astimezone(self._zone)
        for tick in CronSim(self._fields, origin, reverse=reverse):
            yield tick.timestamp()

    def next_after(self, when: float) -> float | None:
        """The first tick strictly after ``when``, or ``None`` if none comes in 50 years."""
        # Ticks are whole minutes (exact as floats). Start a little early, as a datetime rounds to
        # microseconds and cronsim truncates to the minute, and keep only ticks after ``when``.
        return next((t for t in self._iterate(when - 0.001) if t > when), None)

    def ticks(self, after: float, until: float, *, limit: int) -> list[float]:
        """Ticks ``t`` with ``after < t <= until``, oldest first, at most ``limit`` of them."""
        found: list[float] = []
        tick = self.next_after(after)
        while tick is not None and tick <= until and len(found) < limit:
            found.append(tick)
            tick = self.next_after(tick)
        return found

    def latest_before(self, before: float, *, after: float, limit: int) -> list[float]:
        """Up to ``limit`` of the latest ticks ``t`` with ``after < t < before``, oldest first."""
        found: list[float] = []
        if limit <= 0:
            return found
        for tick in self._iterate(before + 1.0, reverse=True):
            if tick >= before:
                continue
            if tick <= after:
                break
            found.append(tick)
            if len(found) >= limit:
                break
        found.reverse()
        return found


def _zone(timezone: object, *, schedule: str, expression: str) -> ZoneInfo:
    if not isinstance(timezone, str) or not timezone:
        raise ScheduleError(
            schedule=schedule,
            expression=expression,
            timezone=repr(timezone),
            problem="the time zone is not an IANA name",
        )
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            schedule=schedule,
            expression=expression,
            timezone=timezone,
            problem="the time zone is unknown",
        ) from exc


def check_catch_up(catch_up: object, *, schedule: str) -> CatchUp:
    """``catch_up`` if it is a policy; raises ``ScheduleError`` otherwise."""
    for policy in get_args(CatchUp):
        if catch_up == policy:
            return policy  # type: ignore[no-any-return] # the Literal's own member
    raise ScheduleError(
        schedule=schedule,
        catch_up=repr(catch_up),
        problem="catch_up must be 'latest', 'all' or 'skip'",
    )


def scheduled_at(tick: float) -> str:
    """A tick as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_run_id(schedule: str, tick: float) -> str:
    """The run id of a tick, ``"{schedule}@{scheduled_at}"``: one run per tick, whoever fires it."""
    return f"{schedule}@{scheduled_at(tick)}"


@dataclass(frozen=True, slots=True)
class Due:
    """What a schedule owes now: ticks to start (oldest first), and the new last tick."""

    ticks: list[float]
    through: float
    """Every tick up to this time is handled (started or given up by the catch-up policy)."""


def due_ticks(
    cron: Cron, *, last_tick: float, now: float, online_since: float, catch_up: CatchUp
) -> Due | None:
    """The ticks to start now, or ``None`` when nothing is due.

    Ticks at or after ``online_since`` (when the engine that fires them started watching) fell
    while it ran: every one of them fires. Earlier ones were missed while no engine ran and follow
    ``catch_up``. Each call hands out at most one batch of on-time ticks; call again while due.
    """
    through = last_tick
    ticks: list[float] = []
    if last_tick < online_since:
        want = {"latest": 1, "all": CATCH_UP_LIMIT, "skip": 1}[catch_up]
        missed = [
            tick
            for tick in cron.latest_before(online_since, after=last_tick, limit=want)
            if tick <= now
        ]
        if missed:
            through = missed[-1]
            if catch_up != "skip":
                ticks.extend(missed)
    # On time: ticks at or after ``online_since`` (and after every tick handled so far).
    start = max(through, online_since - 0.001)
    on_time = cron.ticks(start, now, limit=_BATCH)
    if on_time:
        ticks.extend(on_time)
        through = on_time[-1]
    if through == last_tick:
        return None
    return Due(ticks=ticks, through=through)
