"""How failures travel inside the runtime: reported errors, the closing signal, stored errors."""

from __future__ import annotations

import traceback

from ..errors import ErrorInfo

__all__ = ("Closing", "ReportedError", "error_info")


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
