"""Shared type aliases and constants."""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ("JSON", "TERMINAL_RUN_STATES")

JSON: TypeAlias = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""

TERMINAL_RUN_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
"""Run states after which nothing more happens."""
