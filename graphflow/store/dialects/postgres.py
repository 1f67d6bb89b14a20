"""PostgreSQL through psycopg 3: many processes, many machines, one database.

Statements run in worker threads (one per connection at a time). Leases run on the database's
clock, so hosts with drifting clocks still agree; claims skip rows other workers are taking; and
``NOTIFY`` wakes idle engines at once instead of at their next poll.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from sqlalchemy import ColumnElement, Insert, MetaData, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect

from ...errors import StoreError
from .._tx import Tx
from .base import Claim, claim_returning, conditional_row, create_tables_if_missing

__all__ = ("PostgresDialect",)

_CHANNEL = "graphflow"
_SCHEMA_LOCK = 7474251  # pg_advisory_xact_lock key: one schema creation at a time
_KEY_LOCKS = 7474  # the class of lock_key's two-key advisory locks (apart from _SCHEMA_LOCK's)


class PostgresDialect:
    """The ``Dialect`` of PostgreSQL."""

    inline = False
    notifies = True
    shared = True
    host_clock = False
    clock_sql = "extract(epoch from clock_timestamp())"
    lock_share = " FOR SHARE"
    lock_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
        # Compiles only. psycopg 2's dialect, unlike psycopg 3's, adds no ``::VARCHAR`` casts to
        # binds, so statements run as written; both drivers take ``%(name)s`` parameters.
        self.sql_dialect: SqlAlchemyDialect = postgresql.psycopg2.dialect()  # type: ignore[no-untyped-call]

    def clock_params(self) -> dict[str, Any]:
        """None: the clock is the database's."""
        return {}

    def connect(self) -> tuple[Any, Any]:
        """A writer (explicit transactions) and an autocommit reader."""
        return self._connect("write", autocommit=False), self._connect("read", autocommit=True)

    def _connect(self, role: str, *, autocommit: bool) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError(
                "PostgreSQL stores need psycopg 3: pip install 'graphflow[postgres]'"
            ) from exc
        try:
            return psycopg.connect(
                self.conninfo, autocommit=autocommit, application_name=f"graphflow {role}"
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.url!r}: {exc}") from exc

    def begin(self, conn: Any, cursor: Any) -> None:
        """Nothing: psycopg opens a transaction at the first statement."""

    def commit(self, conn: Any, cursor: Any) -> None:
        """Commit the connection's transaction."""
        conn.commit()

    def rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back the connection's transaction."""
        conn.rollback()

    def insert_ignore(self, table: Table, key: Sequence[str]) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO NOTHING``."""
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))

    def upsert(self, table: Table, key: Sequence[str], where: ColumnElement[bool]) -> Insert:
        """``INSERT ... SELECT CAST(...) ... WHERE ... ON CONFLICT (key) DO UPDATE``.

        PostgreSQL cannot infer the type of a bare parameter in a ``SELECT`` list: cast each one.
        """
        names = [column.name for column in table.columns]
        rows = conditional_row(table, where, typed=True)
        stmt = postgresql.insert(table).from_select(names, rows)
        updates = {name: stmt.excluded[name] for name in names if name not in key}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)

    def claim(self, tx: Tx, claim: Claim, params: dict[str, Any]) -> list[Any]:
        """One ``UPDATE ... RETURNING`` whose candidates skip rows other workers hold."""
        return claim_returning(tx, claim, params, self.skip_locked)

    def transient(self, exc: BaseException) -> bool:
        """A deadlock victim or a serialization failure (the transaction was aborted whole)."""
        import psycopg.errors

        return isinstance(
            exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )

    def lock_key(self, tx: Tx, key: str) -> None:
        """A transaction-scoped advisory lock on the key's hash: released by the commit."""
        tx.query(f"SELECT pg_advisory_xact_lock({_KEY_LOCKS}, hashtext(:key))", {"key": key})

    def notify(self, tx: Tx, payload: str) -> None:
        """``pg_notify``: delivered to listeners when ``tx`` commits."""
        tx.execute(f"SELECT pg_notify('{_CHANNEL}', :payload)", {"payload": payload})

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """``LISTEN`` on a connection of its own, pumped in a worker thread, until cancelled."""
        conn = await anyio.to_thread.run_sync(lambda: self._connect("listen", autocommit=True))
        stop = threading.Event()
        token = anyio.lowlevel.current_token()

        def deliver(payload: str) -> None:
            if not stop.is_set():
                anyio.from_thread.run_sync(on_notify, payload, token=token)

        def pump() -> None:
            try:
                conn.execute(f"LISTEN {_CHANNEL}")
                while not stop.is_set():
                    for notice in conn.notifies(timeout=0.25):
                        deliver(notice.payload)
            finally:
                conn.close()

        try:
            await anyio.to_thread.run_sync(pump, abandon_on_cancel=True)
        finally:
            stop.set()

    def schema_lock(self, tx: Tx) -> AbstractContextManager[None]:
        """A transaction-scoped advisory lock: released by the commit."""
        return _advisory_lock(tx)

    def has_table(self, tx: Tx, name: str) -> bool:
        """``to_regclass`` is ``NULL`` for a missing table."""
        rows = tx.query("SELECT to_regclass(:name)", {"name": name})
        return bool(rows) and rows[0][0] is not None

    def create_tables(self, tx: Tx, metadata: MetaData) -> None:
        """``CREATE TABLE/INDEX IF NOT EXISTS`` (under ``schema_lock``)."""
        create_tables_if_missing(tx, metadata, self.sql_dialect)


@contextmanager
def _advisory_lock(tx: Tx) -> Iterator[None]:
    tx.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
    yield
