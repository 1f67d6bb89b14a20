"""Running a sync function in a worker thread, at the cost of one hop there and back.

anyio's ``to_thread.run_sync`` adds two turns of the event loop to every call (a checkpoint, and
its capacity limiter's), about a third more than the hop itself. Sync steps are a hot path, so
on asyncio a call goes straight to the executor the engine owns (sized to its job slots, which
already bound how many functions run at once); elsewhere, or without an executor, anyio's hop.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import anyio.to_thread

__all__ = ("run_in_thread",)

T = TypeVar("T")


async def run_in_thread(fn: Callable[[], T], executor: Executor | None = None) -> T:
    """Call ``fn`` in a thread of ``executor`` (else anyio's) and return its result.

    ``fn`` sees the caller's context variables (``gf.current_step()``). Cancelling the caller
    abandons the call: the thread finishes ``fn`` and its result is dropped. What ``fn`` raises
    is raised here, ``SystemExit`` and the like included.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio
        loop = None
    try:
        if loop is None or executor is None:
            return await anyio.to_thread.run_sync(_guarded, fn, abandon_on_cancel=True)
        return await loop.run_in_executor(executor, contextvars.copy_context().run, _guarded, fn)
    except _Raised as raised:
        raise raised.exc from None


class _Raised(Exception):
    """Carries a ``BaseException`` that is not an ``Exception`` back from the thread.

    Handed over as is, asyncio would throw it into the awaiting task, and a ``GeneratorExit``
    thrown into a coroutine closes it instead of propagating; raised again on the loop's side,
    it travels up the caller's frames like any exception (the caller decides what it means).
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def _guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception:
        raise
    except BaseException as exc:
        raise _Raised(exc) from None
