"""Errors of schedules and flow control: invalid cron schedules and limits, unknown schedules."""

from __future__ import annotations

from ._setup import DefinitionError, NotFoundError

__all__ = ("LimitError", "ScheduleError", "ScheduleNotFoundError")


class ScheduleError(DefinitionError, ValueError):
    """A schedule is invalid: its cron expression, time zone or catch-up policy."""

    schedule: str
    problem: str
    expression: str | None
    timezone: str | None
    catch_up: str | None
    fix: str | None

    def __init__(
        self,
        *,
        schedule: str,
        problem: str,
        expression: str | None = None,
        timezone: str | None = None,
        catch_up: str | None = None,
        fix: str | None = None,
    ) -> None:
        what = [f"schedule {schedule!r}"]
        if expression is not None:
            what.append(f"cron expression {expression!r}")
        if timezone is not None:
            what.append(f"time zone {timezone!r}")
        if catch_up is not None:
            what.append(f"catch_up {catch_up}")
        default_fix = (
            "use 5 cron fields (minute hour day-of-month month day-of-week, e.g. '*/5 * * * *')"
            " or an alias such as '@hourly', an IANA time zone such as 'Europe/Berlin', and"
            " catch_up 'latest', 'all' or 'skip'"
        )
        super().__init__(
            f"invalid {', '.join(what)}: {problem}. Fix: {fix or default_fix}",
            schedule=schedule,
            problem=problem,
            expression=expression,
            timezone=timezone,
            catch_up=catch_up,
            fix=fix,
        )


class LimitError(DefinitionError, ValueError):
    """A concurrency or rate limit, a priority or a dedup key is invalid."""

    where: str
    option: str
    value: object
    fix: str

    def __init__(self, *, where: str, option: str, value: object, fix: str) -> None:
        super().__init__(
            f"invalid {option}={value!r} in {where}: {fix}",
            where=where,
            option=option,
            value=value,
            fix=fix,
        )


class ScheduleNotFoundError(NotFoundError):
    """No schedule has this name."""

    name: str

    def __init__(self, *, name: str) -> None:
        super().__init__(
            f"no schedule {name!r} in this store: see `graphflow schedules` (or"
            " engine.list_schedules()) for the names",
            name=name,
        )
