"""Store faults on real SQLite files: a lock held by another process, a full disk, a lost file.

A fault that passes never fails a run (it is replayed once the store is back), the event loop keeps
running while another process holds the write lock, and a lost file stops the engine clearly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import graphflow as gf

_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


class LockHolder:
    """Another process holding the SQLite write lock (``BEGIN IMMEDIATE``) until released."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
        assert self.process.wait(timeout=30) == 0


def blocked_workflow(registry: gf.Registry, gate: anyio.Event) -> None:
    @gf.function(registry=registry)
    async def blocked(n: int) -> int:
        await gate.wait()
        return n * 10

    @gf.workflow(registry=registry)
    async def waits_on_gate(wf: gf.Workflow, n: int) -> int:
        first = await wf.do("first", "blocked", {"n": n})
        second = await wf.do("second", lambda: first + 1)
        return int(second)


async def wait_for(predicate: object, what: str) -> None:
    """Yield to the loop until ``predicate()`` holds (counts turns, never measures time)."""
    assert callable(predicate)
    with anyio.fail_after(60):
        while not predicate():
            await anyio.sleep(0.01)


# --- defect 1a and 4: another process holds the write lock ---------------------------------------


async def test_loop_keeps_running_while_another_process_holds_the_write_lock(
    tmp_path: Path, registry: gf.Registry
) -> None:
    path = tmp_path / "locked.db"
    gate = anyio.Event()
    blocked_workflow(registry, gate)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.001)
            ticks += 1

    async with gf.Engine(f"sqlite:///{path}", registry=registry, poll_interval=0.05) as engine:
        run_id = await engine.start("waits_on_gate", 4)
        holder = LockHolder(path)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                gate.set()  # the step ends: storing it waits for the lock
                before = ticks
                await wait_for(lambda: ticks >= before + 200, "200 ticks during the lock")
                status = await engine.status(run_id)  # reads go on too (WAL)
                assert status.state == "running"
                assert [s.state for s in status.steps if s.name == "first"] != ["completed"]
                tg.cancel_scope.cancel()
        finally:
            holder.release()
        assert await engine.run("waits_on_gate", 5) == 51
        final = await engine.wait(run_id, timeout=60)
    assert final.state == "completed" and final.output == 41


async def test_lock_held_longer_than_busy_timeout_delays_the_run_but_never_fails_it(
    tmp_path: Path, registry: gf.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="graphflow")
    path = tmp_path / "locked.db"
    gate = anyio.Event()
    blocked_workflow(registry, gate)
    url = f"sqlite:///{path}?busy_timeout=0.2"
    async with gf.Engine(url, registry=registry, poll_interval=0.05, lease=2) as engine:
        run_id = await engine.start("waits_on_gate", 4)
        holder = LockHolder(path)
        try:
            gate.set()

            def faults() -> list[str]:
                return [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]

            await wait_for(lambda: len(faults()) >= 3, "three store faults, retried")
            assert "database is locked by another process" in faults()[0]
            assert (await engine.status(run_id)).state == "running"
        finally:
            holder.release()
        final = await engine.wait(run_id, timeout=60)
    assert final.state == "completed", final.error
    assert final.output == 41


# --- defect 1b: the disk fills up ----------------------------------------------------------------


