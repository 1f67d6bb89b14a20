"""SQLite: a WAL file (``sqlite:///path``) or a private in-memory database (``memory://``).

Statements run on the event loop: a WAL commit costs less than a hop to a worker thread. Writers
are serialised by ``BEGIN IMMEDIATE``, so there are no row locks and nothing to skip; leases run
on this host's clock, since every process sharing a file shares the host.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Insert, MetaData, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect

from ...errors import StoreError
from .._tx import Tx
from .base import Claim, claim_returning, conditional_row, create_tables_if_missing

__all__ = ("SqliteDialect",)


class SqliteDialect:
    """The ``Dialect`` of SQLite files and ``memory://``."""

    inline = True
    notifies = False
    host_clock = True
    clock_sql = ":lease_now"
    lock_share = ""
    lock_update = ""
    skip_locked = ""

    def __init__(
        self, url: str, *, durability: str, host_time: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self.host_time = host_time
        """The lease clock (this host's time; a simulation's virtual time in its tests)."""
        self.shared = urlsplit(url).scheme.lower() != "memory"
        self.path = _sqlite_path(url) if self.shared else ":memory:"
        self.durability = durability
        self.sql_dialect: SqlAlchemyDialect = sqlite.dialect(paramstyle="named")

    def clock_params(self) -> dict[str, Any]:
        """This host's time, bound to ``:lease_now``."""
        return {"lease_now": self.host_time()}

    def connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """A writer and a reader (the same connection in memory, where each is a new database)."""
        try:
            writer = self._connect()
            return writer, (self._connect() if self.shared else writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.url!r}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if self.shared:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def reconnect(self, *, writer: bool) -> sqlite3.Connection:
        """A new connection to the file (never needed: ``lost`` is always false)."""
        try:
            return self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.url!r}: {exc}") from exc

    def lost(self, conn: Any) -> bool:
        """False: a file's connection is not dropped by a server."""
        return False

    def begin(self, conn: Any, cursor: Any) -> None:
        """Take the write lock up front, so a transaction never fails to upgrade a read lock."""
        cursor.execute("BEGIN IMMEDIATE")

    def commit(self, conn: Any, cursor: Any) -> None:
        """Commit (the connection is in autocommit mode: transactions are explicit)."""
        cursor.execute("COMMIT")

    def rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back the explicit transaction."""
        cursor.execute("ROLLBACK")

    def insert_ignore(self, table: Table, key: Sequence[str]) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO NOTHING``."""
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))

    def upsert(self, table: Table, key: Sequence[str], where: ColumnElement[bool]) -> Insert:
        """``INSERT ... SELECT ... WHERE ... ON CONFLICT (key) DO UPDATE``."""
        names = [column.name for column in table.columns]
        stmt = sqlite.insert(table).from_select(names, conditional_row(table, where, typed=False))
        updates = {name: stmt.excluded[name] for name in names if name not in key}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)

    def claim(self, tx: Tx, claim: Claim, params: dict[str, Any]) -> list[Any]:
        """One ``UPDATE ... RETURNING`` (writers are serialised: nothing to skip)."""
        return claim_returning(tx, claim, params, self.skip_locked)

    def transient(self, exc: BaseException) -> bool:
        """Never: writers are serialised (``BEGIN IMMEDIATE`` waits), so nothing deadlocks."""
        return False

    def lock_key(self, tx: Tx, key: str) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already serialises every writer."""

    def notify(self, tx: Tx, payload: str) -> None:
        """Nothing: engines on SQLite poll."""

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Nothing to listen to: return at once."""

    def schema_lock(self, tx: Tx) -> AbstractContextManager[None]:
        """Nothing more: ``BEGIN IMMEDIATE`` already excludes every other writer."""
        return nullcontext()

    def has_table(self, tx: Tx, name: str) -> bool:
        """Look in ``sqlite_master``."""
        return bool(
            tx.query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name", {"name": name}
            )
        )

    def create_tables(self, tx: Tx, metadata: MetaData) -> None:
        """``CREATE TABLE/INDEX IF NOT EXISTS``."""
        create_tables_if_missing(tx, metadata, self.sql_dialect)


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path:
        raise StoreError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
    return path
