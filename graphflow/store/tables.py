"""The schema, declared once with sqlmodel; columns mirror the records in ``base``.

The tables live in a private metadata so they never leak into an application's own ``SQLModel``.
"""

from __future__ import annotations

from sqlalchemy import Index, MetaData
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ("METADATA", "AttemptRow", "JobRow", "MetaRow", "OwnerRow", "RunRow", "StepRow")

METADATA = MetaData()


class _Base(SQLModel, registry=registry(metadata=METADATA)):
    pass


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
    )
    run_id: str = Field(primary_key=True)
    workflow: str
    state: str
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
    input: str | None = None
    output: str | None = None
    error: str | None = None
    parents: str = "[]"
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    detail: str | None = None


class AttemptRow(_Base, table=True):
    """A failed attempt of a step."""

    __tablename__ = "gf_attempts"
    __table_args__ = {"sqlite_with_rowid": False}
    run_id: str = Field(primary_key=True)
    step_name: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    error: str
    started_at: float
    finished_at: float


class OwnerRow(_Base, table=True):
    """An engine process that may own runs."""

    __tablename__ = "gf_owners"
    owner_id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    functions: str = "[]"


class JobRow(_Base, table=True):
    """An RPC step handed to whichever worker has its function."""

    __tablename__ = "gf_jobs"
    __table_args__ = (Index("gf_jobs_claim", "state", "function"),)
    job_id: str = Field(primary_key=True)
    run_id: str
    step_name: str
    function: str
    input: str
    attempt: int
    state: str
    owner_id: str | None = None
    lease_expires_at: float | None = None
    output: str | None = None
    error: str | None = None
    retryable: bool = True
    created_at: float
    finished_at: float | None = None
