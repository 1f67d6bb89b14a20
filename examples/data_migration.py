"""Migrate a real SQLite table in batches, with fan-out, resumable after a crash.

``legacy_customers`` (free-form names and emails) is copied into ``customers`` (normalised) in
batches of ``batch_size`` rows, ``parallel`` batches at a time. Each batch is a durable step and
writes its rows with an upsert in one transaction, so a batch that was in flight when the process
died simply runs again; completed batches are never repeated. Every committed batch appends a line
(run id, batch, pid, the step's idempotency key) to ``migration_log`` in the same transaction as
its rows, so you can see that, and a batch whose transaction committed just before a crash (before
graphflow stored its result) finds its line and does not copy again: exactly once.

Run the demo (it creates ``migration_demo.db`` with 5,000 legacy rows):

    python examples/data_migration.py

Watch the batches in the live display, kill it half-way (Ctrl-C or ``kill -9``), and run the same
command again with the same ``--run-id``: it continues where it stopped.

    graphflow run examples/data_migration.py migrate_table --run-id m1 \
        --input '{"database": "migration_demo.db", "batch_size": 250}'
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

import graphflow as gf

CRASH_AT_BATCH = os.environ.get("MIGRATION_CRASH_AT_BATCH")
"""Demo hook: kill this process (SIGKILL) in the middle of that batch, to watch it resume."""

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class MigrationInput(BaseModel):
    database: str
    source_table: str = Field(default="legacy_customers", pattern=_IDENTIFIER)
    target_table: str = Field(default="customers", pattern=_IDENTIFIER)
    batch_size: int = Field(default=500, ge=1)
    parallel: int = Field(default=4, ge=1)


class Batch(BaseModel):
    index: int
    first_id: int
    last_id: int


class MigrationPlan(BaseModel):
    rows: int
    batches: list[Batch]


class BatchResult(BaseModel):
    index: int
    copied: int


class Verification(BaseModel):
    source_rows: int
    target_rows: int
    ok: bool


class MigrationReport(BaseModel):
    rows: int
    batches: int
    copied: int
    verified: bool


@contextmanager
def connect(database: str) -> Iterator[sqlite3.Connection]:
    """A connection in WAL mode that waits for concurrent writers; commits or rolls back."""
    conn = sqlite3.connect(database, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            yield conn
    finally:
        conn.close()


# --- steps ----------------------------------------------------------------------------------------


@gf.function
def plan_batches(
    database: str, source_table: str, target_table: str, batch_size: int
) -> MigrationPlan:
    """Create the target table and split the source's ids into batches (keyset ranges)."""
    with connect(database) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {target_table} (id INTEGER PRIMARY KEY,"
            " first_name TEXT NOT NULL, last_name TEXT NOT NULL, email TEXT NOT NULL,"
            " country TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migration_log (run_id TEXT NOT NULL DEFAULT '',"
            " batch INTEGER NOT NULL, copied INTEGER NOT NULL, pid INTEGER NOT NULL)"
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(migration_log)")}
        if "run_id" not in columns:  # a demo database from an earlier version of this example
            conn.execute("ALTER TABLE migration_log ADD COLUMN run_id TEXT NOT NULL DEFAULT ''")
        if "step_key" not in columns:
            conn.execute("ALTER TABLE migration_log ADD COLUMN step_key TEXT")
        conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS migration_log_step ON migration_log (step_key)"
        )
        ids = [row[0] for row in conn.execute(f"SELECT id FROM {source_table} ORDER BY id")]
    batches = [
        Batch(index=n, first_id=chunk[0], last_id=chunk[-1])
        for n, chunk in enumerate(ids[i : i + batch_size] for i in range(0, len(ids), batch_size))
    ]
    return MigrationPlan(rows=len(ids), batches=batches)


def _normalise(row: tuple[int, str, str, str | None]) -> tuple[int, str, str, str, str]:
    row_id, full_name, email, country = row
    first, _, last = " ".join(full_name.split()).partition(" ")
    return (row_id, first.title(), last.title(), email.strip().lower(), (country or "??").upper())


