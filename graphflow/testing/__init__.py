"""Testing helpers: a virtual clock that skips days in milliseconds, and pytest fixtures.

```python
from graphflow.testing import VirtualClock

async def test_trial_reminder():
    clock = VirtualClock()
    async with gf.Engine("memory://", clock=clock) as engine, clock.running():
        assert await engine.run("trial", {...}) == ...   # a 3-day wf.sleep passes at once
```

Add ``pytest_plugins = ["graphflow.testing"]`` to ``conftest.py`` for the ``virtual_clock`` and
``memory_engine`` fixtures; tests that use them run on anyio without further configuration.
"""

from __future__ import annotations

import contextlib
import heapq
import inspect
import itertools
import time
from collections.abc import AsyncIterator

import anyio
import anyio.abc

from ..engine import Engine
from ..store.sql import SqlStore

__all__ = ("MemoryStore", "VirtualClock", "memory_engine", "virtual_clock")


class MemoryStore(SqlStore):
    """A store private to one engine: SQLite in memory, the same SQL as the file store."""

    def __init__(self) -> None:
        super().__init__("memory://")


class VirtualClock:
    """A clock that moves only when told to, or (auto) when every task waits.

    ``advance()`` moves it; ``running()`` auto-advances it: whenever every task is blocked, it
    jumps straight to the earliest deadline a task sleeps until.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The virtual time, seconds since the epoch."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the virtual time reaches ``deadline``."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passed."""
        self.set_time(self._now + seconds)

    def set_time(self, when: float) -> None:
        """Move time forward to ``when`` (never backwards)."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline a task is sleeping until."""
        return self._sleepers[0][0] if self._sleepers else None

    async def run_auto(self) -> None:
        """Forever: once every other task is blocked, jump to the next deadline."""
        while True:
            await anyio.wait_all_tasks_blocked()
            deadline = self.next_deadline
            if deadline is not None:
                self.set_time(deadline)
            else:
                await anyio.sleep(0.001)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[VirtualClock]:
        """Auto-advance this clock for the duration of the block."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run_auto)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixtures
    pass
else:
    _FIXTURES = frozenset({"virtual_clock", "memory_engine"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(
        collector: pytest.Module | pytest.Class, name: str, obj: object
    ) -> None:
        """Run tests that take our (async) fixtures on anyio, with no pytest configuration."""
        if not collector.istestfunction(obj, name) or not callable(obj):
            return
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            return
        if _FIXTURES & parameters.keys():
            pytest.mark.anyio(obj)
            pytest.mark.usefixtures("anyio_backend")(obj)

    @pytest.fixture
    async def virtual_clock() -> AsyncIterator[VirtualClock]:
        """A ``VirtualClock`` that auto-advances while the test runs."""
        clock = VirtualClock()
        async with clock.running():
            yield clock

    @pytest.fixture
    async def memory_engine(virtual_clock: VirtualClock) -> AsyncIterator[Engine]:
        """An open engine on a private in-memory store, driven by ``virtual_clock``."""
        async with Engine("memory://", clock=virtual_clock, poll_interval=0.05) as engine:
            yield engine
