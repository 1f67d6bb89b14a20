"""Steps issued inside a step's body: named under it, and not expected again when it replays.

A replay returns a completed step's recorded result without running its body, so the steps that
body issued are not issued again. Named ``outer/inner``, the replay knows whose they are.
"""

from __future__ import annotations

from typing import Any

import graphflow as gf
from graphflow.testing import VirtualClock


async def test_a_body_s_steps_are_named_under_its_step_and_the_run_replays_without_them(
    sqlite_url: str, registry: gf.Registry
) -> None:
    bodies: list[str] = []

    @gf.workflow(registry=registry)
    async def nested(wf: gf.Workflow, data: None) -> dict[str, Any]:
        async def outer() -> str:
            bodies.append("outer")
            inner = await wf.do("inner", lambda: "from inside")
            await wf.sleep("short", 0)
            return f"outer saw {inner}"

        seen = await wf.do("outer", outer)
        await wf.sleep("nap", "1h")  # parks: the run is replayed when it wakes
        return {"seen": seen, "after": await wf.do("after", lambda: "after the nap")}

    clock = VirtualClock()
    async with (
        gf.Engine(sqlite_url, registry=registry, clock=clock) as engine,
        clock.running(),
    ):
        run_id = await engine.start("nested")
        status = await engine.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == {"seen": "outer saw from inside", "after": "after the nap"}
    assert bodies == ["outer"]  # replayed, not run again
    assert [step.name for step in status.steps] == [
        "outer",
        "outer/inner",
        "outer/short",
        "nap",
        "after",
    ]


async def test_an_event_set_after_a_replayed_body_set_one_is_published(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def progress(wf: gf.Workflow, data: None) -> str:
        async def work() -> str:
            await wf.set_event("stage", "working")
            return "done"

        await wf.do("work", work)
        await wf.sleep("nap", "1h")
        await wf.set_event("stage", "finished")  # its own number, not the body's record
        return "ok"

    clock = VirtualClock()
    async with gf.Engine("memory://", registry=registry, clock=clock) as engine, clock.running():
        run_id = await engine.start("progress")
        status = await engine.wait(run_id, timeout=30)
        stage = await engine.get_event(run_id, "stage")
    assert status.state == "completed", status.error
    assert stage == "finished"
    events = [step.name for step in status.steps if step.kind == "event"]
    assert events == ["work/event:stage", "event:stage"]
