"""Store faults during execution: how long to back off, and trying a write again until it lands.

A ``StoreUnavailableError`` (a lock held too long, a full disk, a lost connection) passes; work it
interrupted is tried again later, never failed for it. Runs are replayed from their stored steps
(``Worker._drive``); single writes, like a job's outcome, are retried here.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import StoreError, StoreUnavailableError
from . import logs
from .clock import Clock
from .execution import RunExecution

__all__ = ("fault_backoff", "replayable", "write_until_stored")

T = TypeVar("T")

_FIRST, _LONGEST = 0.05, 10.0
"""The first and the longest wait (seconds) before work the store failed is tried again."""


def fault_backoff(faults: int) -> float:
    """How long to wait after the ``faults``-th store fault in a row (doubling, jittered)."""
    delay: float = min(_FIRST * 2.0 ** (faults - 1), _LONGEST)
    return delay * (0.75 + random.random() / 2)


async def write_until_stored(
    what: str, write: Callable[[], Awaitable[T]], clock: Clock, run_id: str | None = None
) -> T | None:
    """``write()``, again after each ``StoreUnavailableError`` (backing off) until it lands.

    Any other ``StoreError`` is logged and gives up (``None``): the write's lease expires and the
    work is taken over as after a crash.
    """
    faults = 0
    while True:
        try:
            return await write()
        except StoreUnavailableError as exc:
            faults += 1
            delay = fault_backoff(faults)
            logs.store_fault(what, exc, retry_in=delay, run_id=run_id)
            await clock.sleep_until(clock.time() + delay)
        except StoreError as exc:
            logs.store_fault(what, exc, retry_in=None, run_id=run_id)
            return None


def replayable(interrupted: RunExecution) -> RunExecution:
    """A fresh execution of an interrupted run, to replay from the store (a cancel carries on)."""
    execution = RunExecution(interrupted.host, interrupted.run, interrupted.fence, [])
    execution.lease_renewed(interrupted.leased_until)
    interrupted.end()  # its stray tasks (gather branches) issue nothing more
    if interrupted.cancelling:
        execution.stop(cancel=True)
    return execution
