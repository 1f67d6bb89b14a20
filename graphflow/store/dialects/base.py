"""What differs between databases: the ``Dialect`` protocol that the SQL store is written against.

The store writes portable SQL: ``text()`` with ``:name`` binds, compiled once per statement by
``Dialect.sql_dialect``. Everything a database does its own way goes through its dialect object:
connections and transactions, the lease clock, row locks, upserts and insert-ignore (SQLAlchemy
Core's per-dialect ``insert``), the claim statement, notifications and the schema's creation.

Portable SQL here means: no ``RETURNING`` outside a dialect hook, no ``ON CONFLICT`` in text, and
``SET`` lists that read a column before they assign it (MySQL evaluates them left to right). The
store reads a write's success from the cursor's ``rowcount``, which must count the rows a statement
matched, not only those it changed (MySQL: connect with the ``FOUND_ROWS`` client flag).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Insert, MetaData, Select, Table, bindparam, cast, select
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect
from sqlalchemy.schema import CreateIndex, CreateTable

from ...errors import StoreUnavailableError
from .._tx import Tx

__all__ = (
    "Claim",
    "Dialect",
    "bound_row",
    "claim_returning",
    "conditional_row",
    "create_tables_if_missing",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """An update that takes up to ``:limit`` rows no other transaction is taking, and returns them.

    ``parts`` pick the candidate rows, ``order_by`` the first ones; ``assign`` is the ``SET``
    list (reading columns before it assigns them); ``columns`` are returned for each taken row.
    """

    table: str
    key: str
    parts: Sequence[str]
    """Disjoint conditions whose union is the candidates, each of which an index serves in
    ``order_by`` order: a claim takes the first rows of each and orders those few, where one
    condition with ``OR`` in it makes the database sort every candidate (or scan the table)."""
    order_by: str
    assign: str
    columns: Sequence[str]


class Dialect(Protocol):
    """One database backend of the SQL store (SQLite, PostgreSQL; MySQL later).

    Hooks that run SQL take the open transaction ``tx``; they are called on the event loop when
    ``inline`` and in a worker thread otherwise, like every statement of the store.
    """

    sql_dialect: SqlAlchemyDialect
    """Compiles statements to the driver's SQL and parameter style (never connects)."""
    inline: bool
    """Whether statements run on the event loop (a local file) instead of in worker threads."""
    notifies: bool
    """Whether the database wakes other engines (LISTEN/NOTIFY) so they need not poll."""
    shared: bool
    """Whether other processes can open the same store (``False`` for an in-memory database)."""
    host_clock: bool
    """Whether leases run on this host's clock (one machine) rather than the database's."""
    clock_sql: str
    """SQL for the lease clock in seconds since the epoch; binds what ``clock_params`` gives."""
    lock_share: str
    """Clause that share-locks the rows a ``SELECT`` reads (the fence of a write), or ``""``."""
    lock_update: str
    """Clause that locks the rows a ``SELECT`` reads for an update, or ``""``."""
    skip_locked: str
    """Clause that locks the rows a ``SELECT`` reads, skipping rows others hold, or ``""``."""
    read_only: bool
    """Whether the store opened read-only (known once ``connect`` returned): writes are refused."""
    lock_wait: float
    """Seconds a write waits (asynchronously) while ``busy`` says another process holds a lock."""

    def clock_params(self) -> dict[str, Any]:
        """Parameters that ``clock_sql`` needs (the host's time when ``host_clock``)."""
        ...

    def connect(self) -> tuple[Any, Any]:
        """Open the DBAPI connections ``(writer, reader)`` (one object when they must be one).

        Raises:
            StoreError: the database cannot be reached or its driver is not installed.
        """
        ...

    def reconnect(self, *, writer: bool) -> Any:
        """A new writer (or reader) connection, in place of one the database dropped.

        Only called after ``lost`` said so, which an embedded database never does.

        Raises:
            StoreError: the database cannot be reached (yet).
        """
        ...

    def lost(self, conn: Any) -> bool:
        """Whether ``conn`` is gone (terminated, or the server restarted) and must be replaced.

        A transaction that failed before its commit on a lost connection never happened: the
        store runs it again on a new connection.
        """
        ...

    def close(self) -> None:
        """Release what the dialect holds besides the connections (called before they close)."""

    def begin(self, conn: Any, cursor: Any) -> None:
        """Start a write transaction on ``conn``."""
        ...

    def commit(self, conn: Any, cursor: Any) -> None:
        """Commit the transaction ``begin`` started."""
        ...

    def rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back the transaction ``begin`` started."""
        ...

    def insert_ignore(self, table: Table, key: Sequence[str]) -> Insert:
        """An insert of one row (binds named by column) that does nothing if ``key`` exists."""
        ...

    def upsert(self, table: Table, key: Sequence[str], where: ColumnElement[bool]) -> Insert:
        """Insert one row (binds named by column) if ``where`` holds, or update it.

        On a duplicate ``key``, every other column takes the new row's value instead.
        """
        ...

    def claim(self, tx: Tx, claim: Claim, params: dict[str, Any]) -> list[Any]:
        """Run ``claim`` with ``params`` (which bind ``:limit``); return the rows it took."""
        ...

    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` rolled back a whole transaction that may simply run again (a deadlock).

        Row locks can deadlock between processes; the database then aborts one transaction, and
        the store runs it again instead of failing the writes in it.
        """
        ...

    def unavailable(self, exc: BaseException) -> StoreUnavailableError | None:
        """The error to report when ``exc`` says the store cannot serve now; else ``None``.

        Locks held too long, a full disk, I/O errors, a lost connection: faults that pass, which
        must not fail a run (its engine replays it once the store is back). Errors in the data or
        in a statement return ``None``.
        """
        ...

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a lock another process holds, raised before anything ran.

        Only inline dialects say so: the store then waits without blocking the event loop and
        runs the transaction again, for ``lock_wait`` seconds at most.
        """
        ...

    def verify_open(self) -> None:
        """Check that the database opened is still the one the URL names (a file not replaced).

        Raises:
            StoreFileLostError: it is not; nothing written from now on would be seen.
        """
        ...

    def lock_key(self, tx: Tx, key: str) -> None:
        """Serialise, until ``tx`` ends, the transactions that lock the same ``key``.

        Flow control counts and takes the slots of a limit under its key. Nothing is needed where
        every writer is serialised anyway (SQLite); PostgreSQL takes a transaction-scoped advisory
        lock. A database without those can lock a row (``gf_meta``) ``FOR UPDATE``.
        """
        ...

    def notify(self, tx: Tx, payload: str) -> None:
        """Wake listening engines with ``payload`` when ``tx`` commits (nothing without)."""
        ...

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Call ``on_notify(payload)`` per notification until cancelled (return at once without).

        A lost connection is replaced (with backoff) and subscribed again; meanwhile notifications
        are missed, which ``on_notify`` hears as ``LISTEN_LOST`` and then ``LISTEN_BACK``.
        """
        ...

    def schema_lock(self, tx: Tx) -> AbstractContextManager[None]:
        """Hold off other processes creating the schema at the same time."""
        ...

    def has_table(self, tx: Tx, name: str) -> bool:
        """Whether table ``name`` exists."""
        ...

    def create_tables(self, tx: Tx, metadata: MetaData) -> None:
        """Create the tables and indexes of ``metadata`` that do not exist yet."""
        ...


