"""How a run leaves its owner: the one fenced statement behind ``end_run`` and ``park_run``."""

from __future__ import annotations

from typing import Any

from ..errors import LeaseLostError
from ._tx import Tx
from .base import Fence

__all__ = ("leave", "leave_params")


def leave_params(
    fence: Fence,
    state: str,
    *,
    at: float,
    output: str | None = None,
    error: str | None = None,
    finished: bool = False,
    wake_at: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The parameters of ``leave``: the run's new state and outcome, and the fence."""
    return {
        "state": state,
        "output": output,
        "error": error,
        "at": at,
        "finished_at": at if finished else None,
        "wake_at": wake_at,
        "reason": reason,
        "run_id": fence.run_id,
        "owner_id": fence.owner_id,
        "epoch": fence.epoch,
    }


def leave(tx: Tx, fence: Fence, params: dict[str, Any], *, ended: bool) -> None:
    """Set the run's state and outcome and release its lease, if ``fence`` still holds it.

    An ended run gives its dedup key up: the next start with that key starts a new run.

    Raises:
        LeaseLostError: ``fence`` no longer holds the run.
    """
    changed = tx.execute(
        "UPDATE gf_runs SET state = :state, output = :output, error = :error,"
        " updated_at = :at, finished_at = :finished_at, wake_at = :wake_at,"
        " suspend_reason = :reason, owner_id = NULL, lease_expires_at = NULL"
        + (", dedup_key = NULL" if ended else "")
        + " WHERE run_id = :run_id AND owner_id = :owner_id AND lease_epoch = :epoch",
        params,
    )
    if not changed:
        raise LeaseLostError(run_id=fence.run_id)
