"""The raw SQLite floor every benchmark prints its figures against.

Python's ``sqlite3`` in WAL mode, one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per ~200-byte row: the
cheapest durable write per row at the given ``synchronous`` level.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

ROW = "x" * 200


def sqlite_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per row, in a fresh ``floor.db`` under ``directory`` (``mode``: normal or full)."""
    path = directory / "floor.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={mode.upper()}")
        conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, run TEXT, body TEXT)")
        started = time.perf_counter()
        for i in range(rows):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO rows (run, body) VALUES (?, ?)", (f"run-{i}", ROW))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return elapsed / rows
