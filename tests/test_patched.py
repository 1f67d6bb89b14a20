"""``wf.patched``: runs in flight keep their recorded path, new runs take the new one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import graphflow as gf

ROOT = Path(__file__).resolve().parents[1]


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


def flow(url: str, version: str, action: str, run_id: str, log: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.flows.patch_flows", url, version, action, run_id],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "GF_PATCH_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
async def test_old_runs_finish_on_the_old_path_new_runs_on_the_new_across_restarts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'patch.db'}"
    log = tmp_path / "log"
    flow(url, "1", "start", "old", log)  # deployed before the patch
    flow(url, "2", "start", "new", log)  # after the patch
    # Each resume is a new process running the patched code.
    assert json.loads(flow(url, "2", "resume", "old", log)) == {"receipt": "email"}
    assert json.loads(flow(url, "2", "resume", "new", log)) == {"receipt": "sms"}
    assert Counter(log.read_text().splitlines()) == Counter(
        ["charge old", "email old", "charge new", "sms new"]
    )
    async with gf.Engine(url, worker=False) as client:
        old, new = await client.status("old"), await client.status("new")
    # The marker costs no step of its own.
    assert [s.name for s in old.steps] == ["Charge", "Email receipt", "Confirm delivery"]
    assert [s.name for s in new.steps] == ["Charge", "SMS receipt", "Confirm delivery"]


def checkout(registry: gf.Registry, version: int, log: list[str]) -> None:
    """v1 emails, v2 patches in SMS, v3 has removed the old branch."""

    @gf.function(registry=registry)
    def charge(order: str) -> str:
        log.append(f"charge {order}")
        return order

    @gf.function(registry=registry)
    def email_receipt(order: str) -> str:
        log.append(f"email {order}")
        return order

    @gf.function(registry=registry)
    def sms_receipt(order: str) -> str:
        log.append(f"sms {order}")
        return order

    @gf.workflow(name="checkout", registry=registry)
    async def flow(wf: gf.Workflow, data: dict[str, str]) -> str:
        order = data["order"]
        await wf.do("Charge", "charge", {"order": order})
        if version == 3 or (version == 2 and wf.patched("sms-receipt")):
            await wf.do("SMS receipt", "sms_receipt", {"order": order})
        else:
            await wf.do("Email receipt", "email_receipt", {"order": order})
        await wf.suspend("Confirm delivery")
        return "sms" if version == 3 or (version == 2 and wf.patched("sms-receipt")) else "email"


async def start_suspended(url: str, version: int, run_id: str, log: list[str]) -> None:
    registry = gf.Registry()
    checkout(registry, version, log)
    async with engine(url, registry) as e:
        await e.start("checkout", {"order": run_id}, run_id=run_id)
        with anyio.fail_after(10):
            while (await e.status(run_id)).state != "suspended":
                await anyio.sleep(0.01)


async def test_the_deploy_recipe_check_shows_which_runs_are_on_the_old_path(
    sqlite_url: str,
) -> None:
    log: list[str] = []
    await start_suspended(sqlite_url, 1, "old", log)
    await start_suspended(sqlite_url, 2, "new", log)
    for version, diverging in ((1, {"new"}), (2, set()), (3, {"old"})):
        registry = gf.Registry()
        checkout(registry, version, log)
        async with engine(sqlite_url, registry, worker=False) as client:
            results = await client.check()
        assert {r.run_id for r in results if not r.ok} == diverging, version
    # The old run finishes under v2; then nothing is left on the old path and v3 is safe.
    registry = gf.Registry()
    checkout(registry, 2, log)
    async with engine(sqlite_url, registry) as e:
        await e.resume("old", {})
        assert (await e.wait("old", timeout=10)).output == "email"
    registry = gf.Registry()
    checkout(registry, 3, log)
    async with engine(sqlite_url, registry) as e:
        assert all(r.ok for r in await e.check())
        await e.resume("new", {})
        assert (await e.wait("new", timeout=10)).output == "sms"
    assert log == ["charge old", "email old", "charge new", "sms new"]


async def test_a_run_that_crashed_before_recording_past_the_patch_takes_the_new_path(
    sqlite_url: str,
) -> None:
    log: list[str] = []
    registry = gf.Registry()
    checkout(registry, 1, log)
    gate = anyio.Event()

    @gf.function(registry=registry)
    async def hold() -> None:
        await gate.wait()

    @gf.workflow(name="held", registry=registry)
    async def held(wf: gf.Workflow, data: None) -> None:
        await wf.do("Charge", "charge", {"order": "h"})
        await wf.do("Hold", hold)  # in flight when the engine goes away

    e = engine(sqlite_url, registry)
    await e.__aenter__()
    try:
        run_id = await e.start("held")
        with anyio.fail_after(10):
            while not (await e.status(run_id)).steps:
                await anyio.sleep(0.01)
    finally:
        await e.aclose(grace=0)

    registry = gf.Registry()
    checkout(registry, 1, log)
    answers: list[bool] = []

    @gf.workflow(name="held", registry=registry)
    async def held_patched(wf: gf.Workflow, data: None) -> None:
        await wf.do("Charge", "charge", {"order": "h"})
        answers.append(wf.patched("no-hold"))
        answers.append(wf.patched("no-hold"))

    async with engine(sqlite_url, registry) as e:
        assert (await e.wait(run_id, timeout=10)).state == "completed"
    assert answers == [True, True]
    assert log == ["charge h"]


async def test_the_marker_survives_a_retried_step_and_a_gather(sqlite_url: str) -> None:
    attempts: Counter[str] = Counter()
    registry = gf.Registry()

    @gf.function(registry=registry)
    def flaky(name: str) -> str:
        attempts[name] += 1
        if attempts[name] == 1:
            raise RuntimeError("first attempt fails")
        return name

    answers: list[bool] = []

    @gf.workflow(name="gathered", registry=registry)
    async def gathered(wf: gf.Workflow, data: None) -> None:
        async def branch(name: str) -> None:
            await wf.do(name, flaky, {"name": name}, retries=1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(branch, "A")
            answers.append(wf.patched("p"))
            tg.start_soon(branch, "B")
        await wf.suspend("Park")
        answers.append(wf.patched("p"))

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("gathered")
        with anyio.fail_after(10):
            while (await e.status(run_id)).state != "suspended":
                await anyio.sleep(0.01)
    async with engine(sqlite_url, registry) as e:
        await e.resume(run_id, {})
        assert (await e.wait(run_id, timeout=10)).state == "completed"
    assert answers == [True, True, True]  # parked before its second call, then replayed
    assert attempts == Counter({"A": 2, "B": 2})


async def test_patch_ids_must_be_strings(memory_engine: gf.Engine) -> None:
    @gf.workflow(name="bad_patch", registry=memory_engine.registry)
    async def bad_patch(wf: gf.Workflow, data: None) -> bool:
        return wf.patched("")

    with pytest.raises(gf.RunFailed, match="PatchIdError: invalid patch id .."):
        await memory_engine.run("bad_patch")
