"""Flow control: concurrency limits, rate limits, priority and dedup, held across processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import graphflow as gf
from graphflow.testing import VirtualClock
from tests.flows import limit_flows
from tests.flows.limit_flows import peak_concurrency
from tests.flows.old_schemas import make_version
from tests.worker_pool import WorkerPool, worker_pool


class Gauge:
    """How many calls are in flight, overall and per key, and the most seen at once."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def enter(self, key: str = "") -> None:
        for k in {key, "*"}:
            self.active[k] = self.active.get(k, 0) + 1
            self.peak[k] = max(self.peak.get(k, 0), self.active[k])

    def leave(self, key: str = "") -> None:
        for k in {key, "*"}:
            self.active[k] -= 1


async def wait_all(engine: gf.Engine, run_ids: list[str]) -> list[gf.RunStatus]:
    return [await engine.wait(run_id, timeout=60) for run_id in run_ids]


async def test_workflow_concurrency_two_over_eight_runs(
    registry: gf.Registry, sqlite_url: str
) -> None:
    gauge = Gauge()

    @gf.function(registry=registry)
    async def work(i: int) -> int:
        gauge.enter()
        await anyio.sleep(0.02)
        gauge.leave()
        return i

    @gf.workflow(concurrency=2, registry=registry)
    async def limited(wf: gf.Workflow, data: dict[str, int]) -> int:
        return await wf.do("work", work, {"i": data["i"]})

    async with gf.Engine(sqlite_url, registry=registry, poll_interval=0.05) as engine:
        run_ids = [await engine.start("limited", {"i": i}) for i in range(8)]
        seen = {(await engine.status(run_id)).state for run_id in run_ids}
        statuses = await wait_all(engine, run_ids)
    assert "queued" in seen
    assert [s.output for s in statuses] == list(range(8))
    assert gauge.peak["*"] == 2


async def test_per_key_concurrency_runs_the_keys_side_by_side(registry: gf.Registry) -> None:
    gauge = Gauge()
    started = {"a": anyio.Event(), "b": anyio.Event()}

    @gf.function(registry=registry)
    async def work(user: str) -> str:
        gauge.enter(user)
        started[user].set()
        with anyio.fail_after(10):  # the other key's run is executing at the same time
            await started["b" if user == "a" else "a"].wait()
        await anyio.sleep(0.01)
        gauge.leave(user)
        return user

    @gf.workflow(concurrency=gf.Concurrency(1, key="user.id"), registry=registry)
    async def per_user(wf: gf.Workflow, data: dict[str, Any]) -> str:
        return await wf.do("work", work, {"user": data["user"]["id"]})

    async with gf.Engine("memory://", registry=registry, poll_interval=0.05) as engine:
        users = ["a", "a", "b", "b", "a", "b"]
        run_ids = [await engine.start("per_user", {"user": {"id": u}}) for u in users]
        assert (await engine.status(run_ids[1])).state == "queued"
        statuses = await wait_all(engine, run_ids)
        with pytest.raises(gf.InputValidationError, match="user.id"):
            await engine.start("per_user", {"user": {}})
    assert [s.state for s in statuses] == ["completed"] * 6
    assert (gauge.peak["a"], gauge.peak["b"], gauge.peak["*"]) == (1, 1, 2)


def define_limited_function(registry: gf.Registry, gauge: Gauge) -> None:
    @gf.function(concurrency=2, registry=registry)
    async def call_api(i: int) -> int:
        gauge.enter()
        await anyio.sleep(0.02)
        gauge.leave()
        return i

    @gf.workflow(registry=registry)
    async def fan_out(wf: gf.Workflow, data: dict[str, int]) -> list[int]:
        results: list[int] = [0] * data["n"]

        async def one(i: int) -> None:
            results[i] = await wf.do(f"call {i}", call_api, {"i": i})

        async with anyio.create_task_group() as tg:
            for i in range(data["n"]):
                tg.start_soon(one, i)
        return results


