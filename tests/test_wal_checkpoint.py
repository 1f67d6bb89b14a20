"""SQLite's WAL is checkpointed in a thread in ``normal`` durability, and stays bounded.

SQLite would checkpoint inside the commit that grows the WAL past 1,000 pages, that is on the
event loop; the store turns that off and checkpoints in a thread, catching up on the writer once
the WAL holds 2,048 frames (see ``graphflow.store._checkpoint``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import graphflow as gf
from graphflow.store.sql import SqlStore

PAGE = 4096


def writer_of(store: SqlStore) -> sqlite3.Connection:
    connection: sqlite3.Connection = store._db._writer  # the store's own write connection
    return connection


@pytest.mark.parametrize(("durability", "auto"), [("normal", 0), ("full", 1000)])
async def test_the_writer_checkpoints_by_itself_only_in_full(
    tmp_path: Path, durability: str, auto: int
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'w.db'}?durability={durability}")
    await store.open()
    try:
        (row,) = writer_of(store).execute("PRAGMA wal_autocheckpoint").fetchall()
    finally:
        await store.aclose()
    assert row == (auto,)


async def test_a_long_run_keeps_the_wal_bounded_and_its_data(
    registry: gf.Registry, tmp_path: Path
) -> None:
    @gf.function(registry=registry)
    async def inc(x: int) -> int:
        return x + 1

    @gf.workflow(registry=registry)
    async def count(wf: gf.Workflow, data: int) -> int:
        x = 0
        for i in range(data):
            x = await wf.do(f"s{i}", inc, {"x": x})
        return x

    path = tmp_path / "long.db"
    wal = Path(f"{path}-wal")
    async with gf.Engine(f"sqlite:///{path}?durability=normal", registry=registry) as engine:
        assert await engine.run("count", 6_000) == 6_000
        # Without checkpoints (SQLite's own are off) the WAL would hold every step's frames:
        # more than 6,000 pages. The thread and the catch-ups keep it near 2,048 + 256 commits.
        assert os.path.getsize(wal) // PAGE < 4_000
    assert not wal.exists()  # the last connection checkpointed it and removed it
    with sqlite3.connect(path) as conn:
        (steps,) = conn.execute("SELECT COUNT(*) FROM gf_steps").fetchone()
    assert steps == 6_000
