"""Claim cost as a store fills: µs per claim with many finished runs and a backlog of new ones.

Run ``python benchmarks/bench_claim.py`` (``--finished N``, ``--pending N``, ``--repeat N``;
``--pg URL`` and ``--mariadb URL`` add those servers, on fresh databases of theirs). A store gets
``finished`` completed runs and ``pending`` new ones (inserted raw, in one transaction); then one
claim at a time takes a run (``limit`` 1, as a worker whose slot just freed does) until
``claims`` were made. SQLite's figures are printed beside one WAL commit (``floor.py``), measured
in the same run: a claim is one write transaction, so a commit is what it cannot cost less than.
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

_INSERT = (
    "INSERT INTO gf_runs (run_id, workflow, state, input, created_at, updated_at,"
    " lease_epoch, recoveries, cancel_requested, priority)"
    " VALUES ({p}, 'w', {p}, '{{}}', {p}, {p}, 0, 0, {false}, 0)"
)


def _rows(finished: int, pending: int) -> list[tuple[str, str, float, float]]:
    now = time.time() - 10_000
    return [
        (str(uuid.uuid4()), "completed" if i < finished else "pending", now + i, now + i)
        for i in range(finished + pending)
    ]


def fill(url: str, finished: int, pending: int) -> None:
    """Insert ``finished`` completed and ``pending`` new runs of workflow ``w`` (raw SQL)."""
    rows = _rows(finished, pending)
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as lite:
            lite.executemany(_INSERT.format(p="?", false="0"), rows)
        return
    if url.startswith(("mariadb", "mysql")):
        from servers import Mariadb
        from sqlalchemy.engine import make_url

        maria = Mariadb(url)._connect(make_url(url).database)
        try:
            with maria.cursor() as cursor:
                cursor.executemany(_INSERT.format(p="%s", false="0"), rows)
                cursor.execute("ANALYZE TABLE gf_runs")
            maria.commit()
        finally:
            maria.close()
        return
    import psycopg

    with psycopg.connect(url) as pg, pg.cursor() as cursor:
        cursor.executemany(_INSERT.format(p="%s", false="false"), rows)
        cursor.execute("ANALYZE gf_runs")  # as autovacuum soon would: the planner sees the rows


async def claim_seconds(url: str, finished: int, pending: int, claims: int) -> float:
    """Seconds per claim of one run, on a store holding ``finished`` + ``pending`` runs."""
    store = SqlStore(url)
    await store.open()  # creates the schema
    await store.aclose()
    fill(url, finished, pending)
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
    parser.add_argument("--pg", metavar="URL", help="also PostgreSQL (an admin URL of the server)")
    parser.add_argument("--mariadb", metavar="URL", help="also MariaDB (an admin URL)")
    args = parser.parse_args()
    sizes = [(0, args.pending), (args.finished, args.pending)]
    print(f"{'store holds':<44}{'µs/claim':>10}{'x commit':>10}")
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        for finished, pending in sizes:
            values, ratios = [], []
            for rep in range(args.repeat):
                directory = Path(tmp) / f"{finished}-{rep}"
                directory.mkdir()
                commit = sqlite_floor_seconds("normal", 1_000, directory)
                url = f"sqlite:///{directory / 'claims.db'}"
                seconds = asyncio.run(claim_seconds(url, finished, pending, args.claims))
                values.append(seconds * 1e6)
                ratios.append(seconds / commit)
            what = f"SQLite, {finished:,} finished + {pending:,} pending runs"
            print(f"{what:<44}{statistics.median(values):>10.1f}{statistics.median(ratios):>9.1f}x")
    from servers import Mariadb, Postgres, Server

    servers: list[Server] = []
    if args.pg:
        servers.append(Postgres(args.pg))
    if args.mariadb:
        servers.append(Mariadb(args.mariadb))
    for server in servers:
        for finished, pending in sizes:
            values = []
            for _ in range(args.repeat):
                with server.fresh_database() as url:
                    values.append(asyncio.run(claim_seconds(url, finished, pending, args.claims)))
            what = f"{server.name}, {finished:,} finished + {pending:,} pending"
            print(f"{what:<44}{statistics.median(values) * 1e6:>10.1f}")


if __name__ == "__main__":
    main()
