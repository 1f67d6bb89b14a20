"""``engine.fork`` and ``graphflow fork``: re-run a run from a step, copying what came before."""

from __future__ import annotations

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


class Pipeline:
    """A three-step imperative workflow whose last step is broken until ``fixed``."""

    def __init__(self, registry: gf.Registry) -> None:
        self.calls: Counter[str] = Counter()
        self.fixed = False

        @gf.function(registry=registry)
        def extract(source: str) -> list[int]:
            self.calls["extract"] += 1
            return [1, 2, 3]

        @gf.function(registry=registry)
        def transform(rows: list[int]) -> list[int]:
            self.calls["transform"] += 1
            return [row * 10 for row in rows]

        @gf.function(registry=registry)
        def load(rows: list[int]) -> int:
            self.calls["load"] += 1
            if not self.fixed:
                raise RuntimeError("bug in load")
            return sum(rows)

        @gf.workflow(name="etl", registry=registry)
        async def etl(wf: gf.Workflow, data: dict[str, str]) -> int:
            rows = await wf.do("Extract", extract, {"source": data["source"]})
            rows = await wf.do("Transform", transform, {"rows": rows})
            return await wf.do("Load", load, {"rows": rows})


async def test_a_failed_run_is_repaired_after_a_fix(sqlite_url: str) -> None:
    registry = gf.Registry()
    etl = Pipeline(registry)
    async with engine(sqlite_url, registry) as e:
        failed = await e.start("etl", {"source": "s3://bucket"})
        assert (await e.wait(failed, timeout=10)).state == "failed"
        etl.fixed = True
        forked = await e.fork(failed, from_step="Load")
        status = await e.wait(forked, timeout=10)
    assert status.state == "completed" and status.output == 60
    assert status.forked_from == failed and status.input == {"source": "s3://bucket"}
    assert [(s.name, s.state) for s in status.steps] == [
        ("Extract", "completed"),
        ("Transform", "completed"),
        ("Load", "completed"),
    ]
    # Copied steps never ran again: only Load ran twice (failed, then repaired).
    assert etl.calls == Counter({"extract": 1, "transform": 1, "load": 2})


async def test_fork_from_a_middle_step_runs_it_and_what_follows(sqlite_url: str) -> None:
    registry = gf.Registry()
    etl = Pipeline(registry)
    etl.fixed = True
    async with engine(sqlite_url, registry) as e:
        original = await e.start("etl", {"source": "a"})
        await e.wait(original, timeout=10)
        forked = await e.fork(original, from_step="Transform", input={"source": "b"})
        status = await e.wait(forked, timeout=10)
        assert (await e.status(original)).forked_from is None
    assert status.state == "completed" and status.input == {"source": "b"}
    assert etl.calls == Counter({"extract": 1, "transform": 2, "load": 2})


async def test_an_unknown_step_is_an_error_listing_the_runs_steps(sqlite_url: str) -> None:
    registry = gf.Registry()
    Pipeline(registry)
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("etl", {"source": "a"})
        await e.wait(run_id, timeout=10)
        with pytest.raises(gf.StepNotFoundError) as caught:
            await e.fork(run_id, from_step="Lode")
        with pytest.raises(gf.RunNotFoundError):
            await e.fork("missing", from_step="Load")
        with pytest.raises(gf.InputValidationError):
            await e.fork(run_id, from_step="Load", input=["not", "a", "dict"])
    message = str(caught.value)
    assert "'Lode'" in message and "'Extract', 'Transform', 'Load'" in message
    assert isinstance(caught.value, LookupError)


async def test_a_running_run_is_forked_with_what_it_has_completed(sqlite_url: str) -> None:
    registry = gf.Registry()
    calls: Counter[str] = Counter()
    gate = anyio.Event()

    @gf.function(registry=registry)
    def first() -> str:
        calls["first"] += 1
        return "one"

    @gf.function(registry=registry)
    async def second() -> str:
        calls["second"] += 1
        await gate.wait()
        return "two"

    @gf.workflow(name="slow", registry=registry)
    async def slow(wf: gf.Workflow, data: None) -> list[str]:
        return [await wf.do("First", first), await wf.do("Second", second)]

    async with engine(sqlite_url, registry) as e:
        original = await e.start("slow")
        with anyio.fail_after(10):
            while calls["second"] == 0:
                await anyio.sleep(0.01)
        forked = await e.fork(original, from_step="Second")
        with anyio.fail_after(10):
            while calls["second"] < 2:
                await anyio.sleep(0.01)
        gate.set()
        assert (await e.wait(forked, timeout=10)).output == ["one", "two"]
        assert (await e.wait(original, timeout=10)).output == ["one", "two"]
    assert calls == Counter({"first": 1, "second": 2})


