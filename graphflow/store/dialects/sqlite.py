"""SQLite: a WAL file (``sqlite:///path``) or a private in-memory database (``memory://``).

Statements run on the event loop: a WAL commit costs less than a hop to a worker thread. Writers
are serialised by ``BEGIN IMMEDIATE``, so there are no row locks and nothing to skip; leases run
on this host's clock, since every process sharing a file shares the host.

Waiting for another process's write lock must not freeze the loop, so SQLite's own busy handler
waits a few milliseconds only; the store then waits asynchronously and tries again, for up to
``busy_timeout`` seconds (a URL option, default 30). A file that cannot be written (``mode=ro`` in
the URL, a read-only file, directory or volume) opens read-only, for inspection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import ColumnElement, Insert, MetaData, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect

from ...errors import ReadOnlyStoreError, StoreError, StoreFileLostError, StoreUnavailableError
from .._checkpoint import BACKSTOP_FRAMES, WalCheckpointer
from .._tx import Tx
from .base import Claim, claim_returning, conditional_row, create_tables_if_missing

__all__ = ("SqliteDialect",)

_BUSY_SLICE_MS = 10
"""How long SQLite's own busy handler may block the event loop before the store waits instead."""

_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "the database is locked by another process (for longer than busy_timeout)",
    sqlite3.SQLITE_LOCKED: "the database is locked by another connection",
    sqlite3.SQLITE_FULL: "the disk is full (SQLite: database or disk is full): free space on it",
    sqlite3.SQLITE_IOERR: "a disk I/O error (SQLite: disk I/O error): check the disk and volume",
    sqlite3.SQLITE_NOMEM: "SQLite ran out of memory",
    sqlite3.SQLITE_PROTOCOL: "another process disturbed SQLite's WAL locking (SQLITE_PROTOCOL)",
    sqlite3.SQLITE_CANTOPEN: "SQLite cannot open a file it needs (unable to open database file)",
}
"""SQLite's primary result codes that say the store cannot serve now, in plain words."""

