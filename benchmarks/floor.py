"""The raw floors every benchmark prints its figures against, measured in the same run.

- one WAL commit: Python's ``sqlite3`` in WAL mode, one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per
  ~200-byte row: the cheapest durable write per row at the given ``synchronous`` level;
- group commit: the same rows, all in one transaction: what a row costs when commits are shared;
- thread hop: ``loop.run_in_executor`` of a trivial function, awaited one call at a time;
- read + decode: one ``SELECT`` of a run's step rows and ``json.loads`` of each row's JSON columns;
- step row: graphflow's own row of a completed step, written the way graphflow writes it (a table
  of the same columns and key, the same fenced upsert) by ``sqlite3`` alone, one commit per row or
  all in one: what the database itself charges for a step, before any Python of graphflow's.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    return conn


def _rows_database(path: Path, mode: str) -> sqlite3.Connection:
    conn = _fresh(path, mode)
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, run TEXT, body TEXT)")
    return conn


def _insert_seconds(
    conn: sqlite3.Connection, statement: str, rows: Sequence[Any], *, one_commit: bool
) -> float:
    """Seconds per row of executing ``statement`` once per row of parameters, then close ``conn``.

    A commit per row, or (``one_commit``) one commit for all of them.
    """
    try:
        started = timer()
        if one_commit:
            conn.execute("BEGIN IMMEDIATE")
            for row in rows:
                conn.execute(statement, row)
            conn.execute("COMMIT")
        else:
            for row in rows:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(statement, row)
                conn.execute("COMMIT")
        elapsed = timer() - started
    finally:
        conn.close()
    return elapsed / len(rows)


_INSERT_ROW = "INSERT INTO rows (run, body) VALUES (?, ?)"


def sqlite_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per row, one commit each, in a fresh ``floor.db`` (``mode``: normal or full)."""
    conn = _rows_database(directory / "floor.db", mode)
    params = [(f"run-{i}", ROW) for i in range(rows)]
    return _insert_seconds(conn, _INSERT_ROW, params, one_commit=False)


def sqlite_group_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per row when all ``rows`` share one commit, in a fresh ``group.db``."""
    conn = _rows_database(directory / "group.db", mode)
    params = [(f"run-{i}", ROW) for i in range(rows)]
    return _insert_seconds(conn, _INSERT_ROW, params, one_commit=True)


# The shape of graphflow's gf_steps and of its fenced step upsert (graphflow/store/sql.py), and
# the gf_runs columns the fence reads.
_STEP_TABLES = (
    "CREATE TABLE gf_runs (run_id VARCHAR NOT NULL PRIMARY KEY, owner_id VARCHAR,"
    " lease_epoch INTEGER NOT NULL, cancel_requested BOOLEAN NOT NULL)",
    "CREATE TABLE gf_steps (run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, seq INTEGER NOT NULL,"
    " kind VARCHAR NOT NULL, function VARCHAR, state VARCHAR NOT NULL, attempts INTEGER NOT NULL,"
    " input TEXT, output TEXT, error TEXT, parents TEXT NOT NULL, started_at DOUBLE,"
    " finished_at DOUBLE, wake_at DOUBLE, detail TEXT, PRIMARY KEY (run_id, name)) WITHOUT ROWID",
)
_STEP_UPSERT = (
    "INSERT INTO gf_steps (run_id, name, seq, kind, function, state, attempts, input, output,"
    " error, parents, started_at, finished_at, wake_at, detail)"
    " SELECT :run_id, :name, :seq, :kind, :function, :state, :attempts, :input, :output, :error,"
    " :parents, :started_at, :finished_at, :wake_at, :detail"
    " WHERE EXISTS (SELECT 1 FROM gf_runs WHERE run_id = :run_id AND owner_id = :owner_id"
    " AND lease_epoch = :epoch AND (cancel_requested = 0 OR :state = 'cancelled'))"
    " ON CONFLICT (run_id, name) DO UPDATE SET seq = excluded.seq, kind = excluded.kind,"
    " function = excluded.function, state = excluded.state, attempts = excluded.attempts,"
    " input = excluded.input, output = excluded.output, error = excluded.error,"
    " parents = excluded.parents, started_at = excluded.started_at,"
    " finished_at = excluded.finished_at, wake_at = excluded.wake_at, detail = excluded.detail"
)
_RUN_ID = "3e4d56fe-3366-47ec-840d-9367e7996988"


def _step_rows(rows: int) -> list[dict[str, object]]:
    """Completed steps as graphflow's write binds them: a name each, a small JSON output."""
    now = time.time()
    return [
        {"run_id": _RUN_ID, "name": f"step {i}", "seq": i, "kind": "rpc", "function": "inc",
         "state": "completed", "attempts": 1, "input": None, "output": str(i + 1),
         "error": None, "parents": "[]", "started_at": now, "finished_at": now, "wake_at": None,
         "detail": None, "owner_id": "owner", "epoch": 1}
        for i in range(rows)
    ]  # fmt: skip


def _step_database(path: Path, mode: str) -> sqlite3.Connection:
    conn = _fresh(path, mode)
    for statement in _STEP_TABLES:
        conn.execute(statement)
    conn.execute("INSERT INTO gf_runs VALUES (?, 'owner', 1, 0)", (_RUN_ID,))
    return conn


def step_row_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per step row upserted as graphflow does, one commit each, in ``steps.db``."""
    conn = _step_database(directory / "steps.db", mode)
    return _insert_seconds(conn, _STEP_UPSERT, _step_rows(rows), one_commit=False)


def step_row_group_floor_seconds(mode: str, rows: int, directory: Path) -> float:
    """Seconds per step row when all ``rows`` share one commit, in ``step_group.db``."""
    conn = _step_database(directory / "step_group.db", mode)
    return _insert_seconds(conn, _STEP_UPSERT, _step_rows(rows), one_commit=True)


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
