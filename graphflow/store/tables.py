"""The schema, declared once with sqlmodel; columns mirror the records in ``base``.

The tables live in a private metadata so they never leak into an application's own ``SQLModel``.
Payloads (JSON text) are ``Text`` and timestamps (seconds since the epoch) are double precision, so
that every supported database, MySQL included, stores them whole (on SQLite and PostgreSQL the
same storage as the ``VARCHAR``/``FLOAT`` the first schema declared). A new table or column is a
new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Double, Index, MetaData, Table, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = (
    "ATTEMPTS",
    "EVENTS",
    "GRAPHS",
    "JOBS",
    "MESSAGES",
    "META",
    "METADATA",
    "OWNERS",
    "RATE_STARTS",
    "READY_INDEX",
    "RUNS",
    "SCHEDULES",
    "SLOTS",
    "STEPS",
    "AttemptRow",
    "EventRow",
    "GraphRow",
    "JobRow",
    "MessageRow",
    "MetaRow",
    "OwnerRow",
    "RateRow",
    "RunRow",
    "ScheduleRow",
    "SlotRow",
    "StepRow",
)

METADATA = MetaData()


class _Base(SQLModel, registry=registry(metadata=METADATA)):
    pass


def _payload(default: str | None = None, *, required: bool = False) -> Any:
    """A JSON text column (unbounded ``Text``)."""
    return Field(sa_type=Text) if required else Field(default=default, sa_type=Text)


def _time(*, required: bool = False) -> Any:
    """A timestamp column: seconds since the epoch, double precision."""
    return Field(sa_type=Double) if required else Field(default=None, sa_type=Double)


class MetaRow(_Base, table=True):
    """Key/value facts about the store itself (the schema version)."""

    __tablename__ = "gf_meta"
    key: str = Field(primary_key=True)
    value: str


class RunRow(_Base, table=True):
    """One workflow run."""

    __tablename__ = "gf_runs"
    __table_args__ = (
        Index("gf_runs_claim", "state", "owner_id"),
        Index("gf_runs_wake", "state", "wake_at"),
        Index("gf_runs_created", "created_at"),
        Index("gf_runs_parent", "parent_run_id"),
        Index("gf_runs_finished", "finished_at", "run_id"),
        Index("gf_runs_limit", "workflow", "state", "concurrency_key"),
        # One unfinished run per (workflow, dedup key): a run's key is cleared when it ends.
        Index("gf_runs_dedup", "workflow", "dedup_key", unique=True),
    )
    run_id: str = Field(primary_key=True)
    workflow: str
    state: str
    input: str = _payload(required=True)
    output: str | None = _payload()
    error: str | None = _payload()
    parent_run_id: str | None = None
    parent_step: str | None = None
    graph_hash: str | None = None
    created_at: float = _time(required=True)
    started_at: float | None = _time()
    updated_at: float = _time(required=True)
    finished_at: float | None = _time()
    wake_at: float | None = _time()
    suspend_reason: str | None = _payload()
    owner_id: str | None = None
    lease_epoch: int = 0
    lease_expires_at: float | None = _time()
    recoveries: int = 0
    cancel_requested: bool = False
    trace_context: str | None = _payload()
    """The W3C trace context the run's spans continue (``runtime.tracing``); version 2."""
    forked_from: str | None = _payload()
    """The run this one was forked from (``engine.fork``); version 3."""
    priority: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    concurrency_key: str | None = None
    dedup_key: str | None = None
    live_steps: str | None = _payload()


class StepRow(_Base, table=True):
    """One step or graph node of a run."""

    __tablename__ = "gf_steps"
    # Clustered on the key: one B-tree per insert instead of a rowid table plus its index.
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    seq: int
    kind: str
    function: str | None = None
    state: str
    attempts: int = 0
    input: str | None = _payload()
    output: str | None = _payload()
    error: str | None = _payload()
    parents: str = _payload("[]")
    started_at: float | None = _time()
    finished_at: float | None = _time()
    wake_at: float | None = _time()
    detail: str | None = _payload()


class AttemptRow(_Base, table=True):
    """A failed attempt of a step."""

    __tablename__ = "gf_attempts"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: str = Field(primary_key=True)
    step_name: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    error: str = _payload(required=True)
    started_at: float = _time(required=True)
    finished_at: float = _time(required=True)