@gf.function(retries=3, retry_delay="100ms", backoff=2.0)
def copy_batch(
    database: str, source_table: str, target_table: str, index: int, first_id: int, last_id: int
) -> BatchResult:
    """Copy one id range, normalised, in one transaction, once per step (its idempotency key)."""
    step_key = gf.current_step().idempotency_key
    with connect(database) as conn:
        logged = conn.execute(
            "SELECT copied FROM migration_log WHERE step_key = ?", (step_key,)
        ).fetchone()
        if logged is not None:  # committed before a crash lost the step's result: done already
            return BatchResult(index=index, copied=logged[0])
        rows = conn.execute(
            f"SELECT id, full_name, email, country FROM {source_table}"
            " WHERE id BETWEEN ? AND ? ORDER BY id",
            (first_id, last_id),
        ).fetchall()
        conn.executemany(
            f"INSERT INTO {target_table} (id, first_name, last_name, email, country)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
            " first_name = excluded.first_name, last_name = excluded.last_name,"
            " email = excluded.email, country = excluded.country",
            [_normalise(row) for row in rows],
        )
        if CRASH_AT_BATCH is not None and int(CRASH_AT_BATCH) == index:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction: nothing of this batch commits
        conn.execute(
            "INSERT INTO migration_log (run_id, batch, copied, pid, step_key)"
            " VALUES (?, ?, ?, ?, ?)",
            (gf.current_step().run_id, index, len(rows), os.getpid(), step_key),
        )
    return BatchResult(index=index, copied=len(rows))


@gf.function
def verify(database: str, source_table: str, target_table: str) -> Verification:
    with connect(database) as conn:
        (source,) = conn.execute(f"SELECT count(*) FROM {source_table}").fetchone()
        (target,) = conn.execute(f"SELECT count(*) FROM {target_table}").fetchone()
    return Verification(source_rows=source, target_rows=target, ok=source == target)


# --- the workflow ---------------------------------------------------------------------------------


@gf.workflow(description="Copy a table in parallel batches; resumable after a crash")
async def migrate_table(wf: gf.Workflow, data: MigrationInput) -> MigrationReport:
    tables = data.model_dump(include={"database", "source_table", "target_table"})
    plan = await wf.do("Plan batches", plan_batches, {**tables, "batch_size": data.batch_size})
    results: list[BatchResult] = []
    for start in range(0, len(plan.batches), data.parallel):
        wave = plan.batches[start : start + data.parallel]
        results += await asyncio.gather(
            *(
                wf.do(f"Copy batch {batch.index}", copy_batch, {**tables, **batch.model_dump()})
                for batch in wave
            )
        )
    check = await wf.do("Verify", verify, tables)
    return MigrationReport(
        rows=plan.rows,
        batches=len(results),
        copied=sum(r.copied for r in results),
        verified=check.ok,
    )


# --- demo -----------------------------------------------------------------------------------------


def create_demo_database(path: Path, rows: int = 5_000, seed: int = 7) -> None:
    """A legacy table with messy names, emails and countries."""
    rng = random.Random(seed)
    names = ["ada lovelace", "ALAN  turing", "grace hopper", "edsger dijkstra", "barbara liskov"]
    with connect(str(path)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS legacy_customers (id INTEGER PRIMARY KEY,"
            " full_name TEXT NOT NULL, email TEXT NOT NULL, country TEXT)"
        )
        conn.executemany(
            "INSERT OR IGNORE INTO legacy_customers VALUES (?, ?, ?, ?)",
            [
                (
                    i,
                    rng.choice(names),
                    f"  User{i}@Example.COM ",
                    rng.choice(["gb", "us", "fr", None]),
                )
                for i in range(1, rows + 1)
            ],
        )


if __name__ == "__main__":
    demo_db = Path("migration_demo.db")
    create_demo_database(demo_db)
    report = gf.run("migrate_table", {"database": str(demo_db), "batch_size": 250})
    print(report)
