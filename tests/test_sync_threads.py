"""Sync functions run in the engine's threads: concurrently, in the step's context, any outcome.

The threads are started on demand up to ``max_jobs``; a sync step never waits for a thread while
another one is busy, and whatever the function raises reaches the workflow as the step's error.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import graphflow as gf


async def test_sync_steps_run_at_once_in_threads_of_their_own(
    registry: gf.Registry, sqlite_url: str
) -> None:
    # Each step waits until all three run: they can only finish if each has its own thread.
    together = threading.Barrier(3, timeout=10)

    @gf.function(registry=registry)
    def meet(i: int) -> str:
        together.wait()
        return f"{i} in {threading.current_thread().name}"

    @gf.workflow(registry=registry)
    async def meeting(wf: gf.Workflow, data: None) -> list[str]:
        return list(await asyncio.gather(*(wf.do(f"meet {i}", meet, {"i": i}) for i in range(3))))

    async with gf.Engine(sqlite_url, registry=registry, max_jobs=3) as engine:
        output = await engine.run(meeting, None, timeout=30)
    assert isinstance(output, list)
    threads = {line.split(" in ")[1] for line in output}
    assert len(threads) == 3
    assert all(name.startswith("graphflow-step") for name in threads)


async def test_sync_step_sees_its_step_and_returns_to_the_loop_in_order(
    registry: gf.Registry, sqlite_url: str
) -> None:
    @gf.function(registry=registry)
    def whoami() -> str:
        return gf.current_step().step_name

    @gf.workflow(registry=registry)
    async def names(wf: gf.Workflow, data: None) -> list[str]:
        return [await wf.do(f"step {i}", whoami) for i in range(20)]

    async with gf.Engine(sqlite_url, registry=registry) as engine:
        output = await engine.run(names, None, timeout=30)
    assert output == [f"step {i}" for i in range(20)]


@pytest.mark.parametrize("thread", [True, False])
async def test_sync_step_raising_stop_iteration_fails_the_step_instead_of_hanging(
    registry: gf.Registry, sqlite_url: str, thread: bool
) -> None:
    @gf.function(registry=registry, thread=thread)
    def exhausted() -> int:
        return next(iter([]))

    @gf.workflow(registry=registry)
    async def drains(wf: gf.Workflow, data: None) -> int:
        return int(await wf.do("next", exhausted))

    async with gf.Engine(sqlite_url, registry=registry) as engine:
        run_id = await engine.start(drains, None)  # an asyncio future cannot hold it
        status = await engine.wait(run_id, timeout=30)
    assert status.state == "failed"
    (step,) = status.steps
    assert step.state == "failed"
    assert step.error is not None
    # Raised again in the workflow's coroutine, Python turns it into a RuntimeError.
    assert "StopIteration" in step.error.message
