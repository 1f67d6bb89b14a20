"""Waiting for a database that dropped a connection: how long, and how often to try again.

A restarted server refuses connections for a few seconds; a terminated backend is replaced at once.
The first attempts come quickly, then every two seconds, with jitter so that the engines of a
whole fleet do not reconnect in step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ("RECONNECT_FOR", "reconnect_delays")

RECONNECT_FOR = 30.0
"""Seconds a statement waits for its lost connection to be replaced before it fails."""

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


def reconnect_delays() -> Iterator[float]:
    """Seconds to wait before each further attempt: 50 ms doubling up to 2 s, with jitter."""
    delay = _FIRST_DELAY
    while True:
        yield delay * (0.5 + random.random())
        delay = min(delay * 2, _MAX_DELAY)
