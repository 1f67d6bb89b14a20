"""Cron schedules: one run per tick on the engine's clock, across workers, after downtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

import graphflow as gf
from graphflow import cli
from graphflow.cron import Cron, scheduled_at
from graphflow.http import create_app
from graphflow.testing import VirtualClock

T0 = datetime(2024, 1, 1, 0, 2, tzinfo=UTC).timestamp()  # between two */5 ticks
FIVE = Cron.parse("*/5 * * * *", schedule="test")


def tick_ids(name: str, after: float, until: float) -> list[str]:
    return [f"{name}@{scheduled_at(t)}" for t in FIVE.ticks(after, until, limit=100_000)]


def define(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def sync_accounts(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
        return data


async def run_ids(engine: gf.Engine, workflow: str) -> list[str]:
    runs = await engine.list_runs(workflow=workflow, limit=100_000)
    return sorted(run.run_id for run in runs)


async def wait_for_run(engine: gf.Engine, run_id: str) -> gf.RunStatus:
    with anyio.fail_after(30):
        while True:
            try:
                return await engine.wait(run_id, timeout=30)
            except gf.RunNotFoundError:
                await anyio.sleep(0.01)


async def test_a_virtual_month_of_five_minute_ticks_starts_one_run_per_tick(
    registry: gf.Registry,
) -> None:
    define(registry)
    clock = VirtualClock(start=T0)
    async with gf.Engine("memory://", registry=registry, clock=clock, poll_interval=0.05) as engine:
        await engine.add_schedule("sync", "sync_accounts", "*/5 * * * *", input={"region": "eu"})
        for day in range(1, 31):  # a running engine whose clock jumps a day at a time
            clock.set_time(T0 + day * 86400)
            await wait_for_run(engine, tick_ids("sync", T0, clock.time())[-1])
        month = clock.time()
        expected = tick_ids("sync", T0, month)
        assert len(expected) == 30 * 24 * 12
        assert await run_ids(engine, "sync_accounts") == sorted(expected)
        last = await engine.status(expected[-1])
        assert last.output == {"scheduled_at": expected[-1].split("@")[1], "region": "eu"}
        [info] = await engine.list_schedules()
        assert info.next_tick is not None and info.next_tick.timestamp() > month


async def test_ticks_follow_an_auto_advancing_virtual_clock(registry: gf.Registry) -> None:
    define(registry)
    clock = VirtualClock(start=T0)
    async with (
        gf.Engine("memory://", registry=registry, clock=clock, poll_interval=0.05) as engine,
        clock.running(),
    ):
        await engine.add_schedule("sync", "sync_accounts", "*/5 * * * *")
        await clock.sleep_until(T0 + 3600)
        expected = tick_ids("sync", T0, T0 + 3600)
        await wait_for_run(engine, expected[-1])
        assert await run_ids(engine, "sync_accounts") == sorted(expected)


async def test_two_engines_with_their_own_clocks_start_one_run_per_tick(pg_url: str) -> None:
    registries = [gf.Registry(), gf.Registry()]
    for registry in registries:
        define(registry)
    clocks = [VirtualClock(start=T0), VirtualClock(start=T0 + 7)]  # 7 s apart
    async with (
        gf.Engine(pg_url, registry=registries[0], clock=clocks[0], poll_interval=0.05) as first,
        gf.Engine(pg_url, registry=registries[1], clock=clocks[1], poll_interval=0.05) as second,
    ):
        await first.add_schedule("sync", "sync_accounts", "*/5 * * * *")
        for hour in range(1, 4):
            for clock in clocks:
                clock.set_time(T0 + hour * 3600 + (7 if clock is clocks[1] else 0))
            for run_id in tick_ids("sync", T0, T0 + hour * 3600)[-1:]:
                await wait_for_run(second, run_id)
        expected = tick_ids("sync", T0, T0 + 3 * 3600)
        assert len(expected) == 36
        assert await run_ids(first, "sync_accounts") == sorted(expected)


@pytest.mark.parametrize(("catch_up", "missed_runs"), [("latest", 1), ("all", 10), ("skip", 0)])
async def test_catch_up_policies_after_ten_missed_ticks(
    registry: gf.Registry, sqlite_url: str, catch_up: str, missed_runs: int
) -> None:
    define(registry)
    clock = VirtualClock(start=T0)
    async with gf.Engine(sqlite_url, registry=registry, clock=clock) as engine:
        await engine.add_schedule("sync", "sync_accounts", "*/5 * * * *", catch_up=catch_up)
    down_until = T0 + 50 * 60 + 30
    clock.set_time(down_until)  # ten ticks pass while no engine runs
    missed = tick_ids("sync", T0, down_until)
    assert len(missed) == 10
    async with gf.Engine(sqlite_url, registry=registry, clock=clock, poll_interval=0.05) as engine:
        clock.advance(5 * 60)  # the next tick comes while this engine runs
        [on_time] = tick_ids("sync", down_until, clock.time())
        await wait_for_run(engine, on_time)
        started = await run_ids(engine, "sync_accounts")
    assert started == sorted([*missed[len(missed) - missed_runs :], on_time])


async def test_static_schedule_fires_under_the_workflow_name(registry: gf.Registry) -> None:
    @gf.workflow(schedule="*/5 * * * *", registry=registry)
    async def nightly(wf: gf.Workflow, data: dict[str, str]) -> str:
        return data["scheduled_at"]

    clock = VirtualClock(start=T0)
    async with gf.Engine("memory://", registry=registry, clock=clock, poll_interval=0.05) as engine:
        [info] = await engine.list_schedules()
        assert info == gf.ScheduleInfo(
            name="nightly",
            workflow="nightly",
            cron="*/5 * * * *",
            timezone="UTC",
            catch_up="latest",
            next_tick=datetime(2024, 1, 1, 0, 5, tzinfo=UTC),
        )
        clock.advance(11 * 60)
        status = await wait_for_run(engine, "nightly@2024-01-01T00:10:00Z")
        assert status.input == {"scheduled_at": "2024-01-01T00:10:00Z"}
        assert status.output == "2024-01-01T00:10:00Z"
        assert await run_ids(engine, "nightly") == [
            "nightly@2024-01-01T00:05:00Z",
            "nightly@2024-01-01T00:10:00Z",
        ]
        with pytest.raises(gf.ScheduleError, match="declared in code"):
            await engine.remove_schedule("nightly")
        with pytest.raises(gf.ScheduleError, match="another name"):
            await engine.add_schedule("nightly", "nightly", "@daily")


def test_invalid_static_schedule_is_refused_at_declaration(registry: gf.Registry) -> None:
    with pytest.raises(gf.ScheduleError, match="'61 \\* \\* \\* \\*'"):

        @gf.workflow(schedule="61 * * * *", registry=registry)
        async def broken(wf: gf.Workflow, data: dict[str, str]) -> None:
            return None


async def test_dynamic_schedules_are_stored_replaced_and_removed(
    registry: gf.Registry, sqlite_url: str
) -> None:
    define(registry)
    clock = VirtualClock(start=T0)
    async with gf.Engine(sqlite_url, registry=registry, clock=clock) as engine:
        info = await engine.add_schedule(
            "hourly-sync", "sync_accounts", "0 * * * *", input={"region": "eu"},
            timezone="Europe/Berlin", catch_up="all",
        )  # fmt: skip
        assert info.next_tick == datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
        with pytest.raises(gf.ScheduleError, match="Mars/Olympus"):
            await engine.add_schedule("x", "sync_accounts", "0 * * * *", timezone="Mars/Olympus")
        with pytest.raises(gf.ScheduleError, match="'every day'"):
            await engine.add_schedule("x", "sync_accounts", "every day")
        with pytest.raises(gf.ScheduleError, match="catch_up"):
            await engine.add_schedule("x", "sync_accounts", "@daily", catch_up="sometimes")
    clock.advance(600)
    async with gf.Engine(sqlite_url, registry=registry, clock=clock, worker=False) as client:
        [stored] = await client.list_schedules()  # survives the restart
        assert (stored.name, stored.cron, stored.timezone, stored.catch_up) == (
            "hourly-sync", "0 * * * *", "Europe/Berlin", "all",
        )  # fmt: skip
        replaced = await client.add_schedule("hourly-sync", "sync_accounts", "30 * * * *")
        assert replaced.next_tick == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)  # last tick kept
        await client.remove_schedule("hourly-sync")
        assert await client.list_schedules() == []
        with pytest.raises(gf.NotFoundError, match="hourly-sync"):
            await client.remove_schedule("hourly-sync")


async def test_schedule_input_is_validated_at_declaration(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def typed(wf: gf.Workflow, data: dict[str, int]) -> None:
        return None

    async with gf.Engine("memory://", registry=registry) as engine:
        with pytest.raises(gf.InputValidationError):
            await engine.add_schedule("t", "typed", "@hourly")
        with pytest.raises(gf.UnknownWorkflowError):
            await engine.add_schedule("t", "nope", "@hourly")


async def test_http_lists_schedules(registry: gf.Registry, sqlite_url: str) -> None:
    define(registry)
    clock = VirtualClock(start=T0)
    async with gf.Engine(sqlite_url, registry=registry, clock=clock) as engine:
        await engine.add_schedule("hourly-sync", "sync_accounts", "0 * * * *", catch_up="skip")
        app = create_app(engine)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            answer = await http.get("/schedules")
    assert answer.status_code == 200
    assert answer.json() == [
        {
            "name": "hourly-sync",
            "workflow": "sync_accounts",
            "cron": "0 * * * *",
            "timezone": "UTC",
            "catch_up": "skip",
            "next_tick": answer.json()[0]["next_tick"],
        }
    ]


def test_cli_lists_schedules(registry: gf.Registry, sqlite_url: str) -> None:
    define(registry)

    async def setup() -> None:
        async with gf.Engine(sqlite_url, registry=registry) as engine:
            await engine.add_schedule("hourly-sync", "sync_accounts", "0 * * * *")

    anyio.run(setup)
    runner = CliRunner()
    listed = runner.invoke(cli.app, ["schedules", "--json", "--store", sqlite_url])
    assert listed.exit_code == 0, listed.output
    assert [s["name"] for s in json.loads(listed.stdout)] == ["hourly-sync"]
    table = runner.invoke(cli.app, ["schedules", "--store", sqlite_url])
    assert table.exit_code == 0, table.output
    assert "hourly-sync" in table.stdout and "0 * * * *" in table.stdout
