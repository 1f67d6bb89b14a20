"""What waiting for runs costs the store: waiters of runs this worker will claim do not poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

import graphflow as gf
from graphflow.store.base import RunRecord
from graphflow.store.sql import SqlStore


class CountingStore(SqlStore):
    """A real SQLite store that counts its run reads."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.run_reads = 0

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.run_reads += 1
        return await super().get_run(run_id)


async def test_waiting_on_pending_runs_this_worker_claims_reads_each_run_once(
    tmp_path: Path,
) -> None:
    registry = gf.Registry()

    @gf.function(registry=registry)
    async def nap(i: int) -> int:
        await anyio.sleep(0.01)
        return i + 1

    @gf.workflow(registry=registry)
    async def three(wf: gf.Workflow, data: int) -> int:
        for k in range(3):
            data = await wf.do(f"s{k}", nap, {"i": data})
        return data

    store = CountingStore(f"sqlite:///{tmp_path / 'w.db'}")
    # max_runs=2: 38 of the 40 runs wait pending for this worker; a long poll interval keeps
    # timed looks out of the count, which is then the same on any machine.
    async with gf.Engine(store, registry=registry, max_runs=2, poll_interval=30) as engine:
        ids = [await engine.start("three", i) for i in range(40)]
        done = await asyncio.gather(*(engine.wait(run_id, timeout=60) for run_id in ids))
    assert [status.output for status in done] == [i + 3 for i in range(40)]
    # A waiter reads its pending run once, then waits for it in memory once this worker claims
    # it: the status at its end is the only other read. It used to look every 5, 10, 20... ms
    # while the run waited (about 7 reads a run), then on the claim and at the end (3 a run).
    assert store.run_reads <= 40


async def test_run_of_a_pending_run_this_worker_claims_reads_it_twice(tmp_path: Path) -> None:
    registry = gf.Registry()

    @gf.workflow(registry=registry)
    async def slow(wf: gf.Workflow, data: int) -> int:
        await wf.do("nap", lambda: anyio.sleep(0.2))
        return data

    store = CountingStore(f"sqlite:///{tmp_path / 'r.db'}")
    async with gf.Engine(store, registry=registry, max_runs=1, poll_interval=30) as engine:
        first = await engine.start("slow", 0)
        before = store.run_reads
        # Pending behind ``first``: one look, then in memory once claimed, one read at its end
        # (just that read if the claim came first). It used to read it again when claimed.
        assert await engine.run("slow", 1, timeout=60) == 1
        assert store.run_reads - before <= 2
        assert (await engine.wait(first, timeout=60)).output == 0
