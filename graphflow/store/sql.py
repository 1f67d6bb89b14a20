"""The SQL store: one implementation of ``Store`` for every SQL database, through its dialect.

Statements are portable SQL compiled once per dialect and run on the DBAPI connection (see
``_sql_db``); what differs per database lives in ``dialects``. Runs and steps are written here;
the owner registry and the job queue are composed in (``_sql_owners``, ``_sql_jobs``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Insert, bindparam, exists, false, literal_column, or_, select

from .._types import TERMINAL, RunState
from ..errors import LeaseLostError
from ._sql_db import SqlDatabase
from ._sql_flow import FlowQueries, bind_list
from ._sql_jobs import SqlJobs
from ._sql_leave import leave, leave_params
from ._sql_messages import MessageQueries, pending_topics
from ._sql_owners import SqlOwners
from ._sql_repair import SqlRepair
from ._sql_rows import (
    ATTEMPT_COLUMNS,
    RUN_COLUMNS,
    RUN_SELECT,
    load_attempts_of,
    load_steps_of,
    record_params,
    run_row,
    step_params,
    step_row,
)
from ._sql_schedules import ScheduleQueries
from ._sql_schema import SchemaCreator
from ._tx import Tx
from .base import (
    AttemptRecord,
    ClaimQuery,
    Fence,
    JobRecord,
    OwnerRecord,
    PruneBatch,
    PruneQuery,
    RunLimit,
    RunRecord,
    StepRecord,
)
from .dialects import Dialect, dialect_for
from .tables import ATTEMPTS, RUNS, STEPS

__all__ = ("SqlStore",)

T = TypeVar("T")

_FENCE_HOLDS = exists(
    select(literal_column("1"))
    .where(
        RUNS.c.run_id == bindparam("run_id"),
        RUNS.c.owner_id == bindparam("owner_id"),
        RUNS.c.lease_epoch == bindparam("epoch"),
    )
    .with_for_update(read=True)  # share-locks the run where the database has row locks
)
"""The run is still held under the fence that a write carries."""

_FENCE_HOLDS_UNCANCELLED = exists(
    select(literal_column("1"))
    .where(
        RUNS.c.run_id == bindparam("run_id"),
        RUNS.c.owner_id == bindparam("owner_id"),
        RUNS.c.lease_epoch == bindparam("epoch"),
        or_(
            RUNS.c.cancel_requested == false(), bindparam("state") == literal_column("'cancelled'")
        ),
    )
    .with_for_update(read=True)
)
"""The fence holds and no cancel was requested (unless the write records the cancel itself).

