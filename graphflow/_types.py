"""Shared type aliases and the run and step state vocabulary."""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, get_args

__all__ = ("JSON", "RUN_STATES", "SETTLED", "STEP_STATES", "TERMINAL", "RunState", "StepState")

JSON: TypeAlias = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""

RunState: TypeAlias = Literal[
    "pending", "queued", "running", "sleeping", "suspended", "completed", "failed", "cancelled"
]
"""Where a run is: waiting for a worker (or, ``queued``, for a concurrency slot), executing,
parked (sleeping or suspended), or ended."""

StepState: TypeAlias = Literal[
    "pending",
    "queued",
    "running",
    "completed",
    "failed",
    "skipped",
    "sleeping",
    "suspended",
    "cancelled",
]
"""Where a step (or graph node) is; ``pending`` only for graph nodes not reached yet, ``queued``
while a function's concurrency or rate limit holds it back."""

RUN_STATES: Final[tuple[RunState, ...]] = get_args(RunState)
"""Every run state, in lifecycle order."""

STEP_STATES: Final[tuple[StepState, ...]] = get_args(StepState)
"""Every step state."""

TERMINAL: Final[frozenset[RunState]] = frozenset({"completed", "failed", "cancelled"})
"""Run states after which nothing more happens (what ``engine.wait`` waits for)."""

SETTLED: Final[frozenset[RunState]] = TERMINAL | {"suspended"}
"""Run states that need nobody's action but a human's (what HTTP ``run`` answers at)."""
