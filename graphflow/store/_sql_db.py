"""One SQL database as the store uses it: two connections, group-committed writes, reads.

Statements are compiled once per dialect and executed on the DBAPI connection, because the ORM and
even Core's per-call overhead would dominate a 15 µs SQLite commit. Writes go through a group
committer: concurrent writes share one transaction, and each caller is released only after that
commit. Inline dialects (SQLite) run statements on the event loop, the others in worker threads.

Errors leave as ``StoreError``: ``StoreUnavailableError`` when the store cannot serve now (a lock
held too long, a full disk, a lost connection: the dialect says which), which callers retry; a
plain ``StoreError`` for anything else. An inline transaction that finds another process's lock is
not waited for on the loop: the committer waits asynchronously and runs it again (``Busy``).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from sqlalchemy import ClauseElement, text

from .._threads import run_in_thread
from ..errors import (
    LeaseLostError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from ._backoff import RECONNECT_FOR, reconnect_delays
from ._commit import Busy, GroupCommitter
from ._tx import Prepared, Tx
from .dialects import Dialect, dialect_for

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
            self._run_batch,
            inline=dialect.inline,
            offload=self._in_thread,
            lock_wait=lambda: dialect.lock_wait,
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

    async def open(self, create_schema: Op, check_schema: Op | None = None) -> None:
        """Connect; create or check the schema (``check_schema`` reads it when read-only)."""
        if self.dialect.inline:
            self._writer, self._reader = self.dialect.connect()
        else:
            self._writer, self._reader = await self._in_thread(_call, self.dialect.connect)
        if self.dialect.read_only:
            await self.read(check_schema or create_schema)
        else:
            await self._committer.submit(create_schema)

    def verify_open(self) -> None:
        """Raise ``StoreFileLostError`` if the database file was deleted or replaced."""
        self.dialect.verify_open()

    async def _in_thread(self, fn: Callable[[Any], T], arg: Any) -> T:
        """``fn(arg)`` in a store thread; a cancel waits for it (a connection is never shared)."""
        with anyio.CancelScope(shield=True):
            result = await run_in_thread(functools.partial(fn, arg), self._threads)
        return result

    async def aclose(self) -> None:
        """Close the connections."""
        self.dialect.close()
        for conn in {id(c): c for c in (self._writer, self._reader) if c is not None}.values():
            conn.close()
        self._writer = self._reader = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = ThreadPoolExecutor(2, "graphflow-store")  # if opened again

    def write(self, op: Op) -> Awaitable[Any]:
        """Run ``op`` in the next group-committed transaction; await its result.

        The committer's awaitable itself (no coroutine of this method's: one less per write).
        """
        return self._committer.submit(op)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on the read connection."""
        if self._reader is None:
            raise StoreError(f"store {self.url!r} is closed")
        if self.dialect.inline:
            try:
                return self._read_now(fn)
            except Busy:
                return await self._read_when_free(fn)
        async with self._read_lock:
            return await self._in_thread(self._read_again, fn)

    async def _read_when_free(self, fn: Callable[[Tx], T]) -> T:
        """Read again, waiting between tries without blocking the loop, for ``lock_wait``."""
        deadline = time.monotonic() + self.dialect.lock_wait
        delay = 0.001
        while True:
            await anyio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)
            try:
                return self._read_now(fn)
            except Busy as busy:
                if time.monotonic() >= deadline:
                    raise busy.error from busy.__cause__

    def _read_now(self, fn: Callable[[Tx], T]) -> T:
        cursor = self._reader.cursor()
        try:
            return fn(Tx(cursor, self.sql))
        except Exception as exc:
            if self.dialect.busy(exc):
                raise Busy(self.error(exc)) from exc
            raise self.error(exc) from exc
        finally:
            _close_quietly(cursor)

    def error(self, exc: BaseException) -> BaseException:
        """``exc`` as the store reports it: a ``StoreUnavailableError`` when it will pass."""
        return _classified(self.url, self.dialect, exc)

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

        Raises:
            Busy: another process holds the write lock; nothing ran.
        """
        if self._writer is None:
            raise StoreError(f"store {self.url!r} is closed")
        if self.dialect.read_only:
            raise ReadOnlyStoreError(url=self.url, problem="it was opened read-only")
        try:
            return self._transaction_again(ops)
        except Busy:
            raise
        except _Unavailable as exc:
            return [(False, exc)] * len(ops)
        except Exception as exc:
            if len(ops) == 1:
                return [(False, self.error(exc))]
        results: list[tuple[bool, Any]] = []
        for op in ops:
            try:
                results.extend(self._transaction_again([op]))
            except Busy as busy:
                results.append((False, busy.error))
            except Exception as exc:
                results.append((False, self.error(exc)))
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
            except (_Unavailable, Busy):
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
            try:
                dialect.begin(conn, cursor)
            except Exception as exc:
                if dialect.busy(exc):
                    raise Busy(self.error(exc)) from exc
                raise
            tx = Tx(cursor, self.sql)
            results: list[tuple[bool, Any]] = []
            try:
                for op in ops:
                    try:
                        results.append((True, op(tx)))
                    except (LeaseLostError, SchemaVersionError) as exc:
                        results.append((False, exc))
            except BaseException as exc:
                self._rollback(conn, cursor, exc)
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
                    url=self.url,
                    problem="the connection was lost while committing, so whether the writes"
                    f" were stored is unknown ({type(exc).__name__}: {exc}); what depends on"
                    " them is retried from what the store holds",
                ) from exc
            self._rollback(conn, cursor, exc)
            raise

    def _rollback(self, conn: Any, cursor: Any, cause: BaseException) -> None:
        """Roll back, unless the connection is gone (and its transaction with it).

        A failing rollback must not hide ``cause``, why the transaction failed.
        """
        if self.dialect.lost(conn):
            return
        try:
            self.dialect.rollback(conn, cursor)
        except Exception as exc:
            cause.add_note(f"(rolling back failed too: {type(exc).__name__}: {exc})")

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
                        url=self.url,
                        problem=f"it lost its {role} connection and could not reconnect within"
                        f" {RECONNECT_FOR:g} s ({exc}); check that the database is up",
                    ) from exc
                time.sleep(delay)
            else:
                _LOG.info("store %r: %s connection restored", self.url, role)
                return new
        raise AssertionError("unreachable: reconnect_delays never ends")  # pragma: no cover


class _Unavailable(StoreUnavailableError):
    """The database cannot be reached, or a commit's outcome is unknown: fail the whole batch."""


def _call(fn: Callable[[], T]) -> T:
    return fn()


def _close_quietly(resource: Any) -> None:
    """Close a cursor or connection that may be broken already."""
    try:
        resource.close()
    except Exception as exc:  # a dropped connection cannot be closed any more
        _LOG.debug("closing %r failed: %s", resource, exc)


def _classified(url: str, dialect: Dialect, exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    unavailable = dialect.unavailable(exc)
    if unavailable is not None:
        return unavailable
    return StoreError(f"store {url!r} failed: {type(exc).__name__}: {exc}")


def _store_error(url: str, exc: BaseException) -> BaseException:
    """``exc`` (a driver's error) as the store for ``url`` reports it (``SqlDatabase.error``)."""
    return _classified(url, dialect_for(url), exc)
