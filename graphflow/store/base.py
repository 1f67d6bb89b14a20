"""The storage contract: the records and the ``Store`` protocol.

The store knows records, not workflows. Payloads (inputs, outputs, errors) are JSON text that the
runtime encodes and decodes; timestamps are seconds since the epoch. Every write of a run's owner is
*fenced* by the run's lease epoch, so an engine that lost a run can commit nothing more for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._types import RunState, StepState

__all__ = (
    "LISTEN_BACK",
    "LISTEN_LOST",
    "AttemptRecord",
    "ClaimQuery",
    "Fence",
    "JobRecord",
    "OwnerRecord",
    "PruneBatch",
    "PruneQuery",
    "RunLimit",
    "RunRecord",
    "ScheduleRecord",
    "SlotRequest",
    "StepRecord",
    "Store",
    "receive_input",
)

LISTEN_LOST = "listen:lost"
"""What ``listen`` delivers when its connection is lost: poll until ``LISTEN_BACK``."""
LISTEN_BACK = "listen:back"
"""What ``listen`` delivers once subscribed again: notifications in between were missed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One workflow run as stored."""

    run_id: str
    workflow: str
    state: RunState
    input: str
    output: str | None = None
    error: str | None = None
    parent_run_id: str | None = None
    parent_step: str | None = None
    graph_hash: str | None = None
    created_at: float
    started_at: float | None = None
    updated_at: float
    finished_at: float | None = None
    wake_at: float | None = None
    suspend_reason: str | None = None
    owner_id: str | None = None
    lease_epoch: int = 0
    lease_expires_at: float | None = None
    recoveries: int = 0
    cancel_requested: bool = False
    trace_context: str | None = None
    forked_from: str | None = None
    priority: int = 0
    concurrency_key: str | None = None
    dedup_key: str | None = None
    live_steps: str | None = None
    """What the owner's last heartbeat published of the steps it executes (opaque JSON text)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRecord:
    """A cron schedule as stored; ``last_tick``: every tick up to it is handled."""

    name: str
    workflow: str
    cron: str
    timezone: str
    catch_up: str
    input: str = "{}"
    static: bool = False
    last_tick: float
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLimit:
    """A workflow's concurrency limit, as the store enforces it when a run is started."""

    limit: int
    owned: bool
    """Whether the starting engine would hold the run (it is a worker with room)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotRequest:
    """A step attempt asking to start under a function's concurrency and/or rate limit."""

    scope: str
    holder: str
    owner_id: str
    limit: int | None
    rate_scope: str
    rate: tuple[int, float] | None
    """``(count, period)``: attempts started per sliding window of the engine's clock."""
    now: float
    lease: float


