"""How failures travel inside the runtime: reported errors, the closing signal, stored errors.

User code may raise what ends a process (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``,
a ``CancelledError`` of its own, any other ``BaseException``): uncaught, it would end every run the
process executes, and the run would be taken up again to do it again. ``escaped`` tells such an
exception from a real cancellation, and ``contained`` turns it into the step's (or the run's)
non-retryable failure.
"""

from __future__ import annotations

import asyncio
import math
import traceback

import anyio

from ..errors import ErrorInfo

__all__ = ("Closing", "ReportedError", "contained", "error_info", "escaped")


class ReportedError(Exception):
    """A failure reported as an ``ErrorInfo`` (by a worker process or a child run), kept as is."""

    def __init__(self, info: ErrorInfo, *, retryable: bool) -> None:
        super().__init__(info.message)
        self.info = info
        self.retryable = retryable


class Closing(BaseException):
    """Unwinds a run whose engine is closing or lost its lease: nothing more may be issued."""


def error_info(exc: BaseException) -> ErrorInfo:
    """The stored form of an exception."""
    if isinstance(exc, ReportedError):
        return exc.info
    return ErrorInfo(
        type=type(exc).__name__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def escaped(exc: BaseException) -> bool:
    """Whether user code raised ``exc``, a ``BaseException`` that would end the process.

    Not an ``Exception``, not ``Closing``, and not the cancellation of a scope around us (the
    engine closing, the run cancelled, a step's timeout), which must unwind as it does.
    """
    if isinstance(exc, Exception | Closing):
        return False
    return not (isinstance(exc, anyio.get_cancelled_exc_class()) and _cancel_requested())


def _cancel_requested() -> bool:
    """Whether a cancel scope around the current task, or asyncio itself, is cancelling it."""
    if anyio.current_effective_deadline() == -math.inf:
        return True
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio
        return False
    return task is not None and task.cancelling() > 0


def contained(exc: BaseException, what: str) -> ReportedError:
    """``exc`` (see ``escaped``) as the non-retryable failure of ``what`` (``step 'x'``...)."""
    raised = f"{type(exc).__name__}({', '.join(repr(arg) for arg in exc.args)})"
    info = ErrorInfo(
        type=type(exc).__name__,
        message=(
            f"{what} raised {raised}; graphflow records it as a non-retryable failure, since an"
            " exception that is not an Exception would end the process and every run in it."
            " Raise an Exception instead (gf.NonRetryableError to fail at once)"
        ),
        traceback="".join(traceback.format_exception(exc)),
    )
    return ReportedError(info, retryable=False)
