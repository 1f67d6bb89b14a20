"""Group commit: concurrent writes share one transaction; each caller waits for its commit.

No background task: the first writer to arrive becomes the *leader*. It yields once so that every
writer already runnable joins its batch, then runs the batch and releases the batch's callers.

Inline batches (SQLite, run on the event loop) cannot interleave with new writes, so every queued
writer belongs to the leader's round and waits on one shared event. Threaded batches (PostgreSQL)
let writes queue while a batch commits; the leader then hands leadership to the first of them.

An inline batch that finds the database locked by another process (``Busy``: nothing ran) is not
waited for on the loop: its leader sleeps a little, takes in the writes queued meanwhile and runs
the batch again, until ``lock_wait`` seconds have passed; then the batch fails with the error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ("Busy", "GroupCommitter")

OpT = TypeVar("OpT")
Offload = Callable[[Callable[[Any], Any], Any], Awaitable[Any]]
"""Awaits ``fn(arg)`` run away from the event loop (in a worker thread)."""


class Busy(Exception):
    """Another process holds the database's write lock: nothing of the batch ran."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
        """What the batch fails with if the lock is still held when the wait is over."""


class _Pending(Generic[OpT]):
    __slots__ = ("finished", "ok", "op", "value", "wake")

    def __init__(self, op: OpT, wake: anyio.Event | None) -> None:
        self.op = op
        self.wake = wake
        self.finished = False
        self.ok = False
        self.value: Any = None


class GroupCommitter(Generic[OpT]):
    """Batches ``submit``ted ops into calls of ``run_batch``.

    ``run_batch(ops)`` is synchronous and returns one ``(ok, value_or_exception)`` per op. It runs
    on the loop when ``inline``; otherwise ``offload(run_batch, ops)`` runs it (by default in one
    of anyio's worker threads) while the loop goes on.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[OpT]], list[tuple[bool, Any]]],
        *,
        inline: bool,
        offload: Offload | None = None,
        lock_wait: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._run_batch = run_batch
        self._inline = inline
        self._lock_wait = lock_wait
        self._offload: Offload = offload or anyio.to_thread.run_sync
        self._queue: list[_Pending[OpT]] = []
        self._leading = False
        self._round: anyio.Event | None = None
        self.batches = 0
        self.ops = 0

    def submit(self, op: OpT) -> Awaitable[Any]:
        """Run ``op`` in the next batch; await its result (or its exception).

        A write, once submitted, is committed even if its caller is cancelled meanwhile. Inline
        batches need no shield for that (a cancelled leader commits synchronously before it
        unwinds); threaded ones are shielded, so leadership always passes to a live waiter.
        Returns the awaitable of the write's path rather than awaiting it in a coroutine of its
        own: one coroutine less for every write (a step's), and for every resumption of one.
        """
        if self._inline:
            return self._submit_inline(op)
        return self._submit_shielded(op)

    async def _submit_shielded(self, op: OpT) -> Any:
        pending = _Pending(op, anyio.Event())
        self._queue.append(pending)
        with anyio.CancelScope(shield=True):
            return await self._submit_threaded(pending)

    # --- inline (SQLite) ------------------------------------------------------------------------

    async def _submit_inline(self, op: OpT) -> Any:
        if not self._leading and not _others_runnable():
            try:
                return self._commit_alone(op)  # nobody could join its batch: commit at once
            except Busy:
                pass  # locked by another process: wait for it below, off the loop's back
        pending = _Pending(op, None)
        self._queue.append(pending)
        while self._leading:
            if self._round is None:
                self._round = anyio.Event()
            await self._round.wait()  # the leader settles its whole round at once
            if pending.finished:
                return _outcome(pending)
        self._leading = True
        try:
            if _others_runnable():
                await anyio.lowlevel.checkpoint()  # let every runnable writer join this batch
        finally:
            await self._flush_inline()  # also when cancelled: submitted writes are committed
        return _outcome(pending)

    async def _flush_inline(self) -> None:
        try:
            batch, results = self._take()
            if results is None:
                with anyio.CancelScope(shield=True):  # submitted writes are still committed
                    batch, settled = await self._take_when_unlocked(batch)
                self._settle(batch, settled)
            else:
                self._settle(batch, results)
        finally:
            self._leading = False
            finished, self._round = self._round, None
            if finished is not None:
                finished.set()

    async def _take_when_unlocked(
        self, batch: list[_Pending[OpT]]
    ) -> tuple[list[_Pending[OpT]], list[tuple[bool, Any]]]:
        """Run ``batch`` (and the writes queued meanwhile) once the lock is free, or fail it."""
        deadline = time.monotonic() + self._lock_wait()
        delay = 0.001
        while True:
            await anyio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)
            batch, self._queue = batch + self._queue, []
            try:
                return batch, self._run_batch([p.op for p in batch])
            except Busy as busy:
                if time.monotonic() >= deadline:
                    return batch, [(False, busy.error)] * len(batch)
            except Exception as exc:
                return batch, [(False, exc)] * len(batch)

    def _commit_alone(self, op: OpT) -> Any:
        """A batch of one, without the bookkeeping of a shared round (sequential steps).

        Raises:
            Busy: another process holds the lock (nothing ran).
        """
        try:
            ((ok, value),) = self._run_batch([op])
        except Busy:
            raise
        except Exception as exc:
            ok, value = False, exc
        self.batches += 1
        self.ops += 1
        if ok:
            return value
        raise value

    # --- threaded (PostgreSQL) ------------------------------------------------------------------

    async def _submit_threaded(self, pending: _Pending[OpT]) -> Any:
        assert pending.wake is not None
        if self._leading:
            await pending.wake.wait()  # set when finished, or when promoted to leader
            if pending.finished:
                return _outcome(pending)
        self._leading = True
        try:
            await anyio.lowlevel.checkpoint()
            while not pending.finished:
                batch, self._queue = self._queue, []
                try:
                    ops = [p.op for p in batch]
                    results = await self._offload(self._run_batch, ops)
                except Exception as exc:
                    results = [(False, exc)] * len(batch)
                self._settle(batch, results)
        finally:
            self._leading = False
            if self._queue:  # writes that queued during the commit: the first one leads next
                self._leading = True
                wake = self._queue[0].wake
                assert wake is not None
                wake.set()
        return _outcome(pending)

    # --- shared -----------------------------------------------------------------------------------

    def _take(self) -> tuple[list[_Pending[OpT]], list[tuple[bool, Any]] | None]:
        """Run the queued writes; no results when the database was locked (``Busy``)."""
        batch, self._queue = self._queue, []
        try:
            return batch, self._run_batch([p.op for p in batch])
        except Busy:
            return batch, None
        except Exception as exc:
            return batch, [(False, exc)] * len(batch)

    def _settle(self, batch: list[_Pending[OpT]], results: list[tuple[bool, Any]]) -> None:
        self.batches += 1
        self.ops += len(batch)
        for p, (ok, value) in zip(batch, results, strict=True):
            p.ok, p.value, p.finished = ok, value, True
            if p.wake is not None:
                p.wake.set()


def _others_runnable() -> bool:
    """Whether another task could run now (and so join a batch) if the leader yielded.

    On asyncio the loop's ready queue tells; a lone sequential writer then commits at once,
    saving a loop turn per step. Elsewhere (or if asyncio changes) we always yield.
    """
    try:
        ready = asyncio.get_running_loop()._ready  # type: ignore[attr-defined]
    except (RuntimeError, AttributeError):
        return True
    return bool(ready)


def _outcome(pending: _Pending[Any]) -> Any:
    if pending.ok:
        return pending.value
    raise pending.value
