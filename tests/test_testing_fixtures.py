"""The pytest fixtures graphflow.testing ships: a workflow that sleeps for days, tested at once."""

from __future__ import annotations

import time

import graphflow as gf
from graphflow.testing import VirtualClock


@gf.workflow(name="fixture_trial")
async def fixture_trial(wf: gf.Workflow, data: dict[str, str]) -> str:
    await wf.sleep("trial period", "14d")
    return f"trial over for {data['user']}"


async def test_memory_engine_runs_a_two_week_sleep_at_once(
    memory_engine: gf.Engine, virtual_clock: VirtualClock
) -> None:
    began_virtual, began_wall = virtual_clock.time(), time.perf_counter()
    assert await memory_engine.run("fixture_trial", {"user": "ada"}, timeout=5) == (
        "trial over for ada"
    )
    assert virtual_clock.time() - began_virtual >= 14 * 86400
    assert time.perf_counter() - began_wall < 5


async def test_virtual_clock_only_moves_when_advanced() -> None:
    clock = VirtualClock(start=1000.0)
    assert clock.time() == 1000.0
    clock.advance(60)
    assert clock.time() == 1060.0
    clock.set_time(10.0)  # never backwards
    assert clock.time() == 1060.0
