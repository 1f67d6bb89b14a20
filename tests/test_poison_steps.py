"""Steps that raise what would end the process are contained; processes that die are counted.

``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, a ``CancelledError`` of the step's own,
or any other ``BaseException`` raised in a step fail that step (non-retryable, the error naming
the exception) instead of ending the process and every run in it. A run whose steps still kill
their process (``os._exit``) is recovered at most ``max_recoveries`` times, then fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import graphflow as gf

ROOT = Path(__file__).resolve().parents[1]


class Fatal(BaseException):
    """A BaseException of the user's own."""


RAISED: dict[str, tuple[Callable[[], BaseException], str]] = {
    "SystemExit": (lambda: SystemExit(3), "SystemExit(3)"),
    "KeyboardInterrupt": (KeyboardInterrupt, "KeyboardInterrupt()"),
    "GeneratorExit": (GeneratorExit, "GeneratorExit()"),
    "CancelledError": (lambda: asyncio.CancelledError("mine"), "CancelledError('mine')"),
    "Fatal": (lambda: Fatal("bye"), "Fatal('bye')"),
}


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


async def finished(e: gf.Engine, run_id: str) -> gf.RunStatus:
    await e.wait(run_id, timeout=30)
    return await e.status(run_id)


def assert_contained(status: gf.RunStatus, step: str, raised: str) -> None:
    assert status.state == "failed"
    (failed,) = [s for s in status.steps if s.name == step]
    assert failed.state == "failed"
    assert failed.attempts == 1  # non-retryable, whatever retries says
    assert failed.error is not None
    assert f"step {step!r} raised {raised}" in failed.error.message
    assert "non-retryable" in failed.error.message


@pytest.mark.parametrize("kind", ["async", "sync in a thread", "sync on the loop", "inline"])
@pytest.mark.parametrize("exception", RAISED)
async def test_step_raising_a_process_ending_exception_fails_only_that_step(
    registry: gf.Registry, sqlite_url: str, kind: str, exception: str
) -> None:
    make, raised = RAISED[exception]

    def poison_sync() -> None:
        raise make()

    async def poison_async() -> None:
        raise make()

    target: Any
    if kind == "inline":
        target = poison_async
    else:
        fn: Callable[[], Any] = poison_async if kind == "async" else poison_sync
        target = gf.function(name="poison", registry=registry, retries=3,
                             thread=kind != "sync on the loop")(fn)  # fmt: skip

    @gf.workflow(registry=registry)
    async def victim(wf: gf.Workflow, data: None) -> None:
        await wf.do("poison", target)

    @gf.workflow(registry=registry)
    async def bystander(wf: gf.Workflow, data: None) -> str:
        await wf.sleep("nap", 0.2)
        return await wf.do("after", lambda: "alive")

    async with engine(sqlite_url, registry) as e:
        other = await e.start("bystander")
        status = await finished(e, await e.start("victim"))
        assert (await finished(e, other)).output == "alive"
        assert (await e.run("bystander")) == "alive"  # the engine still works
    assert_contained(status, "poison", raised)
    assert status.steps[0].error is not None and status.steps[0].error.type == exception


async def test_workflow_code_raising_system_exit_fails_the_run(
    registry: gf.Registry, sqlite_url: str
) -> None:
    @gf.workflow(registry=registry)
    async def quitter(wf: gf.Workflow, data: None) -> None:
        await wf.do("first", lambda: 1)
        sys.exit(4)

    @gf.workflow(registry=registry)
    async def fine(wf: gf.Workflow, data: None) -> int:
        return 1

    async with engine(sqlite_url, registry) as e:
        status = await finished(e, await e.start("quitter"))
        assert await e.run("fine") == 1
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.type == "SystemExit"
    assert "workflow 'quitter' raised SystemExit(4)" in status.error.message


async def test_queued_job_raising_system_exit_fails_without_retry(
    registry: gf.Registry, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    workers = gf.Registry()
    calls = 0

    @gf.function(name="leave", registry=workers)
    def leave() -> None:
        nonlocal calls
        calls += 1
        raise SystemExit(5)

    @gf.workflow(registry=registry)
    async def caller(wf: gf.Workflow, data: None) -> None:
        await wf.do("leave", "leave", retries=3)

    @gf.workflow(registry=registry)
    async def fine(wf: gf.Workflow, data: None) -> int:
        return 1

    async with engine(url, workers), engine(url, registry) as e:
        status = await finished(e, await e.start("caller"))
        assert await e.run("fine") == 1
    assert calls == 1
    assert_contained(status, "leave", "SystemExit(5)")


async def test_cancel_and_timeout_still_unwind_a_step(registry: gf.Registry) -> None:
    """A CancelledError of our own scopes (run cancel, step timeout) is not the step's failure."""
    started = anyio.Event()

    @gf.function(registry=registry)
    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    @gf.workflow(registry=registry)
    async def waits(wf: gf.Workflow, data: None) -> None:
        await wf.do("forever", forever)

    @gf.workflow(registry=registry)
    async def times_out(wf: gf.Workflow, data: None) -> None:
        await wf.do("forever", forever, timeout=0.05)

    async with engine("memory://", registry) as e:
        run_id = await e.start("waits")
        await started.wait()
        await e.cancel(run_id)
        cancelled = await finished(e, run_id)
        timed_out = await finished(e, await e.start("times_out"))
    assert cancelled.state == "cancelled"
    assert cancelled.steps[0].state == "cancelled"
    assert timed_out.state == "failed"
    assert timed_out.steps[0].error is not None
    assert timed_out.steps[0].error.type == "StepTimeout"


# --- real processes -----------------------------------------------------------------------------


def worker(url: str, run_id: str, max_recoveries: int, workflow: str | None = None) -> Any:
    """Run the poison worker in a subprocess; its JSON report, or its exit code if it died."""
    args = [sys.executable, "-m", "tests.flows.poison_flows", url, run_id, str(max_recoveries)]
    done = subprocess.run(
        [*args, *([workflow] if workflow else [])],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return done.returncode
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_step_exiting_in_a_subprocess_is_contained(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'poison.db'}"
    report = worker(url, "exits", 2, "exits_in_steps")
    assert report == {
        "state": "completed",
        "error": None,
        "output": ["thread: SystemExit", "async: SystemExit"],
    }


@pytest.mark.parametrize(
    ("workflow", "death"),
    [("dies_hard", 1), ("interrupts_itself", -signal.SIGINT)],
    ids=["os._exit", "graceful shutdown mid-step"],
)
def test_run_killing_its_process_fails_after_max_recoveries(
    tmp_path: Path, workflow: str, death: int
) -> None:
    """A process that dies under a step, even through a graceful shutdown, counts a recovery."""
    url = f"sqlite:///{tmp_path / 'poison.db'}"
    outcomes = [worker(url, "loop", 2, workflow)]
    while isinstance(outcomes[-1], int) and len(outcomes) < 6:
        outcomes.append(worker(url, "loop", 2))
    # The first execution and two recoveries die; the third recovery gives up.
    failed = {"state": "failed", "error": "RecoveryLimitError", "output": None}
    assert outcomes == [death, death, death, failed]
