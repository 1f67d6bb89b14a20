"""Edge cases found in review: resume and cancel races, replay order, error types."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphflow as gf
from graphflow.testing import VirtualClock


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


async def until(predicate: Any, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.01)


# --- status: step order -----------------------------------------------------------------------


async def test_status_live_steps_keep_issue_order(registry: gf.Registry) -> None:
    """DESIGN: `steps` are in the order they were issued (a gather: its argument order)."""
    gate = anyio.Event()

    @gf.function(registry=registry)
    async def slow(x: str) -> str:
        await gate.wait()
        return x

    @gf.workflow(registry=registry)
    async def fan(wf: gf.Workflow, data: None) -> list[str]:
        return list(
            await asyncio.gather(wf.do("zeta", slow, {"x": "z"}), wf.do("alpha", slow, {"x": "a"}))
        )

    async with engine("memory://", registry) as e:
        run_id = await e.start("fan")

        async def both_running() -> bool:
            return len((await e.status(run_id)).steps) == 2

        await until(both_running)
        names = [s.name for s in (await e.status(run_id)).steps]
        gate.set()
        await e.wait(run_id, timeout=10)
    assert names == ["zeta", "alpha"]


async def test_replayed_gather_keeps_step_order(registry: gf.Registry) -> None:
    """After a replay, a new step must not reuse the position of an already recorded one."""

    @gf.workflow(registry=registry)
    async def branches(wf: gf.Workflow, data: None) -> str:
        async def a() -> None:
            await wf.do("a1", lambda: 1)
            await wf.suspend("wait-a")
            await wf.do("a2", lambda: 2)

        async def b() -> None:
            await wf.do("b1", lambda: 3)

        await asyncio.gather(a(), b())
        return "ok"

    async with engine("memory://", registry) as e:
        run_id = await e.start("branches")

        async def parked() -> bool:
            return (await e.status(run_id)).state == "suspended"

        await until(parked)
        await e.resume(run_id, {})
        status = await e.wait(run_id, timeout=10)
    assert status.state == "completed"
    assert [s.name for s in status.steps] == ["a1", "b1", "wait-a", "a2"]


# --- wf.now() determinism ---------------------------------------------------------------------


async def test_now_in_gather_branch_is_the_same_on_replay(registry: gf.Registry) -> None:
    """DESIGN: wf.now() is the time that point was first reached, identical on replay."""

    @gf.function(registry=registry)
    async def slow() -> int:
        await anyio.sleep(0.3)
        return 1

    @gf.workflow(registry=registry)
    async def clocked(wf: gf.Workflow, data: None) -> dict[str, str]:
        async def a() -> str:
            await wf.do("slow", slow)
            return ""

        async def b() -> str:
            await wf.do("fast", lambda: 1)
            return wf.now().isoformat()

        _, seen = await asyncio.gather(a(), b())
        first = await wf.do("record now", lambda: seen)  # the first run's value, stored
        await wf.suspend("park")  # forces a replay from history
        return {"first": first, "replay": seen}

    async with engine("memory://", registry) as e:
        run_id = await e.start("clocked")

        async def parked() -> bool:
            return (await e.status(run_id)).state == "suspended"

        await until(parked)
        await e.resume(run_id, {})
        status = await e.wait(run_id, timeout=10)
    assert status.state == "completed", status.error
    assert status.output["replay"] == status.output["first"]


# --- resume -------------------------------------------------------------------------------------


async def test_resume_of_a_parked_gather_with_a_sleep_runs_the_resumed_branch(
    registry: gf.Registry,
) -> None:
    """DESIGN: after resume the run becomes claimable (`running`, no owner); the resumed branch
    goes on while the other branch sleeps."""

    @gf.workflow(registry=registry)
    async def mixed(wf: gf.Workflow, data: None) -> str:
        async def waiter() -> None:
            await wf.suspend("approve")
            await wf.do("after approve", lambda: "done")

        async def sleeper() -> None:
            await wf.sleep("long", "1h")

        await asyncio.gather(waiter(), sleeper())
        return "ok"

    async with engine("memory://", registry) as e:
        run_id = await e.start("mixed")

        async def parked() -> bool:
            return (await e.status(run_id)).state == "sleeping"

        await until(parked)
        await e.resume(run_id, {"ok": True})

        async def branch_went_on() -> bool:
            steps = {s.name: s.state for s in (await e.status(run_id)).steps}
            return steps.get("after approve") == "completed"

        await until(branch_went_on, timeout=5)


class Booking(BaseModel):
    approved: bool
    at: datetime


async def test_resume_data_invalid_for_the_model_is_refused(registry: gf.Registry) -> None:
    """DESIGN: resume data failing the suspend's schema is refused and the run stays suspended,
    nothing lost. Here the JSON Schema check lets an invalid datetime through and the run dies."""

    @gf.workflow(registry=registry)
    async def book(wf: gf.Workflow, data: None) -> bool:
        booking = await wf.suspend("confirm", schema=Booking)
        return booking.approved

    async with engine("memory://", registry) as e:
        run_id = await e.start("book")

        async def parked() -> bool:
            return (await e.status(run_id)).state == "suspended"

        await until(parked)
        with pytest.raises(gf.InputValidationError):
            await e.resume(run_id, {"approved": True, "at": "not a date"})
        await anyio.sleep(0.3)
        assert (await e.status(run_id)).state == "suspended"


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_while_the_run_parks_is_not_lost(registry: gf.Registry) -> None:
    """`cancel` of a run held by this engine returns only when the run is cancelled; if the run
    was writing its parked state at that moment, the cancel is silently dropped."""

    @gf.workflow(registry=registry)
    async def waits(wf: gf.Workflow, data: None) -> None:
        await wf.suspend("forever")

    async with engine("memory://", registry) as e:
        parking = anyio.Event()
        original = e.store.park_run

        async def slow_park_run(fence: Any, **kwargs: Any) -> None:
            if kwargs.get("state") == "suspended":
                parking.set()
                await anyio.sleep(0.2)  # the parked state is being written
            await original(fence, **kwargs)

        e.store.park_run = slow_park_run  # type: ignore[method-assign]
        run_id = await e.start("waits")
        with anyio.fail_after(10):
            await parking.wait()
        await e.cancel(run_id)
        status = await e.status(run_id)
    assert status.state == "cancelled"


# --- list_runs ----------------------------------------------------------------------------------


async def test_list_runs_newest_first_under_a_virtual_clock(registry: gf.Registry) -> None:
    """DESIGN: list_runs is newest first. With a VirtualClock, runs started at the same virtual
    instant come back in random (uuid) order."""

    @gf.workflow(registry=registry)
    async def noop(wf: gf.Workflow, data: int) -> int:
        return data

    clock = VirtualClock()
    async with engine("memory://", registry, clock=clock, worker=False) as e:
        started = [await e.start("noop", i) for i in range(12)]
        listed = [r.run_id for r in await e.list_runs()]
    assert listed == started[::-1]


# --- remote jobs --------------------------------------------------------------------------------


async def test_remote_step_failure_keeps_the_exception_type(
    registry: gf.Registry, tmp_path: Path
) -> None:
    """DESIGN: ErrorInfo.type is the exception's class name. A step executed as a job by another
    worker reports type `RemoteStepError` and a message `ValueError: boom` instead."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    workers = gf.Registry()

    @gf.function(name="explode", registry=workers)
    def explode() -> None:
        raise ValueError("boom")

    @gf.workflow(registry=registry)
    async def caller(wf: gf.Workflow, data: None) -> None:
        await wf.do("explode it", "explode")

    async with engine(url, workers), engine(url, registry) as e:
        run_id = await e.start("caller")
        status = await e.wait(run_id, timeout=20)
    assert status.state == "failed"
    step = status.steps[0]
    assert step.error is not None
    assert (step.error.type, step.error.message) == ("ValueError", "boom")


