"""The SQL store: one implementation for SQLite (files and ``memory://``) and PostgreSQL.

The schema is declared with sqlmodel (``tables``); statements are written once as SQLAlchemy
``text()`` and compiled per dialect, then executed on the DBAPI connection, because the ORM and even
Core's per-call overhead would dominate a 15 µs SQLite commit. Writes go through a group committer:
concurrent writes share one transaction, and each caller is released only after that commit.

SQLite statements run on the event loop: a WAL commit costs less than a hop to a worker thread.
PostgreSQL statements run in worker threads (one per connection at a time).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from .._types import TERMINAL
from ..errors import LeaseLostError, SchemaVersionError, StoreError
from ._commit import GroupCommitter
from ._sql_jobs import JobQueries
from .base import (
    SCHEMA_VERSION,
    AttemptRecord,
    ClaimQuery,
    Durability,
    Fence,
    OwnerRecord,
    RunRecord,
    StepRecord,
)
from .tables import METADATA, StepRow

__all__ = ("SqlStore",)

T = TypeVar("T")

_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(RunRecord))
_STEP_COLUMNS = tuple(f.name for f in dataclasses.fields(StepRecord))
_ATTEMPT_COLUMNS = tuple(f.name for f in dataclasses.fields(AttemptRecord))
_RUN_SELECT = f"SELECT {', '.join(_RUN_COLUMNS)} FROM gf_runs"


def _run(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(_RUN_COLUMNS, row, strict=True))
    values["cancel_requested"] = bool(values["cancel_requested"])
    return RunRecord(**values)


def _step(row: Sequence[Any]) -> StepRecord:
    values = dict(zip(_STEP_COLUMNS, row, strict=True))
    values["parents"] = tuple(json.loads(values["parents"] or "[]"))
    return StepRecord(**values)


def _params(record: Any, columns: Sequence[str]) -> dict[str, Any]:
    """A record's fields as statement parameters (shallow: ``asdict`` deep-copies)."""
    return {column: getattr(record, column) for column in columns}


def _step_params(step: StepRecord) -> dict[str, Any]:
    params = _params(step, _STEP_COLUMNS)
    params["parents"] = json.dumps(list(step.parents))
    return params


class _Tx:
    """The statements of one transaction, on a DBAPI cursor."""

    def __init__(self, store: SqlStore, cursor: Any) -> None:
        self.store = store
        self.cursor = cursor

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        self.cursor.execute(self.store.sql(sql), params or {})
        return int(self.cursor.rowcount)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        self.cursor.execute(self.store.sql(sql), params or {})
        return list(self.cursor.fetchall())


Op = Callable[[_Tx], Any]


