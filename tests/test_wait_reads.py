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


async def test_waiting_on_pending_runs_this_worker_claims_reads_each_run_a_few_times(
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
    # A waiter reads its pending run, again when this worker claims it, and at its end; it
    # used to look every 5, 10, 20... ms while the run waited (about 7 reads a run here).
    assert store.run_reads <= 3 * 40
