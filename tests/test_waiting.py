"""Durable sleep, suspend/resume, cancel, child runs, compensation and the virtual clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphflow as gf
from graphflow.testing import VirtualClock

ROOT = Path(__file__).resolve().parents[1]


class Approval(BaseModel):
    approved: bool
    by: str


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


async def until_state(e: gf.Engine, run_id: str, state: str, timeout: float = 10) -> gf.RunStatus:
    with anyio.fail_after(timeout):
        async for status in e.watch(run_id):
            if status.state == state:
                return status
    raise AssertionError(f"run {run_id} ended {status.state} without being {state}")


# --- sleep ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exit", "kill"])
async def test_sleep_survives_its_process(tmp_path: Path, mode: str) -> None:
    url = f"sqlite:///{tmp_path / 'sleep.db'}"
    env = os.environ | {"GF_SLEEP_LOG": str(tmp_path / "log"), "PYTHONPATH": str(ROOT)}

    def flow(run_mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tests.flows.sleep_flows", url, "nap-1", run_mode]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    first = flow(mode)
    assert first.returncode == (-signal.SIGKILL if mode == "kill" else 0), first.stderr
    finished = flow("finish")
    assert finished.returncode == 0, finished.stderr
    woke_at = json.loads(finished.stdout.strip().splitlines()[-1])["woke_at"]
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("nap-1")
    nap = next(s for s in status.steps if s.name == "nap")
    assert nap.state == "completed" and nap.started_at is not None
    assert woke_at >= nap.started_at.timestamp() + 3
    assert (tmp_path / "log").read_text().splitlines() == ["before", "after"]


async def test_parked_sleepers_hold_no_coroutine(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def long_nap(wf: gf.Workflow, data: int) -> int:
        await wf.sleep("nap", "1h")
        return data

    async with engine("memory://", registry, max_runs=1000) as e:
        run_ids = [await e.start("long_nap", i) for i in range(1000)]
        with anyio.fail_after(30):
            while (await e.list_runs(state="sleeping", limit=2000)).__len__() < 1000:
                await anyio.sleep(0.05)
        stats = e.stats()
        assert stats.held_runs == 0
        assert stats.executing_steps == 0 and stats.waiting_steps == 0
        status = await e.status(run_ids[0])
    assert status.wake_at is not None and status.steps[0].state == "sleeping"


async def test_a_parked_run_leaves_nothing_of_its_execution_in_memory(
    sqlite_url: str, registry: gf.Registry
) -> None:
    import gc
    import weakref

    class Local:
        """An object only the workflow's coroutine refers to."""

    alive: weakref.WeakSet[Local] = weakref.WeakSet()

    @gf.workflow(registry=registry)
    async def nap_with_locals(wf: gf.Workflow, data: None) -> None:
        local = Local()
        alive.add(local)
        await wf.do("before", lambda: 1)
        await wf.sleep("nap", "1h")
        del local

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("nap_with_locals")
        with anyio.fail_after(30):
            while (await e.status(run_id)).state != "sleeping":
                await anyio.sleep(0.01)
        gc.collect()
        assert len(alive) == 0  # the coroutine, its frame and its locals are gone
        assert e.stats().held_runs == 0