_READONLY_DBMOVED = 1032  # SQLITE_READONLY_DBMOVED: the file was renamed or deleted while open


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
        parts = urlsplit(url)
        self.shared = parts.scheme.lower() != "memory"
        self.path = _sqlite_path(url) if self.shared else ":memory:"
        self.durability = durability
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.lock_wait = _busy_timeout(url, options.get("busy_timeout", "30"))
        self.read_only = options.get("mode") == "ro"
        self._identity: tuple[int, int] | None = None
        self._checkpointer: WalCheckpointer | None = None
        self.sql_dialect: SqlAlchemyDialect = sqlite.dialect(paramstyle="named")

    def clock_params(self) -> dict[str, Any]:
        """This host's time, bound to ``:lease_now``."""
        return {"lease_now": self.host_time()}

    def connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """A writer and a reader (the same connection in memory, where each is a new database).

        A file this process cannot write opens read-only (``read_only``): reads work, writes
        raise ``ReadOnlyStoreError``.

        Raises:
            ReadOnlyStoreError: the file does not exist and its directory is read-only.
            StoreError: the file cannot be opened (the message says why).
        """
        if self.shared and not self.read_only:
            self.read_only = _exists_read_only(self.path)
        try:
            if self.read_only:
                reader = self._connect_read_only()
                return reader, reader
            writer = self._connect()
            if self.shared and self.durability != "full":
                # Checkpoints run in a thread (WalCheckpointer); the loop's commits only past the
                # backstop. Not in ``full``, where every commit syncs: a checkpoint's syncs beside
                # them slowed the median commit more than the stalls they spared cost.
                writer.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_FRAMES}")
                self._checkpointer = WalCheckpointer(self.path, synchronous=self._synchronous)
            return writer, (self._connect() if self.shared else writer)
        except (sqlite3.Error, OSError) as exc:
            raise self._open_error(exc) from exc
        finally:
            if self.shared:
                self._identity = _identity(self.path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SLICE_MS / 1e3
        )
        if self.shared:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={_BUSY_SLICE_MS}")
        return conn

    @property
    def _synchronous(self) -> str:
        return "FULL" if self.durability == "full" else "NORMAL"

    def close(self) -> None:
        """Stop checkpointing in a thread (before the connections close).

        The last connection to close checkpoints the WAL a final time and removes it.
        """
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def reconnect(self, *, writer: bool) -> sqlite3.Connection:
        """A new connection to the file (never needed: ``lost`` is always false)."""
        try:
            return self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.url!r}: {exc}") from exc

    def lost(self, conn: Any) -> bool:
        """False: a file's connection is not dropped by a server."""
        return False

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro``; ``immutable=1`` where even the WAL's shared memory cannot be created."""
        uri = Path(self.path).resolve().as_uri()
        for flags in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(
                f"{uri}?{flags}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_SLICE_MS / 1e3,
            )
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if _code(exc) != sqlite3.SQLITE_CANTOPEN or flags == "immutable=1":
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_error(self, exc: BaseException) -> StoreError:
        """Why the file did not open, in words a user can act on."""
        folder = Path(self.path).resolve().parent
        if not folder.is_dir():
            return StoreError(
                f"cannot open store {self.url!r}: directory {str(folder)!r} does not exist;"
                " create it first"
            )
        if not os.path.exists(self.path) and not os.access(folder, os.W_OK):
            return ReadOnlyStoreError(
                url=self.url,
                problem=f"cannot create {self.path!r}: directory {str(folder)!r} is read-only",
            )
        return self.unavailable(exc) or StoreError(f"cannot open store {self.url!r}: {exc}")

    def unavailable(self, exc: BaseException) -> StoreUnavailableError | None:
        """A read-only, locked, full or failing file or disk; ``None`` for other errors."""
        if not isinstance(exc, sqlite3.Error):
            return None
        code = _code(exc)
        if code == _READONLY_DBMOVED:
            problem = f"the file {self.path!r} was moved or deleted while open"
            return StoreUnavailableError(url=self.url, problem=problem)
        if code & 0xFF == sqlite3.SQLITE_READONLY:
            return ReadOnlyStoreError(url=self.url, problem=self._why_read_only())
        plain = _UNAVAILABLE.get(code & 0xFF)
        return None if plain is None else StoreUnavailableError(url=self.url, problem=plain)

    def _why_read_only(self) -> str:
        if self.read_only and "mode=ro" in self.url:
            return "it was opened with mode=ro"
        return f"{self.path!r} or its directory cannot be written (permissions, a read-only volume)"

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` is another process's lock that outlasted SQLite's short busy wait."""
        return isinstance(exc, sqlite3.OperationalError) and _code(exc) & 0xFF in (
            sqlite3.SQLITE_BUSY,
            sqlite3.SQLITE_LOCKED,
        )

    def verify_open(self) -> None:
        """Check that the path still names the file opened (the owner's heartbeat calls this).

        Raises:
            StoreFileLostError: the file was deleted, or replaced by another file.
        """
        if self._identity is None:
            return
        now = _identity(self.path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreFileLostError(path=self.path, what=what)

    def begin(self, conn: Any, cursor: Any) -> None:
        """Take the write lock up front, so a transaction never fails to upgrade a read lock."""
        cursor.execute("BEGIN IMMEDIATE")

    def commit(self, conn: Any, cursor: Any) -> None:
        """Commit (the connection is in autocommit mode: transactions are explicit)."""
        cursor.execute("COMMIT")
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back the explicit transaction, unless SQLite already did (a full disk, I/O)."""
        if conn.in_transaction:
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


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", -1) or -1)


def _identity(path: str) -> tuple[int, int] | None:
    """The file's ``(device, inode)``, or ``None`` once no file has that path."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _exists_read_only(path: str) -> bool:
    """Whether the file exists and this process may not write it or create its WAL beside it."""
    if not os.path.exists(path):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    return not os.access(path, os.W_OK) or not os.access(folder, os.W_OK)


def _busy_timeout(url: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise StoreError(
            f"invalid busy_timeout {value!r} in store URL {url!r}: use seconds, such as 30"
        )
    return seconds


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path:
        raise StoreError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
    return path
