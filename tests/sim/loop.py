"""Virtual time for a whole event loop: every timer, sleep and timeout runs on simulated time.

``graphflow.testing.VirtualClock`` moves only the engine's ``Clock``; the engine's own loops
(lease renewal, polling, ``move_on_after``) still wait in real time, so a run under it depends
on how fast the machine is. Here the asyncio loop itself keeps virtual time: when no callback is
ready, its selector jumps the time to the next timer instead of waiting for it. Nothing waits
in real time, and the order of events depends only on the program and the seed.

The simulated engine runs no threads (its step functions are async; SQLite runs on the loop),
so nothing can complete behind the loop's back.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio

__all__ = (
    "EPOCH",
    "LoopClock",
    "SimulationStuck",
    "VirtualTimeLoop",
    "freeze",
    "run_simulated",
)

T = TypeVar("T")

EPOCH = 1_767_225_600.0
"""Virtual time 0 is 2026-01-01T00:00:00Z (a fixed start: timestamps repeat run after run)."""

_MAX_TURNS = 2_000_000
"""Loop turns one simulation may take: more means a task spins without time moving."""


class SimulationStuck(RuntimeError):
    """The simulated program deadlocked (nothing runnable, no timer) or spun without end."""


class _VirtualSelector(selectors.BaseSelector):
    """Polls the real selector without waiting; a wait becomes a jump of the virtual time."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0
        self.turns = 0
        self.max_turns = _MAX_TURNS

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.turns += 1
        if self.turns > self.max_turns:
            self.max_turns += _MAX_TURNS  # room to cancel the tasks left (they unwind)
            raise SimulationStuck(f"{_MAX_TURNS} loop turns: a task spins without waiting")
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            raise SimulationStuck("deadlock: no task is runnable and none waits for a time")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual and never waits for real."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def freeze(self, seconds: float) -> None:
        """Move the time ``seconds`` on, as a call that blocks the loop that long would."""
        self._virtual.now += seconds


class LoopClock:
    """The engine's ``Clock`` (and the store's lease clock) on the running loop's virtual time."""

    def time(self) -> float:
        """Seconds since the epoch, virtual."""
        return EPOCH + asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the virtual time reaches ``deadline``."""
        await anyio.sleep(max(0.0, deadline - self.time()))


def freeze(seconds: float) -> None:
    """Block the running ``VirtualTimeLoop`` for ``seconds``: time jumps, no task runs meanwhile."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    loop.freeze(seconds)


def run_simulated(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on a fresh ``VirtualTimeLoop`` (virtual time starts at ``EPOCH``)."""

    async def entry() -> T:
        return await main()

    return anyio.run(entry, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})