@dataclass(slots=True, kw_only=True)
class StepRecord:
    """One step (or graph node) of a run; keyed by ``(run_id, name)``.

    A value, never changed once built; not declared ``frozen`` because a frozen dataclass sets
    each field through ``object.__setattr__``, which makes building one three times slower: one
    is built for every step executed and for every step of a history loaded.
    """

    run_id: str
    name: str
    seq: int
    kind: str
    function: str | None
    state: StepState
    attempts: int = 0
    input: str | None = None
    output: str | None = None
    error: str | None = None
    parents: tuple[str, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """A failed attempt of a step (the successful one is the step itself)."""

    run_id: str
    step_name: str
    attempt: int
    error: str
    started_at: float
    finished_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerRecord:
    """An engine process that may own runs, and the functions it serves as jobs."""

    owner_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float = 0.0
    functions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """An RPC step attempt handed to whichever worker has its function."""

    job_id: str
    run_id: str
    step_name: str
    function: str
    input: str
    attempt: int
    state: str = "queued"
    owner_id: str | None = None
    lease_expires_at: float | None = None
    output: str | None = None
    error: str | None = None
    retryable: bool = True
    created_at: float
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """Proof of ownership that every owner write carries."""

    run_id: str
    owner_id: str
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimQuery:
    """What a worker may claim: its workflows, dead owners to take from, and how many."""

    owner_id: str
    workflows: Sequence[str]
    dead_owners: Sequence[str] = field(default_factory=tuple)
    limit: int = 100
    lease: float = 15.0
    max_recoveries: int = 10
    run_id: str | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    """Concurrency limits by workflow: claimed only while a slot is free (per key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneQuery:
    """Which finished runs one prune batch deletes, and where the previous batch stopped."""

    finished_before: float
    states: Sequence[str]
    workflow: str | None = None
    limit: int = 100
    """Finished runs looked at (matching or not): bounds the work of one batch."""
    after: tuple[float, str] | None = None
    """``(finished_at, run_id)`` of the last run the previous batch looked at."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneBatch:
    """What one prune batch did."""

    run_ids: tuple[str, ...]
    """Runs this batch chose to delete (dry: would delete), their descendants included."""
    deleted: int = 0
    """Runs it did delete (none when dry, fewer if another process deleted some first)."""
    last: tuple[float, str] | None
    """Where the next batch starts; ``None`` once no finished run is left to look at."""


def receive_input(topic: str) -> str:
    """The input a waiting receive step stores: its topic, which ``send_message`` matches."""
    return json.dumps({"topic": topic})


class Store(Protocol):
    """What the runtime needs from a database. One implementation serves SQLite and PostgreSQL.

    The runtime asks a store what it can do (``notifies``, ``shared``), never what it is.
    """

    url: str

    @property
    def notifies(self) -> bool:
        """Whether the store wakes engines on changes made elsewhere (PostgreSQL's NOTIFY).

        Without it, engines poll for what other processes change.
        """

    @property
    def shared(self) -> bool:
        """Whether other processes can open this store too (``False`` for ``memory://``).

        An unshared store has no other workers: nothing to hand jobs to or take jobs from.
        """

    async def open(self) -> None:
        """Connect and create or check the schema."""

    async def aclose(self) -> None:
        """Release connections."""

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Deliver the database's notifications until cancelled (returns at once without any).

        A store that loses its listening connection delivers ``LISTEN_LOST``, reconnects, and
        delivers ``LISTEN_BACK`` once it listens again; it never raises for a lost connection.
        """

    async def now(self) -> float:
        """The store's clock (the database's on PostgreSQL), for leases."""

    async def register_owner(self, owner: OwnerRecord) -> None:
        """Record an engine process that may own runs."""

    async def remove_owner(self, owner_id: str) -> None:
        """Forget an engine process and release every run it still owns."""

    async def get_owner(self, owner_id: str) -> OwnerRecord | None:
        """An owner's registration with its last heartbeat (``None``: not registered)."""

    async def owners_on_host(self, host: str) -> list[OwnerRecord]:
        """Every registered owner on ``host`` (to detect dead processes)."""

    async def renew_leases(
        self, owner_id: str, lease: float, live: Mapping[str, str | None] | None = None
    ) -> dict[str, bool]:
        """Extend the leases of every run ``owner_id`` holds; return them with cancel requests.

        ``live`` publishes, in the same write, the steps some of those runs execute now
        (``RunRecord.live_steps``, by run id; ``None`` clears it).
        """

    async def create_run(
        self, run: RunRecord, limit: RunLimit | None = None
    ) -> tuple[RunRecord, bool]:
        """Insert ``run`` unless its id (or its dedup key) exists.

        Returns the stored run and whether it is new. Under ``limit``, it is held only if a slot
        is free, else ``queued``.
        """

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (``created_at``, then ``run_id``, descending).

        ``before`` = ``(created_at, run_id)`` of a listed run: only the runs listed after it (a
        stable page boundary, whatever is created or deleted meanwhile).
        """

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        """Every step of a run in issue order, in one query."""

    async def get_step(self, run_id: str, name: str) -> StepRecord | None:
        """One step of a run by name (``None``: none recorded under that name)."""

    async def waiting_steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps waiting on a resume or a message (``suspended``), in issue order."""

    async def load_run(
        self, run_id: str
    ) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
        """A run with its steps and failed attempts, read together."""

    async def record_step(
        self, fence: Fence, step: StepRecord, failed: AttemptRecord | None = None
    ) -> None:
        """Upsert a step (and a failed attempt) under the run's lease. Group-committed."""

    async def end_run(
        self, fence: Fence, *, state: RunState, output: str | None, error: str | None, at: float
    ) -> None:
        """End a run (completed, failed or cancelled) with its outcome, and release it."""

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
        """Park a run (sleeping or suspended) until ``wake_at``, a resume or a message; release it.

        If one of the suspends ``resumable`` names was resumed meanwhile, or a message waits on
        one of the topics in ``receiving``, the run is left runnable instead.
        """

    async def send_message(self, run_id: str, topic: str, data: str, at: float) -> str:
        """Store a message (kept in order until received); wake the run if it waits on ``topic``.

        Returns ``"sent"``, ``"missing"`` or ``"ended:<state>"`` (nothing stored for those).
        """

    async def take_message(self, fence: Fence, step: StepRecord, topic: str) -> str | None:
        """Receive the oldest message on ``topic`` into ``step`` (completed with it), atomically.

        Returns the message's data, or ``None`` (nothing written) when none waits. Fenced.
        """

    async def has_message(self, run_id: str, topic: str) -> bool:
        """Whether a message not yet received waits for the run on ``topic``."""

    async def set_event(self, fence: Fence, step: StepRecord, name: str, value: str) -> None:
        """Publish the run's event ``name`` (latest value wins) and record ``step``. Fenced."""

    async def get_event(self, run_id: str, name: str) -> str | None:
        """The latest value (JSON) of the run's event ``name``, or ``None``."""

    async def save_graph(self, graph_hash: str, structure: str, at: float) -> None:
        """Keep a graph workflow's declared structure (JSON) under its hash (idempotent)."""

    async def get_graph(self, graph_hash: str) -> str | None:
        """The declared structure saved under ``graph_hash``, or ``None``."""

    async def resume_step(self, run_id: str, name: str, output: str, at: float) -> bool:
        """Complete a suspended step with resume data; make the run runnable."""

    async def cancel_run(self, run_id: str, at: float) -> str:
        """Cancel an unheld run or flag a held one: cancelled, requested, missing or its state."""

    async def cancel_steps(self, run_id: str, at: float) -> None:
        """Mark every unfinished step of a run cancelled."""

    async def next_wake_at(self, workflows: Sequence[str]) -> float | None:
        """The earliest wake time of a parked run of these workflows."""

    async def release_run(self, fence: Fence) -> None:
        """Give a run back without changing its state (engine closing)."""

    async def set_trace_context(self, fence: Fence, trace_context: str) -> None:
        """Store the run's trace context if it has none (its first traced execution)."""

    async def served_functions(self, lease: float) -> set[str]:
        """Functions served by engines whose heartbeat is younger than three leases."""

    async def enqueue_job(self, job: JobRecord) -> None:
        """Queue a job (idempotent on ``job_id``) and wake idle workers."""

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or ``None``."""

    async def claim_jobs(
        self, owner_id: str, functions: Sequence[str], limit: int, lease: float
    ) -> list[JobRecord]:
        """Take queued (or abandoned) jobs of these functions."""

    async def finish_job(
        self, job: JobRecord, *, output: str | None, error: str | None, retryable: bool, at: float
    ) -> bool:
        """Store a job's outcome if this owner still holds it."""

    async def claim_runs(self, query: ClaimQuery, now: float) -> list[RunRecord]:
        """Take ownership of runnable runs: new, abandoned (dead owner or expired lease), awake."""

    async def load_histories(
        self,
        *,
        states: Sequence[str],
        workflow: str | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        """A page of runs in these states, by run id after ``after``, each with its steps.

        One read, no lease: for checking stored runs against the code.
        """

    async def fork_run(self, run: RunRecord, source_run_id: str, steps: Sequence[str]) -> None:
        """Insert ``run`` with copies of the named steps (and their attempts) of another run."""

    async def oldest_finished_at(self, workflow: str) -> float | None:
        """When the run of ``workflow`` that finished first did (``None``: no finished run)."""

    async def prune_runs(self, query: PruneQuery) -> PruneBatch:
        """Delete one batch of finished runs with their descendants, steps, attempts and jobs.

        Never a run that is unfinished, has an unfinished descendant, or is the child of an
        unfinished parent. One short transaction.
        """

    async def acquire_slot(self, request: SlotRequest) -> float | None:
        """Start an attempt under a function's limits.

        Returns ``None`` when granted, else when to ask again (engine clock; ``0.0``: when a slot
        is released).
        """

    async def release_slot(self, scope: str, holder: str) -> None:
        """Give a concurrency slot back."""

    async def save_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Insert a schedule, or update its definition keeping its last tick; return it stored.

        A static schedule never replaces a dynamic one of the same name (the stored one wins).
        """

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule; ``False`` if there was none."""

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    async def fire_schedule(
        self, name: str, *, last_tick: float, through: float, runs: Sequence[RunRecord]
    ) -> bool:
        """Move a schedule's last tick and start its ticks' runs, atomically.

        The last tick moves from ``last_tick`` to ``through``; ``runs`` whose ids are taken are
        skipped. ``False`` if another engine moved it first.
        """
