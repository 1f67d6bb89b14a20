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

        The wait is shielded from cancellation: a write, once submitted, is committed before its
        caller sees the cancellation, and leadership always passes to a live waiter.
        """
        pending = _Pending(op)
        self._queue.append(pending)
        with anyio.CancelScope(shield=True):
            if self._leading:
                await pending.wake.wait()  # set when finished, or when promoted to leader
                if pending.finished:
                    return _outcome(pending)
            self._leading = True
            try:
                await anyio.lowlevel.checkpoint()  # let every runnable writer join this batch
                while not pending.finished:
                    await self._flush()
            finally:
                self._leading = False
                self._promote()
        return _outcome(pending)

    def _promote(self) -> None:
        if self._queue and not self._leading:
            self._leading = True
            self._queue[0].wake.set()

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        ops = [p.op for p in batch]
        try:
            if self._inline:
                results = self._run_batch(ops)
            else:
                results = await anyio.to_thread.run_sync(self._run_batch, ops)
        except Exception as exc:
            results = [(False, exc)] * len(batch)
        self.batches += 1
        self.ops += len(batch)
        for p, (ok, value) in zip(batch, results, strict=True):
            p.ok, p.value, p.finished = ok, value, True
            p.wake.set()


def _outcome(pending: _Pending[Any]) -> Any:
    if pending.ok:
        return pending.value
    raise pending.value
