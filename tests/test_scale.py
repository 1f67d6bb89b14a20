"""Scale-out on PostgreSQL and MariaDB: several worker processes share runs; dead and stalled workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import graphflow as gf
from tests.flows import scale_flows  # noqa: F401  (registers the workflows for the client)
from tests.worker_pool import ROOT, WorkerPool, worker_pool


def _pool(url: str, tmp_path: Path) -> Iterator[WorkerPool]:
    yield from worker_pool("tests.flows.scale_flows", url, tmp_path / "log", "GF_SCALE_LOG")


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Worker processes on PostgreSQL."""
    yield from _pool(pg_url, tmp_path)


@pytest.fixture
def server_workers(server_url: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Worker processes on each database server in turn."""
    yield from _pool(server_url, tmp_path)


def executions(workers: WorkerPool) -> list[tuple[str, str, int]]:
    log = workers.log
    if not log.exists():
        return []
    lines = [line.rsplit(" ", 1) for line in log.read_text().splitlines()]
    return [(head.split(" ", 1)[0], head.split(" ", 1)[1], int(pid)) for head, pid in lines]


async def test_dead_worker_share_is_taken_over(server_workers: WorkerPool) -> None:
    workers = server_workers
    procs = [workers.spawn() for _ in range(3)]
    async with gf.Engine(workers.url, worker=False) as client:
        run_ids = [await client.start("scale_run", {"steps": 15, "pause": 0.05}) for _ in range(12)]
        with anyio.fail_after(30):
            while (
                len({pid for *_, pid in executions(workers)}) < 3 or len(executions(workers)) < 40
            ):
                await anyio.sleep(0.05)
        victim = procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        for run_id in run_ids:
            status = await client.wait(run_id, timeout=60)
            assert status.state == "completed"
            assert status.output == sum(range(1, 16))
        took = time.monotonic() - killed_at
    counts = Counter((run_id, step) for run_id, step, _ in executions(workers))
    assert set(counts) == {(r, f"step {i}") for r in run_ids for i in range(1, 16)}
    twice = [key for key, n in counts.items() if n > 1]
    assert all(counts[key] == 2 for key in twice)
    by_victim = {(r, s) for r, s, pid in executions(workers) if pid == victim.pid}
    assert all(key in by_victim for key in twice)  # only its in-flight steps ran again
    assert len(twice) <= 4  # at most one in flight per run it held (max_runs=4)
    assert took < 30  # taken over after the lease (2 s), not left for good; work: 15 * 0.05 s a run


async def test_stalled_worker_commits_nothing_after_takeover(server_workers: WorkerPool) -> None:
    workers = server_workers
    stalled = workers.spawn()
    async with gf.Engine(workers.url, worker=False) as client:
        run_id = await client.start("scale_pids", {"pause": 1.5})
        with anyio.fail_after(20):
            while not any(step == "slow" for _, step, _ in executions(workers)):
                await anyio.sleep(0.02)
        os.kill(stalled.pid, signal.SIGSTOP)  # mid-step, beyond its 2 s lease
        survivor = workers.spawn()
        status = await client.wait(run_id, timeout=30)
        os.kill(stalled.pid, signal.SIGCONT)
        await anyio.sleep(2.5)  # the stalled worker's step finishes now, and must be refused
        after = await client.status(run_id)
    assert status.output is not None and status.output[1] == survivor.pid
    assert after.output == status.output
    assert [s.finished_at for s in after.steps] == [s.finished_at for s in status.steps]
    slow_runs = [pid for _, step, pid in executions(workers) if step == "slow"]
    assert slow_runs == [stalled.pid, survivor.pid]


async def test_concurrent_starts_with_one_run_id_make_one_run(
    server_url: str, tmp_path: Path
) -> None:
    env = os.environ | {"GF_SCALE_LOG": str(tmp_path / "log"), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.flows.scale_flows", "start", server_url, "order-7", "10"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert {run_id for out in outputs for run_id in out.split()} == {"order-7"}
    async with gf.Engine(server_url, worker=False) as client:
        assert [r.run_id for r in await client.list_runs()] == ["order-7"]


async def test_sleepers_and_suspends_wake_once_across_workers(workers: WorkerPool) -> None:
    for _ in range(3):
        workers.spawn()
    async with gf.Engine(workers.url, worker=False) as client:
        sleepers = [await client.start("scale_wait", {"mode": "sleep"}) for _ in range(4)]
        waiters = [await client.start("scale_wait", {"mode": "suspend"}) for _ in range(4)]
        with anyio.fail_after(20):
            for run_id in waiters:
                async for status in client.watch(run_id, steps=False):
                    if status.state == "suspended":
                        break
        for run_id in waiters:
            await client.resume(run_id, {"ok": True})
        for run_id in sleepers + waiters:
            assert (await client.wait(run_id, timeout=30)).state == "completed"
    counts = Counter((run_id, step) for run_id, step, _ in executions(workers))
    assert all(counts[(run_id, "after")] == 1 for run_id in sleepers + waiters)
    assert all(counts[(run_id, "before")] == 1 for run_id in sleepers + waiters)


async def test_function_served_only_by_another_worker_runs_there_as_a_job(
    workers: WorkerPool, registry: gf.Registry
) -> None:
    server = workers.spawn()

    @gf.workflow(registry=registry)
    async def delegating(wf: gf.Workflow, data: None) -> list[int]:
        first = await wf.do("remote", "scale_pid")  # not registered here: a job for the worker
        again = await wf.do("remote again", "scale_pid")
        return [first, again]

    async with gf.Engine(workers.url, registry=registry, poll_interval=0.1) as engine:
        run_id = await engine.start("delegating")
        status = await engine.wait(run_id, timeout=30)
    assert status.output == [server.pid, server.pid]
    assert [(s.name, s.kind, s.function, s.state) for s in status.steps] == [
        ("remote", "rpc", "scale_pid", "completed"),
        ("remote again", "rpc", "scale_pid", "completed"),
    ]
    assert [(r, s) for r, s, _ in executions(workers)] == [
        (run_id, "remote"),
        (run_id, "remote again"),
    ]
