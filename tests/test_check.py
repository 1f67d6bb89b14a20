"""``engine.check`` and ``graphflow check``: stored runs replayed against changed code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import graphflow as gf

ROOT = Path(__file__).resolve().parents[1]

Version = Callable[[gf.Registry], None]


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


def functions(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def create_profile(email: str) -> str:
        return f"profile:{email}"

    @gf.function(registry=registry)
    def send_email(to: str) -> str:
        return f"email:{to}"

    @gf.function(registry=registry)
    def send_sms(to: str) -> str:
        return f"sms:{to}"


def original(registry: gf.Registry) -> None:
    functions(registry)

    @gf.workflow(name="signup", registry=registry)
    async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
        await wf.do("Create profile", "create_profile", {"email": data["email"]})
        await wf.do("Send email", "send_email", {"to": data["email"]})
        await wf.suspend("Approval")
        return "done"


def renamed(registry: gf.Registry) -> None:
    functions(registry)

    @gf.workflow(name="signup", registry=registry)
    async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
        await wf.do("Create profile", "create_profile", {"email": data["email"]})
        await wf.do("Send welcome email", "send_email", {"to": data["email"]})
        await wf.suspend("Approval")
        return "done"


def other_function(registry: gf.Registry) -> None:
    functions(registry)

    @gf.workflow(name="signup", registry=registry)
    async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
        await wf.do("Create profile", "create_profile", {"email": data["email"]})
        await wf.do("Send email", "send_sms", {"to": data["email"]})
        await wf.suspend("Approval")
        return "done"


def removed(registry: gf.Registry) -> None:
    functions(registry)

    @gf.workflow(name="signup", registry=registry)
    async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
        await wf.do("Create profile", "create_profile", {"email": data["email"]})
        await wf.suspend("Approval")
        return "done"


def added_at_the_end(registry: gf.Registry) -> None:
    functions(registry)

    @gf.workflow(name="signup", registry=registry)
    async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
        await wf.do("Create profile", "create_profile", {"email": data["email"]})
        await wf.do("Send email", "send_email", {"to": data["email"]})
        await wf.suspend("Approval")
        await wf.do("Send SMS", "send_sms", {"to": data["email"]})
        return "done"


async def suspended_runs(url: str, count: int = 2) -> list[str]:
    """Runs of the original ``signup``, each parked at its suspend."""
    registry = gf.Registry()
    original(registry)
    async with engine(url, registry) as e:
        run_ids = [await e.start("signup", {"email": f"u{i}@x.io"}) for i in range(count)]
        with anyio.fail_after(10):
            for run_id in run_ids:
                while (await e.status(run_id)).state != "suspended":
                    await anyio.sleep(0.01)
    return run_ids


async def check_with(url: str, version: Version, **options: Any) -> list[gf.CheckResult]:
    registry = gf.Registry()
    version(registry)
    async with engine(url, registry, worker=False) as client:
        return await client.check(**options)


async def test_unchanged_code_passes(sqlite_url: str) -> None:
    run_ids = await suspended_runs(sqlite_url)
    results = await check_with(sqlite_url, original)
    assert sorted(r.run_id for r in results) == sorted(run_ids)
    assert all(r.ok and r.step is None for r in results)
    assert str(results[0]).endswith(": ok")


async def test_a_step_added_after_the_recorded_ones_passes(sqlite_url: str) -> None:
    await suspended_runs(sqlite_url)
    assert all(r.ok for r in await check_with(sqlite_url, added_at_the_end))


async def test_a_renamed_step_diverges_at_the_recorded_name(sqlite_url: str) -> None:
    run_ids = await suspended_runs(sqlite_url)
    results = await check_with(sqlite_url, renamed)
    assert {r.run_id for r in results} == set(run_ids)
    for result in results:
        assert not result.ok
        assert result.step == "Send email"
        assert result.recorded == "rpc step of 'send_email'"
        assert (
            result.now == "issues step 'Send welcome email' (rpc step of 'send_email') in its place"
        )
        assert "'Send email'" in str(result) and result.run_id in str(result)


async def test_a_changed_function_diverges(sqlite_url: str) -> None:
    await suspended_runs(sqlite_url, count=1)
    (result,) = await check_with(sqlite_url, other_function)
    assert not result.ok and result.step == "Send email"
    assert result.recorded == "rpc step of 'send_email'"
    assert result.now == "calls rpc step of 'send_sms'"


async def test_a_removed_step_diverges(sqlite_url: str) -> None:
    await suspended_runs(sqlite_url, count=1)
    (result,) = await check_with(sqlite_url, removed)
    assert not result.ok and result.step == "Send email"
    assert result.now == "no longer issues it"


async def test_check_executes_nothing_and_writes_nothing(sqlite_url: str) -> None:
    calls: list[str] = []

    def counted(registry: gf.Registry) -> None:
        @gf.function(registry=registry)
        def create_profile(email: str) -> str:
            calls.append(email)
            return email

        @gf.function(registry=registry)
        def send_email(to: str) -> str:
            calls.append(to)
            return to

        @gf.workflow(name="signup", registry=registry)
        async def signup(wf: gf.Workflow, data: dict[str, str]) -> str:
            await wf.do("Create profile", "create_profile", {"email": data["email"]})
            await wf.do("Send email", "send_email", {"to": data["email"]})
            await wf.sleep("Cool down", "1h")  # parks
            await wf.do("New step", lambda: calls.append("inline"))
            return "done"

    registry = gf.Registry()
    counted(registry)
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("signup", {"email": "a@x.io"})
        with anyio.fail_after(10):
            while (await e.status(run_id)).state != "sleeping":
                await anyio.sleep(0.01)
        before = await e.status(run_id)
    calls.clear()
    (result,) = await check_with(sqlite_url, counted)
    assert result.ok and calls == []
    async with engine(sqlite_url, registry, worker=False) as client:
        assert await client.status(run_id) == before


async def test_a_gather_checks_every_branch(sqlite_url: str) -> None:
    def fan(second: str) -> Version:
        def version(registry: gf.Registry) -> None:
            functions(registry)

            @gf.workflow(name="fan", registry=registry)
            async def fan_out(wf: gf.Workflow, data: None) -> None:
                async def branch(name: str, then: str) -> None:
                    await wf.do(name, "send_email", {"to": name})
                    await wf.suspend(then)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(branch, "One", "Wait one")
                    tg.start_soon(branch, second, "Wait two")

        return version

    registry = gf.Registry()
    fan("Two")(registry)
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("fan")
        with anyio.fail_after(10):
            while (await e.status(run_id)).state != "suspended":
                await anyio.sleep(0.01)
    assert all(r.ok for r in await check_with(sqlite_url, fan("Two")))
    (result,) = await check_with(sqlite_url, fan("Deux"))
    assert not result.ok and result.step == "Two" and "'Deux'" in (result.now or "")


def graph_version(registry: gf.Registry, *, gate: anyio.Event | None, extra: bool) -> None:
    @gf.function(registry=registry)
    def fetch(n: int) -> dict[str, int]:
        return {"n": n}

    @gf.function(registry=registry)
    async def slow(n: int) -> int:
        if gate is not None:
            await gate.wait()
        return n

    @gf.function(registry=registry)
    def report(n: int) -> int:
        return n

    nodes: dict[str, str] = {"fetch": "fetch", "slow": "slow"}
    config: dict[str, dict[str, Any]] = {"fetch": {"next": "slow"}}
    if extra:
        nodes["report"] = "report"
        config["slow"] = {"next": "report"}
    gf.workflow_graph(name="pipeline", nodes=nodes, config=config, registry=registry)


async def test_a_graph_changed_under_a_graph_run_diverges(sqlite_url: str) -> None:
    registry = gf.Registry()
    graph_version(registry, gate=anyio.Event(), extra=False)
    e = engine(sqlite_url, registry)
    await e.__aenter__()
    try:
        run_id = await e.start("pipeline", {"n": 1})
        with anyio.fail_after(10):
            while not any(s.name == "fetch" for s in (await e.status(run_id)).steps):
                await anyio.sleep(0.01)
    finally:
        await e.aclose(grace=0)  # leaves the run in flight at node "slow"

    def same(registry: gf.Registry) -> None:
        graph_version(registry, gate=None, extra=False)

    def grown(registry: gf.Registry) -> None:
        graph_version(registry, gate=None, extra=True)

    (result,) = await check_with(sqlite_url, same)
    assert result.ok and result.run_id == run_id
    (result,) = await check_with(sqlite_url, grown)
    assert not result.ok and result.step == "(graph)"
    assert result.recorded is not None and result.recorded.startswith("graph ")


async def test_an_unregistered_workflow_diverges(sqlite_url: str) -> None:
    await suspended_runs(sqlite_url, count=1)
    (result,) = await check_with(sqlite_url, functions)
    assert not result.ok and result.step is None
    assert "workflow 'signup'" in str(result)


async def test_states_and_workflow_select_the_runs(sqlite_url: str) -> None:
    run_ids = await suspended_runs(sqlite_url, count=2)
    registry = gf.Registry()
    original(registry)
    async with engine(sqlite_url, registry) as e:
        await e.resume(run_ids[0], {})
        await e.wait(run_ids[0], timeout=10)
    assert [r.run_id for r in await check_with(sqlite_url, renamed)] == [run_ids[1]]
    completed = await check_with(sqlite_url, renamed, states=("completed",))
    assert [(r.run_id, r.ok, r.step) for r in completed] == [(run_ids[0], False, "Send email")]
    assert await check_with(sqlite_url, renamed, workflow="other") == []


async def test_check_on_postgres(pg_url: str) -> None:
    await suspended_runs(pg_url, count=1)
    (result,) = await check_with(pg_url, renamed)
    assert not result.ok and result.step == "Send email"


FLOWS = """
import graphflow as gf


