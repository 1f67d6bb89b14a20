"""``RunStatus`` and ``StepStatus``: the public, pydantic view of stored runs."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._types import JSON, TERMINAL, RunState, StepState
from ..errors import ErrorInfo, InputValidationError
from ..store.base import AttemptRecord, OwnerRecord, RunRecord, StepRecord, Store

__all__ = (
    "RunList",
    "RunOwner",
    "RunStatus",
    "StepStatus",
    "encode_live_steps",
    "find_owner",
    "load_error",
    "parse_cursor",
    "run_cursor",
    "run_owner",
    "run_status",
    "step_status",
    "to_datetime",
)


def to_datetime(seconds: float | None) -> datetime | None:
    """An aware UTC datetime from epoch seconds."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def load_error(text: str | None) -> ErrorInfo | None:
    """Decode a stored error."""
    return None if text is None else ErrorInfo.model_validate_json(text)


def _json(text: str | None) -> JSON:
    return None if text is None else json.loads(text)


class StepStatus(BaseModel):
    """One step (or graph node) of a run."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    function: str | None = None
    state: StepState
    attempts: int = 0
    input: JSON = None
    output: JSON = None
    error: ErrorInfo | None = None
    attempt_errors: list[ErrorInfo] = []
    parents: list[str] = []
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wake_at: datetime | None = None
    owner_id: str | None = None
    """While the step executes (``running`` or ``queued``): the engine process executing it."""
    lease_expires_at: datetime | None = None
    """While the step executes: when that process's lease on the run ends unless renewed."""


class RunOwner(BaseModel):
    """The engine process that holds a running run, and whether it is still alive.

    An owner renews its lease with every heartbeat; once the lease has run out the process is
    gone (killed, crashed, or stalled past its lease) and another engine will recover the run.
    """

    model_config = ConfigDict(frozen=True)

    owner_id: str
    host: str | None = None
    """The owner's host name (``None``: its registration is gone)."""
    pid: int | None = None
    """The owner's process id on ``host``."""
    heartbeat_at: datetime | None = None
    """The owner's last heartbeat."""
    lease_expires_at: datetime | None = None
    """When the owner's lease on the run ends unless renewed."""
    alive: bool
    """Whether the lease still runs: ``False`` means the owner is dead and recovery is pending."""

    @property
    def summary(self) -> str:
        """One line for people: who holds the run, and what happens next if it is dead."""
        where = f"{self.host} pid {self.pid}" if self.host is not None else self.owner_id
        lease = self.lease_expires_at
        until = lease.isoformat(timespec="seconds") if lease is not None else "?"
        if self.alive:
            return f"{where}, lease until {until}"
        return (
            f"owner dead, recovery pending: {where} stopped renewing its lease (expired {until});"
            " the next engine that polls this store recovers the run from its last recorded step"
        )