Where the database does not notify, this is how an owner learns of a cancel requested by another
process: its next step write is refused, so the run stops there and no step completes after it.
"""


class _CancelRequested(LeaseLostError):
    """A fenced write was refused: the owner still holds the run, but its cancel is requested."""


class SqlStore(MessageQueries, FlowQueries, ScheduleQueries):
    """A ``Store`` on SQLite (a file or ``memory://``) or PostgreSQL, chosen by URL.

    ``host_time`` replaces ``time.time`` as the lease clock of a database on this host's clock
    (SQLite): a test that runs on virtual time passes its clock, so leases expire in that time.
    A database server's leases always run on its own clock.

    Raises:
        StoreError: the URL's scheme is not supported, or one of its options is invalid.
    """

    def __init__(self, url: str, *, host_time: Callable[[], float] | None = None) -> None:
        self.url = url
        self._host_time = host_time or time.time
        dialect = dialect_for(url, host_time=self._host_time)
        self.notifies = dialect.notifies
        self.shared = dialect.shared
        self._dialect = dialect
        self._db = db = SqlDatabase(url, dialect)
        self._owners = SqlOwners(db)
        self._jobs = SqlJobs(db)
        self._listener: Callable[[str], None] | None = None
        self._schema = SchemaCreator(db)
        self._insert_run = db.prepare(_insert_run)
        self._repair = SqlRepair(
            db,
            run_select=RUN_SELECT,
            run_row=run_row,
            step_row=step_row,
            insert_run=self._insert_run,
        )
        self._insert_attempt = db.prepare(_insert_attempt)
        self._record_step = db.prepare(_record_step)

    # --- connections ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create or check the schema."""
        await self._db.open(self._schema, self._schema.check)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._db.aclose()

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Call ``on_notify(payload)`` for every notification, until cancelled.

        Without notifications (``notifies`` is false) it returns at once: engines poll. The store
        still tells ``on_notify`` of a cancel that refused one of its owner's writes.
        """
        self._listener = on_notify
        await self._dialect.listen(on_notify)

    async def now(self) -> float:
        """The lease clock: the database's where it has one for every host, else this host's."""
        dialect = self._dialect
        if dialect.host_clock:
            return self._host_time()
        rows = await self._db.read(lambda tx: tx.query(f"SELECT {dialect.clock_sql}"))
        return float(rows[0][0])

    # --- owners and jobs (composed) -------------------------------------------------------------

    async def register_owner(self, owner: OwnerRecord) -> None:
        """Record an engine process and the functions it serves."""
        await self._owners.register_owner(owner)

    async def remove_owner(self, owner_id: str) -> None:
        """Forget an engine process and release its runs."""
        await self._owners.remove_owner(owner_id)

    async def get_owner(self, owner_id: str) -> OwnerRecord | None:
        """An owner's registration with its last heartbeat (``None``: not registered)."""
        return await self._owners.get_owner(owner_id)

    async def owners_on_host(self, host: str) -> list[OwnerRecord]:
        """Every owner registered on ``host``."""
        return await self._owners.owners_on_host(host)

    async def renew_leases(
        self, owner_id: str, lease: float, live: Mapping[str, str | None] | None = None
    ) -> dict[str, bool]:
        """Extend every lease ``owner_id`` holds and publish ``live`` steps (by run) with them.

        This is the owner's heartbeat, so it first checks that the database file is still the one
        opened (``StoreFileLostError`` if it was deleted or replaced).
        """
        self._db.verify_open()
        return await self._owners.renew_leases(owner_id, lease, live)

    async def served_functions(self, lease: float) -> set[str]:
        """Functions served by engines whose heartbeat is younger than three leases."""
        return await self._owners.served_functions(lease)

    async def enqueue_job(self, job: JobRecord) -> None:
        """Queue a job (idempotent on ``job_id``) and wake idle workers."""
        await self._jobs.enqueue_job(job)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or ``None``."""
        return await self._jobs.get_job(job_id)

    async def claim_jobs(
        self, owner_id: str, functions: Sequence[str], limit: int, lease: float
    ) -> list[JobRecord]:
        """Take queued jobs, or running ones whose owner's lease expired, of these functions."""
        return await self._jobs.claim_jobs(owner_id, functions, limit, lease)

    async def finish_job(
        self, job: JobRecord, *, output: str | None, error: str | None, retryable: bool, at: float
    ) -> bool:
        """Store a job's outcome if ``job.owner_id`` still holds it."""
        return await self._jobs.finish_job(
            job, output=output, error=error, retryable=retryable, at=at
        )

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(
        self, run: RunRecord, limit: RunLimit | None = None
    ) -> tuple[RunRecord, bool]:
        """Insert ``run`` unless its id or its dedup key exists (idempotent start).

        The dedup key matches the workflow's unfinished run holding it. Under ``limit`` the run is
        held only while a slot is free: otherwise it is stored ``queued`` (or ``pending``, for a
        starter that would not hold it).
        """
        params = record_params(run, RUN_COLUMNS)

        def op(tx: Tx) -> tuple[RunRecord, bool]:
            found = self._deduplicated(tx, run) if run.dedup_key is not None else None
            if found is not None:
                return found, False
            record = run
            if limit is not None:
                state = self._start_state(tx, run, limit)
                if state != "held":
                    record = dataclasses.replace(
                        run, state=state, owner_id=None, lease_epoch=0, lease_expires_at=None,
                        started_at=None,
                    )  # fmt: skip
            if tx.execute(self._insert_run, record_params(record, RUN_COLUMNS)):
                if record.owner_id is None:
                    self._dialect.notify(tx, f"run:{record.run_id}")
                return record, True
            return run_row(tx.query(f"{RUN_SELECT} WHERE run_id = :run_id", params)[0]), False

        result: tuple[RunRecord, bool] = await self._db.write(op)
        return result

    def _deduplicated(self, tx: Tx, run: RunRecord) -> RunRecord | None:
        """The stored run with ``run``'s id, else the unfinished one with its dedup key."""
        rows = tx.query(f"{RUN_SELECT} WHERE run_id = :run_id", {"run_id": run.run_id})
        if not rows:
            # One start per key at a time, so two starts never both miss the other's run.
            self._dialect.lock_key(tx, f"dedup:{run.workflow}")
            rows = tx.query(
                f"{RUN_SELECT} WHERE workflow = :workflow AND dedup_key = :dedup_key",
                {"workflow": run.workflow, "dedup_key": run.dedup_key},
            )
        return run_row(rows[0]) if rows else None

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        rows = await self._db.read(
            lambda tx: tx.query(f"{RUN_SELECT} WHERE run_id = :run_id", {"run_id": run_id})
        )
        return run_row(rows[0]) if rows else None

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
        sql = RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT :limit"
        params["limit"] = limit
        rows = await self._db.read(lambda tx: tx.query(sql, params))
        return [run_row(row) for row in rows]

    async def end_run(
        self, fence: Fence, *, state: RunState, output: str | None, error: str | None, at: float
    ) -> None:
        """End the run in ``state`` (completed, failed or cancelled) and release it.

        Raises:
            LeaseLostError: ``fence`` no longer holds the run.
        """
        params = leave_params(fence, state, output=output, error=error, at=at, finished=True)

        def op(tx: Tx) -> None:
            leave(tx, fence, params, ended=True)
            self._dialect.notify(tx, f"end:{fence.run_id}")

        await self._db.write(op)

    async def park_run(
        self,
        fence: Fence,
        *,
        state: RunState,
        at: float,
        wake_at: float | None = None,
        suspend_reason: str | None = None,
        resumable: Sequence[str] = (),
        receiving: Sequence[str] = (),
    ) -> None:
        """Park the run (sleeping or suspended) until ``wake_at``, a resume or a message.

        ``resumable`` names the suspends the run waits for, ``receiving`` the topics its receives
        wait on: if one was resumed, or a message waits on one of those topics, the run is left
        runnable instead, so no resume or message is ever lost to a race with parking.

        Raises:
            LeaseLostError: ``fence`` no longer holds the run.
        """
        params = leave_params(fence, state, at=at, wake_at=wake_at, reason=suspend_reason)

        def op(tx: Tx) -> None:
            leave(tx, fence, params, ended=False)
            # Its concurrency slot, if any, is free: wake the claimers elsewhere.
            self._dialect.notify(tx, f"park:{fence.run_id}")
            resumed = False
            if resumable:
                names_params: dict[str, Any] = {"run_id": fence.run_id}
                names = bind_list(names_params, "n", resumable)
                resumed = bool(
                    tx.query(
                        "SELECT 1 FROM gf_steps WHERE run_id = :run_id AND state = 'completed'"
                        f" AND name IN ({names})",
                        names_params,
                    )
                )
            if receiving and not resumed:
                resumed = pending_topics(tx, fence.run_id, receiving)
            if resumed:
                tx.execute(
                    "UPDATE gf_runs SET state = 'running', wake_at = NULL,"
                    " suspend_reason = NULL WHERE run_id = :run_id",
                    {"run_id": fence.run_id},
                )

        await self._db.write(op)

    async def resume_step(self, run_id: str, name: str, output: str, at: float) -> bool:
        """Complete a suspended step with resume data and make its run runnable.

        Returns ``False`` if the step is not suspended (a second resume changes nothing).
        """
        params = {"run_id": run_id, "name": name, "output": output, "at": at}

        def op(tx: Tx) -> bool:
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
                self._dialect.notify(tx, f"run:{run_id}")
            return bool(changed)

        return bool(await self._db.write(op))

    async def cancel_run(self, run_id: str, at: float) -> str:
        """Cancel a run no engine holds; flag one that is held.

        Returns ``"cancelled"``, ``"requested"`` (its owner will cancel it), ``"missing"``, or
        ``"ended:<state>"`` for a run that already ended.
        """
        params = {"run_id": run_id, "at": at}

        def op(tx: Tx) -> str:
            rows = tx.query(
                "SELECT state, owner_id FROM gf_runs WHERE run_id = :run_id"
                + self._dialect.lock_update,
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
                self._dialect.notify(tx, f"cancel:{run_id}")
                return "requested"
            tx.execute(
                "UPDATE gf_runs SET state = 'cancelled', finished_at = :at, updated_at = :at,"
                " wake_at = NULL, dedup_key = NULL WHERE run_id = :run_id",
                params,
            )
            _cancel_steps(tx, params)
            return "cancelled"

        return str(await self._db.write(op))

    async def cancel_steps(self, run_id: str, at: float) -> None:
        """Mark every unfinished step of a run cancelled."""
        params = {"run_id": run_id, "at": at}
        await self._db.write(lambda tx: _cancel_steps(tx, params))

    async def release_run(self, fence: Fence) -> None:
        """Give a run back, keeping its state."""
        params = {"run_id": fence.run_id, "owner_id": fence.owner_id, "epoch": fence.epoch}
        await self._db.write(
            lambda tx: tx.execute(
                "UPDATE gf_runs SET owner_id = NULL, lease_expires_at = NULL"
                " WHERE run_id = :run_id AND owner_id = :owner_id AND lease_epoch = :epoch",
                params,
            )
        )

    async def set_trace_context(self, fence: Fence, trace_context: str) -> None:
        """Store the run's trace context if it has none (its first traced execution)."""
        params = {"run_id": fence.run_id, "owner_id": fence.owner_id, "epoch": fence.epoch,
                  "trace_context": trace_context}  # fmt: skip
        await self._db.write(
            lambda tx: tx.execute(
                "UPDATE gf_runs SET trace_context = :trace_context WHERE run_id = :run_id"
                " AND owner_id = :owner_id AND lease_epoch = :epoch AND trace_context IS NULL",
                params,
            )
        )

    async def claim_runs(self, query: ClaimQuery, now: float) -> list[RunRecord]:
        """Take runnable runs: new, queued, abandoned (dead owner, expired lease) or awake.

        Highest priority first, then oldest. Workflows with a concurrency limit are claimed only
        into free slots (the rest are marked ``queued``).
        """
        if not query.workflows:
            return []
        rows = await self._claim_rows(query, now, RUN_COLUMNS)
        return sorted((run_row(row) for row in rows), key=lambda r: (-r.priority, r.created_at))

    async def next_wake_at(self, workflows: Sequence[str]) -> float | None:
        """The earliest wake time of a sleeping run of these workflows."""
        if not workflows:
            return None
        params: dict[str, Any] = {}
        names = bind_list(params, "w", workflows)
        rows = await self._db.read(
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
        return await self._db.read(lambda tx: load_steps_of(tx, run_id))

    async def get_step(self, run_id: str, name: str) -> StepRecord | None:
        """One step of a run by name (``None``: none recorded under that name)."""
        where = " AND name = :name"
        steps = await self._db.read(lambda tx: load_steps_of(tx, run_id, where, {"name": name}))
        return steps[0] if steps else None

    async def waiting_steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps waiting on a resume or a message (``suspended``), in issue order."""
        return await self._db.read(lambda tx: load_steps_of(tx, run_id, " AND state = 'suspended'"))

    async def load_run(
        self, run_id: str
    ) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
        """A run with its steps and failed attempts, in one read (one thread hop on PostgreSQL)."""

        def read(tx: Tx) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
            rows = tx.query(f"{RUN_SELECT} WHERE run_id = :run_id", {"run_id": run_id})
            if not rows:
                return None, [], []
            return run_row(rows[0]), load_steps_of(tx, run_id), load_attempts_of(tx, run_id)

        return await self._db.read(read)

    async def record_step(
        self, fence: Fence, step: StepRecord, failed: AttemptRecord | None = None
    ) -> None:
        """Upsert a step and a failed attempt, fenced by the run's lease."""
        attempt = record_params(failed, ATTEMPT_COLUMNS) if failed is not None else None

        def op(tx: Tx) -> None:
            self._write_step(tx, fence, step)
            if attempt is not None:
                tx.execute(self._insert_attempt, attempt)

        await self._fenced_write(op)

    def _write_step(self, tx: Tx, fence: Fence, step: StepRecord) -> None:
        """Upsert ``step`` if ``fence`` holds the run, else raise ``LeaseLostError``."""
        fenced = step_params(step)
        fenced["owner_id"] = fence.owner_id
        fenced["epoch"] = fence.epoch
        if tx.execute(self._record_step, fenced):
            return
        if not self._dialect.notifies:
            held = tx.query(
                "SELECT cancel_requested FROM gf_runs WHERE run_id = :run_id"
                " AND owner_id = :owner_id AND lease_epoch = :epoch",
                fenced,
            )
            if held and held[0][0]:
                raise _CancelRequested(run_id=fence.run_id)
        raise LeaseLostError(run_id=fence.run_id)

    async def _fenced_write(self, op: Callable[[Tx], T]) -> T:
        """Run a fenced write; a refusal for a cancel is told to the listener, as a notification."""
        try:
            result: T = await self._db.write(op)
        except _CancelRequested as refused:
            if self._listener is not None:
                self._listener(f"cancel:{refused.run_id}")
            raise
        return result

    # --- repair and retention (composed) -------------------------------------------------------

    async def load_histories(
        self,
        *,
        states: Sequence[str],
        workflow: str | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        """A page of runs in ``states`` ordered by run id, with their steps (one read)."""
        return await self._repair.load_histories(
            states=states, workflow=workflow, after=after, limit=limit
        )

    async def fork_run(self, run: RunRecord, source_run_id: str, steps: Sequence[str]) -> None:
        """Insert ``run`` with copies of the named steps and attempts of ``source_run_id``."""
        await self._repair.fork_run(run, source_run_id, steps)

    async def oldest_finished_at(self, workflow: str) -> float | None:
        """When the first finished run of ``workflow`` finished."""
        return await self._repair.oldest_finished_at(workflow)

    async def prune_runs(self, query: PruneQuery) -> PruneBatch:
        """Delete one batch of finished runs with their descendants (one transaction)."""
        return await self._repair.prune_runs(query)


def _insert_run(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(RUNS, ["run_id"])


def _insert_attempt(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(ATTEMPTS, ["run_id", "step_name", "attempt"])


def _record_step(dialect: Dialect) -> Insert:
    # The fence folded into the insert: one statement, one round trip per step. A database that
    # notifies tells the owner of a cancel at once; elsewhere the write itself refuses.
    fence = _FENCE_HOLDS if dialect.notifies else _FENCE_HOLDS_UNCANCELLED
    return dialect.upsert(STEPS, ["run_id", "name"], where=fence)


def _cancel_steps(tx: Tx, params: dict[str, Any]) -> None:
    tx.execute(
        "UPDATE gf_steps SET state = 'cancelled', finished_at = :at WHERE run_id = :run_id"
        " AND state IN ('pending', 'running', 'sleeping', 'suspended')",
        params,
    )
