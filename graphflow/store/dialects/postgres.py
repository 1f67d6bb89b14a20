"""PostgreSQL through psycopg 3: many processes, many machines, one database.

Statements run in worker threads (one per connection at a time). Leases run on the database's
clock, so hosts with drifting clocks still agree; claims skip rows other workers are taking; and
``NOTIFY`` wakes idle engines at once instead of at their next poll.
"""

from __future__ import annotations

import logging
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

from ...errors import StoreError, StoreUnavailableError
from ...errors._store import hide_password
from .._backoff import reconnect_delays
from .._tx import Tx
from ..base import LISTEN_BACK, LISTEN_LOST
from .base import Claim, claim_returning, conditional_row, create_tables_if_missing

__all__ = ("PostgresDialect",)

_CHANNEL = "graphflow"
_SCHEMA_LOCK = 7474251  # pg_advisory_xact_lock key: one schema creation at a time
_KEY_LOCKS = 7474  # the class of lock_key's two-key advisory locks (apart from _SCHEMA_LOCK's)
_LOG = logging.getLogger("graphflow")


_PG_UNAVAILABLE = {
    "53100": "the server's disk is full",
    "53200": "the server ran out of memory",
    "53300": "the server has too many connections",
    "53": "the server ran out of resources",
    "57P01": "the server is shutting down or restarting (or terminated the connection)",
    "57P02": "the server is shutting down or restarting",
    "57P03": "the server is starting up and accepts no connections yet",
    "08": "the connection to the server was lost or refused",
}
"""SQLSTATEs (and their classes) that say the server cannot serve now, in plain words."""


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
    read_only = False
    lock_wait = 0.0

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
        return self.reconnect(writer=True), self.reconnect(writer=False)

    def reconnect(self, *, writer: bool) -> Any:
        """A new writer (explicit transactions) or autocommit reader."""
        return self._connect("write" if writer else "read", autocommit=not writer)

    def lost(self, conn: Any) -> bool:
        """Whether psycopg marked ``conn`` broken (the server dropped it) or it was closed."""
        return bool(conn.broken or conn.closed)

    def _connect(self, role: str, *, autocommit: bool) -> Any:
        """A connection named ``graphflow <role>`` in ``pg_stat_activity``, unless the URL names it.

        Connecting gives up after 10 s unless the URL says otherwise (a host that does not answer
        would hold a reconnect for minutes).
        """
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError(
                "PostgreSQL stores need psycopg 3: pip install 'graphflow[postgres]'"
            ) from exc
        try:
            given = conninfo_to_dict(self.conninfo)
            defaults: dict[str, str | int] = {
                "application_name": f"graphflow {role}",
                "connect_timeout": 10,
            }
            options = {key: value for key, value in defaults.items() if key not in given}
            return psycopg.connect(make_conninfo(self.conninfo, **options), autocommit=autocommit)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.url!r}: {exc}") from exc

    def close(self) -> None:
        """Nothing besides the connections."""

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

    def unavailable(self, exc: BaseException) -> StoreUnavailableError | None:
        """A lost or refused connection, a server shutting down, a full disk, out of resources."""
        import psycopg

        if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return None
        state = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
        problem = _PG_UNAVAILABLE.get(state) or _PG_UNAVAILABLE.get(state[:2])
        if problem is None:
            problem = (
                f"the connection to the server failed ({str(exc).strip() or type(exc).__name__})"
            )
        return StoreUnavailableError(url=self.url, problem=problem)

    def busy(self, exc: BaseException) -> bool:
        """Never: statements run in threads, where waiting for a lock blocks no event loop."""
        return False

    def verify_open(self) -> None:
        """Nothing to check: a server's database cannot be swapped under a connection."""

    def lock_key(self, tx: Tx, key: str) -> None:
        """A transaction-scoped advisory lock on the key's hash: released by the commit."""
        tx.query(f"SELECT pg_advisory_xact_lock({_KEY_LOCKS}, hashtext(:key))", {"key": key})

    def notify(self, tx: Tx, payload: str) -> None:
        """``pg_notify``: delivered to listeners when ``tx`` commits."""
        tx.execute(f"SELECT pg_notify('{_CHANNEL}', :payload)", {"payload": payload})

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """``LISTEN`` on a connection of its own, pumped in a worker thread, until cancelled.

        A lost connection is replaced, with backoff, and subscribed again; ``on_notify`` hears
        ``LISTEN_LOST`` when it is lost and ``LISTEN_BACK`` once notifications flow again.
        """
        token = anyio.lowlevel.current_token()
        lost = False
        while True:
            conn = await self._listening_connection()
            if lost:
                _LOG.info("listening to %s again", hide_password(self.url))
                on_notify(LISTEN_BACK)
            try:
                await self._pump(conn, on_notify, token)
            except Exception as exc:  # whatever ended the connection: replace it
                _LOG.warning(
                    "lost the notification connection to %s (polling until it is back): %s",
                    hide_password(self.url),
                    exc,
                )
                lost = True
                on_notify(LISTEN_LOST)

    async def _listening_connection(self) -> Any:
        """A connection that ran ``LISTEN``, connecting again (with backoff) until one does."""
        for delay in reconnect_delays():
            try:
                return await anyio.to_thread.run_sync(self._subscribe, abandon_on_cancel=True)
            except Exception as exc:
                _LOG.debug("cannot listen to %s yet: %s", hide_password(self.url), exc)
            await anyio.sleep(delay)
        raise AssertionError("unreachable: reconnect_delays never ends")  # pragma: no cover

    def _subscribe(self) -> Any:
        conn = self._connect("listen", autocommit=True)
        try:
            conn.execute(f"LISTEN {_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    async def _pump(conn: Any, on_notify: Callable[[str], None], token: Any) -> None:
        """Deliver ``conn``'s notifications until cancelled; raise when the connection is lost."""
        stop = threading.Event()

        def deliver(payload: str) -> None:
            if not stop.is_set():
                anyio.from_thread.run_sync(on_notify, payload, token=token)

        def pump() -> None:
            try:
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
