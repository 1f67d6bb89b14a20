"""Records the ``Store`` contract's clauses build: runs, steps, jobs under one fence."""

from __future__ import annotations

import time

from .._types import RunState, StepState
from ..store.base import Fence, JobRecord, RunRecord, StepRecord, receive_input

__all__ = ("_FENCE", "_finished", "_job", "_receive", "_run", "_step")

_FENCE = Fence(run_id="r1", owner_id="o1", epoch=1)


def _run(run_id: str = "r1", *, owner: str | None = "o1", state: RunState = "running") -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id=run_id,
        workflow="w",
        state=state,
        input='{"a": 1}',
        created_at=now,
        updated_at=now,
        owner_id=owner,
        lease_epoch=1 if owner else 0,
        lease_expires_at=now + 60 if owner else None,
    )


def _step(name: str, seq: int, state: StepState = "completed", run_id: str = "r1") -> StepRecord:
    return StepRecord(
        run_id=run_id,
        name=name,
        seq=seq,
        kind="rpc",
        function="f",
        state=state,
        attempts=1,
        output="1",
        parents=("a",) if seq else (),
    )


def _finished(
    run_id: str,
    finished_at: float,
    *,
    state: RunState = "completed",
    parent: str | None = None,
    workflow: str = "w",
) -> RunRecord:
    """A run that ended at ``finished_at`` (or, unfinished, is still in ``state``)."""
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        state=state,
        input="{}",
        parent_run_id=parent,
        created_at=finished_at - 1,
        updated_at=finished_at,
        finished_at=finished_at if state in ("completed", "failed", "cancelled") else None,
    )


def _receive(name: str, seq: int, topic: str, state: StepState = "completed") -> StepRecord:
    """A receive step on ``topic`` (``suspended`` while it waits; ``completed`` to take one)."""
    return StepRecord(
        run_id="r1",
        name=name,
        seq=seq,
        kind="receive",
        function=None,
        state=state,
        attempts=1,
        input=receive_input(topic),
    )


def _job(job_id: str = "j1") -> JobRecord:
    return JobRecord(
        job_id=job_id,
        run_id="r1",
        step_name="s",
        function="f",
        input="{}",
        attempt=1,
        created_at=1.0,
    )
