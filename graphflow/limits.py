"""Flow-control declarations: ``gf.Concurrency`` and ``rate_limit="N/duration"``.

These are values checked when declared; the store enforces them where work is claimed, so a limit
holds across every process that shares the database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ._types import JSON
from .durations import to_seconds
from .errors import DurationError, InputValidationError, LimitError

__all__ = ("Concurrency", "RateLimit", "concurrency_option", "rate_limit_option", "stored_key")

_LONGEST_KEY = 100
"""Longer keys are stored as their hash: every store's key columns hold them (MySQL: 255)."""


def stored_key(text: str) -> str:
    """``text`` as a concurrency or dedup key is stored: itself, or its SHA-256 when long."""
    if len(text) <= _LONGEST_KEY:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` at once, across every worker; with ``key``, per value of that input path.

    ``key`` is a plain path into the input (``"user_id"``, ``"user.id"``, ``"items.0.id"``):
    ``gf.Concurrency(1, key="user_id")`` runs one at a time per user, different users side by side.
    """

    limit: int
    key: str | None = None

    def __post_init__(self) -> None:
        limit: object = self.limit  # checked as given: callers may pass anything
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise LimitError(
                where="gf.Concurrency",
                option="limit",
                value=self.limit,
                fix="give a whole number of at least 1",
            )
        key: object = self.key
        if key is not None and (not isinstance(key, str) or not all(key.split("."))):
            raise LimitError(
                where="gf.Concurrency",
                option="key",
                value=self.key,
                fix="give a dotted path into the input such as 'user_id' or 'user.id'",
            )

    def key_of(self, data: JSON, *, what: str, workflow: str | None = None) -> str | None:
        """The key's value in ``data`` as text (``None`` without a key).

        Raises:
            InputValidationError: the path is missing from ``data``.
        """
        if self.key is None:
            return None
        value = data
        for part in self.key.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise InputValidationError(
                    what=what,
                    errors=[
                        {
                            "loc": tuple(self.key.split(".")),
                            "msg": f"the concurrency key {self.key!r} is missing",
                            "type": "missing",
                        }
                    ],
                    workflow=workflow,
                )
        return stored_key(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def concurrency_option(value: object, *, where: str) -> Concurrency | None:
    """``concurrency=`` of a decorator: ``None``, a whole number, or a ``gf.Concurrency``."""
    if value is None or isinstance(value, Concurrency):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return Concurrency(value)
    raise LimitError(
        where=where,
        option="concurrency",
        value=value,
        fix="give a whole number of at least 1 or gf.Concurrency(N, key='path.in.input')",
    )


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` attempts started per sliding window of ``period`` seconds."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def rate_limit_option(value: object, *, where: str) -> RateLimit | None:
    """``rate_limit=`` of ``@gf.function``: ``None`` or ``"N/duration"`` (``"100/1min"``)."""
    if value is None or isinstance(value, RateLimit):
        return value
    fix = "write it as 'N/duration' with N >= 1, e.g. '5/1s' or '100/1min'"
    if not isinstance(value, str) or value.count("/") != 1:
        raise LimitError(where=where, option="rate_limit", value=value, fix=fix)
    count_text, period_text = (part.strip() for part in value.split("/"))
    try:
        period = to_seconds(period_text)
    except DurationError as exc:
        raise LimitError(where=where, option="rate_limit", value=value, fix=fix) from exc
    if not count_text.isdigit() or int(count_text) < 1 or period <= 0:
        raise LimitError(where=where, option="rate_limit", value=value, fix=fix)
    return RateLimit(int(count_text), period)
