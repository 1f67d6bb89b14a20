"""Records to statement parameters and rows back to records, for the SQL store's hot paths."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json

from ._tx import Tx
from .base import AttemptRecord, RunRecord, StepRecord

__all__ = (
    "ATTEMPT_COLUMNS",
    "RUN_COLUMNS",
    "RUN_SELECT",
    "STEP_COLUMNS",
    "json_text",
    "load_attempts_of",
    "load_steps_of",
    "record_params",
    "run_row",
    "step_params",
    "step_row",
)

RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(RunRecord))
STEP_COLUMNS = tuple(f.name for f in dataclasses.fields(StepRecord))
ATTEMPT_COLUMNS = tuple(f.name for f in dataclasses.fields(AttemptRecord))
RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM gf_runs"


def run_row(row: Sequence[Any]) -> RunRecord:
    """A run from a row of ``RUN_COLUMNS``."""
    values = dict(zip(RUN_COLUMNS, row, strict=True))
    values["cancel_requested"] = bool(values["cancel_requested"])
    return RunRecord(**values)


def step_row(row: Sequence[Any]) -> StepRecord:
    """A step from a row of ``STEP_COLUMNS``."""
    # Unpacked in the order of STEP_COLUMNS: a history loads one per step, so no dict between.
    (run_id, name, seq, kind, function, state, attempts, input_, output, error, parents,
     started_at, finished_at, wake_at, detail) = row  # fmt: skip
    return StepRecord(
        run_id=run_id,
        name=name,
        seq=seq,
        kind=kind,
        function=function,
        state=state,
        attempts=attempts,
        input=input_,
        output=output,
        error=error,
        parents=tuple(json.loads(parents)) if parents and parents != "[]" else (),
        started_at=started_at,
        finished_at=finished_at,
        wake_at=wake_at,
        detail=detail,
    )


def record_params(record: Any, columns: Sequence[str]) -> dict[str, Any]:
    """A record's fields as statement parameters (shallow: ``asdict`` deep-copies)."""
    return {column: getattr(record, column) for column in columns}


def step_params(step: StepRecord) -> dict[str, Any]:
    """A step's fields as statement parameters (its parents as JSON text).

    Spelled out rather than ``record_params``: one is built for every step written.
    """
    return {
        "run_id": step.run_id,
        "name": step.name,
        "seq": step.seq,
        "kind": step.kind,
        "function": step.function,
        "state": step.state,
        "attempts": step.attempts,
        "input": step.input,
        "output": step.output,
        "error": step.error,
        "parents": json_text(step.parents) if step.parents else "[]",
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "wake_at": step.wake_at,
        "detail": step.detail,
    }


def json_text(value: Any) -> str:
    """``value`` as JSON text: ``pydantic_core``'s encoder, a fifth of ``json.dumps``'s cost."""
    return to_json(value).decode()


def load_steps_of(
    tx: Tx, run_id: str, where: str = "", params: dict[str, Any] | None = None
) -> list[StepRecord]:
    """A run's steps in issue order (``where``: a further condition on them)."""
    rows = tx.query(
        f"SELECT {', '.join(STEP_COLUMNS)} FROM gf_steps WHERE run_id = :run_id{where}"
        " ORDER BY seq",
        {"run_id": run_id, **(params or {})},
    )
    return [step_row(row) for row in rows]


def load_attempts_of(tx: Tx, run_id: str) -> list[AttemptRecord]:
    """A run's failed attempts, by step and attempt number."""
    rows = tx.query(
        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM gf_attempts WHERE run_id = :run_id"
        " ORDER BY step_name, attempt",
        {"run_id": run_id},
    )
    return [AttemptRecord(**dict(zip(ATTEMPT_COLUMNS, row, strict=True))) for row in rows]
