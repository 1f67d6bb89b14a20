"""Parse durations: ``"500ms"``, ``"5min"``, ``"1h30m"``, seconds or ``timedelta``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from .errors import DurationError

__all__ = ("Duration", "parse_duration", "to_seconds")

Duration = str | int | float | timedelta

_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def to_seconds(duration: Duration) -> float:
    """Return ``duration`` in seconds.

    Raises:
        DurationError: the value is not a non-negative number, timedelta or duration text.
    """
    if isinstance(duration, bool):
        raise DurationError(text=duration)
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, int | float):
        seconds = float(duration)
    elif isinstance(duration, str):
        seconds = _parse_text(duration)
    else:
        raise DurationError(text=duration)
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(text=duration)
    return seconds


def parse_duration(duration: Duration) -> timedelta:
    """Return ``duration`` as a ``timedelta`` (see ``to_seconds``)."""
    return timedelta(seconds=to_seconds(duration))


def _parse_text(text: str) -> float:
    stripped = text.strip().lower()
    if not stripped:
        raise DurationError(text=text)
    try:
        return float(stripped)
    except ValueError:
        pass
    total, position = 0.0, 0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None or match.group(2) not in _UNITS:
            raise DurationError(text=text)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total
