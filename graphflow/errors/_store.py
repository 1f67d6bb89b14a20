"""Errors of the store, and the error users raise to fail a step at once."""

from __future__ import annotations

import re

from ._base import GraphflowError

__all__ = (
    "StoreError",
    "StoreUnavailableError",
    "ReadOnlyStoreError",
    "StoreFileLostError",
    "SchemaVersionError",
    "LeaseLostError",
    "NonRetryableError",
    "hide_password",
)

_PASSWORD = re.compile(r"(\w[\w+.-]*://[^\s:/@'\"]*:)[^\s@'\"]+@")


def hide_password(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Store errors name the store's URL, and end up in logs, HTTP answers and tracebacks: never with
    the database password in them.
    """
    return _PASSWORD.sub(r"\1***@", text)


# --- store ------------------------------------------------------------------------------------


class StoreError(GraphflowError):
    """The store failed or is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(hide_password(message))


class StoreUnavailableError(StoreError):
    """The store cannot serve a request now (locked, disk full, connection lost): try again.

    Nothing is wrong with the data. A run that meets it is not failed: its engine keeps it and
    replays it from its stored steps once the store answers again, backing off meanwhile.
    """

    url: str
    problem: str

    def __init__(self, *, url: str, problem: str) -> None:
        url = hide_password(url)
        GraphflowError.__init__(
            self,
            f"store {url!r} is unavailable: {problem}; runs wait and go on once it is back",
            url=url,
            problem=problem,
        )


class ReadOnlyStoreError(StoreUnavailableError):
    """The store can be read but not written (a read-only file, directory or volume)."""

    def __init__(self, *, url: str, problem: str) -> None:
        url = hide_password(url)
        GraphflowError.__init__(
            self,
            f"store {url!r} is read-only: {problem}; make it writable to start or change runs"
            " (a client opened with worker=False can still inspect it)",
            url=url,
            problem=problem,
        )


class StoreFileLostError(StoreError):
    """The SQLite file an engine has open was deleted or replaced: it stopped, writing nothing."""

    path: str
    what: str

    def __init__(self, *, path: str, what: str) -> None:
        GraphflowError.__init__(
            self,
            f"the store file {path!r} was {what} while this engine had it open; the engine"
            " stopped so that nothing more is written to a file no other process sees: restore"
            " the file (or point at the new one) and open a new engine",
            path=path,
            what=what,
        )


class SchemaVersionError(StoreError):
    """The database schema version differs from the code's."""

    url: str
    found: int
    expected: int

    def __init__(self, *, url: str, found: int, expected: int) -> None:
        url = hide_password(url)
        newer = "newer" if found > expected else "older"
        fix = "upgrade graphflow" if found > expected else "migrate it or point at a fresh database"
        GraphflowError.__init__(
            self,
            f"the store {url!r} has schema version {found}, {newer} than this graphflow's"
            f" {expected}: {fix}",
            url=url,
            found=found,
            expected=expected,
        )


class LeaseLostError(StoreError):
    """Another engine took over the run: this process may commit nothing more for it."""

    run_id: str

    def __init__(self, *, run_id: str) -> None:
        GraphflowError.__init__(
            self,
            f"lease on run {run_id!r} was lost to another engine; this engine stopped executing it",
            run_id=run_id,
        )


# --- raised by users --------------------------------------------------------------------------


class NonRetryableError(GraphflowError):
    """Raise it in a step to fail the step at once, without further attempts."""

    def __init__(self, message: str = "non-retryable error") -> None:
        super().__init__(message)