@gf.function
def create_profile(email: str) -> str:
    return email


@gf.function
def send_email(to: str) -> str:
    return to


@gf.workflow(name="signup")
async def signup(wf: gf.Workflow, data: dict) -> str:
    await wf.do("Create profile", "create_profile", {"email": data["email"]})
    await wf.do("STEP", "send_email", {"to": data["email"]})
    await wf.suspend("Approval")
    return "done"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphflow", *args],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
async def test_cli_check_exits_1_when_a_run_diverges(tmp_path: Path, sqlite_url: str) -> None:
    run_ids = await suspended_runs(sqlite_url, count=2)
    flows = tmp_path / "deployed.py"
    flows.write_text(FLOWS.replace("STEP", "Send email"))
    passing = cli("check", str(flows), "--store", sqlite_url)
    assert passing.returncode == 0, passing.stderr
    assert "2 runs checked, none diverges" in passing.stderr

    flows.write_text(FLOWS.replace("STEP", "Send the email"))
    failing = cli("check", str(flows), "--store", sqlite_url)
    assert failing.returncode == 1, failing.stderr
    lines = failing.stdout.strip().splitlines()
    assert len(lines) == 2 and all("'Send email'" in line for line in lines)
    assert {line.split()[1] for line in lines} == set(run_ids)
    assert "2 of 2 runs checked diverge" in failing.stderr

    as_json = cli("check", str(flows), "--store", sqlite_url, "--json")
    assert as_json.returncode == 1
    assert {r["step"] for r in json.loads(as_json.stdout)} == {"Send email"}
