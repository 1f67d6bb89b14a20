"""``engine.prune``, ``graphflow prune`` and ``@gf.workflow(retention=...)``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import graphflow as gf
from graphflow.testing import VirtualClock

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400.0


def engine(url: str, registry: gf.Registry, clock: VirtualClock, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, clock=clock, poll_interval=0.05, **options)


def workflows(registry: gf.Registry) -> None:
    @gf.workflow(name="ok", registry=registry)
    async def ok(wf: gf.Workflow, data: int) -> int:
        return await wf.do("Double", lambda: data * 2)

    @gf.workflow(name="boom", registry=registry)
    async def boom(wf: gf.Workflow, data: None) -> None:
        await wf.do("Explode", lambda: 1 / 0)

    @gf.workflow(name="other", registry=registry)
    async def other(wf: gf.Workflow, data: None) -> str:
        return await wf.do("Step", lambda: "kept")

    @gf.workflow(name="child", registry=registry)
    async def child(wf: gf.Workflow, data: None) -> str:
        return await wf.do("Work", lambda: "done")

    @gf.workflow(name="parent", registry=registry)
    async def parent(wf: gf.Workflow, data: None) -> str:
        result = await wf.do("Child", "child")
        await wf.suspend("Approve")
        return str(result)


async def run_ids(e: gf.Engine) -> set[str]:
    return {run.run_id for run in await e.list_runs(limit=1000)}


async def finished(e: gf.Engine, workflow: str, data: Any = None) -> str:
    run_id = await e.start(workflow, data)
    await e.wait(run_id, timeout=10)
    return run_id


async def test_prune_by_age_state_and_workflow_touches_nothing_else(sqlite_url: str) -> None:
    registry = gf.Registry()
    workflows(registry)
    clock = VirtualClock()
    async with engine(sqlite_url, registry, clock) as e:
        old_ok = [await finished(e, "ok", i) for i in range(3)]
        old_failed = await finished(e, "boom")
        old_other = await finished(e, "other")
        clock.advance(10 * DAY)
        young = await finished(e, "ok", 9)
        kept = {run_id: await e.status(run_id) for run_id in (young, old_other, old_failed)}

        assert (
            await e.prune(older_than="7d", states=("completed",), workflow="ok", dry_run=True) == 3
        )
        assert await run_ids(e) == {*old_ok, old_failed, old_other, young}
        assert await e.prune(older_than="7d", states=("completed",), workflow="ok") == 3
        assert await run_ids(e) == {old_failed, old_other, young}
        for run_id, status in kept.items():
            assert await e.status(run_id) == status  # steps and all
        with pytest.raises(gf.RunNotFoundError):
            await e.status(old_ok[0])

        assert await e.prune(older_than="7d", states=("failed",)) == 1
        assert await e.prune(older_than="7d") == 1  # the "other" run
        assert await e.prune(older_than="7d") == 0
        assert await run_ids(e) == {young}
        assert await e.prune(older_than="1d", states=["completed"]) == 0


async def test_prune_refuses_unfinished_states(memory_engine: gf.Engine) -> None:
    with pytest.raises(gf.GraphflowError, match="only finished runs"):
        await memory_engine.prune(older_than="1d", states=("running",))
    with pytest.raises(gf.DurationError):
        await memory_engine.prune(older_than="a while")


async def test_children_are_kept_with_unfinished_parents_and_pruned_with_finished_ones(
    sqlite_url: str,
) -> None:
    registry = gf.Registry()
    workflows(registry)
    clock = VirtualClock()
    async with engine(sqlite_url, registry, clock) as e:
        parent = await e.start("parent")
        with anyio.fail_after(10):
            while (await e.status(parent)).state != "suspended":
                await anyio.sleep(0.01)
        (child,) = [r.run_id for r in await e.list_runs(workflow="child")]
        clock.advance(30 * DAY)
        assert (await e.status(child)).state == "completed"
        assert await e.prune(older_than="1d") == 0  # the child's parent is unfinished
        await e.resume(parent, {})
        await e.wait(parent, timeout=10)
        clock.advance(30 * DAY)
        assert await e.prune(older_than="1d", dry_run=True) == 2
        assert await e.prune(older_than="1d") == 2  # the parent and its child
        assert await run_ids(e) == set()


async def test_background_retention_prunes_on_the_engine_clock(sqlite_url: str) -> None:
    registry = gf.Registry()
    workflows(registry)

    @gf.workflow(name="short_lived", registry=registry, retention="7d")
    async def short_lived(wf: gf.Workflow, data: None) -> str:
        return await wf.do("Step", lambda: "gone soon")

    clock = VirtualClock()
    async with engine(sqlite_url, registry, clock) as e:
        doomed = await finished(e, "short_lived")
        kept = await finished(e, "ok", 1)  # no retention: kept forever
        clock.advance(6 * DAY)
        fresh = await finished(e, "short_lived")
        await anyio.sleep(0.2)  # a retention pass ran: nothing is 7 days old yet
        assert await run_ids(e) == {doomed, kept, fresh}
        clock.advance(2 * DAY)
        with anyio.fail_after(10):
            while doomed in await run_ids(e):
                await anyio.sleep(0.01)
        assert await run_ids(e) == {kept, fresh}


async def test_prune_on_postgres(pg_url: str) -> None:
    registry = gf.Registry()
    workflows(registry)
    clock = VirtualClock()
    async with engine(pg_url, registry, clock) as e:
        old = [await finished(e, "ok", i) for i in range(3)]
        clock.advance(2 * DAY)
        young = await finished(e, "ok", 4)
        assert await e.prune(older_than="1d") == 3
        assert await run_ids(e) == {young}
        assert old


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
async def test_cli_prune_dry_run_counts_then_deletes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    registry = gf.Registry()
    workflows(registry)
    clock = VirtualClock(start=1_000_000.0)  # long ago
    async with engine(url, registry, clock) as e:
        for i in range(4):
            await finished(e, "ok", i)
    dry = cli("prune", "--older-than", "30d", "--dry-run", "--store", url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "4" and "would delete 4 runs" in dry.stderr
    done = cli("prune", "--older-than", "30d", "--state", "completed", "--store", url)
    assert done.returncode == 0 and done.stdout.strip() == "4"
    again = cli("prune", "--older-than", "30d", "--store", url)
    assert again.stdout.strip() == "0"
    bad = cli("prune", "--older-than", "30d", "--state", "running", "--store", url)
    assert bad.returncode == 1 and "not a finished state" in bad.stderr