class TinyDisk:
    """A 3 MiB tmpfs where the sandbox allows mounting one; else ``None`` (see ``full_store``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"

    @classmethod
    def mount(cls, where: Path) -> TinyDisk | None:
        where.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        )
        return cls(where) if mounted.returncode == 0 else None

    def fill(self) -> None:
        with open(self.ballast, "ab", buffering=0) as ballast:
            try:
                while True:
                    ballast.write(b"\0" * 65536)
            except OSError:
                pass

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk | None]:
    disk = TinyDisk.mount(tmp_path / "tiny")
    try:
        yield disk
    finally:
        if disk is not None:
            disk.unmount()


async def test_a_full_disk_delays_runs_which_complete_once_space_is_back(
    tmp_path: Path,
    registry: gf.Registry,
    tiny_disk: TinyDisk | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="graphflow")
    folder = tiny_disk.root if tiny_disk is not None else tmp_path
    url = f"sqlite:///{folder / 'full.db'}?durability=normal"

    gate = anyio.Event()

    @gf.function(registry=registry)
    async def opened() -> bool:
        await gate.wait()
        return True

    @gf.function(registry=registry)
    def blob(i: int) -> str:
        return f"{i}:" + "x" * 100_000  # 100 kB per step

    @gf.workflow(registry=registry)
    async def big_steps(wf: gf.Workflow, n: int) -> int:
        await wf.do("gate", "opened")
        total = 0
        for i in range(n):
            total += len(await wf.do(f"blob {i}", blob, {"i": i}))
        return total

    async with gf.Engine(url, registry=registry, poll_interval=0.05) as engine:
        run_ids = [await engine.start("big_steps", 4) for _ in range(2)]
        writer = engine.store._db._writer  # type: ignore[attr-defined]
        if tiny_disk is not None:
            tiny_disk.fill()
        else:  # no tmpfs here: SQLite's own size limit gives the same SQLITE_FULL
            pages = writer.execute("PRAGMA page_count").fetchone()[0]
            writer.execute(f"PRAGMA max_page_count={pages + 60}")
        gate.set()

        def full_faults() -> list[str]:
            return [r.getMessage() for r in caplog.records if "disk is full" in r.getMessage()]

        await wait_for(lambda: len(full_faults()) >= 2, "runs interrupted by the full disk")
        assert not any("cannot rollback" in r.getMessage() for r in caplog.records)
        for run_id in run_ids:
            assert (await engine.status(run_id)).state == "running"
        if tiny_disk is not None:
            tiny_disk.free()
        else:
            writer.execute("PRAGMA max_page_count=1073741823")
        finals = [await engine.wait(run_id, timeout=120) for run_id in run_ids]
    assert [f.state for f in finals] == ["completed"] * 2, [f.error for f in finals]
    assert all(f.output == 4 * 100_002 for f in finals)


# --- defect 7: the file is deleted or replaced under the engine ----------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced by another file"])
async def test_losing_the_store_file_stops_the_engine_with_a_clear_error(
    tmp_path: Path, registry: gf.Registry, how: str
) -> None:
    path = tmp_path / "lost.db"
    gate = anyio.Event()
    blocked_workflow(registry, gate)
    async with gf.Engine(f"sqlite:///{path}", registry=registry, lease=0.3) as engine:
        run_id = await engine.start("waits_on_gate", 1)
        if how == "deleted":
            path.unlink()
        else:
            os.replace(_another_store(tmp_path), path)
        with pytest.raises(gf.StoreFileLostError) as lost:
            await engine.wait(run_id, timeout=30)
        assert lost.value.path == str(path) and lost.value.what == how
        assert str(path) in str(lost.value) and how in str(lost.value)
        with pytest.raises(gf.StoreFileLostError):
            await engine.run("waits_on_gate", 2)
        with pytest.raises(gf.StoreFileLostError):
            await engine.status(run_id)


def _another_store(tmp_path: Path) -> Path:
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    return other


# --- defect 8: no URL, read-only stores ----------------------------------------------------------


@pytest.mark.parametrize("url", ["", "  "])
def test_an_empty_store_url_is_refused(url: str) -> None:
    with pytest.raises(gf.EngineConfigError, match="store URL"):
        gf.Engine(url)


async def _store_with_a_run(url: str, registry: gf.Registry) -> str:
    @gf.workflow(registry=registry)
    async def double(wf: gf.Workflow, n: int) -> int:
        return int(await wf.do("double", lambda: n * 2))

    async with gf.Engine(url, registry=registry) as engine:
        run_id = await engine.start("double", 21)
        await engine.wait(run_id, timeout=30)
    return run_id


async def _inspect_read_only(url: str, registry: gf.Registry, run_id: str) -> None:
    async with gf.Engine(url, registry=registry, worker=False) as client:
        assert (await client.status(run_id)).output == 42
        assert [r.run_id for r in await client.list_runs()] == [run_id]
        with pytest.raises(gf.ReadOnlyStoreError, match="read-only"):
            await client.start("double", 1)
    with pytest.raises(gf.ReadOnlyStoreError, match="read-only"):
        async with gf.Engine(url, registry=registry):
            pass


async def test_a_store_opened_with_mode_ro_can_be_inspected_but_not_written(
    tmp_path: Path, registry: gf.Registry
) -> None:
    path = tmp_path / "ro.db"
    run_id = await _store_with_a_run(f"sqlite:///{path}", registry)
    await _inspect_read_only(f"sqlite:///{path}?mode=ro", registry, run_id)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths made unwritable even for root (``chattr +i``), made writable again afterwards."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o755)


def _make_read_only(path: Path, immutable: list[Path]) -> None:
    immutable.append(path)
    if os.geteuid() == 0:  # root ignores permission bits: an immutable file refuses it too
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o555 if path.is_dir() else 0o444)
    assert not os.access(path, os.W_OK)


async def test_a_read_only_directory_opens_for_inspection_and_says_read_only(
    tmp_path: Path, registry: gf.Registry, immutable: list[Path]
) -> None:
    folder = tmp_path / "volume"
    folder.mkdir()
    url = f"sqlite:///{folder / 'graphflow.db'}"
    run_id = await _store_with_a_run(url, registry)
    for leftover in folder.glob("graphflow.db-*"):
        leftover.unlink()  # a clean shutdown's WAL files, as on a volume mounted read-only
    _make_read_only(folder, immutable)
    await _inspect_read_only(url, registry, run_id)
    with pytest.raises(gf.ReadOnlyStoreError, match="directory .* is read-only"):
        async with gf.Engine(f"sqlite:///{folder / 'new.db'}", registry=registry):
            pass


async def test_a_read_only_file_opens_for_inspection_and_says_read_only(
    tmp_path: Path, registry: gf.Registry, immutable: list[Path]
) -> None:
    path = tmp_path / "graphflow.db"
    url = f"sqlite:///{path}"
    run_id = await _store_with_a_run(url, registry)
    _make_read_only(path, immutable)
    await _inspect_read_only(url, registry, run_id)
