"""The database servers ``bench_scale`` measures on: fresh databases, raw commit floors, server CPU.

Each server's floor is its driver doing one ``INSERT`` of a ~200-byte row + ``COMMIT`` per row, on a
fresh database: the cheapest durable write per row that graphflow's store could ever make there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
from floor import ROW
from psycopg import sql
from sqlalchemy.engine import make_url


class Server(Protocol):
    """A database server that worker processes share."""

    name: str
    """``PostgreSQL`` or ``MariaDB`` (the label of its lines)."""
    key: str
    """The key of its floor."""
    floor_label: str
    """What its floor measures."""
    processes: tuple[str, ...]
    """Command names of its processes, for CPU accounting."""
    admin_url: str

    def check(self) -> None:
        """Exit with a message saying how to start the server if it does not answer."""

    def describe(self) -> str:
        """Its version and durability setting, for the header."""

    def fresh_database(self) -> AbstractContextManager[str]:
        """A new database, dropped afterwards; yields the store URL."""

    def floor(self, rows: int) -> float:
        """µs per row: one ``INSERT`` + ``COMMIT`` per row, on a fresh database."""


class Postgres:
    """PostgreSQL through psycopg 3."""

    name = "PostgreSQL"
    key = "postgres"
    floor_label = "raw PostgreSQL: psycopg INSERT + COMMIT"
    processes: tuple[str, ...] = ("postgres",)

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def check(self) -> None:
        try:
            psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise SystemExit(
                f"bench_scale needs PostgreSQL at {self.admin_url}: {exc}\nStart it with:"
                " pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            ) from exc

    def describe(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
        return (
            f"PostgreSQL {version[0].split()[0] if version else '?'}"
            f" (synchronous_commit={sync[0] if sync else '?'})"
        )

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        name = f"gf_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}", query=""))
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def floor(self, rows: int) -> float:
        with self.fresh_database() as url, psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE rows (id BIGSERIAL PRIMARY KEY, run TEXT, body TEXT)")
            conn.commit()
            started = time.perf_counter()
            for i in range(rows):
                conn.execute("INSERT INTO rows (run, body) VALUES (%s, %s)", (f"run-{i}", ROW))
                conn.commit()
            elapsed = time.perf_counter() - started
        return elapsed / rows * 1e6


class Mariadb:
    """MariaDB (or MySQL) through PyMySQL, the driver of graphflow's MySQL store."""

    name = "MariaDB"
    key = "mariadb"
    floor_label = "raw MariaDB: PyMySQL INSERT + COMMIT"
    processes: tuple[str, ...] = ("mariadbd", "mysqld")

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._server = make_url(admin_url)

    def _connect(self, database: str | None = None) -> pymysql.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            host=self._server.host or "127.0.0.1",
            port=self._server.port or 3306,
            user=self._server.username or "root",
            password=self._server.password or "",
            database=database,
            connect_timeout=5,
        )

    def _execute(self, statement: str) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    def check(self) -> None:
        try:
            self._connect().close()
        except pymysql.err.OperationalError as exc:
            raise SystemExit(
                f"bench_scale needs MariaDB at {self.admin_url}: {exc}\nStart it with:"
                " service mariadb start"
            ) from exc

    def describe(self) -> str:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
                version, flush = cursor.fetchone() or ("?", "?")
        finally:
            conn.close()
        return f"MariaDB {str(version).split('-')[0]} (innodb_flush_log_at_trx_commit={flush})"

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        name = f"gf_bench_{uuid.uuid4().hex[:12]}"
        self._execute(f"CREATE DATABASE `{name}`")
        try:
            yield self._server.set(database=name).render_as_string(hide_password=False)
        finally:
            self._execute(f"DROP DATABASE IF EXISTS `{name}`")

    def floor(self, rows: int) -> float:
        with self.fresh_database() as url:
            conn = self._connect(make_url(url).database)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(
                        "CREATE TABLE floor_rows (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
                        " run VARCHAR(255), body LONGTEXT) ENGINE=InnoDB"
                    )
                    started = time.perf_counter()
                    for i in range(rows):
                        cursor.execute(
                            "INSERT INTO floor_rows (run, body) VALUES (%s, %s)", (f"run-{i}", ROW)
                        )
                        conn.commit()
                    elapsed = time.perf_counter() - started
            finally:
                conn.close()
        return elapsed / rows * 1e6