# --- errors -------------------------------------------------------------------------------------


class Signup(BaseModel):
    email: str


async def test_input_validation_errors_are_pydantics_list(registry: gf.Registry) -> None:
    """DESIGN §1b: InputValidationError.errors is pydantic's list (loc is a tuple there)."""

    @gf.workflow(registry=registry)
    async def signup(wf: gf.Workflow, data: Signup) -> None:
        return None

    async with engine("memory://", registry) as e:
        with pytest.raises(gf.InputValidationError) as info:
            await e.start("signup", {"email": 1})
    assert info.value.errors[0]["loc"] == ("email",)


async def test_cancel_racing_completion_raises_or_cancels(registry: gf.Registry) -> None:
    """Same root cause as the parking race: cancel() of a held run whose final write is in
    progress returns success, yet the run ends `completed` (DESIGN: cancel of a finished run is
    an InvalidStateError; a successful cancel leaves the run `cancelled`)."""

    @gf.workflow(registry=registry)
    async def done_soon(wf: gf.Workflow, data: None) -> int:
        return await wf.do("one", lambda: 1)

    async with engine("memory://", registry) as e:
        finishing = anyio.Event()
        original = e.store.end_run

        async def slow_end_run(fence: Any, **kwargs: Any) -> None:
            if kwargs.get("state") == "completed":
                finishing.set()
                await anyio.sleep(0.2)
            await original(fence, **kwargs)

        e.store.end_run = slow_end_run  # type: ignore[method-assign]
        run_id = await e.start("done_soon")
        with anyio.fail_after(10):
            await finishing.wait()
        try:
            await e.cancel(run_id)
        except gf.InvalidStateError:
            return
        state = (await e.status(run_id)).state
    assert state == "cancelled"
