"""Recorded steps that a replay never issued again fail the run (random or time-based names).

A run that completes after a replay in which some of its recorded (settled) steps were not issued
again ran other steps than it recorded: it fails with ``NonDeterminismError`` naming them, its
steps kept. Patches, forks, graph runs and loops issue what they recorded, so they are not flagged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio

import graphflow as gf


def engine(url: str, registry: gf.Registry) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05)


def constant(value: int) -> Callable[[], int]:
    return lambda: value


async def park_and_resume(e: gf.Engine, workflow: str, data: Any = None) -> gf.RunStatus:
    run_id = await e.start(workflow, data)
    with anyio.fail_after(30):
        while (await e.status(run_id)).state != "suspended":
            await anyio.sleep(0.01)
    await e.resume(run_id, {})
    await e.wait(run_id, timeout=30)
    return await e.status(run_id)


async def test_random_step_names_fail_the_replayed_run(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def random_names(wf: gf.Workflow, data: None) -> str:
        await wf.do("fixed", lambda: 1)
        await wf.do(f"fetch {uuid.uuid4()}", lambda: 2)  # a new name in every execution
        await wf.suspend("park")  # the resume replays from history
        return "done"

    async with engine("memory://", registry) as e:
        status = await park_and_resume(e, "random_names")
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.type == "NonDeterminismError"
    recorded = [s.name for s in status.steps if s.name.startswith("fetch ")]
    assert len(recorded) == 2  # both kept: the first execution's and the replay's
    assert repr(recorded[0]) in status.error.message  # the first execution's, in issue order
    assert "fixed" not in status.error.message.split("Workflow code")[0].split("recorded as")[1]


async def test_a_run_that_issues_what_it_recorded_completes(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def steady(wf: gf.Workflow, data: None) -> int:
        total = 0
        for i in range(3):
            total += await wf.do(f"add {i}", constant(i))
        if wf.patched("extra"):
            total += await wf.do("extra", lambda: 10)
        await wf.sleep("nap", 0)
        await wf.suspend("park")
        try:
            await wf.do("fails", lambda: 1 / 0)
        except gf.StepFailed:
            total += 100
        return total

    async with engine("memory://", registry) as e:
        status = await park_and_resume(e, "steady")
    assert status.state == "completed", status.error
    assert status.output == 113
