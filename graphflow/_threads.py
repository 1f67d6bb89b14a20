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
    abandons the call: the thread finishes ``fn`` and its result is dropped.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio
        loop = None
    if loop is None or executor is None:
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    return await loop.run_in_executor(executor, contextvars.copy_context().run, fn)