async def test_function_concurrency_holds_across_two_engines_on_postgres(pg_url: str) -> None:
    gauge = Gauge()
    registries = [gf.Registry(), gf.Registry()]
    for registry in registries:
        define_limited_function(registry, gauge)
    async with (
        gf.Engine(pg_url, registry=registries[0], poll_interval=0.05) as first,
        gf.Engine(pg_url, registry=registries[1], poll_interval=0.05) as second,
    ):
        run_ids = [await engine.start("fan_out", {"n": 4}) for engine in (first, second) * 2]
        queued_seen = False
        with anyio.fail_after(60):
            while not queued_seen:
                for engine in (first, second):
                    for run_id in run_ids:
                        status = await engine.status(run_id)
                        queued_seen |= any(step.state == "queued" for step in status.steps)
        statuses = [await first.wait(run_id, timeout=60) for run_id in run_ids]
    assert [(s.state, s.error, s.output) for s in statuses] == [
        ("completed", None, [0, 1, 2, 3])
    ] * 4
    assert gauge.peak["*"] == 2
    assert queued_seen


async def test_a_slot_freed_in_one_engine_goes_back_to_the_others(sqlite_url: str) -> None:
    registries = {"first": gf.Registry(), "second": gf.Registry()}
    for name, registry in registries.items():

        @gf.function(name="one_at_a_time", concurrency=1, registry=registry)
        async def one_at_a_time(i: int) -> int:
            return i

        async def flow(wf: gf.Workflow, data: dict[str, int]) -> int:
            total = 0
            for i in range(data["n"]):  # sequential steps reuse the slot this engine keeps
                total += await wf.do(f"call {i}", one_at_a_time, {"i": i})
            return total

        gf.workflow(name=f"{name}_flow", registry=registry)(flow)

    async with (
        gf.Engine(sqlite_url, registry=registries["first"], poll_interval=0.05) as first,
        gf.Engine(sqlite_url, registry=registries["second"], poll_interval=0.05) as second,
    ):
        done = await first.wait(await first.start("first_flow", {"n": 5}), timeout=30)
        assert (done.state, done.output) == ("completed", 10)
        # The first engine stays open and idle: the slot it kept must reach the second one.
        later = await second.wait(await second.start("second_flow", {"n": 3}), timeout=30)
    assert (later.state, later.output) == ("completed", 3)


async def test_executing_steps_show_in_status_from_another_process(sqlite_url: str) -> None:
    registry = gf.Registry()
    release = anyio.Event()

    @gf.function(concurrency=1, registry=registry)
    async def slow_call(i: int) -> int:
        await release.wait()
        return i

    @gf.workflow(registry=registry)
    async def pair(wf: gf.Workflow, data: None) -> list[int]:
        results = [0, 0]

        async def one(i: int) -> None:
            results[i] = await wf.do(f"call {i}", slow_call, {"i": i})

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0)
            tg.start_soon(one, 1)
        return results

    async with (
        gf.Engine(sqlite_url, registry=registry, lease="2s", poll_interval=0.05) as worker,
        gf.Engine(sqlite_url, registry=gf.Registry(), worker=False) as client,
    ):
        run_id = await worker.start("pair", None)
        with anyio.fail_after(30):  # published with the worker's heartbeat, every lease/3
            while len(steps := (await client.status(run_id)).steps) < 2:
                await anyio.sleep(0.02)
        assert sorted(step.state for step in steps) == ["queued", "running"]
        assert {step.owner_id for step in steps} == {worker.owner_id}
        assert all(step.lease_expires_at is not None for step in steps)
        here = await worker.status(run_id)
        assert sorted(step.state for step in here.steps) == ["queued", "running"]
        release.set()
        done = await client.wait(run_id, timeout=30)
    assert (done.state, done.output) == ("completed", [0, 1])
    assert {step.state for step in done.steps} == {"completed"}
    assert {step.owner_id for step in done.steps} == {None}


def pids(workers: WorkerPool) -> set[int]:
    """The processes that executed limited calls (from the flows' log)."""
    return {int(line.split()[2]) for line in workers.log.read_text().splitlines()}


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerPool]:
    url = f"sqlite:///{tmp_path / 'shared.db'}?durability=normal"
    yield from worker_pool("tests.flows.limit_flows", url, tmp_path / "log", "GF_LIMIT_LOG")


