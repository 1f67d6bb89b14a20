"""The raw floors every benchmark prints its figures against, measured in the same run.

- one WAL commit: Python's ``sqlite3`` in WAL mode, one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per
  ~200-byte row: the cheapest durable write per row at the given ``synchronous`` level;
- group commit: the same rows, all in one transaction: what a row costs when commits are shared;
- thread hop: ``loop.run_in_executor`` of a trivial function, awaited one call at a time;
- read + decode: one ``SELECT`` of a run's step rows and ``json.loads`` of each row's JSON columns.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROW = "x" * 200

timer = time.perf_counter
"""The clock of every measurement: wall time, or CPU time with ``use_cpu_time()``."""


def use_cpu_time() -> None:
    """Measure this process's CPU time (all threads) instead of wall time.

    On a machine loaded by other work, CPU time still compares code paths fairly; it leaves out
    waiting for the disk, so it says nothing about fsync-bound figures (``full``).
    """
    global timer
    timer = time.process_time


def _fresh(path: Path, mode: str) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={mode.upper()}")
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, run TEXT, body TEXT)")
    return conn


def sqlite_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per row, one commit each, in a fresh ``floor.db`` (``mode``: normal or full)."""
    conn = _fresh(directory / "floor.db", mode)
    try:
        started = timer()
        for i in range(rows):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO rows (run, body) VALUES (?, ?)", (f"run-{i}", ROW))
            conn.execute("COMMIT")
        elapsed = timer() - started
    finally:
        conn.close()
    return elapsed / rows


def sqlite_group_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per row when all ``rows`` share one commit, in a fresh ``group.db``."""
    conn = _fresh(directory / "group.db", mode)
    try:
        started = timer()
        conn.execute("BEGIN IMMEDIATE")
        for i in range(rows):
            conn.execute("INSERT INTO rows (run, body) VALUES (?, ?)", (f"run-{i}", ROW))
        conn.execute("COMMIT")
        elapsed = timer() - started
    finally:
        conn.close()
    return elapsed / rows


def thread_hop_seconds(calls: int) -> float:
    """Seconds per ``await loop.run_in_executor(pool, f)`` of a trivial ``f``, one at a time."""

    def plus_one(x: int) -> int:
        return x + 1

    async def hops() -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            for i in range(20):  # start the thread
                await loop.run_in_executor(pool, plus_one, i)
            started = timer()
            for i in range(calls):
                await loop.run_in_executor(pool, plus_one, i)
            return (timer() - started) / calls

    return asyncio.run(hops())


def read_decode_seconds(database: Path, run_id: str) -> float:
    """Seconds to ``SELECT`` a run's step rows from graphflow's table and decode their JSON."""
    conn = sqlite3.connect(database)
    try:
        started = timer()
        rows = conn.execute(
            "SELECT name, seq, kind, function, state, attempts, output, parents, started_at,"
            " finished_at FROM gf_steps WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        decoded = [(row, json.loads(row[6] or "null"), json.loads(row[7])) for row in rows]
        elapsed = timer() - started
    finally:
        conn.close()
    if not decoded:
        raise RuntimeError(f"no step rows for run {run_id!r} in {database}")
    return elapsed
