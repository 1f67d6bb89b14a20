"""Watching runs: in-process change events, and the one loop that waits for a run to change.

Every way of waiting for a run (``engine.watch``, ``engine.wait``/``run``, a parent waiting for
its child, HTTP ``run`` and ``/events``, the CLI's live display) goes through ``changes``. A change
wakes it through ``RunEvents``: set by this process's worker for the runs it executes (every step
change and the run's end), by the engine's own ``resume``/``cancel``, and by PostgreSQL
notifications (a run ended or became runnable anywhere). Polling the store is the fallback, for what
no event reports: steps of runs that another process executes, and every change on a store that
does not notify (SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol, TypeVar, cast

import anyio

from ._types import TERMINAL

__all__ = ("RunEvents", "changes", "terminal_status", "time_limit", "until_terminal")

_FIRST_POLL = 0.005
"""The first fallback poll (seconds); each poll doubles it, up to the engine's poll interval."""


class RunEvents:
    """Per-run change events within one process, and which runs this process executes.

    Two kinds of watchers: those of every change (``steps=True``: a step issued, started or
    recorded) and those of the run's own state (``steps=False``: started, parked, ended). A step
    change wakes only the first kind, so a caller waiting for the end of a long run costs nothing
    per step.
    """

    def __init__(self) -> None:
        self._steps: dict[str, list[asyncio.Future[None]]] = {}
        self._runs: dict[str, list[asyncio.Future[None]]] = {}
        self.local: set[str] = set()
        """Runs held by this process's worker: every change of theirs sets an event."""
        self.notifies = False
        """Whether the store reports run changes from other processes (PostgreSQL NOTIFY)."""
        self.claims: Callable[[str], bool] = _claims_nothing
        """Whether this process's worker claims pending runs of a workflow (and says so)."""

    def next_change(self, run_id: str, *, steps: bool) -> asyncio.Future[None]:
        """A future done at the run's next change (of any step too, with ``steps``); ``forget`` it.

        One plain future per watcher and look: a watcher that polls (a run executed elsewhere)
        makes one per look, where an event and a cancel scope for its timeout cost twice as much.
        """
        change: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._steps if steps else self._runs).setdefault(run_id, []).append(change)
        return change

    def forget(self, run_id: str, change: asyncio.Future[None], *, steps: bool) -> None:
        """Stop tracking ``change`` (its watcher looks again, or stopped watching)."""
        watchers = (self._steps if steps else self._runs).get(run_id)
        if watchers is not None and change in watchers:
            watchers.remove(change)
            if not watchers:
                del (self._steps if steps else self._runs)[run_id]

    def step_changed(self, run_id: str) -> None:
        """A step of ``run_id`` changed: wake its watchers of every change."""
        if self._steps:
            _wake(self._steps.pop(run_id, ()))

    def run_changed(self, run_id: str) -> None:
        """The run's state changed (or may have): wake all its watchers."""
        self.step_changed(run_id)
        _wake(self._runs.pop(run_id, ()))

    def close(self) -> None:
        """Wake every watcher (the engine is closing: their next look fails)."""
        self.wake_all()

    def listening(self, notifies: bool) -> None:
        """Notifications were lost (poll meanwhile) or are back (changes in between went unheard).

        Either way every watcher looks at the store again.
        """
        self.notifies = notifies
        self.wake_all()

    def wake_all(self) -> None:
        """Wake every watcher: each looks at the store again (changes may have gone unreported)."""
        for watched in (self._steps, self._runs):
            for watchers in watched.values():
                _wake(watchers)
            watched.clear()

    def fallback(
        self, run_id: str, *, steps: bool, polls: int, poll_interval: float, claimable: bool = False
    ) -> float:
        """How long to wait for an event before looking at the store anyway.

        ``claimable``: the run is pending and this process's worker claims it, which sets an event
        when it does; until then a look every ``poll_interval`` is enough (another process may
        take it), where quick looks at a thousand pending runs would cost more than running them.
        """
        if run_id in self.local or claimable:
            # Everything is signalled; a slow poll only guards against a change no hook reports.
            return poll_interval if steps or claimable else 3600.0
        if self.notifies and not steps:
            return poll_interval
        # Bounded exponent: 2.0 ** 1024 overflows, and a run may be waited on for days.
        return min(_FIRST_POLL * 2.0 ** min(polls, 30), poll_interval)


def _claims_nothing(workflow: str) -> bool:
    return False


def _wake(watchers: Iterable[asyncio.Future[None]]) -> None:
    for change in watchers:
        if not change.done():  # cancelled with its watcher, or woken by its timeout
            change.set_result(None)


