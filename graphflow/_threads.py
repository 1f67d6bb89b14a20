"""Running a sync function in a worker thread, at the cost of one hop there and back.

anyio's ``to_thread.run_sync`` adds two turns of the event loop to every call (a checkpoint, and
its capacity limiter's), about a third more than the hop itself. Sync steps are a hot path, so
on asyncio a call goes to threads the engine owns (``CallThreads``, at most one per job slot, since
the slots already bound how many functions run at once); elsewhere, or without them, anyio's hop.

``CallThreads`` hand a result straight to an asyncio future of the caller's, with one
``call_soon_threadsafe``, as the last thing a thread does before it waits for its next call.
``loop.run_in_executor`` on a ``ThreadPoolExecutor`` goes through a ``concurrent.futures.Future``
(a lock, a condition and two callbacks to chain it to an asyncio one) and a semaphore that counts
idle threads, after waking the loop: the loop then waits for the GIL the thread still holds, so
the SQLite commit that follows a sync step cost 20-30 µs more than alone. Measured on 2 vCPUs
(CPU time, a hop plus a commit): 59 µs against 77-110 µs with ``run_in_executor``.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

import anyio.to_thread

__all__ = ("CallThreads", "run_in_thread")

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
        context = contextvars.copy_context()
        if isinstance(executor, CallThreads):
            result: asyncio.Future[T] = loop.create_future()
            executor.call(_Call(loop, result, context, fn))
            return await result
        return await loop.run_in_executor(executor, context.run, _guarded, fn)
    except _Raised as raised:
        raise raised.exc from None


class CallThreads(Executor):
    """Up to ``max_workers`` threads, started on demand, that run calls handed over by the loop.

    Threads are daemons: one still running a call when the interpreter exits is abandoned, as a
    caller cancelled meanwhile abandons it (its result would be dropped either way).
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        """Threads done with their last call and not yet handed a new one."""
        self._threads: list[threading.Thread] = []
        self._shut = False

    def call(self, work: _Work) -> None:
        """Run ``work`` in a thread: an idle one, else a new one (up to ``max_workers``)."""
        with self._lock:
            if self._shut:
                raise RuntimeError(f"{self._name} threads are shut down: no new calls")
            start = not self._idle and len(self._threads) < self._max_workers
            if self._idle:
                self._idle -= 1  # reserved for this call
        self._queue.put(work)
        if start:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """``Executor.submit``: ``fn(*args, **kwargs)`` in a thread, as a ``Future``."""
        future: Future[T] = Future()
        self.call(_Submitted(future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads after their current call; ``cancel_futures``: drop the queued calls."""
        with self._lock:
            self._shut = True
        if cancel_futures:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work.drop()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (work := self._queue.get()) is not None:
            work.run(self._became_idle)
            del work  # its result must not outlive the call in this frame

    def _became_idle(self) -> None:
        with self._lock:
            self._idle += 1


class _Work:
    """A call queued for a thread."""

    __slots__ = ()

    def run(self, done: Callable[[], None]) -> None:
        """Make the call; ``done()`` before its outcome is handed over (the thread is free)."""
        raise NotImplementedError

    def drop(self) -> None:
        """The threads shut down before the call ran: tell whoever waits for it."""
        raise NotImplementedError


class _Call(_Work):
    """``fn`` in the caller's context; its outcome settles ``result`` on the caller's loop."""

    __slots__ = ("context", "fn", "loop", "result")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        result: asyncio.Future[Any],
        context: contextvars.Context,
        fn: Callable[[], Any],
    ) -> None:
        self.loop = loop
        self.result = result
        self.context = context
        self.fn = fn

    def run(self, done: Callable[[], None]) -> None:
        try:
            value = self.context.run(_guarded, self.fn)
        except Exception as exc:
            done()
            self._settle_soon(_settle, False, exc)
        else:
            done()
            self._settle_soon(_settle, True, value)

    def drop(self) -> None:
        self._settle_soon(_cancel)

    def _settle_soon(self, settle: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(settle, self.result, *args)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for the outcome
            pass


class _Submitted(_Work):
    """A call made through ``submit``: its outcome settles a ``concurrent.futures.Future``."""

    __slots__ = ("call", "future")

    def __init__(self, future: Future[Any], call: Callable[[], Any]) -> None:
        self.future = future
        self.call = call

    def run(self, done: Callable[[], None]) -> None:
        if not self.future.set_running_or_notify_cancel():
            done()
            return
        try:
            value = self.call()
        except BaseException as exc:
            done()
            self.future.set_exception(exc)
        else:
            done()
            self.future.set_result(value)

    def drop(self) -> None:
        self.future.cancel()


def _settle(result: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand the outcome to the caller, unless it was cancelled meanwhile."""
    if result.done():
        return
    if ok:
        result.set_result(value)
    else:
        result.set_exception(value)


def _cancel(result: asyncio.Future[Any]) -> None:
    result.cancel()


class _Raised(Exception):
    """Carries a ``BaseException`` that is not an ``Exception`` back from the thread.

    Handed over as is, asyncio would throw it into the awaiting task, and a ``GeneratorExit``
    thrown into a coroutine closes it instead of propagating; raised again on the loop's side,
    it travels up the caller's frames like any exception (the caller decides what it means).
    A ``StopIteration`` travels the same way: an asyncio future refuses to hold one.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def _guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except StopIteration as exc:
        raise _Raised(exc) from None
    except Exception:
        raise
    except BaseException as exc:
        raise _Raised(exc) from None
