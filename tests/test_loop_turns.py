"""A run of quick steps gives the event loop a turn every few steps, executing or replaying.

An async step whose function returns at once, committed to SQLite on the loop, never suspends its
task: without turns, a long loop of them held the event loop for the whole run, and every other
task on it (other runs, lease renewals, HTTP handlers) waited until it ended.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import graphflow as gf
from graphflow.runtime.execution import STEPS_PER_TURN

STEPS = 2_000


class Bystander:
    """A task that counts the loop turns it gets (it is always ready to run)."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    def stop(self) -> int:
        self._task.cancel()
        return self.turns


async def test_other_tasks_run_during_a_long_run_of_quick_steps(
    registry: gf.Registry, tmp_path: Path
) -> None:
    @gf.function(registry=registry)
    async def inc(x: int) -> int:
        return x + 1

    @gf.workflow(registry=registry)
    async def count(wf: gf.Workflow, data: int) -> int:
        x = 0
        for i in range(data):
            x = await wf.do(f"s{i}", inc, {"x": x})
        if data == STEPS:
            await wf.suspend("replay me")
        return x

    async with gf.Engine(f"sqlite:///{tmp_path / 'turns.db'}", registry=registry) as engine:
        run_id = await engine.start("count", STEPS)
        bystander = Bystander()
        while (await engine.status(run_id)).state != "suspended":
            await asyncio.sleep(0.01)
        executing = bystander.stop()
        await engine.resume(run_id, None)  # replays the 2,000 steps, then ends
        bystander = Bystander()
        assert (await engine.wait(run_id, timeout=60)).output == STEPS
        replaying = bystander.stop()
    # At least a turn per STEPS_PER_TURN steps (it used to get none in the whole run).
    assert executing >= STEPS // STEPS_PER_TURN
    assert replaying >= STEPS // STEPS_PER_TURN