class SqlStore(JobQueries):
    """A ``Store`` on SQLite or PostgreSQL, chosen by URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        durability = options.pop("durability", "full")
        if durability not in ("full", "normal"):
            raise StoreError(
                f"invalid durability {durability!r} in store URL {url!r}: use full or normal"
            )
        self.durability: Durability = durability  # type: ignore[assignment]
        self.is_sqlite = scheme in ("sqlite", "memory")
        self._memory = scheme == "memory"
        if self.is_sqlite:
            self._path = ":memory:" if self._memory else _sqlite_path(url)
            self._dialect: Dialect = sqlite.dialect(paramstyle="named")
            self.lock_share = ""
            self.lock_update = ""
            self.skip_locked = ""
        else:
            self._conninfo = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
            self._dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
            self.lock_share = " FOR SHARE"
            self.lock_update = " FOR UPDATE"
            self.skip_locked = " FOR UPDATE SKIP LOCKED"
        self._compiled: dict[str, str] = {}
        self._fenced_upsert = _fenced_upsert_step(self._dialect, self.lock_share)
        self._writer: Any = None
        self._reader: Any = None
        self._read_lock = anyio.Lock()
        self._committer = GroupCommitter(self._run_batch, inline=self.is_sqlite)

    # --- connections ------------------------------------------------------------------------

    def sql(self, statement: str) -> str:
        """``statement`` in this dialect's parameter style (compiled once)."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = str(text(statement).compile(dialect=self._dialect))
            self._compiled[statement] = compiled
        return compiled

    @property
    def lease_now(self) -> str:
        """SQL for the lease clock: the database's on PostgreSQL, ``:lease_now`` on SQLite."""
        return ":lease_now" if self.is_sqlite else "extract(epoch from clock_timestamp())"

    async def open(self) -> None:
        """Connect and create or check the schema."""
        try:
            if self.is_sqlite:
                self._writer = self._connect_sqlite()
                self._reader = self._writer if self._memory else self._connect_sqlite()
            else:
                self._writer = await anyio.to_thread.run_sync(self._connect_pg, False)
                self._reader = await anyio.to_thread.run_sync(self._connect_pg, True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.url!r}: {exc}") from exc
        await self._committer.submit(self._create_schema)

    def _connect_sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        if not self._memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _connect_pg(self, autocommit: bool) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError(
                "PostgreSQL stores need psycopg 3: pip install 'graphflow[postgres]'"
            ) from exc
        try:
            return psycopg.connect(self._conninfo, autocommit=autocommit)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.url!r}: {exc}") from exc

    def _create_schema(self, tx: _Tx) -> None:
        if not self.is_sqlite:
            tx.execute("SELECT pg_advisory_xact_lock(7474251)")
        found = self._schema_version(tx)
        if found is not None:
            # No DDL on an existing schema: CREATE INDEX IF NOT EXISTS still takes a table lock
            # that can deadlock with running workers.
            if found != SCHEMA_VERSION:
                raise SchemaVersionError(url=self.url, found=found, expected=SCHEMA_VERSION)
            return
        for table in METADATA.sorted_tables:
            tx.cursor.execute(
                str(CreateTable(table, if_not_exists=True).compile(dialect=self._dialect))
            )
            for index in table.indexes:
                tx.cursor.execute(
                    str(CreateIndex(index, if_not_exists=True).compile(dialect=self._dialect))
                )
        tx.execute(
            "INSERT INTO gf_meta (key, value) VALUES ('schema_version', :v)"
            " ON CONFLICT (key) DO NOTHING",
            {"v": str(SCHEMA_VERSION)},
        )
        found = self._schema_version(tx)
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(url=self.url, found=found or 0, expected=SCHEMA_VERSION)

    def _schema_version(self, tx: _Tx) -> int | None:
        exists = (
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gf_meta'"
            if self.is_sqlite
            else "SELECT to_regclass('gf_meta')"
        )
        rows = tx.query(exists)
        if not rows or rows[0][0] is None:
            return None
        rows = tx.query("SELECT value FROM gf_meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else None

    async def aclose(self) -> None:
        """Close the connections."""
        for conn in {id(c): c for c in (self._writer, self._reader) if c is not None}.values():
            conn.close()
        self._writer = self._reader = None

    # --- execution --------------------------------------------------------------------------

    def _run_batch(self, ops: Sequence[Op]) -> list[tuple[bool, Any]]:
        """Run ``ops`` in one transaction; on a database error, retry each one alone."""
        if self._writer is None:
            raise StoreError(f"store {self.url!r} is closed")
        try:
            return self._transaction(ops)
        except Exception as exc:
            if len(ops) == 1:
                return [(False, _store_error(self.url, exc))]
        results: list[tuple[bool, Any]] = []
        for op in ops:
            try:
                results.extend(self._transaction([op]))
            except Exception as exc:
                results.append((False, _store_error(self.url, exc)))
        return results

    def _transaction(self, ops: Sequence[Op]) -> list[tuple[bool, Any]]:
        cursor = self._writer.cursor()
        if self.is_sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        tx = _Tx(self, cursor)
        results: list[tuple[bool, Any]] = []
        try:
            for op in ops:
                try:
                    results.append((True, op(tx)))
                except (LeaseLostError, SchemaVersionError) as exc:
                    results.append((False, exc))
            self._writer.commit() if not self.is_sqlite else cursor.execute("COMMIT")
        except BaseException:
            self._writer.rollback() if not self.is_sqlite else cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return results

    async def write(self, op: Op) -> Any:
        """Run ``op`` in the next group-committed transaction; return its result."""
        return await self._committer.submit(op)

    def notify(self, tx: _Tx, payload: str) -> None:
        """Wake listening engines when ``tx`` commits (PostgreSQL's NOTIFY; nothing on SQLite)."""
        if not self.is_sqlite:
            tx.execute("SELECT pg_notify('graphflow', :payload)", {"payload": payload})

    async def read(self, fn: Callable[[_Tx], T]) -> T:
        """Run ``fn`` on the read connection."""
        if self._reader is None:
            raise StoreError(f"store {self.url!r} is closed")
        if self.is_sqlite:
            return self._read_now(fn)
        async with self._read_lock:
            return await anyio.to_thread.run_sync(self._read_now, fn)

    def _read_now(self, fn: Callable[[_Tx], T]) -> T:
        cursor = self._reader.cursor()
        try:
            return fn(_Tx(self, cursor))
        except Exception as exc:
            raise _store_error(self.url, exc) from exc
        finally:
            cursor.close()

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Call ``on_notify(payload)`` for every notification, until cancelled (PostgreSQL).

        On SQLite there is nothing to listen to: engines poll.
        """
        if self.is_sqlite:
            return
        conn = await anyio.to_thread.run_sync(self._connect_pg, True)
        stop = threading.Event()
        token = anyio.lowlevel.current_token()

        def deliver(payload: str) -> None:
            if not stop.is_set():
                anyio.from_thread.run_sync(on_notify, payload, token=token)

        def pump() -> None:
            try:
                conn.execute("LISTEN graphflow")
                while not stop.is_set():
                    for notice in conn.notifies(timeout=0.25):
                        deliver(notice.payload)
            finally:
                conn.close()

        try:
            await anyio.to_thread.run_sync(pump, abandon_on_cancel=True)
        finally:
            stop.set()

    # --- clock and owners ---------------------------------------------------------------------

    async def now(self) -> float:
        """The lease clock: the database's on PostgreSQL, this host's on SQLite."""
        if self.is_sqlite:
            return time.time()
        return float(await self.read(lambda tx: tx.query(f"SELECT {self.lease_now}")[0][0]))

    def lease_params(self) -> dict[str, Any]:
        """Parameters that ``lease_now`` needs."""
        return {"lease_now": time.time()} if self.is_sqlite else {}

    async def register_owner(self, owner: OwnerRecord) -> None:
        """Record an engine process and the functions it serves."""
        params = {
            "owner_id": owner.owner_id,
            "host": owner.host,
            "pid": owner.pid,
            "started_at": owner.started_at,
            "functions": json.dumps(sorted(owner.functions)),
            **self.lease_params(),
        }
        await self.write(
            lambda tx: tx.execute(
                "INSERT INTO gf_owners (owner_id, host, pid, started_at, heartbeat_at, functions)"
                f" VALUES (:owner_id, :host, :pid, :started_at, {self.lease_now}, :functions)"
                " ON CONFLICT (owner_id) DO NOTHING",
                params,
            )
        )

    async def remove_owner(self, owner_id: str) -> None:
        """Forget an engine process and release its runs."""

        def op(tx: _Tx) -> None:
            tx.execute(
                "UPDATE gf_runs SET owner_id = NULL, lease_expires_at = NULL WHERE owner_id = :o",
                {"o": owner_id},
            )
            tx.execute("DELETE FROM gf_owners WHERE owner_id = :o", {"o": owner_id})

        await self.write(op)

    async def owners_on_host(self, host: str) -> list[OwnerRecord]:
        """Every owner registered on ``host``."""
        rows = await self.read(
            lambda tx: tx.query(
                "SELECT owner_id, host, pid, started_at FROM gf_owners WHERE host = :h",
                {"h": host},
            )
        )
        return [OwnerRecord(owner_id=r[0], host=r[1], pid=r[2], started_at=r[3]) for r in rows]

    async def renew_leases(self, owner_id: str, lease: float) -> dict[str, bool]:
        """Extend every lease ``owner_id`` holds; return its runs and their cancel requests."""
        params = {"o": owner_id, "lease": lease, **self.lease_params()}

        def op(tx: _Tx) -> list[Any]:
            tx.execute(
                f"UPDATE gf_owners SET heartbeat_at = {self.lease_now} WHERE owner_id = :o",
                params,
            )
            tx.execute(
                f"UPDATE gf_jobs SET lease_expires_at = {self.lease_now} + :lease"
                " WHERE owner_id = :o AND state = 'running'",
                params,
            )
            return tx.query(
                f"UPDATE gf_runs SET lease_expires_at = {self.lease_now} + :lease"
                " WHERE owner_id = :o RETURNING run_id, cancel_requested",
                params,
            )

        rows = await self.write(op)
        return {row[0]: bool(row[1]) for row in rows}

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Insert ``run`` unless its id exists (idempotent start)."""
        params = _params(run, _RUN_COLUMNS)
        columns = ", ".join(_RUN_COLUMNS)
        values = ", ".join(f":{c}" for c in _RUN_COLUMNS)

        def op(tx: _Tx) -> tuple[RunRecord, bool]:
            inserted = tx.execute(
                f"INSERT INTO gf_runs ({columns}) VALUES ({values})"
                " ON CONFLICT (run_id) DO NOTHING",
                params,
            )
            if inserted:
                if run.owner_id is None:
                    self.notify(tx, f"run:{run.run_id}")
                return run, True
            rows = tx.query(f"{_RUN_SELECT} WHERE run_id = :run_id", {"run_id": run.run_id})
            return _run(rows[0]), False

        result: tuple[RunRecord, bool] = await self.write(op)
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        rows = await self.read(
            lambda tx: tx.query(f"{_RUN_SELECT} WHERE run_id = :run_id", {"run_id": run_id})
        )
        return _run(rows[0]) if rows else None

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; ``before``: only those listed after that ``(created_at, run_id)``."""
        filters = {"workflow": workflow, "state": state, "parent_run_id": parent_run_id}
        where = [f"{column} = :{column}" for column, value in filters.items() if value is not None]
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if before is not None:
            where.append(
                "(created_at < :before_at OR (created_at = :before_at AND run_id < :before_id))"
            )
            params["before_at"], params["before_id"] = before
        sql = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT :limit"
        params["limit"] = limit
        rows = await self.read(lambda tx: tx.query(sql, params))
        return [_run(row) for row in rows]

    async def finish_run(
        self,
        fence: Fence,
        *,
        state: str,
        output: str | None,
        error: str | None,
        at: float,
        wake_at: float | None = None,
        suspend_reason: str | None = None,
        resumable: Sequence[str] = (),
    ) -> None:
        """Leave the run in ``state`` (terminal or parked) and release it.

        ``resumable`` names the suspends a parked run waits for: if one was resumed meanwhile,
        the run is left runnable instead, so no resume is ever lost to a race with parking.
        """
        terminal = state in TERMINAL
        params = {
            "state": state,
            "output": output,
            "error": error,
            "at": at,
            "finished_at": at if terminal else None,
            "wake_at": wake_at,
            "reason": suspend_reason,
            "run_id": fence.run_id,
            "owner_id": fence.owner_id,
            "epoch": fence.epoch,
        }

        def op(tx: _Tx) -> None:
            changed = tx.execute(
                "UPDATE gf_runs SET state = :state, output = :output, error = :error,"
                " updated_at = :at, finished_at = :finished_at, wake_at = :wake_at,"
                " suspend_reason = :reason, owner_id = NULL, lease_expires_at = NULL"
                " WHERE run_id = :run_id AND owner_id = :owner_id AND lease_epoch = :epoch",
                params,
            )
            if not changed:
                raise LeaseLostError(run_id=fence.run_id)
            if terminal:
                self.notify(tx, f"end:{fence.run_id}")
            if resumable:
                names_params: dict[str, Any] = {"run_id": fence.run_id}
                names = _bind_list(names_params, "n", resumable)
                resumed = tx.query(
                    "SELECT 1 FROM gf_steps WHERE run_id = :run_id AND state = 'completed'"
                    f" AND name IN ({names})",
                    names_params,
                )
                if resumed:
                    tx.execute(
                        "UPDATE gf_runs SET state = 'running', wake_at = NULL,"
                        " suspend_reason = NULL WHERE run_id = :run_id",
                        {"run_id": fence.run_id},
                    )

        await self.write(op)

    async def resume_step(self, run_id: str, name: str, output: str, at: float) -> bool:
        """Complete a suspended step with resume data and make its run runnable.

        Returns ``False`` if the step is not suspended (a second resume changes nothing).
        """
        params = {"run_id": run_id, "name": name, "output": output, "at": at}

        def op(tx: _Tx) -> bool:
            changed = tx.execute(
                "UPDATE gf_steps SET state = 'completed', output = :output, finished_at = :at"
                " WHERE run_id = :run_id AND name = :name AND state = 'suspended'",
                params,
            )
            if changed:
                # A run parked on a sleep may also wait on this suspend: wake it either way;
                # its replay parks again on whatever still waits.
                tx.execute(
                    "UPDATE gf_runs SET state = 'running', owner_id = NULL, wake_at = NULL,"
                    " suspend_reason = NULL, updated_at = :at WHERE run_id = :run_id"
                    " AND state IN ('sleeping', 'suspended') AND owner_id IS NULL",
                    params,
                )
                self.notify(tx, f"run:{run_id}")
            return bool(changed)

        return bool(await self.write(op))

    async def cancel_run(self, run_id: str, at: float) -> str:
        """Cancel a run no engine holds; flag one that is held.

        Returns ``"cancelled"``, ``"requested"`` (its owner will cancel it), ``"missing"``, or
        ``"ended:<state>"`` for a run that already ended.
        """
        params = {"run_id": run_id, "at": at}

        def op(tx: _Tx) -> str:
            rows = tx.query(
                "SELECT state, owner_id FROM gf_runs WHERE run_id = :run_id" + self.lock_update,
                params,
            )
            if not rows:
                return "missing"
            state, owner = rows[0]
            if state in TERMINAL:
                return f"ended:{state}"
            if owner is not None:
                tx.execute(
                    "UPDATE gf_runs SET cancel_requested = :yes WHERE run_id = :run_id",
                    params | {"yes": True},
                )
                self.notify(tx, f"cancel:{run_id}")
                return "requested"
            tx.execute(
                "UPDATE gf_runs SET state = 'cancelled', finished_at = :at, updated_at = :at,"
                " wake_at = NULL WHERE run_id = :run_id",
                params,
            )
            _cancel_steps(tx, params)
            return "cancelled"

        return str(await self.write(op))

    async def cancel_steps(self, run_id: str, at: float) -> None:
        """Mark every unfinished step of a run cancelled."""
        params = {"run_id": run_id, "at": at}
        await self.write(lambda tx: _cancel_steps(tx, params))

    async def release_run(self, fence: Fence) -> None:
        """Give a run back, keeping its state."""
        params = {"run_id": fence.run_id, "owner_id": fence.owner_id, "epoch": fence.epoch}
        await self.write(
            lambda tx: tx.execute(
                "UPDATE gf_runs SET owner_id = NULL, lease_expires_at = NULL"
                " WHERE run_id = :run_id AND owner_id = :owner_id AND lease_epoch = :epoch",
                params,
            )
        )

    async def claim_runs(self, query: ClaimQuery, now: float) -> list[RunRecord]:
        """Take runnable runs: new, abandoned by a dead owner or an expired lease, or awake."""
        if not query.workflows:
            return []
        params: dict[str, Any] = {
            "owner": query.owner_id,
            "lease": query.lease,
            "now": now,
            "limit": query.limit,
            **self.lease_params(),
        }
        names = _bind_list(params, "w", query.workflows)
        dead = _bind_list(params, "d", query.dead_owners) if query.dead_owners else None
        abandoned = f"owner_id IS NULL OR lease_expires_at < {self.lease_now}"
        if dead:
            abandoned += f" OR owner_id IN ({dead})"
        only = ""
        if query.run_id is not None:
            params["run_id"] = query.run_id
            only = " AND run_id = :run_id"
        sql = (
            f"UPDATE gf_runs SET owner_id = :owner, lease_epoch = lease_epoch + 1,"
            f" lease_expires_at = {self.lease_now} + :lease, state = 'running', wake_at = NULL,"
            " recoveries = recoveries"
            " + CASE WHEN state = 'running' AND owner_id IS NOT NULL THEN 1 ELSE 0 END,"
            " started_at = COALESCE(started_at, :now), updated_at = :now"
            " WHERE run_id IN (SELECT run_id FROM gf_runs"
            f" WHERE workflow IN ({names}){only} AND ("
            f"(state IN ('pending', 'running') AND ({abandoned}))"
            " OR (state IN ('sleeping', 'suspended') AND owner_id IS NULL AND wake_at <= :now))"
            f" ORDER BY created_at LIMIT :limit{self.skip_locked})"
            f" RETURNING {', '.join(_RUN_COLUMNS)}"
        )
        rows = await self.write(lambda tx: tx.query(sql, params))
        return sorted((_run(row) for row in rows), key=lambda r: r.created_at)

    async def next_wake_at(self, workflows: Sequence[str]) -> float | None:
        """The earliest wake time of a sleeping run of these workflows."""
        if not workflows:
            return None
        params: dict[str, Any] = {}
        names = _bind_list(params, "w", workflows)
        rows = await self.read(
            lambda tx: tx.query(
                "SELECT MIN(wake_at) FROM gf_runs WHERE state IN ('sleeping', 'suspended')"
                f" AND owner_id IS NULL AND workflow IN ({names})",
                params,
            )
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    # --- steps --------------------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        """Every step of a run in issue order (one query)."""
        return await self.read(lambda tx: _load_steps(tx, run_id))

    async def load_run(
        self, run_id: str
    ) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
        """A run with its steps and failed attempts, in one read (one thread hop on PostgreSQL)."""

        def read(tx: _Tx) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
            rows = tx.query(f"{_RUN_SELECT} WHERE run_id = :run_id", {"run_id": run_id})
            if not rows:
                return None, [], []
            return _run(rows[0]), _load_steps(tx, run_id), _load_attempts(tx, run_id)

        return await self.read(read)

    async def record_step(
        self, fence: Fence, step: StepRecord, failed: AttemptRecord | None = None
    ) -> None:
        """Upsert a step and a failed attempt, fenced by the run's lease."""
        params = _step_params(step)
        attempt = _params(failed, _ATTEMPT_COLUMNS) if failed is not None else None

        fenced = params | {"owner_id": fence.owner_id, "epoch": fence.epoch}

        def op(tx: _Tx) -> None:
            # The fence folded into the insert: one statement, one round trip.
            if not tx.execute(self._fenced_upsert, fenced):
                raise LeaseLostError(run_id=fence.run_id)
            if attempt is not None:
                tx.execute(_INSERT_ATTEMPT, attempt)

        await self.write(op)


def _fenced_upsert_step(dialect: Dialect, lock_share: str) -> str:
    """Upsert a step only while the run's lease is held (``WHERE EXISTS`` on the fence).

    PostgreSQL cannot infer the types of bare parameters in a ``SELECT`` list: cast them.
    """
    columns = StepRow.__table__.columns  # type: ignore[attr-defined]
    if dialect.name == "sqlite":
        values = ", ".join(f":{c}" for c in _STEP_COLUMNS)
    else:
        values = ", ".join(
            f"CAST(:{c} AS {columns[c].type.compile(dialect=dialect)})" for c in _STEP_COLUMNS
        )
    return (
        f"INSERT INTO gf_steps ({', '.join(_STEP_COLUMNS)}) SELECT {values}"
        " WHERE EXISTS (SELECT 1 FROM gf_runs WHERE run_id = :run_id AND owner_id = :owner_id"
        f" AND lease_epoch = :epoch{lock_share})"
        " ON CONFLICT (run_id, name) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _STEP_COLUMNS if c not in ("run_id", "name"))
    )


_INSERT_ATTEMPT = (
    f"INSERT INTO gf_attempts ({', '.join(_ATTEMPT_COLUMNS)})"
    f" VALUES ({', '.join(':' + c for c in _ATTEMPT_COLUMNS)})"
    " ON CONFLICT (run_id, step_name, attempt) DO NOTHING"
)


def _load_steps(tx: _Tx, run_id: str) -> list[StepRecord]:
    rows = tx.query(
        f"SELECT {', '.join(_STEP_COLUMNS)} FROM gf_steps WHERE run_id = :run_id ORDER BY seq",
        {"run_id": run_id},
    )
    return [_step(row) for row in rows]


def _load_attempts(tx: _Tx, run_id: str) -> list[AttemptRecord]:
    rows = tx.query(
        f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM gf_attempts WHERE run_id = :run_id"
        " ORDER BY step_name, attempt",
        {"run_id": run_id},
    )
    return [AttemptRecord(**dict(zip(_ATTEMPT_COLUMNS, row, strict=True))) for row in rows]


def _cancel_steps(tx: _Tx, params: dict[str, Any]) -> None:
    tx.execute(
        "UPDATE gf_steps SET state = 'cancelled', finished_at = :at WHERE run_id = :run_id"
        " AND state IN ('pending', 'running', 'sleeping', 'suspended')",
        params,
    )


def _bind_list(params: dict[str, Any], prefix: str, values: Sequence[str]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names)


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path:
        raise StoreError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
    return path


def _store_error(url: str, exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"store {url!r} failed: {type(exc).__name__}: {exc}")
