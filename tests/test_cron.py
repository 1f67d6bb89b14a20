"""The pure schedule computation: parsing, ticks, DST, and the catch-up policies."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

import graphflow as gf
from graphflow.cron import (
    CATCH_UP_LIMIT,
    Cron,
    check_catch_up,
    due_ticks,
    scheduled_at,
    tick_run_id,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(tick: float) -> str:
    return scheduled_at(tick)


def test_five_fields_and_aliases_parse() -> None:
    assert Cron.parse("*/5 * * * *", schedule="s").next_after(ts("2024-01-01T00:01:00")) == ts(
        "2024-01-01T00:05:00"
    )
    hourly = Cron.parse("@hourly", schedule="s")
    assert hourly.expression == "@hourly"
    assert hourly.next_after(ts("2024-01-01T00:01:00")) == ts("2024-01-01T01:00:00")
    assert Cron.parse("@daily", schedule="s").next_after(ts("2024-01-01T00:00:00")) == ts(
        "2024-01-02T00:00:00"
    )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * * *", "4 fields"),
        ("* * * * * *", "6 fields"),
        ("@reboot", "1 fields"),
        ("0 0 30 2 *", "day-of-month"),
        ("nonsense", "1 fields"),
    ],
)
def test_invalid_expression_is_a_schedule_error_naming_it(expression: str, problem: str) -> None:
    with pytest.raises(gf.ScheduleError) as caught:
        Cron.parse(expression, schedule="nightly")
    assert repr(expression) in str(caught.value)
    assert "'nightly'" in str(caught.value)
    assert problem in str(caught.value)
    assert caught.value.expression == expression
    assert isinstance(caught.value, ValueError)
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value)


def test_unknown_time_zone_is_a_schedule_error() -> None:
    with pytest.raises(gf.ScheduleError, match="'Mars/Olympus'"):
        Cron.parse("0 3 * * *", "Mars/Olympus", schedule="s")
    with pytest.raises(gf.ScheduleError, match="IANA"):
        Cron.parse("0 3 * * *", "", schedule="s")


def test_catch_up_policy_is_checked() -> None:
    assert check_catch_up("all", schedule="s") == "all"
    with pytest.raises(gf.ScheduleError, match="catch_up"):
        check_catch_up("some", schedule="s")


def test_next_tick_is_strictly_after() -> None:
    cron = Cron.parse("*/5 * * * *", schedule="s")
    assert cron.next_after(ts("2024-01-01T00:05:00")) == ts("2024-01-01T00:10:00")
    assert cron.next_after(ts("2024-01-01T00:05:00") - 1e-6) == ts("2024-01-01T00:05:00")
    assert cron.next_after(ts("2024-01-01T00:05:00") + 1e-6) == ts("2024-01-01T00:10:00")


def test_time_zone_and_dst_come_from_the_cron_library() -> None:
    berlin = Cron.parse("30 2 * * *", "Europe/Berlin", schedule="s")
    # 2024-03-31 02:30 does not exist in Berlin: Debian cron runs it at 03:00 (01:00 UTC).
    ticks = berlin.ticks(ts("2024-03-29T12:00:00"), ts("2024-04-01T12:00:00"), limit=10)
    assert [iso(t) for t in ticks] == [
        "2024-03-30T01:30:00Z",
        "2024-03-31T01:00:00Z",
        "2024-04-01T00:30:00Z",
    ]
    # 2024-10-27 02:30 happens twice: a fixed-time job runs once.
    ticks = berlin.ticks(ts("2024-10-26T12:00:00"), ts("2024-10-28T12:00:00"), limit=10)
    assert [iso(t) for t in ticks] == ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]


def test_tick_run_id_and_scheduled_at_format() -> None:
    tick = ts("2024-05-06T07:08:00")
    assert scheduled_at(tick) == "2024-05-06T07:08:00Z"
    assert tick_run_id("hourly-sync", tick) == "hourly-sync@2024-05-06T07:08:00Z"


FIVE = Cron.parse("*/5 * * * *", schedule="s")
REGISTERED = ts("2024-01-01T00:02:00")


def test_nothing_is_due_before_the_first_tick() -> None:
    assert (
        due_ticks(
            FIVE,
            last_tick=REGISTERED,
            now=REGISTERED + 60,
            online_since=REGISTERED,
            catch_up="latest",
        )
        is None
    )


def test_a_running_engine_fires_every_tick_even_when_its_clock_jumps() -> None:
    now = REGISTERED + 24 * 3600
    fired: list[float] = []
    last = REGISTERED
    while (
        due := due_ticks(FIVE, last_tick=last, now=now, online_since=REGISTERED, catch_up="skip")
    ) is not None:
        fired.extend(due.ticks)
        last = due.through
    assert len(fired) == 24 * 12
    assert fired == FIVE.ticks(REGISTERED, now, limit=10_000)


@pytest.mark.parametrize(("catch_up", "expected"), [("latest", 1), ("all", 10), ("skip", 0)])
def test_catch_up_after_ten_missed_ticks(catch_up: str, expected: int) -> None:
    policy = check_catch_up(catch_up, schedule="s")
    reopened = REGISTERED + 50 * 60 + 30  # ten ticks passed while no engine ran
    due = due_ticks(
        FIVE, last_tick=REGISTERED, now=reopened, online_since=reopened, catch_up=policy
    )
    assert due is not None
    missed = FIVE.ticks(REGISTERED, reopened, limit=100)
    assert len(missed) == 10
    assert due.ticks == missed[len(missed) - expected :]
    assert due.through == missed[-1]
    # Once handled, the next tick fires on time.
    later = due_ticks(
        FIVE, last_tick=due.through, now=missed[-1] + 300, online_since=reopened, catch_up=policy
    )
    assert later is not None and later.ticks == [missed[-1] + 300]


def test_catch_up_all_is_bounded() -> None:
    every_minute = Cron.parse("* * * * *", schedule="s")
    reopened = REGISTERED + 3 * 24 * 3600 + 30
    due = due_ticks(
        every_minute, last_tick=REGISTERED, now=reopened, online_since=reopened, catch_up="all"
    )
    assert due is not None
    assert len(due.ticks) == CATCH_UP_LIMIT
    assert due.ticks[-1] == reopened - 30
    assert due.through == reopened - 30


def test_a_tick_at_the_opening_instant_fires_on_time() -> None:
    opened = ts("2024-01-01T01:00:00")
    due = due_ticks(FIVE, last_tick=REGISTERED, now=opened, online_since=opened, catch_up="skip")
    assert due is not None
    assert due.ticks == [opened]
