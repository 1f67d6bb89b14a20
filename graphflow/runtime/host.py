"""What a run needs from the process executing it: the ``RunHost`` protocol, and ``Slots``.

The runtime knows how to execute one run; the host (``graphflow.worker.Worker``) owns what lies
outside it: the store and clock, the job slots and threads, child runs, remote jobs, and telling
watchers that a run changed.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Protocol

import anyio

from .._types import JSON
from ..functions import Registry
from ..store.base import JobRecord, Store
from .clock import Clock
from .gates import Gates
from .status import RunStatus

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ("RunHost", "Slots")


class Slots:
    """A counting semaphore whose uncontended acquire does not yield (unlike anyio's limiter)."""

    def __init__(self, total: int) -> None:
        self.free = total
        self._waiters: deque[anyio.Event] = deque()

    async def acquire(self) -> None:
        """Take a slot, waiting in FIFO order when none is free."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # the slot was handed to us as we were cancelled
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.free += 1


class RunHost(Protocol):
    """What runs need from the worker that executes them."""

    store: Store
    registry: Registry
    clock: Clock
    owner_id: str
    job_slots: Slots
    """Bounds the RPC function calls executing at once in this process."""
    threads: Executor
    """Runs sync functions (one thread per job slot at most)."""
    closing: bool
    """Set when the worker stops: runs issue nothing more and unwind."""
    in_flight: int
    """Step attempts executing now (the worker waits for them to persist when closing)."""
    tracer: Tracer | None
    """The OpenTelemetry tracer when tracing is on (decided as the engine opens), else ``None``."""
    gates: Gates
    """Admits attempts of functions with a concurrency or rate limit (in the store)."""

    async def start_run(
        self, workflow: str, data: JSON, run_id: str, parent: tuple[str, str]
    ) -> str:
        """Start (or find) the child run ``run_id`` of ``parent`` = ``(run_id, step_name)``."""
        ...

    async def wait_run(self, run_id: str) -> RunStatus:
        """Wait until the run is terminal; its status (without steps)."""
        ...

    async def remote_functions(self) -> set[str]:
        """Functions that live workers elsewhere serve (RPC steps become jobs for them)."""
        ...

    async def wait_job(self, job_id: str) -> JobRecord:
        """Wait until the queued job is completed or failed."""
        ...

    def step_changed(self, run_id: str) -> None:
        """A step of ``run_id`` changed (issued, attempt started, recorded): wakes watchers."""
        ...

    async def renewal(self) -> None:
        """Wait for the next renewal of this engine's leases (asking for one now)."""
        ...
