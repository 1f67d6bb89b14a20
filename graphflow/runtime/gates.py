"""Admission of step attempts under their function's concurrency and rate limits.

Every attempt of a limited function needs a slot (and a place in the rate window) before it
starts, outside its timeout; the store grants them for every process sharing it. A held attempt
waits (its step shows ``queued``) until a slot is released (woken in-process, by PostgreSQL's
notifications, or by polling) or, for a rate limit, until the window moves on the engine's clock.
It never fails because of a limit.

A slot an attempt gives back stays with this process for a moment (``keep`` seconds): the next
attempt of the same function here reuses it without a database round trip (a sequential
workflow's next step is issued right after the last one is recorded). Slots nobody here reused
in that time are released to the database, where other processes can take them. Reuse never
exceeds the limit: the slot row stays in the store, counted, the whole time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio

from .._types import JSON
from ..errors import StoreError
from ..functions import Function
from ..store.base import SlotRequest, Store
from .clock import Clock

__all__ = ("Gate", "Gates")

KEEP = 0.05
"""Seconds a slot freed here waits for another attempt here before it goes back to the store."""


class Gates:
    """The slot and rate-limit waits of one engine, and the slots it keeps for reuse."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        owner_id: str,
        lease: float,
        poll: float,
        keep: float = KEEP,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner_id = owner_id
        self.lease = lease
        self.poll = poll
        self.keep = keep
        self._released: dict[str, anyio.Event] = {}
        self._idle: dict[str, dict[str, float]] = {}
        """Slots held in the store but used by no attempt: scope -> holder -> freed at."""
        self._idle_added = anyio.Event()

    def gate(self, fn: Function[..., object], data: JSON) -> Gate | None:
        """The gate of a call of ``fn`` with ``data``, or ``None`` when ``fn`` has no limit."""
        if fn.concurrency is None and fn.rate_limit is None:
            return None
        return Gate(gates=self, fn=fn, data=data)

    def released(self, scope: str) -> None:
        """A slot of ``scope`` was freed (here or, notified, elsewhere): wake its waiters."""
        event = self._released.pop(scope, None)
        if event is not None:
            event.set()

    def released_all(self) -> None:
        """Slots may have been freed unnoticed (notifications were missed): wake every waiter."""
        released, self._released = self._released, {}
        for event in released.values():
            event.set()

    def event(self, scope: str) -> anyio.Event:
        """Set when a slot of ``scope`` is next freed."""
        event = self._released.get(scope)
        if event is None:
            event = self._released[scope] = anyio.Event()
        return event

    def take_idle(self, scope: str) -> str | None:
        """A slot of ``scope`` this process holds unused (now in use again), or ``None``."""
        idle = self._idle.get(scope)
        if not idle:
            return None
        holder = next(iter(idle))
        del idle[holder]
        return holder

    def put_idle(self, scope: str, holder: str) -> None:
        """An attempt here is done with its slot: keep it for a moment, wake waiters here."""
        self._idle.setdefault(scope, {})[holder] = anyio.current_time()
        self._idle_added.set()
        self.released(scope)

    async def run(self) -> None:
        """Release the slots nobody here reused within ``keep`` seconds (a worker loop)."""
        while True:
            freed = [at for holders in self._idle.values() for at in holders.values()]
            if not freed:
                self._idle_added = anyio.Event()
                await self._idle_added.wait()
                continue
            await anyio.sleep(max(0.0, min(freed) + self.keep - anyio.current_time()))
            await self._release_expired()

    async def _release_expired(self) -> None:
        deadline = anyio.current_time() - self.keep
        for scope, holders in list(self._idle.items()):
            for holder, freed_at in list(holders.items()):
                if freed_at > deadline or holders.pop(holder, None) is None:
                    continue
                try:
                    await self.store.release_slot(scope, holder)
                except StoreError:
                    holders[holder] = anyio.current_time()  # kept (and renewed): retried later
                    continue
                self.released(scope)
            if not holders:
                self._idle.pop(scope, None)


@dataclass(eq=False, kw_only=True)
class Gate:
    """Entry and exit of one call of a limited function."""

    gates: Gates
    fn: Function[..., object]
    data: JSON
    scope: str = ""

    async def enter(
        self,
        holder: Callable[[], str],
        *,
        what: str,
        held: Callable[[], None] | None = None,
    ) -> str | None:
        """Wait until this attempt may start; return the holder of its slot (``None``: no slot).

        The slot is one freed here a moment ago, reused as it is (no database round trip), or a
        new one taken in the store under ``holder()``, the attempt's stable id. ``held`` is
        called once if the attempt has to wait.

        Raises:
            InputValidationError: the concurrency key is missing from the call's input.
        """
        concurrency = self.fn.concurrency
        key = None if concurrency is None else concurrency.key_of(self.data, what=what)
        self.scope = f"fn:{self.fn.name}" if key is None else f"fn:{self.fn.name}:{key}"
        if self.fn.rate_limit is None:
            reused = self.gates.take_idle(self.scope)
            if reused is not None:
                return reused
        return await self._wait(holder(), held)

    async def _wait(self, holder: str, held: Callable[[], None] | None) -> str | None:
        """Ask the store until it admits the attempt, waiting between the answers."""
        gates, concurrency, rate = self.gates, self.fn.concurrency, self.fn.rate_limit
        delay = 0.005
        while True:
            released = gates.event(self.scope)
            reused = gates.take_idle(self.scope) if concurrency is not None else None
            if reused is not None and rate is None:
                return reused
            request = SlotRequest(
                scope=self.scope,
                holder=holder,
                owner_id=gates.owner_id,
                limit=None if concurrency is None or reused is not None else concurrency.limit,
                rate_scope=f"rate:{self.fn.name}",
                rate=None if rate is None else (rate.count, rate.period),
                now=gates.clock.time(),
                lease=gates.lease,
            )
            try:
                retry_at = await gates.store.acquire_slot(request)
            except BaseException:
                if reused is not None:
                    gates.put_idle(self.scope, reused)
                elif concurrency is not None:
                    await self._release(holder)  # granted as we were cancelled: give it back
                raise
            if retry_at is None:
                return reused or (holder if concurrency is not None else None)
            if reused is not None:
                gates.put_idle(self.scope, reused)  # the rate window is full: others may use it
            if held is not None:
                held()
                held = None
            if retry_at > 0:
                await gates.clock.sleep_until(retry_at)
                continue
            with anyio.move_on_after(delay):
                await released.wait()
            delay = min(delay * 2, gates.poll)

    def leave(self, slot: str | None) -> None:
        """Give back the slot ``enter`` returned (rate-limit starts stay counted)."""
        if slot is not None:
            self.gates.put_idle(self.scope, slot)

    async def _release(self, holder: str) -> None:
        with anyio.CancelScope(shield=True):
            await self.gates.store.release_slot(self.scope, holder)
        self.gates.released(self.scope)
