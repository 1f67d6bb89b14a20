"""Which store calls fail, and how: the fault plan of one seed.

Each store call gets an ordinal (counted across every engine of the seed). The plan decides from
its seeded RNG whether the call meets a fault, or, when replaying a shrunk failure, from an
explicit schedule of ``ordinal -> Fault``. Faults stop at ``quiet_at`` (virtual seconds): from
then on the oracle expects every run to complete.

The errors raised are the ones the real SQLite store raises for the same condition: a
``sqlite3.OperationalError`` with SQLite's own code and message, classified by the store's own
error mapping (``graphflow.store._sql_db._store_error``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from random import Random
from typing import Literal, get_args

from graphflow.store._sql_db import _store_error

__all__ = (
    "ALL_KINDS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "disk_full_error",
    "lost_connection_error",
    "transient_error",
)

FaultKind = Literal[
    "fail_before",
    "fail_after",
    "crash_before",
    "crash_after",
    "disconnect",
    "stall",
    "freeze",
    "disk_full",
]
ALL_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)

_WEIGHTS: dict[FaultKind, float] = {
    "fail_before": 3.0,
    "fail_after": 2.0,
    "crash_before": 1.0,
    "crash_after": 1.0,
    "disconnect": 1.0,
    "stall": 2.0,
    "freeze": 1.0,
    "disk_full": 1.0,
}
_CRASHES = ("crash_before", "crash_after")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault met by one store call.

    ``duration``: a stall's wait, or how long a lost connection or a full disk lasts (virtual
    seconds). ``committed``: whether the call that lost its connection had committed.
    """

    kind: FaultKind
    duration: float = 0.0
    committed: bool = False

    def __str__(self) -> str:
        extra = f" {self.duration:.2f}s" if self.duration else ""
        return f"{self.kind}{extra}{' (committed)' if self.committed else ''}"


def _sqlite_error(code: int, name: str, message: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # as SQLite's own errors carry them
    error.sqlite_errorname = name
    return error


def transient_error(url: str) -> BaseException:
    """What the store raises when another process holds the database's write lock too long."""
    return _store_error(
        url, _sqlite_error(sqlite3.SQLITE_BUSY, "SQLITE_BUSY", "database is locked")
    )


def lost_connection_error(url: str) -> BaseException:
    """What the store raises when its connection to the database is gone."""
    return _store_error(url, _sqlite_error(sqlite3.SQLITE_IOERR, "SQLITE_IOERR", "disk I/O error"))


def disk_full_error(url: str) -> BaseException:
    """What the store raises when a write finds the disk full."""
    return _store_error(
        url, _sqlite_error(sqlite3.SQLITE_FULL, "SQLITE_FULL", "database or disk is full")
    )


class FaultPlan:
    """Decides the faults of one seed, and keeps the outages they open.

    Args:
        rng: the seed's fault RNG (unused with ``schedule``).
        kinds: the fault kinds this seed may inject.
        rate: the chance that a store call meets a fault.
        quiet_at: virtual time after which nothing fails.
        max_crashes: crashes at most (each one costs an engine restart and a lease expiry).
        schedule: replay exactly these faults, by call ordinal (shrinking a failure).
    """

    def __init__(
        self,
        rng: Random,
        *,
        kinds: tuple[FaultKind, ...],
        rate: float,
        quiet_at: float,
        max_crashes: int = 3,
        lease: float = 10.0,
        schedule: Mapping[int, Fault] | None = None,
    ) -> None:
        self.rng = rng
        self.kinds = kinds
        self.rate = rate if kinds else 0.0
        self.quiet_at = quiet_at
        self.max_crashes = max_crashes
        self.lease = lease
        self.schedule = schedule
        self.crashes = 0
        self.injected: list[tuple[int, str, Fault]] = []
        self.offline_until = 0.0
        self.disk_full_until = 0.0

    def decide(self, ordinal: int, method: str, now: float) -> Fault | None:
        """The fault call ``ordinal`` (of ``method``) meets, if any; remembered in ``injected``."""
        if self.schedule is not None:
            fault = self.schedule.get(ordinal)
        elif now >= self.quiet_at or self.rng.random() >= self.rate:
            return None
        else:
            fault = self._draw()
        if fault is None:
            return None
        if fault.kind in _CRASHES:
            self.crashes += 1
        self.injected.append((ordinal, method, fault))
        return fault

    def _draw(self) -> Fault | None:
        kinds = [k for k in self.kinds if k not in _CRASHES or self.crashes < self.max_crashes]
        if not kinds:
            return None
        kind = self.rng.choices(kinds, [_WEIGHTS[k] for k in kinds])[0]
        match kind:
            case "stall":
                # Mostly short; sometimes longer than the lease, as a frozen disk can be.
                long = self.rng.random() < 0.15
                return Fault(
                    kind, duration=self.rng.uniform(1.0, 3.0) * (self.lease if long else 0.3)
                )
            case "freeze":  # the whole process: a lock wait on the loop, a VM pause
                return Fault(kind, duration=self.rng.uniform(0.1, 3.0) * self.lease)
            case "disconnect":
                return Fault(
                    kind, duration=self.rng.uniform(0.1, 20.0), committed=self.rng.random() < 0.5
                )
            case "disk_full":
                return Fault(kind, duration=self.rng.uniform(0.1, 30.0))
            case _:
                return Fault(kind)

    def stop(self) -> None:
        """No fault from now on, and no outage left."""
        self.quiet_at = 0.0
        self.schedule = {}
        self.offline_until = self.disk_full_until = 0.0

    def outage(self, now: float, write: bool) -> str | None:
        """Why every call fails now (``"offline"``, ``"disk_full"`` for writes), or ``None``."""
        if now < self.offline_until:
            return "offline"
        if write and now < self.disk_full_until:
            return "disk_full"
        return None
