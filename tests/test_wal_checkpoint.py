"""SQLite's WAL is checkpointed in a thread in ``normal`` durability, and stays bounded.

SQLite would checkpoint inside the commit that grows the WAL past 1,000 pages, that is on the
event loop; the store checkpoints in a thread instead, and lets the writer do it only past
``BACKSTOP_FRAMES`` (see ``graphflow.store._checkpoint``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import graphflow as gf
from graphflow.store._checkpoint import BACKSTOP_FRAMES
from graphflow.store.sql import SqlStore

PAGE = 4096


def writer_of(store: Any) -> sqlite3.Connection:
    connection: sqlite3.Connection = store._db._writer  # the store's own write connection
    return connection


def checkpointer_of(store: Any) -> Any:
    """The store's checkpoint thread (its ``checkpoints`` count is read after the store closes:
    closing waits for a checkpoint still running)."""
    return store._db.dialect._checkpointer


@pytest.mark.parametrize(("durability", "auto"), [("normal", BACKSTOP_FRAMES), ("full", 1000)])
async def test_the_writer_checkpoints_by_itself_only_past_the_backstop(
    tmp_path: Path, durability: str, auto: int
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'w.db'}?durability={durability}")
    await store.open()
    try:
        (row,) = writer_of(store).execute("PRAGMA wal_autocheckpoint").fetchall()
    finally:
        await store.aclose()
    assert row == (auto,)


@pytest.mark.parametrize(("steps", "size"), [(6_000, 1), (300, 100_000)], ids=["small", "100kB"])
async def test_a_long_run_keeps_the_wal_bounded_and_its_data(
    registry: gf.Registry, tmp_path: Path, steps: int, size: int
) -> None:
    @gf.function(registry=registry)
    async def blob(i: int, size: int) -> str:
        return f"{i}:" + "x" * size

    @gf.workflow(registry=registry)
    async def fill(wf: gf.Workflow, data: dict[str, int]) -> int:
        for i in range(data["steps"]):
            await wf.do(f"s{i}", blob, {"i": i, "size": data["size"]})
        return data["steps"]

    path = tmp_path / "long.db"
    wal = Path(f"{path}-wal")
    data = {"steps": steps, "size": size}
    async with gf.Engine(f"sqlite:///{path}?durability=normal", registry=registry) as engine:
        assert await engine.run("fill", data) == steps
        # Every step's frames would stay in the WAL without checkpoints: 6,000 pages and more,
        # or 25 pages a step of 100 kB. The backstop bounds it, plus one commit's frames.
        assert os.path.getsize(wal) // PAGE < BACKSTOP_FRAMES + 100
        checkpointer = checkpointer_of(engine.store)
    assert checkpointer.checkpoints > 0  # the thread did its share (closing waited for it)
    assert not wal.exists()  # the last connection checkpointed it and removed it
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM gf_steps").fetchone()
    assert count == steps