@pytest.mark.slow
async def test_function_concurrency_holds_across_two_processes_on_sqlite(
    workers: WorkerPool,
) -> None:
    workers.spawn()
    workers.spawn()
    async with gf.Engine(workers.url, worker=False) as client:
        run_ids = [await client.start("limited_flow", {"i": i, "pause": 0.2}) for i in range(12)]
        statuses = [await client.wait(run_id, timeout=60) for run_id in run_ids]
    assert [s.output for s in statuses] == list(range(12))
    assert len(pids(workers)) == 2  # each worker holds at most 3 runs: both executed calls
    assert peak_concurrency(workers.log) == 2


@pytest.mark.slow
async def test_slots_of_a_killed_worker_are_taken_after_its_lease(workers: WorkerPool) -> None:
    victim = workers.spawn()
    async with gf.Engine(workers.url, worker=False) as client:
        first = await client.start("single_flow", {"i": 1, "hang": True})
        second = await client.start("single_flow", {"i": 2, "hang": False})
        marker = Path(f"{workers.log}.hung")
        with anyio.fail_after(30):
            while not marker.exists():  # the first run holds both its slots, hanging
                await anyio.sleep(0.02)
        assert (await client.status(second)).state == "queued"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        survivor = workers.spawn()
        statuses = [await client.wait(run_id, timeout=60) for run_id in (first, second)]
    assert [s.output for s in statuses] == [1, 2]
    assert survivor.pid in pids(workers)


async def test_rate_limit_never_starts_more_than_five_in_a_second(registry: gf.Registry) -> None:
    clock = VirtualClock(start=1_700_000_000.0)
    starts: list[float] = []

    @gf.function(rate_limit="5/1s", timeout="100ms", registry=registry)
    async def ping(i: int) -> int:
        starts.append(clock.time())
        return i

    @gf.workflow(registry=registry)
    async def burst(wf: gf.Workflow, data: None) -> list[int]:
        results: list[int] = []

        async def one(i: int) -> None:
            results.append(await wf.do(f"ping {i}", ping, {"i": i}))

        async with anyio.create_task_group() as tg:
            for i in range(15):
                tg.start_soon(one, i)
        return sorted(results)

    async with (
        gf.Engine("memory://", registry=registry, clock=clock, poll_interval=0.05) as engine,
        clock.running(),
    ):
        status = await engine.wait(await engine.start("burst"), timeout=60)
    assert status.state == "completed"  # the waits counted toward no step timeout
    assert status.output == list(range(15))
    assert len(starts) == 15
    assert max(sum(1 for s in starts if t - 1 < s <= t) for t in starts) == 5
    assert starts[-1] - starts[0] >= 2  # three windows of five


async def test_higher_priority_overtakes_queued_runs(registry: gf.Registry) -> None:
    order: list[str] = []
    release = anyio.Event()

    @gf.workflow(concurrency=1, registry=registry)
    async def report(wf: gf.Workflow, data: dict[str, str]) -> None:
        async def note() -> None:
            order.append(data["name"])
            if data["name"] == "first":
                await release.wait()

        await wf.do("note", note)

    async with gf.Engine("memory://", registry=registry, poll_interval=0.05) as engine:
        run_ids = [await engine.start("report", {"name": "first"})]
        for name, priority in [("low", 0), ("later-low", 0), ("high", 10), ("mid", 5)]:
            run_ids.append(await engine.start("report", {"name": name}, priority=priority))
        assert [(await engine.status(r)).state for r in run_ids[1:]] == ["queued"] * 4
        release.set()
        await wait_all(engine, run_ids)
    assert order == ["first", "high", "mid", "low", "later-low"]


async def test_dedup_key_returns_the_unfinished_run(registry: gf.Registry) -> None:
    release = anyio.Event()

    @gf.workflow(registry=registry)
    async def sync(wf: gf.Workflow, data: dict[str, int]) -> int:
        await wf.do("wait", release.wait)
        return data["n"]

    async with gf.Engine("memory://", registry=registry) as engine:
        first = await engine.start("sync", {"n": 1}, dedup_key="customer-7")
        assert await engine.start("sync", {"n": 2}, dedup_key="customer-7") == first
        other = await engine.start("sync", {"n": 3}, dedup_key="customer-8")
        assert other != first
        release.set()
        assert (await engine.wait(first)).output == 1
        again = await engine.start("sync", {"n": 4}, dedup_key="customer-7")
        assert again != first  # the key's run finished: a new one
        assert (await engine.wait(again)).output == 4


