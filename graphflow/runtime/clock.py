"""Time for the runtime: the ``Clock`` protocol and the system clock.

Run timestamps, ``wf.now()``, retry delays and sleep wake-ups all read the engine's clock, so tests
can swap in ``graphflow.testing.VirtualClock`` and skip days in milliseconds.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ("Clock", "SystemClock", "until_set")


class Clock(Protocol):
    """A source of time that can also wait."""

    def time(self) -> float:
        """Seconds since the epoch."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``time() >= deadline``."""


class SystemClock:
    """The wall clock."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the wall clock reaches ``deadline``."""
        delay = deadline - time.time()
        if delay > 0:
            await anyio.sleep(delay)


async def until_set(event: anyio.Event, clock: Clock, deadline: float | None, poll: float) -> None:
    """Until ``event`` is set, ``deadline`` passes on ``clock`` (if any), or ``poll`` seconds."""
    with anyio.move_on_after(poll):
        async with anyio.create_task_group() as tg:

            async def timer(when: float) -> None:
                await clock.sleep_until(when)
                tg.cancel_scope.cancel()

            if deadline is not None:
                tg.start_soon(timer, deadline)
            await event.wait()
            tg.cancel_scope.cancel()
