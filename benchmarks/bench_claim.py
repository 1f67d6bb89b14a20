"""Claim cost as a store fills: µs per claim with many finished runs and a backlog of new ones.

Run ``python benchmarks/bench_claim.py`` (``--finished N``, ``--pending N``, ``--repeat N``). A
SQLite store gets ``finished`` completed runs and ``pending`` new ones (inserted raw, in one
transaction); then one claim at a time takes a run (``limit`` 1, as a worker whose slot just
freed does) until ``claims`` were made. Printed beside one WAL commit (``floor.py``), measured in
the same run: a claim is one write transaction, so a commit is what it cannot cost less than.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import floor as floors_module
from floor import sqlite_floor_seconds

from graphflow.store.base import ClaimQuery
from graphflow.store.sql import SqlStore


def fill(path: Path, finished: int, pending: int) -> None:
    """Insert ``finished`` completed and ``pending`` new runs of workflow ``w`` (raw SQL)."""
    now = time.time() - 10_000
    rows = [
        (str(uuid.uuid4()), "completed" if i < finished else "pending", now + i)
        for i in range(finished + pending)
    ]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO gf_runs (run_id, workflow, state, input, created_at, updated_at,"
            " lease_epoch, recoveries, cancel_requested, priority)"
            " VALUES (?, 'w', ?, '{}', ?, ?, 0, 0, 0, 0)",
            [(run_id, state, at, at) for run_id, state, at in rows],
        )


async def claim_seconds(finished: int, pending: int, claims: int, directory: Path) -> float:
    """Seconds per claim of one run, on a store holding ``finished`` + ``pending`` runs."""
    path = directory / f"claims-{finished}-{pending}.db"
    url = f"sqlite:///{path}"
    store = SqlStore(url)
    await store.open()  # creates the schema
    await store.aclose()
    fill(path, finished, pending)
    store = SqlStore(url)
    await store.open()
    try:
        query = ClaimQuery(owner_id="bench", workflows=["w"], limit=1)
        started = floors_module.timer()
        for _ in range(claims):
            (_claimed,) = await store.claim_runs(query, time.time())
        elapsed = floors_module.timer() - started
    finally:
        await store.aclose()
    return elapsed / claims


def main() -> None:
    """Measure and print one line per store size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--finished", type=int, default=20_000, help="completed runs (20,000)")
    parser.add_argument("--pending", type=int, default=1_000, help="new runs (1,000)")
    parser.add_argument("--claims", type=int, default=200, help="claims timed per size (200)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median)")
    args = parser.parse_args()
    sizes = [(0, args.pending), (args.finished, args.pending)]
    print(f"{'store holds':<36}{'µs/claim':>10}{'x commit':>10}")
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        for finished, pending in sizes:
            values, ratios = [], []
            for rep in range(args.repeat):
                directory = Path(tmp) / str(rep)
                directory.mkdir(exist_ok=True)
                commit = sqlite_floor_seconds("normal", 1_000, directory)
                seconds = asyncio.run(claim_seconds(finished, pending, args.claims, directory))
                values.append(seconds * 1e6)
                ratios.append(seconds / commit)
            what = f"{finished:,} finished + {pending:,} pending runs"
            print(f"{what:<36}{statistics.median(values):>10.1f}{statistics.median(ratios):>9.1f}x")


if __name__ == "__main__":
    main()