def diamond(registry: gf.Registry, calls: Counter[str], broken: set[str]) -> None:
    """a -> [b, c] -> d (d gets both outputs)."""

    def node(name: str) -> None:
        def fn(**data: Any) -> dict[str, str]:
            calls[name] += 1
            if name in broken:
                raise RuntimeError(f"{name} is broken")
            return {"node": name}

        fn.__name__ = fn.__qualname__ = f"node_{name}"
        gf.function(name=f"node_{name}", registry=registry)(fn)

    for name in "abcd":
        node(name)
    gf.workflow_graph(
        name="diamond",
        nodes={name: f"node_{name}" for name in "abcd"},
        config={"a": {"next": ["b", "c"]}, "b": {"next": "d"}, "c": {"next": "d"}},
        registry=registry,
    )


async def test_a_graph_fork_copies_every_node_that_is_not_a_descendant(sqlite_url: str) -> None:
    registry = gf.Registry()
    calls: Counter[str] = Counter()
    broken = {"d"}
    diamond(registry, calls, broken)
    async with engine(sqlite_url, registry) as e:
        failed = await e.start("diamond", {})
        assert (await e.wait(failed, timeout=10)).state == "failed"
        broken.clear()
        forked = await e.fork(failed, from_step="c")
        status = await e.wait(forked, timeout=10)
        with pytest.raises(gf.StepNotFoundError, match="'a', 'b', 'c', 'd'"):
            await e.fork(failed, from_step="e")
    assert status.state == "completed" and status.output == {"d": {"node": "d"}}
    assert status.forked_from == failed
    assert calls == Counter({"a": 1, "b": 1, "c": 2, "d": 2})


async def test_fork_on_postgres(pg_url: str) -> None:
    registry = gf.Registry()
    etl = Pipeline(registry)
    async with engine(pg_url, registry) as e:
        failed = await e.start("etl", {"source": "s"})
        await e.wait(failed, timeout=10)
        etl.fixed = True
        forked = await e.fork(failed, from_step="Load")
        assert (await e.wait(forked, timeout=10)).output == 60
    assert etl.calls == Counter({"extract": 1, "transform": 1, "load": 2})


FLOWS = """
import graphflow as gf

@gf.function
def cli_fork_step(n: int) -> int:
    return n + 1

@gf.workflow
async def cli_fork(wf: gf.Workflow, data: dict) -> int:
    first = await wf.do("First", cli_fork_step, {"n": data["n"]})
    return await wf.do("Second", cli_fork_step, {"n": first})
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
def test_cli_fork_prints_the_new_run_id(tmp_path: Path) -> None:
    flows = tmp_path / "fork_flows.py"
    flows.write_text(FLOWS)
    store = f"sqlite:///{tmp_path / 'fork.db'}"
    ran = cli(
        "run", str(flows), "cli_fork", "--input", '{"n": 1}', "--run-id", "r1", "--store", store
    )
    assert ran.returncode == 0, ran.stderr
    forked = cli(
        "fork",
        "r1",
        "--from",
        "Second",
        "--input",
        '{"n": 5}',
        "--store",
        store,
        "--target",
        str(flows),
    )
    assert forked.returncode == 0, forked.stderr
    new_run = forked.stdout.strip()
    assert new_run and new_run != "r1"
    unknown = cli("fork", "r1", "--from", "Third", "--store", store)
    assert unknown.returncode == 1 and "'First', 'Second'" in unknown.stderr
    status = cli("status", new_run, "--json", "--store", store)
    assert '"forked_from": "r1"' in status.stdout and '"state": "pending"' in status.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
async def test_a_version_2_database_is_migrated_and_forks(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tests.flows.old_schemas import make_version

    path = tmp_path / "v2.db" if backend == "sqlite" else None
    servers = {"postgres": "pg_url", "mariadb": "mysql_url"}
    url = f"sqlite:///{path}" if path else request.getfixturevalue(servers[backend])
    async with gf.Engine(url, worker=False):
        pass
    make_version(2, url, path)
    registry = gf.Registry()
    etl = Pipeline(registry)
    async with engine(url, registry) as e:
        failed = await e.start("etl", {"source": "s"})
        await e.wait(failed, timeout=10)
        etl.fixed = True
        forked = await e.wait(await e.fork(failed, from_step="Load"), timeout=10)
        assert forked.output == 60 and forked.forked_from == failed
        assert await e.prune(older_than=0) == 2


async def test_a_graph_fork_inside_a_loop_runs_the_later_passes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.flows import graph_flows  # noqa: F401  (registers loop_article)
    from tests.test_crash import executions

    monkeypatch.setenv("GF_CRASH_LOG", str(tmp_path / "log.txt"))
    async with gf.Engine(f"sqlite:///{tmp_path / 'loop.db'}") as e:
        original = await e.start("loop_article", {"topic": "t", "needed": 2})
        assert (await e.wait(original, timeout=30)).state == "completed"
        after_loop = await e.wait(await e.fork(original, from_step="publish"), timeout=30)
        in_loop = await e.wait(await e.fork(original, from_step="review"), timeout=30)
    assert after_loop.output == in_loop.output == {"publish": "published: t v2"}
    assert [s.name for s in in_loop.steps] == ["draft", "review", "draft#2", "review#2", "publish"]
    assert executions(tmp_path) == Counter(
        {"draft 1": 1, "review 1": 2, "draft 2": 2, "review 2": 2, "publish": 3}
    )
