"""Shared type aliases: ids, JSON, and the closed sets of states and kinds."""

from __future__ import annotations

from typing import Any, Literal, NewType, TypeAlias

__all__ = ("JSON", "RunID", "RunState", "StepKind", "StepName", "StepState", "TERMINAL_RUN_STATES")

JSON: TypeAlias = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""

RunID = NewType("RunID", str)
StepName = NewType("StepName", str)

RunState = Literal[
    "pending", "running", "sleeping", "suspended", "completed", "failed", "cancelled"
]
StepState = Literal[
    "pending", "running", "completed", "failed", "skipped", "sleeping", "suspended", "cancelled"
]
StepKind = Literal["rpc", "inline", "sleep", "suspend", "child", "node"]

TERMINAL_RUN_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
