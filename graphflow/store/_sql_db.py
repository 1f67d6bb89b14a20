"""One SQL database as the store uses it: two connections, group-committed writes, reads.

Statements are compiled once per dialect and executed on the DBAPI connection, because the ORM and
even Core's per-call overhead would dominate a 15 µs SQLite commit. Writes go through a group
committer: concurrent writes share one transaction, and each caller is released only after that
commit. Inline dialects (SQLite) run statements on the event loop, the others in worker threads.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from sqlalchemy import ClauseElement, text

from .._threads import run_in_thread
from ..errors import LeaseLostError, SchemaVersionError, StoreError
from ._backoff import RECONNECT_FOR, reconnect_delays
from ._commit import GroupCommitter
from ._tx import Prepared, Tx
from .dialects import Dialect

__all__ = ("Op", "SqlDatabase")

T = TypeVar("T")
Op = Callable[[Tx], Any]
Build = Callable[[Dialect], ClauseElement]

# Compiled SQL per dialect class, shared by every store of the process: a dialect's statements
# depend on its class only, and compiling a Core upsert costs more than a SQLite commit.
_TEXT: dict[type, dict[str, str]] = {}
_TRANSIENT_RETRIES = 3  # deadlock victims run again this often before the error is reported
_LOST_RETRIES = 3  # a statement runs again on this many new connections before it fails
_LOG = logging.getLogger("graphflow")
_PREPARED: dict[tuple[type, Build], Prepared] = {}


class SqlDatabase:
    """Connections, transactions and group commit for one store URL, on its dialect."""

    def __init__(self, url: str, dialect: Dialect) -> None:
        self.url = url
        self.dialect = dialect
        self._compiled = _TEXT.setdefault(type(dialect), {})
        self._writer: Any = None
        self._reader: Any = None
        self._read_lock = anyio.Lock()
        # Blocking drivers run in two threads of the store's own: one writes (batch after batch),
        # one reads. A hop there costs a third less than anyio's (no checkpoints, no limiter).
        self._threads = None if dialect.inline else ThreadPoolExecutor(2, "graphflow-store")
        self._committer = GroupCommitter(
            self._run_batch, inline=dialect.inline, offload=self._in_thread
        )

    def sql(self, statement: str) -> str:
        """``statement`` (text with ``:name`` binds) in the dialect's parameter style, cached."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = str(text(statement).compile(dialect=self.dialect.sql_dialect))
            self._compiled[statement] = compiled
        return compiled

    def prepare(self, build: Build, columns: Sequence[str] | None = None) -> Prepared:
        """The Core statement ``build(dialect)`` compiled, once per dialect class and ``build``.

        ``columns`` limits an insert's binds to these columns (the others take the statement's
        own values).
        """
        key = (type(self.dialect), build)
        prepared = _PREPARED.get(key)
        if prepared is None:
            keys = list(columns) if columns is not None else None
            compiled = build(self.dialect).compile(
                dialect=self.dialect.sql_dialect, column_keys=keys
            )
            prepared = _PREPARED[key] = Prepared(str(compiled))
        return prepared

    async def open(self, create_schema: Op) -> None:
        """Connect, then run ``create_schema`` in the first transaction."""
        if self.dialect.inline:
            self._writer, self._reader = self.dialect.connect()
        else:
            self._writer, self._reader = await self._in_thread(_call, self.dialect.connect)
        await self._committer.submit(create_schema)

    async def _in_thread(self, fn: Callable[[Any], T], arg: Any) -> T:
        """``fn(arg)`` in a store thread; a cancel waits for it (a connection is never shared)."""
        with anyio.CancelScope(shield=True):
            result = await run_in_thread(functools.partial(fn, arg), self._threads)
        return result

    async def aclose(self) -> None:
        """Close the connections."""
        for conn in {id(c): c for c in (self._writer, self._reader) if c is not None}.values():
            conn.close()
        self._writer = self._reader = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = ThreadPoolExecutor(2, "graphflow-store")  # if opened again

    async def write(self, op: Op) -> Any:
        """Run ``op`` in the next group-committed transaction; return its result."""
        return await self._committer.submit(op)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on the read connection."""
        if self._reader is None:
            raise StoreError(f"store {self.url!r} is closed")
        if self.dialect.inline:
            return self._read_now(fn)
        async with self._read_lock:
            return await self._in_thread(self._read_again, fn)

    def _read_now(self, fn: Callable[[Tx], T]) -> T:
        cursor = self._reader.cursor()
        try:
            return fn(Tx(cursor, self.sql))
        except Exception as exc:
            raise _store_error(self.url, exc) from exc
        finally:
            _close_quietly(cursor)

    def _read_again(self, fn: Callable[[Tx], T]) -> T:
        """``_read_now``; on a connection the database dropped, again on a new one."""
        for attempt in range(_LOST_RETRIES + 1):
            reader = self._reader = self._replaced(self._reader, writer=False)
            try:
                return self._read_now(fn)
            except StoreError as exc:
                if not self.dialect.lost(reader) or attempt == _LOST_RETRIES:
                    raise
                _LOG.warning("store %r lost its read connection, reconnecting: %s", self.url, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_batch(self, ops: Sequence[Op]) -> list[tuple[bool, Any]]:
        """Run ``ops`` in one transaction; on a database error, retry each one alone.

        Without a connection (lost, and not back in time) or after a commit of unknown outcome,
        every op fails with that error at once: running them one by one could only repeat it.
        """
        if self._writer is None:
            raise StoreError(f"store {self.url!r} is closed")
        try:
            return self._transaction_again(ops)
        except _Unavailable as exc:
            return [(False, exc)] * len(ops)
        except Exception as exc:
            if len(ops) == 1:
                return [(False, _store_error(self.url, exc))]
        results: list[tuple[bool, Any]] = []
        for op in ops:
            try:
                results.extend(self._transaction_again([op]))
            except Exception as exc:
                results.append((False, _store_error(self.url, exc)))
        return results

    def _transaction_again(self, ops: Sequence[Op]) -> list[tuple[bool, Any]]:
        """``_transaction``, run again when it never happened: a deadlock, a lost connection.

        A deadlock victim first waits a little (10, 20, 40 ms, with jitter) so that the
        transaction that won takes the rows it waited for: a victim that came straight back could
        lock them again and deadlock with the same winner. Only threaded dialects can deadlock or
        lose a connection, so these waits never block the event loop. A transaction that failed
        on a lost connection before its commit runs again on a new one (``_replaced`` waits for
        it); a lost commit's outcome is unknown, and it fails as ``_Unavailable``.
        """
        deadlocks = lost = 0
        while True:
            conn = self._writer = self._replaced(self._writer, writer=True)
            try:
                return self._transaction(conn, ops)
            except _Unavailable:
                raise
            except Exception as exc:
                if self.dialect.lost(conn) and lost < _LOST_RETRIES:
                    lost += 1
                    _LOG.warning(
                        "store %r lost its write connection, reconnecting: %s", self.url, exc
                    )
                elif self.dialect.transient(exc) and deadlocks < _TRANSIENT_RETRIES:
                    time.sleep(0.01 * 2**deadlocks * (1 + random.random()))
                    deadlocks += 1
                else:
                    raise

    def _transaction(self, conn: Any, ops: Sequence[Op]) -> list[tuple[bool, Any]]:
        dialect = self.dialect
        cursor = conn.cursor()
        try:
            dialect.begin(conn, cursor)
            tx = Tx(cursor, self.sql)
            results: list[tuple[bool, Any]] = []
            try:
                for op in ops:
                    try:
                        results.append((True, op(tx)))
                    except (LeaseLostError, SchemaVersionError) as exc:
                        results.append((False, exc))
            except BaseException:
                self._rollback(conn, cursor)
                raise
            self._commit(conn, cursor)
        finally:
            _close_quietly(cursor)
        return results

    def _commit(self, conn: Any, cursor: Any) -> None:
        """Commit; a connection lost meanwhile leaves the outcome unknown: ``_Unavailable``."""
        try:
            self.dialect.commit(conn, cursor)
        except Exception as exc:
            if self.dialect.lost(conn):
                raise _Unavailable(
                    f"store {self.url!r} lost its connection while committing, so whether the"
                    f" writes were stored is unknown ({type(exc).__name__}: {exc}); what depends"
                    " on them is retried from what the store holds"
                ) from exc
            self._rollback(conn, cursor)
            raise

    def _rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back, unless the connection is gone (and its transaction with it)."""
        if not self.dialect.lost(conn):
            self.dialect.rollback(conn, cursor)

    def _replaced(self, conn: Any, *, writer: bool) -> Any:
        """``conn``, or a new connection if the database dropped it (waiting, with backoff).

        Raises:
            StoreError: the store is closed.
            _Unavailable: no new connection within ``RECONNECT_FOR`` seconds.
        """
        if conn is None:
            raise StoreError(f"store {self.url!r} is closed")
        if not self.dialect.lost(conn):
            return conn
        _close_quietly(conn)
        role = "write" if writer else "read"
        deadline = time.monotonic() + RECONNECT_FOR
        for delay in reconnect_delays():
            try:
                new = self.dialect.reconnect(writer=writer)
            except StoreError as exc:
                if time.monotonic() + delay > deadline:
                    raise _Unavailable(
                        f"store {self.url!r} lost its {role} connection and could not reconnect"
                        f" within {RECONNECT_FOR:g} s: {exc}. Check that the database is up;"
                        " the engine keeps trying, and its runs go on from what is stored"
                    ) from exc
                time.sleep(delay)
            else:
                _LOG.info("store %r: %s connection restored", self.url, role)
                return new
        raise AssertionError("unreachable: reconnect_delays never ends")  # pragma: no cover


class _Unavailable(StoreError):
    """The database cannot be reached, or a commit's outcome is unknown: a store fault."""


def _call(fn: Callable[[], T]) -> T:
    return fn()


def _close_quietly(resource: Any) -> None:
    """Close a cursor or connection that may be broken already."""
    try:
        resource.close()
    except Exception as exc:  # a dropped connection cannot be closed any more
        _LOG.debug("closing %r failed: %s", resource, exc)


def _store_error(url: str, exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"store {url!r} failed: {type(exc).__name__}: {exc}")
