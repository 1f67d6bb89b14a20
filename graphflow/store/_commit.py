"""Group commit: concurrent writes share one transaction; each caller waits for its commit.

No background task: the first writer to arrive becomes the *leader*. It yields once so that every
writer already runnable joins its batch, runs the batch, releases the batch's callers and, if more
writes queued meanwhile, hands leadership to the first of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ("GroupCommitter",)

OpT = TypeVar("OpT")


class _Pending(Generic[OpT]):
    __slots__ = ("finished", "ok", "op", "value", "wake")

    def __init__(self, op: OpT) -> None:
        self.op = op
        self.wake = anyio.Event()
        self.finished = False
        self.ok = False
        self.value: Any = None


class GroupCommitter(Generic[OpT]):
    """Batches ``submit``ted ops into calls of ``run_batch``.

    ``run_batch(ops)`` runs synchronously (on the loop when ``inline``, else in a worker thread) and
    returns one ``(ok, value_or_exception)`` per op.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[OpT]], list[tuple[bool, Any]]],
        *,
        inline: bool,
    ) -> None:
        self._run_batch = run_batch
        self._inline = inline
        self._queue: list[_Pending[OpT]] = []
        self._leading = False
        self.batches = 0
        self.ops = 0

    async def submit(self, op: OpT) -> Any:
        """Run ``op`` in the next batch; return its result or raise its exception.

        A write, once submitted, is committed even if its caller is cancelled meanwhile, and
        leadership always passes to a live waiter. Inline batches need no shield for that (a
        cancelled leader commits synchronously before unwinding); threaded ones are shielded.
        """
        pending = _Pending(op)
        self._queue.append(pending)
        if self._inline:
            return await self._submit(pending)
        with anyio.CancelScope(shield=True):
            return await self._submit(pending)

    async def _submit(self, pending: _Pending[OpT]) -> Any:
        if self._leading:
            try:
                await pending.wake.wait()  # set when finished, or when promoted to leader
            except BaseException:
                if pending.wake.is_set() and not pending.finished:
                    self._leading = False  # promoted while being cancelled: lead, then unwind
                    self._lead_now()
                raise
            if pending.finished:
                return _outcome(pending)
        self._leading = True
        try:
            try:
                await anyio.lowlevel.checkpoint()  # let every runnable writer join this batch
            except BaseException:
                self._leading = False
                self._lead_now()
                raise
            while not pending.finished:
                await self._flush()
        finally:
            self._leading = False
            self._promote()
        return _outcome(pending)

    def _lead_now(self) -> None:
        """Commit what is queued without awaiting (inline batches only)."""
        self._leading = True
        try:
            while self._queue:
                self._settle(*self._take())
        finally:
            self._leading = False
            self._promote()

    def _promote(self) -> None:
        if self._queue and not self._leading:
            self._leading = True
            self._queue[0].wake.set()

    def _take(self) -> tuple[list[_Pending[OpT]], list[tuple[bool, Any]]]:
        batch, self._queue = self._queue, []
        try:
            return batch, self._run_batch([p.op for p in batch])
        except Exception as exc:
            return batch, [(False, exc)] * len(batch)

    def _settle(self, batch: list[_Pending[OpT]], results: list[tuple[bool, Any]]) -> None:
        self.batches += 1
        self.ops += len(batch)
        for p, (ok, value) in zip(batch, results, strict=True):
            p.ok, p.value, p.finished = ok, value, True
            p.wake.set()

    async def _flush(self) -> None:
        if self._inline:
            self._settle(*self._take())
            return
        batch, self._queue = self._queue, []
        try:
            results = await anyio.to_thread.run_sync(self._run_batch, [p.op for p in batch])
        except Exception as exc:
            results = [(False, exc)] * len(batch)
        self._settle(batch, results)


def _outcome(pending: _Pending[Any]) -> Any:
    if pending.ok:
        return pending.value
    raise pending.value