def bound_row(table: Table, *, typed: bool) -> list[ColumnElement[Any]]:
    """One bind per column of ``table``, named by the column, for a ``SELECT`` list.

    ``typed`` casts each bind to its column's type, for databases that cannot infer the type of a
    bare parameter there (PostgreSQL).
    """
    return [
        cast(bindparam(column.name), column.type) if typed else bindparam(column.name)
        for column in table.columns
    ]


def conditional_row(table: Table, where: ColumnElement[bool], *, typed: bool) -> Select[Any]:
    """``SELECT <one bind per column> WHERE <where>``: the rows of a conditional insert."""
    return select(*bound_row(table, typed=typed)).where(where)


def first_rows(
    table: str,
    columns: Sequence[str],
    parts: Sequence[str],
    order_by: str,
    limit: str,
    *,
    lock: str = "",
) -> str:
    """``SELECT columns FROM table WHERE (part OR part ...) ORDER BY order_by LIMIT :limit``.

    Written as the first ``:limit`` rows of each part, ordered together: with disjoint parts
    that an index each serves in ``order_by`` order, the database reads a few rows per part
    instead of sorting every row that any part matches. ``lock`` (``FOR UPDATE SKIP LOCKED``)
    locks each part's first rows, skipping those other transactions hold; the few that are
    locked but not taken stay locked until this transaction ends.
    """
    ordered = [term.split()[0] for term in order_by.split(",")]
    selected = ", ".join(dict.fromkeys([*columns, *ordered]))
    firsts = " UNION ALL ".join(
        f"SELECT * FROM (SELECT {selected} FROM {table} WHERE {part}"
        f" ORDER BY {order_by} LIMIT :{limit}{lock}) part_{i}"
        for i, part in enumerate(parts)
    )
    return f"SELECT {', '.join(columns)} FROM ({firsts}) firsts ORDER BY {order_by} LIMIT :{limit}"


def claim_returning(tx: Tx, claim: Claim, params: dict[str, Any], skip_locked: str) -> list[Any]:
    """A claim as one ``UPDATE ... WHERE key IN (SELECT ... LIMIT) RETURNING`` statement.

    The candidates are the first ``:limit`` rows of each of ``claim.parts`` (each locked with
    ``skip_locked`` where rows are locked: PostgreSQL), ordered together.
    """
    candidates = first_rows(
        claim.table, [claim.key], claim.parts, claim.order_by, "limit", lock=skip_locked
    )
    sql = (
        f"UPDATE {claim.table} SET {claim.assign} WHERE {claim.key} IN ({candidates})"
        f" RETURNING {', '.join(claim.columns)}"
    )
    return tx.query(sql, params)


_DDL: dict[tuple[int, type, str], list[str]] = {}
"""The DDL of a metadata per SQLAlchemy dialect class: compiling it costs more than running it."""


def create_tables_if_missing(tx: Tx, metadata: MetaData, dialect: SqlAlchemyDialect) -> None:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` for every table of ``metadata``, in dependency order."""
    key = (id(metadata), type(dialect), dialect.name)
    statements = _DDL.get(key)
    if statements is None:
        statements = []
        for table in metadata.sorted_tables:
            statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
            statements.extend(
                str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
                for index in table.indexes
            )
        _DDL[key] = statements
    for statement in statements:
        tx.cursor.execute(statement)
