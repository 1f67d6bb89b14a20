"""Who holds a running run, seen from other processes: after a SIGKILL, "owner dead, recovery pending"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from typer.testing import CliRunner

import graphflow as gf
from graphflow.cli import app
from graphflow.http import create_app
from tests.flows import crash_flows  # noqa: F401  (same names as the subprocess registers)

ROOT = Path(__file__).resolve().parents[1]


def spawn_worker(url: str, tmp: Path, lease: str) -> subprocess.Popen[str]:
    """A worker process that starts ``crash_stuck`` and kills itself inside its step."""
    env = os.environ | {
        "GF_CRASH_LOG": str(tmp / "log.txt"),
        "GF_CRASH_MARKER": str(tmp / "killed"),
        "GRAPHFLOW_LEASE": lease,
        "PYTHONPATH": str(ROOT),
    }
    args = [url, "crash_stuck", "stuck-1", json.dumps({"seconds": 2.5})]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.flows.run_flow", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def poll_status(
    client: gf.Engine, run_id: str, until: Callable[[gf.RunStatus], bool]
) -> gf.RunStatus:
    with anyio.fail_after(60):
        while True:
            try:
                status = await client.status(run_id)
            except gf.RunNotFoundError:  # the worker process has not stored it yet
                status = None
            if status is not None and until(status):
                return status
            await anyio.sleep(0.05)


async def test_status_shows_the_live_owner_then_that_it_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'owner.db'}"
    proc = spawn_worker(url, tmp_path, lease="0.6s")
    try:
        async with gf.Engine(url, worker=False) as client:
            alive = await poll_status(client, "stuck-1", lambda s: bool(s.steps))
            assert alive.state == "running"
            assert alive.owner is not None and alive.owner.alive
            assert (alive.owner.host, alive.owner.pid) == (socket.gethostname(), proc.pid)
            assert alive.owner.lease_expires_at is not None and alive.owner.heartbeat_at is not None
            (slow,) = alive.steps
            assert (slow.state, slow.owner_id) == ("running", alive.owner.owner_id)
            assert "lease until" in alive.owner.summary

            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
            dead = await poll_status(
                client, "stuck-1", lambda s: s.owner is not None and not s.owner.alive
            )
        assert dead.state == "running"
        assert dead.owner is not None and dead.owner.pid == proc.pid
        assert dead.owner.summary.startswith("owner dead, recovery pending")
        assert [(x.name, x.state) for x in dead.steps] == [("slow", "running")]
    finally:
        if proc.poll() is None:
            proc.kill()

    args = ["status", "stuck-1", "--store", url]
    shown = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, args))
    assert shown.exit_code == 0, shown.output
    assert "owner dead, recovery pending" in " ".join(shown.output.split())

    async with gf.Engine(url, worker=False) as client:
        transport = httpx.ASGITransport(app=create_app(client, ui=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            body = (await http.get("/runs/stuck-1")).json()
            page = (await http.get("/ui/runs/stuck-1")).text
    assert body["owner"]["alive"] is False and body["owner"]["pid"] == proc.pid
    assert "owner dead, recovery pending" in page

    monkeypatch.setenv("GF_CRASH_LOG", str(tmp_path / "log.txt"))
    monkeypatch.setenv("GF_CRASH_MARKER", str(tmp_path / "killed"))
    async with gf.Engine(url, poll_interval=0.05) as worker:  # recovers the run
        done = await worker.wait("stuck-1", timeout=60)
    assert (done.state, done.output, done.owner) == ("completed", "done", None)


async def test_a_run_held_here_shows_this_engine_alive(sqlite_url: str) -> None:
    registry = gf.Registry()
    release = anyio.Event()

    @gf.workflow(registry=registry)
    async def held(wf: gf.Workflow, data: None) -> int:
        await wf.do("wait", release.wait)
        return 1

    async with gf.Engine(sqlite_url, registry=registry) as engine:
        run_id = await engine.start("held", None)
        status = await poll_status(engine, run_id, lambda s: s.owner is not None)
        assert status.owner is not None and status.owner.alive
        assert (status.owner.owner_id, status.owner.pid) == (engine.owner_id, os.getpid())
        release.set()
        done = await engine.wait(run_id, timeout=30)
    assert done.owner is None
