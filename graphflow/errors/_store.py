"""Errors of the store, and the error users raise to fail a step at once."""

from __future__ import annotations

from ._base import GraphflowError

__all__ = (
    "StoreError",
    "SchemaVersionError",
    "LeaseLostError",
    "NonRetryableError",
)


# --- store ------------------------------------------------------------------------------------


class StoreError(GraphflowError):
    """The store failed or is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SchemaVersionError(StoreError):
    """The database schema version differs from the code's."""

    url: str
    found: int
    expected: int

    def __init__(self, *, url: str, found: int, expected: int) -> None:
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
