"""Replay in one process: an engine closes mid-run, another engine on the same store finishes."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphflow as gf
from graphflow.store import open_store
from graphflow.store.base import OwnerRecord, RunRecord


class Profile(BaseModel):
    email: str
    created: datetime


async def run_until_blocked(url: str, registry: gf.Registry, workflow: str) -> str:
    """Start ``workflow``, let it reach its blocking step, then close the engine (0 s grace)."""
    engine = gf.Engine(url, registry=registry, poll_interval=0.05)
    async with engine:
        run_id = await engine.start(workflow)
        with anyio.fail_after(10):
            while engine.stats().executing_steps == 0:
                await anyio.sleep(0.01)
        await engine.aclose(grace=0)
    return run_id


async def test_typed_results_and_now_are_identical_on_replay(
    sqlite_url: str, registry: gf.Registry
) -> None:
    seen: list[dict[str, Any]] = []
    calls: list[str] = []
    release = anyio.Event()

    @gf.function(registry=registry)
    async def make_profile() -> Profile:
        calls.append("make_profile")
        return Profile(email="a@b.c", created=datetime(2026, 1, 2, 3, 4, 5))

    @gf.function(registry=registry)
    async def block() -> str:
        calls.append("block")
        if not release.is_set():
            await anyio.sleep(3600)
        return "released"

    @gf.workflow(registry=registry)
    async def replayed(wf: gf.Workflow, data: None) -> str:
        start = wf.now()
        profile = await wf.do("profile", make_profile)
        seen.append({"profile": profile, "start": start, "after": wf.now()})
        return await wf.do("block", block)

    run_id = await run_until_blocked(sqlite_url, registry, "replayed")
    release.set()
    async with gf.Engine(sqlite_url, registry=registry, poll_interval=0.05) as engine:
        status = await engine.wait(run_id, timeout=10)
    assert status.output == "released"
    assert calls == ["make_profile", "block", "block"]
    first, replay = seen
    assert isinstance(replay["profile"], Profile)
    assert first == replay


async def test_changed_code_is_a_non_determinism_error(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def hang() -> None:
        await anyio.sleep(3600)

    @gf.function(registry=registry)
    async def other() -> None:
        return None

    @gf.workflow(registry=registry, name="evolving")
    async def v1(wf: gf.Workflow, data: None) -> None:
        await wf.do("first", lambda: 1)
        await wf.do("second", hang)

    run_id = await run_until_blocked(sqlite_url, registry, "evolving")

    changed = gf.Registry()
    changed.add_function(registry.get_function("other"))

    @gf.workflow(registry=changed, name="evolving")
    async def v2(wf: gf.Workflow, data: None) -> None:
        await wf.do("first", "other")

    async with gf.Engine(sqlite_url, registry=changed, poll_interval=0.05) as engine:
        status = await engine.wait(run_id, timeout=10)
    assert status.state == "failed"
    assert status.error is not None and status.error.type == "NonDeterminismError"
    assert "'first'" in status.error.message
    assert "inline step" in status.error.message and "'other'" in status.error.message
    assert [s.name for s in status.steps] == ["first"]  # its steps are kept


async def test_run_recovered_too_often_fails_instead_of_looping(
    tmp_path: Path, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def crashy(wf: gf.Workflow, data: None) -> int:
        return 1

    url = f"sqlite:///{tmp_path / 'loop.db'}"
    store = open_store(url)
    await store.open()
    dead_pid = 2**22 + 12345  # above pid_max on this machine: never alive
    await store.register_owner(
        OwnerRecord(owner_id="ghost", host=socket.gethostname(), pid=dead_pid, started_at=0.0)
    )
    now = time.time()
    await store.create_run(
        RunRecord(
            run_id="looping", workflow="crashy", state="running", input="null",
            created_at=now, updated_at=now, owner_id="ghost", lease_epoch=3,
            lease_expires_at=now + 3600, recoveries=2,
        )
    )  # fmt: skip
    await store.aclose()
    async with gf.Engine(url, registry=registry, max_recoveries=2) as engine:
        status = await engine.wait("looping", timeout=10)
    assert status.state == "failed"
    assert status.error is not None and "recovered 3 times" in status.error.message
    assert "max_recoveries=2" in status.error.message
    assert os.getpid() != dead_pid


async def test_status_shows_a_running_step_live(sqlite_url: str, registry: gf.Registry) -> None:
    release = anyio.Event()

    @gf.function(registry=registry)
    async def waits() -> str:
        await release.wait()
        return "ok"

    @gf.workflow(registry=registry)
    async def live(wf: gf.Workflow, data: None) -> str:
        await wf.do("quick", lambda: 1)
        return await wf.do("waits", waits)

    async with gf.Engine(sqlite_url, registry=registry) as engine:
        run_id = await engine.start("live")
        with anyio.fail_after(10):
            while engine.stats().executing_steps == 0:
                await anyio.sleep(0.01)
        status = await engine.status(run_id)
        assert status.state == "running"
        assert [(s.name, s.state, s.attempts) for s in status.steps] == [
            ("quick", "completed", 1),
            ("waits", "running", 1),
        ]
        release.set()
        assert (await engine.wait(run_id, timeout=10)).output == "ok"


async def test_schema_version_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with gf.Engine(url, worker=False):
        pass
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("UPDATE gf_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(gf.SchemaVersionError, match="schema version 999, newer"):
        async with gf.Engine(url, worker=False):
            pass


async def test_many_engines_create_the_schema_at_once(server_url: str) -> None:
    async def open_one() -> None:
        async with gf.Engine(server_url, worker=False):
            pass

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(open_one)