async def test_a_sleeping_run_releases_its_slot(registry: gf.Registry) -> None:
    clock = VirtualClock(start=1_700_000_000.0)

    @gf.workflow(concurrency=1, registry=registry)
    async def napper(wf: gf.Workflow, data: dict[str, bool]) -> str:
        if data["nap"]:
            await wf.sleep("nap", "1h")
        return "done"

    async with gf.Engine("memory://", registry=registry, clock=clock, poll_interval=0.05) as engine:
        sleeper = await engine.start("napper", {"nap": True})
        with anyio.fail_after(10):
            while (await engine.status(sleeper)).state != "sleeping":
                await anyio.sleep(0.01)
        other = await engine.start("napper", {"nap": False})
        assert (await engine.wait(other, timeout=10)).state == "completed"
        clock.advance(3600)
        assert (await engine.wait(sleeper, timeout=10)).state == "completed"


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
async def test_a_version_4_database_is_migrated_for_limits_and_schedules(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, registry: gf.Registry
) -> None:
    path = tmp_path / "v4.db" if backend == "sqlite" else None
    server = {"postgres": "pg_url", "mariadb": "mysql_url"}.get(backend)
    url = f"sqlite:///{path}" if server is None else request.getfixturevalue(server)
    async with gf.Engine(url, worker=False):
        pass
    make_version(4, url, path)

    @gf.workflow(concurrency=1, registry=registry)
    async def single(wf: gf.Workflow, data: dict[str, Any]) -> int:
        await wf.do("wait", release.wait)
        return int(data["n"])

    release = anyio.Event()
    async with gf.Engine(url, registry=registry, poll_interval=0.05) as engine:
        await engine.add_schedule("hourly", "single", "@hourly", input={"n": 0})
        first = await engine.start("single", {"n": 1}, dedup_key="k", priority=3)
        assert await engine.start("single", {"n": 2}, dedup_key="k") == first
        release.set()
        assert (await engine.wait(first, timeout=30)).output == 1
        assert [s.name for s in await engine.list_schedules()] == ["hourly"]


async def test_long_keys_work_on_every_store(store_url: str, registry: gf.Registry) -> None:
    release = anyio.Event()

    @gf.workflow(concurrency=gf.Concurrency(1, key="customer"), registry=registry)
    async def per_customer(wf: gf.Workflow, data: dict[str, str]) -> int:
        await wf.do("wait", release.wait)
        return len(data["customer"])

    customer, dedup = "c" * 1_000, "d" * 1_000  # stored as their hashes where they are long
    async with gf.Engine(store_url, registry=registry, poll_interval=0.05) as engine:
        first = await engine.start("per_customer", {"customer": customer}, dedup_key=dedup)
        assert await engine.start("per_customer", {"customer": "x"}, dedup_key=dedup) == first
        second = await engine.start("per_customer", {"customer": customer})
        assert (await engine.status(second)).state == "queued"
        release.set()
        assert [(await engine.wait(r, timeout=30)).output for r in (first, second)] == [1_000] * 2


def test_invalid_limits_are_refused_at_declaration(registry: gf.Registry) -> None:
    with pytest.raises(gf.LimitError, match="rate_limit='5 per second'"):
        gf.function(rate_limit="5 per second", registry=registry)(lambda: None)
    with pytest.raises(gf.LimitError, match="concurrency=0"):
        gf.function(concurrency=0, registry=registry)(lambda: None)
    with pytest.raises(gf.LimitError, match="limit"):
        gf.Concurrency(0)
    with pytest.raises(gf.LimitError, match="key"):
        gf.Concurrency(1, key="a..b")


def test_limit_flows_module_is_importable() -> None:
    assert limit_flows.limited_call.concurrency == gf.Concurrency(2)
