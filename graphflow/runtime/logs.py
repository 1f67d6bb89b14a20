"""Log records of run state changes and failed attempts, on ``logging.getLogger("graphflow")``.

Every record carries ``run_id``, ``workflow`` and ``step`` (``None`` for the run itself) in its
``extra``, plus ``state`` or ``attempt``, so a handler can route or format by them. Inputs,
outputs and resume data are never logged; errors (type and message, which may quote data) are,
at WARNING and ERROR only.
Each call returns after one cached level check when nobody listens at that level.
"""

from __future__ import annotations

import logging

from ..errors import ErrorInfo

__all__ = ("LOGGER", "attempt_failed", "run_state", "store_fault")

LOGGER = logging.getLogger("graphflow")
"""The logger every graphflow record goes to."""


def run_state(
    run_id: str,
    workflow: str,
    state: str,
    *,
    why: str = "",
    error: ErrorInfo | None = None,
) -> None:
    """A run moved to ``state`` (INFO; a failed run at ERROR with its error)."""
    level = logging.ERROR if state == "failed" else logging.INFO
    if not LOGGER.isEnabledFor(level):
        return
    because = f" ({why})" if why else ""
    failure = f": {error}" if error is not None else ""
    LOGGER.log(
        level,
        "run %s of workflow %r: %s%s%s",
        run_id,
        workflow,
        state,
        because,
        failure,
        extra={"run_id": run_id, "workflow": workflow, "step": None, "state": state},
    )


def attempt_failed(
    run_id: str, workflow: str, step: str, attempt: int, error: ErrorInfo, *, final: bool
) -> None:
    """An attempt of ``step`` failed (WARNING), saying whether another attempt follows."""
    if not LOGGER.isEnabledFor(logging.WARNING):
        return
    LOGGER.warning(
        "step %r of run %s (workflow %r) failed on attempt %d%s: %s",
        step,
        run_id,
        workflow,
        attempt,
        "" if not final else ", its last",
        error,
        extra={"run_id": run_id, "workflow": workflow, "step": step, "attempt": attempt},
    )


def store_fault(
    what: str, error: BaseException, *, retry_in: float | None, run_id: str | None = None
) -> None:
    """The store failed ``what`` (a run, a claim, a lease renewal); it is retried (WARNING).

    With ``retry_in=None`` nothing is retried (ERROR).
    """
    level = logging.WARNING if retry_in is not None else logging.ERROR
    if not LOGGER.isEnabledFor(level):
        return
    then = f"; trying again in {retry_in:.2g} s" if retry_in is not None else "; not retried"
    LOGGER.log(level, "%s: %s%s", what, error, then, extra={"run_id": run_id, "step": None})