async def test_three_day_sleep_runs_in_milliseconds_on_a_virtual_clock(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def trial(wf: gf.Workflow, data: None) -> list[str]:
        start = await wf.do("start", lambda: wf.now().isoformat())
        await wf.sleep("Wait 3 days", "3d")
        return [start, wf.now().isoformat()]

    clock = VirtualClock(start=1_700_000_000)
    began = time.perf_counter()
    async with engine("memory://", registry, clock=clock) as e, clock.running():
        start, end = await e.run("trial", timeout=5)
    assert time.perf_counter() - began < 30  # not three days: the virtual clock jumped
    slept = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert slept >= timedelta(days=3)


async def test_bad_duration_fails_the_run_quoting_it(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def bad_sleep(wf: gf.Workflow, data: None) -> None:
        await wf.sleep("nap", "a while")

    async with engine("memory://", registry) as e:
        with pytest.raises(gf.RunFailed, match="'a while'"):
            await e.run("bad_sleep")


# --- suspend --------------------------------------------------------------------------------


async def test_suspend_resume_across_engines_with_schema(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def review(wf: gf.Workflow, data: dict[str, int]) -> dict[str, Any]:
        approval = await wf.suspend("Waiting for manager approval", schema=Approval)
        assert isinstance(approval, Approval)
        return {"amount": data["amount"], "approved": approval.approved, "by": approval.by}

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("review", {"amount": 5})
        status = await until_state(e, run_id, "suspended")
    assert status.suspend_reason == "Waiting for manager approval"

    async with engine(sqlite_url, gf.Registry(), worker=False) as client:
        with pytest.raises(gf.InputValidationError, match="approved") as refused:
            await client.resume(run_id, {"approved": "maybe", "by": "kim"})
        assert refused.value.errors[0]["loc"] == ("approved",)
        assert (await client.status(run_id)).state == "suspended"
        await client.resume(run_id, {"approved": True, "by": "kim"})
        with pytest.raises(gf.InvalidStateError, match="resume"):
            await client.resume(run_id, {"approved": False, "by": "lee"})

    async with engine(sqlite_url, registry) as e:
        status = await e.wait(run_id, timeout=10)
    assert status.output == {"amount": 5, "approved": True, "by": "kim"}


async def test_resume_of_a_run_that_is_not_suspended_is_refused(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def quick(wf: gf.Workflow, data: None) -> int:
        return 1

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("quick")
        await e.wait(run_id)
        with pytest.raises(gf.InvalidStateError, match="cannot resume.*'completed'"):
            await e.resume(run_id, {})


async def test_suspend_timeout_raises_in_the_workflow(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def expiring(wf: gf.Workflow, data: None) -> str:
        try:
            await wf.suspend("approve", timeout="2d")
        except gf.SuspendTimeout as timeout:
            return f"expired: {timeout.step}"
        return "approved"

    clock = VirtualClock()
    async with engine("memory://", registry, clock=clock) as e, clock.running():
        assert await e.run("expiring", timeout=5) == "expired: approve"


async def test_resume_delivers_to_a_running_gather(sqlite_url: str, registry: gf.Registry) -> None:
    release = anyio.Event()

    @gf.function(registry=registry)
    async def busy() -> str:
        await release.wait()
        return "done"

    @gf.workflow(registry=registry)
    async def mixed(wf: gf.Workflow, data: None) -> list[Any]:
        import asyncio

        return list(await asyncio.gather(wf.do("busy", busy), wf.suspend("input")))

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("mixed")
        await anyio.sleep(0.2)
        assert (await e.status(run_id)).state == "running"  # one branch is still active
        await e.resume(run_id, {"x": 1})
        release.set()
        status = await e.wait(run_id, timeout=10)
    assert status.output == ["done", {"x": 1}]


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_in_each_state(sqlite_url: str, registry: gf.Registry) -> None:
    started = Counter[str]()

    @gf.function(registry=registry)
    async def hang() -> None:
        started["hang"] += 1
        await anyio.sleep(60)

    @gf.workflow(registry=registry)
    async def hanging(wf: gf.Workflow, data: None) -> None:
        await wf.do("hang", hang)
        await wf.do("never", lambda: started.update(["never"]))

    @gf.workflow(registry=registry)
    async def napping(wf: gf.Workflow, data: None) -> None:
        await wf.sleep("nap", "1h")

    @gf.workflow(registry=registry)
    async def waiting(wf: gf.Workflow, data: None) -> None:
        await wf.suspend("input")

    async with engine(sqlite_url, registry) as e:
        running = await e.start("hanging")
        sleeping = await e.start("napping")
        suspended = await e.start("waiting")
        await until_state(e, sleeping, "sleeping")
        await until_state(e, suspended, "suspended")
        with anyio.fail_after(5):
            while not started["hang"]:
                await anyio.sleep(0.01)
        for run_id in (running, sleeping, suspended):
            await e.cancel(run_id)
            status = await e.status(run_id)
            assert status.state == "cancelled"
            assert status.finished_at is not None
            assert [s.state for s in status.steps] == ["cancelled"]
        with pytest.raises(gf.InvalidStateError, match="cannot cancel"):
            await e.cancel(running)
        await anyio.sleep(0.1)
    assert started == Counter({"hang": 1})

    async with engine(sqlite_url, registry, worker=False) as client:
        pending = await client.start("napping")
        await client.cancel(pending)
        assert (await client.status(pending)).state == "cancelled"
        with pytest.raises(gf.RunNotFoundError):
            await client.cancel("missing")


# --- child runs and compensation ------------------------------------------------------------


async def test_child_runs(sqlite_url: str, registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def child(wf: gf.Workflow, data: dict[str, int]) -> int:
        if data["n"] < 0:
            raise ValueError("negative")
        return await wf.do("double", lambda: data["n"] * 2)

    @gf.workflow(registry=registry)
    async def parent(wf: gf.Workflow, data: dict[str, int]) -> Any:
        try:
            return await wf.do("child", "child", data)
        except gf.StepFailed as failure:
            return str(failure.error)

    async with engine(sqlite_url, registry) as e:
        ok = await e.start("parent", {"n": 21})
        assert (await e.wait(ok, timeout=10)).output == 42
        (kid,) = await e.list_runs(workflow="child")
        assert kid.parent_run_id == ok and kid.output == 42
        failing = await e.run("parent", {"n": -1}, timeout=10)
        assert "ValueError: negative" in failing


async def test_cancelling_a_parent_cancels_its_child(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def slow_child(wf: gf.Workflow, data: None) -> None:
        await wf.suspend("forever")

    @gf.workflow(registry=registry)
    async def waiting_parent(wf: gf.Workflow, data: None) -> None:
        await wf.do("child", "slow_child")

    async with engine(sqlite_url, registry) as e:
        parent_id = await e.start("waiting_parent")
        with anyio.fail_after(10):
            while not (kids := await e.list_runs(workflow="slow_child", state="suspended")):
                await anyio.sleep(0.02)
        await e.cancel(parent_id)
        assert (await e.status(parent_id)).state == "cancelled"
        assert (await e.status(kids[0].run_id)).state == "cancelled"


async def test_compensation_runs_once_with_the_error(
    sqlite_url: str, registry: gf.Registry
) -> None:
    refunds: list[dict[str, Any]] = []

    @gf.function(registry=registry)
    async def charge(amount: int) -> None:
        raise RuntimeError(f"declined {amount}")

    @gf.function(registry=registry)
    async def refund(error: dict[str, str], step: str, input: dict[str, int]) -> str:
        refunds.append({"error": error, "step": step, "input": input})
        return "refunded"

    @gf.workflow(registry=registry)
    async def pay(wf: gf.Workflow, data: None) -> str:
        try:
            await wf.do("Charge", "charge", {"amount": 7}, retries=1, on_error="refund")
        except gf.StepFailed:
            await wf.suspend("look at it")
        return "done"

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("pay")
        await until_state(e, run_id, "suspended")
        await e.resume(run_id, {})
        status = await e.wait(run_id, timeout=10)
    assert status.output == "done"
    assert refunds == [
        {"error": {"type": "RuntimeError", "message": "declined 7"}, "step": "Charge",
         "input": {"amount": 7}}
    ]  # fmt: skip
    names = [(s.name, s.state) for s in status.steps]
    assert names[:2] == [("Charge", "failed"), ("Charge:on_error", "completed")]


async def test_resume_errors_read_the_same_with_or_without_the_workflow_code(
    sqlite_url: str, registry: gf.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphflow.runtime import resume as resume_module

    @gf.workflow(registry=registry)
    async def review_again(wf: gf.Workflow, data: None) -> bool:
        return (await wf.suspend("Approve", schema=Approval)).approved

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("review_again")
        await until_state(e, run_id, "suspended")
        refusals = []
        for known in (True, False):  # validated here with the schema's type, then without it
            if not known:
                monkeypatch.setattr(resume_module, "SCHEMA_ADAPTERS", {})
            with pytest.raises(gf.InputValidationError) as refused:
                await e.resume(run_id, {"approved": "maybe"})
            refusals.append((str(refused.value), refused.value.errors))
    assert refusals[0] == refusals[1]
    message, errors = refusals[0]
    assert errors == [
        {"type": "bool_type", "loc": ("approved",), "msg": "Input should be a valid boolean",
         "input": "maybe"},
        {"type": "missing", "loc": ("by",), "msg": "Field required", "input": None},
    ]  # fmt: skip
    assert "approved: Input should be a valid boolean; by: Field required" in message


async def test_a_cancel_from_another_process_stops_the_run_at_its_next_step(
    sqlite_url: str, registry: gf.Registry
) -> None:
    """SQLite does not notify: the owner learns of the cancel when its next step write is refused
    (long before its next lease renewal), so no step completes after the cancel was stored."""

    @gf.function(registry=registry)
    async def tick(i: int) -> int:
        await anyio.sleep(0.05)
        return i

    @gf.workflow(registry=registry)
    async def ticking(wf: gf.Workflow, data: None) -> None:
        for i in range(10_000):
            await wf.do(f"tick {i}", tick, {"i": i})

    async with engine(sqlite_url, registry, lease=300) as owner:
        run_id = await owner.start("ticking")
        async for status in owner.watch(run_id):
            if len(status.steps) >= 3:
                break
        async with engine(sqlite_url, gf.Registry(), worker=False) as client:
            await client.cancel(run_id)
            at_cancel = await client.status(run_id)
        ended = await owner.wait(run_id, timeout=60)  # a lease renewal would take 100 s
    completed = {s.name for s in at_cancel.steps if s.state == "completed"}
    assert ended.state == "cancelled"
    assert {s.name for s in ended.steps if s.state == "completed"} == completed
    assert [s.state for s in ended.steps if s.name not in completed] == ["cancelled"]