class OwnerRow(_Base, table=True):
    """An engine process that may own runs."""

    __tablename__ = "gf_owners"
    owner_id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: float = _time(required=True)
    heartbeat_at: float = _time(required=True)
    functions: str = _payload("[]")


class JobRow(_Base, table=True):
    """An RPC step handed to whichever worker has its function."""

    __tablename__ = "gf_jobs"
    __table_args__ = (
        # Queued jobs of one function in claim order (created_at): a claim reads the first few.
        Index("gf_jobs_claim", "state", "function", "created_at"),
        Index("gf_jobs_run", "run_id"),
    )
    job_id: str = Field(primary_key=True)
    run_id: str
    step_name: str
    function: str
    input: str = _payload(required=True)
    attempt: int
    state: str
    owner_id: str | None = None
    lease_expires_at: float | None = _time()
    output: str | None = _payload()
    error: str | None = _payload()
    retryable: bool = True
    created_at: float = _time(required=True)
    finished_at: float | None = _time()


class MessageRow(_Base, table=True):
    """A message sent to a run; ``received_by`` names the receive step that took it."""

    __tablename__ = "gf_messages"
    __table_args__ = (Index("gf_messages_pending", "run_id", "topic", "received_by", "seq"),)
    seq: int | None = Field(default=None, primary_key=True)
    """Assigned by the database in sending order: the order receives take messages in."""
    run_id: str
    topic: str
    data: str = _payload(required=True)
    sent_at: float = _time(required=True)
    received_by: str | None = None


class EventRow(_Base, table=True):
    """The latest value a run published under a name (``wf.set_event``)."""

    __tablename__ = "gf_events"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    value: str = _payload(required=True)
    updated_at: float = _time(required=True)


class GraphRow(_Base, table=True):
    """A graph workflow's declared structure by hash: how clients without its code draw runs."""

    __tablename__ = "gf_graphs"
    graph_hash: str = Field(primary_key=True)
    structure: str = _payload(required=True)
    saved_at: float = _time(required=True)


class ScheduleRow(_Base, table=True):
    """A cron schedule (static ones are written by every worker that declares them)."""

    __tablename__ = "gf_schedules"
    name: str = Field(primary_key=True)
    workflow: str
    cron: str
    timezone: str
    catch_up: str
    input: str = _payload("{}")
    static: bool = False
    last_tick: float = _time(required=True)
    """Every tick up to this time is handled (started, or given up by the catch-up policy)."""
    created_at: float = _time(required=True)
    updated_at: float = _time(required=True)


class SlotRow(_Base, table=True):
    """A concurrency slot held by one step attempt, tied to its owner's lease."""

    __tablename__ = "gf_slots"
    __table_args__ = (Index("gf_slots_owner", "owner_id"),)
    scope: str = Field(primary_key=True)
    holder: str = Field(primary_key=True)
    owner_id: str
    acquired_at: float = _time(required=True)
    lease_expires_at: float = _time(required=True)


class RateRow(_Base, table=True):
    """An attempt started under a rate limit (kept for one window)."""

    __tablename__ = "gf_rate_starts"
    __table_args__ = (Index("gf_rate_window", "scope", "started_at"),)
    scope: str = Field(primary_key=True)
    holder: str = Field(primary_key=True)
    started_at: float = _time(required=True)


def _table(model: type[SQLModel]) -> Table:
    """The Core table of a model (SQLModel sets ``__table__`` when the class is created)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


META = _table(MetaRow)
RUNS = _table(RunRow)
STEPS = _table(StepRow)
ATTEMPTS = _table(AttemptRow)
OWNERS = _table(OwnerRow)
JOBS = _table(JobRow)
MESSAGES = _table(MessageRow)
EVENTS = _table(EventRow)
GRAPHS = _table(GraphRow)
SCHEDULES = _table(ScheduleRow)
SLOTS = _table(SlotRow)
RATE_STARTS = _table(RateRow)

# The runs waiting to be claimed, in claim order: a claim reads the first few instead of sorting
# every unfinished run, or scanning every run of its workflows, finished ones included.
READY_INDEX = Index("gf_runs_ready", RUNS.c.state, RUNS.c.priority.desc(), RUNS.c.created_at)