class RunStatus(BaseModel):
    """A run: its state, input, output or error, timestamps and steps (in issue order)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    state: RunState
    input: JSON = None
    output: JSON = None
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    updated_at: datetime
    finished_at: datetime | None = None
    wake_at: datetime | None = None
    suspend_reason: str | None = None
    parent_run_id: str | None = None
    forked_from: str | None = None
    """The run this one was forked from (``engine.fork``)."""
    owner: RunOwner | None = None
    """While ``running`` and held by an engine (``engine.status`` only): that engine process."""
    steps: list[StepStatus] = []

    @property
    def done(self) -> bool:
        """Whether the run is terminal (completed, failed or cancelled)."""
        return self.state in TERMINAL


def step_status(
    step: StepRecord,
    attempt_errors: list[ErrorInfo] | None = None,
    *,
    owner: tuple[str | None, float | None] = (None, None),
) -> StepStatus:
    """The public view of a stored step (``owner``: the executing owner and its lease's end)."""
    return StepStatus(
        name=step.name,
        kind=step.kind,
        function=step.function,
        state=step.state,
        attempts=step.attempts,
        input=_json(step.input),
        output=_json(step.output),
        error=load_error(step.error),
        attempt_errors=attempt_errors or [],
        parents=list(step.parents),
        started_at=to_datetime(step.started_at),
        finished_at=to_datetime(step.finished_at),
        wake_at=to_datetime(step.wake_at),
        owner_id=owner[0],
        lease_expires_at=to_datetime(owner[1]),
    )


_LIVE_FIELDS = ("name", "seq", "kind", "function", "state", "attempts", "started_at")
_SETTLED_STEP = frozenset({"completed", "failed", "skipped", "cancelled"})


def encode_live_steps(steps: list[StepRecord]) -> str:
    """What an owner's heartbeat publishes of the steps it executes (``RunRecord.live_steps``)."""
    return json.dumps(
        [{field: getattr(step, field) for field in _LIVE_FIELDS} | {"parents": step.parents}
         for step in steps]
    )  # fmt: skip


def _with_published(run: RunRecord, steps: list[StepRecord]) -> list[tuple[StepRecord, bool]]:
    """``steps`` with the live ones the run's owner published (``True``) merged in.

    A published step never hides one recorded as settled since: the record is newer.
    """
    merged = [(step, False) for step in steps]
    if run.live_steps is None or run.state != "running" or run.owner_id is None:
        return merged
    at = {step.name: i for i, step in enumerate(steps)}
    for values in json.loads(run.live_steps):
        live = StepRecord(run_id=run.run_id, **(values | {"parents": tuple(values["parents"])}))
        i = at.get(live.name)
        if i is None:
            merged.append((live, True))
        elif steps[i].state not in _SETTLED_STEP:  # a retry: keep the last attempt's error
            merged[i] = (replace(live, input=steps[i].input, error=steps[i].error), True)
    return merged


def run_owner(run: RunRecord, owner: OwnerRecord | None, now: float) -> RunOwner | None:
    """Who holds ``run`` (its registration ``owner``, if still there), alive at ``now`` or not."""
    if run.state != "running" or run.owner_id is None:
        return None
    lease = run.lease_expires_at
    return RunOwner(
        owner_id=run.owner_id,
        host=owner.host if owner is not None else None,
        pid=owner.pid if owner is not None else None,
        heartbeat_at=to_datetime(owner.heartbeat_at) if owner and owner.heartbeat_at else None,
        lease_expires_at=to_datetime(lease),
        alive=lease is not None and lease > now,
    )


async def find_owner(store: Store, run: RunRecord) -> RunOwner | None:
    """Who holds ``run`` if it is running, and whether that process is still alive."""
    if run.state != "running" or run.owner_id is None:
        return None
    return run_owner(run, await store.get_owner(run.owner_id), await store.now())


def run_status(
    run: RunRecord,
    steps: list[StepRecord] | None = None,
    attempts: list[AttemptRecord] | None = None,
    *,
    owner: RunOwner | None = None,
) -> RunStatus:
    """The public view of a stored run with its steps (and those its owner published live)."""
    held_by = (run.owner_id, run.lease_expires_at)
    errors: dict[str, list[ErrorInfo]] = {}
    for attempt in attempts or ():
        info = load_error(attempt.error)
        if info is not None:
            errors.setdefault(attempt.step_name, []).append(info)
    values: dict[str, Any] = {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "state": run.state,
        "input": _json(run.input),
        "output": _json(run.output),
        "error": load_error(run.error),
        "created_at": to_datetime(run.created_at),
        "started_at": to_datetime(run.started_at),
        "updated_at": to_datetime(run.updated_at),
        "finished_at": to_datetime(run.finished_at),
        "wake_at": to_datetime(run.wake_at),
        "suspend_reason": run.suspend_reason,
        "parent_run_id": run.parent_run_id,
        "forked_from": run.forked_from,
        "owner": owner,
        "steps": [
            step_status(s, errors.get(s.name), owner=held_by if live else (None, None))
            for s, live in _with_published(run, list(steps or ()))
        ],
    }
    return RunStatus(**values)


class RunList(list[RunStatus]):
    """A page of ``engine.list_runs``: the runs, and the cursor of the next page."""

    next_cursor: str | None
    """Pass it as ``cursor=`` for the runs after these; ``None`` on the last page."""

    def __init__(self, runs: list[RunStatus], next_cursor: str | None) -> None:
        super().__init__(runs)
        self.next_cursor = next_cursor


def run_cursor(run: RunRecord) -> str:
    """An opaque page boundary after ``run``: its exact ``(created_at, run_id)``, URL-safe."""
    raw = json.dumps([run.created_at, run.run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[float, str]:
    """``(created_at, run_id)`` from ``run_cursor``'s text.

    Raises:
        InputValidationError: the text is not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = json.loads(raw)
        if isinstance(created_at, int | float) and isinstance(run_id, str):
            return float(created_at), run_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise InputValidationError(
        what="runs cursor",
        errors=[
            {
                "type": "value_error",
                "loc": ("cursor",),
                "msg": "not a cursor of list_runs: pass the next_cursor of the previous page",
                "input": cursor,
            }
        ],
    )