async def _changed_within(change: asyncio.Future[None], timeout: float) -> None:
    """Until ``change`` is done, or ``timeout`` seconds passed."""
    timer = asyncio.get_running_loop().call_later(timeout, _wake, (change,))
    try:
        await change
    finally:
        timer.cancel()


async def _next_look(
    run_id: str,
    change: asyncio.Future[None],
    seen: _Stated,
    events: RunEvents,
    *,
    steps: bool,
    polls: int,
    poll: float,
) -> None:
    """Until the run changes, or its fallback poll is due (``seen``: the run as last looked at)."""
    claimable = not steps and seen.state == "pending" and events.claims(seen.workflow)
    timeout = events.fallback(
        run_id, steps=steps, polls=polls, poll_interval=poll, claimable=claimable
    )
    await _changed_within(change, timeout)


class _Stated(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def workflow(self) -> str: ...


S = TypeVar("S", bound=_Stated)


async def changes(
    run_id: str,
    fetch: Callable[[str], Awaitable[S]],
    events: RunEvents,
    *,
    steps: bool,
    poll_interval: float,
) -> AsyncIterator[S]:
    """Yield ``fetch(run_id)`` now and after every change, until the run is terminal.

    Equal consecutive values are yielded once; the terminal one is yielded last. Errors of
    ``fetch`` (an unknown run, a closed engine) propagate.
    """
    last: S | None = None
    polls = 0
    while True:
        # Subscribe before looking, so a change between the look and the wait is not lost.
        change = events.next_change(run_id, steps=steps)
        try:
            current = await fetch(run_id)
            if current != last:
                last = current
                yield current
            if current.state in TERMINAL:
                return
            await _next_look(
                run_id, change, current, events, steps=steps, polls=polls, poll=poll_interval
            )
        finally:
            events.forget(run_id, change, steps=steps)
        polls += 1


async def until_terminal(
    run_id: str,
    fetch: Callable[[str], Awaitable[S]],
    events: RunEvents,
    *,
    poll_interval: float,
) -> S:
    """The run's record (or status) once it is terminal."""
    return await _terminal(run_id, fetch, fetch, events, poll_interval=poll_interval)


async def terminal_status(
    run_id: str,
    status: Callable[[str], Awaitable[S]],
    get_run: Callable[[str], Awaitable[_Stated]],
    events: RunEvents,
    *,
    poll_interval: float,
) -> S:
    """The run's full ``status`` once it is terminal.

    Other runs are looked at through their record alone until they end, as a full load would
    mostly be discarded.
    """
    return await _terminal(run_id, status, get_run, events, poll_interval=poll_interval)


async def _terminal(
    run_id: str,
    final: Callable[[str], Awaitable[S]],
    look: Callable[[str], Awaitable[_Stated]],
    events: RunEvents,
    *,
    poll_interval: float,
) -> S:
    """``final(run_id)`` once the run is terminal, looking at it through ``look`` meanwhile.

    While this process's worker holds the run nothing is read: it leaves memory once its end (or
    its parking) is stored, and only then does ``final`` read it. A run held elsewhere, or not
    yet claimed, is looked at after each change, or when the fallback poll says so; one that this
    worker claims meanwhile is waited for in memory from then on.
    """
    polls = 0
    while True:
        if await _until_left(run_id, events):
            current = await final(run_id)
            if current.state in TERMINAL:
                return current
        # Subscribe before looking, so a change between the look and the wait is not lost.
        change = events.next_change(run_id, steps=False)
        try:
            record = await look(run_id)
            if record.state in TERMINAL:
                if final is look:  # the record is what ``final`` returns: no second read
                    return cast(S, record)
                return await final(run_id)
            if run_id in events.local:
                continue  # claimed here since: wait for it in memory
            await _next_look(
                run_id, change, record, events, steps=False, polls=polls, poll=poll_interval
            )
        finally:
            events.forget(run_id, change, steps=False)
        polls += 1


async def _until_left(run_id: str, events: RunEvents) -> bool:
    """Until the run held here changes (it leaves memory once its end is stored), without reads.

    Any change, or ``wake_all``, ends this. Whether the run was held here.
    """
    if run_id not in events.local:
        return False
    change = events.next_change(run_id, steps=False)
    try:
        await change
    finally:
        events.forget(run_id, change, steps=False)
    return True


def time_limit(timeout: float | None) -> AbstractContextManager[object]:
    """``anyio.fail_after(timeout)``; nothing without a timeout (saves a cancel scope per wait)."""
    return nullcontext() if timeout is None else anyio.fail_after(timeout)
