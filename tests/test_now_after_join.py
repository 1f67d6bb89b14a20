"""``wf.now()`` after a join: at least the latest finish among the joined branches, on replay too.

Each branch of a gather keeps its own ``now()`` (a sibling's progress never moves it); when the
branches join, the code after the join sees the latest of their finishes.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

import graphflow as gf
from graphflow.testing import VirtualClock

START = 1_700_000_000.0


async def run_parked_then_replayed(
    e: gf.Engine, workflow: str, data: Any = None
) -> tuple[gf.RunStatus, Any]:
    """Run ``workflow`` until it suspends, resume it (a replay from history), return its end."""
    run_id = await e.start(workflow, data)
    with anyio.fail_after(30):
        while (await e.status(run_id)).state != "suspended":
            await anyio.sleep(0.01)
    await e.resume(run_id, {})
    await e.wait(run_id, timeout=30)
    status = await e.status(run_id)
    assert status.state == "completed", status.error
    return status, status.output


async def test_now_after_a_gather_of_sleeps_is_after_the_last_wake(registry: gf.Registry) -> None:
    clock = VirtualClock(start=START)

    @gf.workflow(registry=registry)
    async def naps(wf: gf.Workflow, data: None) -> dict[str, float]:
        before = wf.now()
        await asyncio.gather(*(wf.sleep(f"nap {i}", 1.5) for i in range(5)))
        elapsed = (wf.now() - before).total_seconds()
        first = await wf.do("first execution", lambda: elapsed)
        await wf.suspend("park")  # what follows runs in a replay
        return {"first": first, "replay": elapsed}

    async with clock.running(), gf.Engine("memory://", registry=registry, clock=clock) as e:
        _, output = await run_parked_then_replayed(e, "naps")
    assert output["first"] >= 1.5
    assert output["replay"] == output["first"]


async def test_now_after_a_gather_of_steps_is_after_the_latest_finish(
    registry: gf.Registry,
) -> None:
    clock = VirtualClock(start=START)

    @gf.function(registry=registry)
    async def work(seconds: float) -> float:
        clock.advance(seconds)
        return seconds

    @gf.workflow(registry=registry)
    async def fan(wf: gf.Workflow, data: None) -> dict[str, str]:
        async def branch(i: int) -> None:
            await wf.do(f"work {i}", work, {"seconds": i + 1})
            await asyncio.gather(wf.do(f"inner {i}", work, {"seconds": 0.5}))  # a nested join

        await asyncio.gather(*(branch(i) for i in range(3)))
        after = wf.now().isoformat()
        first = await wf.do("first execution", lambda: after)
        await wf.suspend("park")
        return {"first": first, "replay": after}

    async with gf.Engine("memory://", registry=registry, clock=clock) as e:
        status, output = await run_parked_then_replayed(e, "fan")
    finishes = [s.finished_at for s in status.steps if s.name.startswith(("work", "inner"))]
    latest = max(f for f in finishes if f is not None)
    assert datetime.fromisoformat(output["first"]) >= latest
    assert output["replay"] == output["first"]


async def test_a_branch_does_not_see_its_siblings_finish(registry: gf.Registry) -> None:
    clock = VirtualClock(start=START)
    quick_done, gate = anyio.Event(), anyio.Event()

    @gf.function(registry=registry)
    async def long(seconds: float) -> None:
        await quick_done.wait()
        clock.advance(seconds)
        gate.set()

    @gf.workflow(registry=registry)
    async def siblings(wf: gf.Workflow, data: None) -> dict[str, str]:
        async def slow() -> str:
            await wf.do("slow", long, {"seconds": 60})
            return ""

        async def late_reader() -> str:
            await wf.do("quick", lambda: 1)
            quick_done.set()
            await gate.wait()  # the sibling's step has finished meanwhile (first execution)
            return wf.now().isoformat()

        _, seen = await asyncio.gather(slow(), late_reader())
        first = await wf.do("first execution", lambda: seen)
        await wf.suspend("park")
        return {"first": first, "replay": seen}

    async with gf.Engine("memory://", registry=registry, clock=clock) as e:
        _, output = await run_parked_then_replayed(e, "siblings")
    assert output["replay"] == output["first"]
    assert datetime.fromisoformat(output["first"]).timestamp() < START + 60


async def test_branches_of_a_gather_are_freed_without_the_garbage_collector(
    registry: gf.Registry, tmp_path: Path
) -> None:
    # Each branch's now() mark lives in the branch task's context: it must not hold the task
    # itself, or every branch (task, context, mark) waits for a collection to be freed.
    @gf.function(registry=registry)
    async def inc(x: int) -> int:
        return x + 1

    @gf.workflow(registry=registry)
    async def fan(wf: gf.Workflow, data: int) -> int:
        return sum(await asyncio.gather(*(wf.do(f"s{i}", inc, {"x": i}) for i in range(data))))

    async with gf.Engine(f"sqlite:///{tmp_path / 'gc.db'}", registry=registry) as e:
        await e.run("fan", 5)  # every import and cache is warm
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            assert await e.run("fan", 50) == sum(range(1, 51))
            gc.collect()
            cyclic_tasks = [o for o in gc.garbage if isinstance(o, asyncio.Task)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert cyclic_tasks == []
