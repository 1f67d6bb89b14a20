"""Database connections lost mid-run: terminated backends, killed connections, a server restart.

An engine replaces every connection the database drops (its statement connections and, on
PostgreSQL, its ``LISTEN`` connection) and keeps the runs it holds: every run completes, with each
step executed once, and notifications wake it again once it listens anew.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path

import anyio
import psycopg
import pytest

import graphflow as gf
from graphflow.store._sql_db import SqlDatabase
from graphflow.store._tx import Tx
from graphflow.store.dialects import dialect_for
from tests.conftest import PG_URL

_STEPS = 12
_RUNS = 6


def _backends(admin_url: str, database: str, role: str) -> list[int]:
    """Pids of graphflow's connections of ``role`` (listen, write, read) to ``database``."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, f"graphflow {role}"),
        ).fetchall()
    return [row[0] for row in rows]


def _terminate(admin_url: str, database: str, role: str) -> None:
    """``pg_terminate_backend`` every connection of ``role``, from a connection of our own."""
    pids = _backends(admin_url, database, role)
    assert pids, f"no graphflow {role} connection to {database}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _listening(admin_url: str, database: str) -> bool:
    """Whether a live graphflow connection to ``database`` has run ``LISTEN``."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
            " AND query LIKE 'LISTEN%%'",
            (database, "graphflow listen"),
        ).fetchall()
    return bool(rows)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.02)


def _at_least(calls: Counter[tuple[str, int]], count: int) -> bool:
    return len(calls) >= count


def _adder(registry: gf.Registry, calls: Counter[tuple[str, int]]) -> None:
    """Workflow ``adder``: ``_STEPS`` steps that each sleep a little, counted in ``calls``."""

    @gf.function(registry=registry)
    async def slow_add(run: str, i: int) -> int:
        calls[(run, i)] += 1
        await anyio.sleep(0.02)
        return i

    @gf.workflow(name="adder", registry=registry)
    async def adder(wf: gf.Workflow, data: dict[str, str]) -> int:
        total = 0
        for i in range(_STEPS):
            total += await wf.do(f"add {i}", slow_add, {"run": data["run"], "i": i})
        await wf.sleep("nap", 0.1)  # parks the run: it is claimed again when due
        return total


async def _start_all(engine: gf.Engine, prefix: str) -> list[str]:
    return [await engine.start("adder", {"run": f"{prefix}{n}"}) for n in range(_RUNS)]


async def _all_completed(engine: gf.Engine, run_ids: list[str]) -> None:
    for run_id in run_ids:
        status = await engine.wait(run_id)
        assert status.state == "completed", status.error
        assert status.output == sum(range(_STEPS))


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_terminated_connections_are_replaced_and_every_run_completes(
    pg_url: str, registry: gf.Registry
) -> None:
    calls: Counter[tuple[str, int]] = Counter()
    _adder(registry, calls)
    database = _database(pg_url)
    # No polling to speak of: a run started elsewhere is picked up only through NOTIFY.
    async with gf.Engine(pg_url, registry=registry, poll_interval=3600) as engine:
        await _until(lambda: _listening(PG_URL, database))
        run_ids = await _start_all(engine, "a")
        for role, progress in (("listen", 10), ("write", 25), ("read", 40), ("write", 55)):
            await _until(functools.partial(_at_least, calls, progress))
            _terminate(PG_URL, database, role)
        await _all_completed(engine, run_ids)
        assert set(calls.values()) == {1}, "a completed step ran again"
        assert len(calls) == _RUNS * _STEPS

        # Notifications wake this engine again: a client's run is claimed at once.
        await _until(lambda: _listening(PG_URL, database))
        async with gf.Engine(pg_url, registry=registry, worker=False) as client:
            with anyio.fail_after(60):
                run_id = await client.start("adder", {"run": "client"})
                status = await client.wait(run_id)
        assert status.state == "completed", status.error
        assert status.output == sum(range(_STEPS))


async def test_a_write_whose_connection_dropped_before_its_commit_runs_again(pg_url: str) -> None:
    database = _database(pg_url)
    db = SqlDatabase(pg_url, dialect_for(pg_url))
    await db.open(lambda tx: tx.execute("CREATE TABLE probe (k TEXT PRIMARY KEY)"))
    started, terminated = threading.Event(), threading.Event()
    runs = 0

    def insert(tx: Tx) -> str:
        nonlocal runs
        runs += 1
        tx.execute("INSERT INTO probe (k) VALUES ('a')")
        if runs == 1:
            started.set()
            assert terminated.wait(20)
        tx.execute("INSERT INTO probe (k) VALUES ('b')")  # fails on the dropped connection
        return "inserted"

    async def terminate_once_started() -> None:
        await anyio.to_thread.run_sync(started.wait, 20)
        _terminate(PG_URL, database, "write")
        terminated.set()

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(terminate_once_started)
                assert await db.write(insert) == "inserted"
        rows = await db.read(lambda tx: tx.query("SELECT k FROM probe ORDER BY k"))
    finally:
        await db.aclose()
    assert runs == 2
    assert [row[0] for row in rows] == ["a", "b"]


async def test_a_commit_whose_connection_dropped_is_not_repeated(pg_url: str) -> None:
    """The commit's outcome is unknown: the write fails as a store fault, and runs once only."""
    database = _database(pg_url)

    def create(tx: Tx) -> None:
        tx.execute("CREATE TABLE probe (k TEXT PRIMARY KEY)")
        tx.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN PERFORM pg_sleep(30); RETURN NULL; END'"
        )
        tx.execute(
            "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON probe DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )  # runs in the commit

    db = SqlDatabase(pg_url, dialect_for(pg_url))
    await db.open(create)
    runs = 0

    def insert(tx: Tx) -> None:
        nonlocal runs
        runs += 1
        tx.execute("INSERT INTO probe (k) VALUES ('a')")

    async def terminate_while_committing() -> None:
        await _until(lambda: _sleeping(PG_URL, database))
        _terminate(PG_URL, database, "write")

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(terminate_while_committing)
                with pytest.raises(gf.StoreError, match="whether the writes were stored"):
                    await db.write(insert)
        assert runs == 1
        # The next write goes through on a new connection.
        await db.write(lambda tx: tx.execute("DROP TRIGGER slow ON probe"))
        await db.write(insert)
        rows = await db.read(lambda tx: tx.query("SELECT k FROM probe"))
    finally:
        await db.aclose()
    assert [row[0] for row in rows] == ["a"]


def _sleeping(admin_url: str, database: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
            " AND wait_event = 'PgSleep'",
            (database, "graphflow write"),
        ).fetchall()
    return bool(rows)


def _kill_mariadb_connections(url: str) -> None:
    """``KILL`` every connection to ``url``'s database (graphflow's reader and writer)."""
    import pymysql
    from sqlalchemy.engine import make_url

    server = make_url(url)
    admin = pymysql.connect(
        host=server.host or "127.0.0.1", port=server.port or 3306, user=server.username or "root"
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                (server.database,),
            )
            ids = [row[0] for row in cursor.fetchall()]
            assert ids, f"no connection to {server.database}"
            for connection_id in ids:
                cursor.execute(f"KILL CONNECTION {int(connection_id)}")
    finally:
        admin.close()


async def test_killed_mariadb_connections_are_replaced_and_every_run_completes(
    mysql_url: str, registry: gf.Registry
) -> None:
    calls: Counter[tuple[str, int]] = Counter()
    _adder(registry, calls)
    async with gf.Engine(mysql_url, registry=registry, poll_interval=0.05) as engine:
        run_ids = await _start_all(engine, "m")
        for progress in (15, 40):
            await _until(functools.partial(_at_least, calls, progress))
            _kill_mariadb_connections(mysql_url)
        await _all_completed(engine, run_ids)
    assert set(calls.values()) == {1}, "a completed step ran again"
    assert len(calls) == _RUNS * _STEPS


# --- a real restart of a private cluster ----------------------------------------------------


class Cluster:
    """A PostgreSQL cluster of this test's own, run as the ``postgres`` user on a free port."""

    def __init__(self) -> None:
        binaries = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        assert binaries, "PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin)"
        self.bin = Path(binaries[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="graphflow-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, tool: str, *args: str) -> None:
        # Output to a file: a server that pg_ctl starts would hold a pipe open after it returns.
        with open(self.dir / "tools.log", "a") as log:
            done = subprocess.run(
                ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
        if done.returncode:
            logs = "".join(
                p.read_text() for p in (self.dir / "tools.log", self.dir / "log") if p.exists()
            )
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{logs}")

    def init(self) -> None:
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w",
            "start",
        )  # fmt: skip

    def restart(self) -> None:
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-m", "fast", "-w",
            "restart",
        )  # fmt: skip

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster, started; stopped and deleted afterwards."""
    assert os.geteuid() == 0, "the private cluster runs as the postgres user: run tests as root"
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.slow
async def test_runs_complete_across_a_server_restart(
    cluster: Cluster, registry: gf.Registry
) -> None:
    calls: Counter[tuple[str, int]] = Counter()
    _adder(registry, calls)
    async with gf.Engine(cluster.url, registry=registry) as engine:
        run_ids = await _start_all(engine, "r")
        await _until(lambda: len(calls) >= _RUNS * _STEPS // 3)
        await anyio.to_thread.run_sync(cluster.restart)
        await _all_completed(engine, run_ids)
        assert set(calls.values()) == {1}, "a completed step ran again"
        assert len(calls) == _RUNS * _STEPS
        # And the engine goes on working after it.
        more = await _start_all(engine, "after")
        await _all_completed(engine, more)
