"""What an owner's heartbeat publishes of the steps it executes, for ``status`` in other processes.

A step is published once it has been executing (``running`` or ``queued``) for ``PUBLISH_AFTER``
seconds at a heartbeat, so short steps cost no write; a run's published text is written only when
it changes, in the transaction that renews the owner's leases. It holds what ``status`` shows of a
step but its input and its last error (a retried step has those stored), for at most
``MAX_PUBLISHED`` steps per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .execution import LiveStep, RunExecution
from .status import RunStatus, StepStatus, encode_live_steps, step_status

__all__ = ("MAX_PUBLISHED", "PUBLISH_AFTER", "LivePublisher", "with_live_steps")

MAX_PUBLISHED = 200
"""The most steps of one run a heartbeat publishes (the first issued): a bounded write."""

PUBLISH_AFTER = 1.0
"""How long (seconds, engine clock) a step executes before a heartbeat publishes it."""


class LivePublisher:
    """Tracks what the last heartbeats published, per run held here."""

    def __init__(self) -> None:
        self._published: dict[str, str] = {}

    def changes(self, executions: Mapping[str, RunExecution], now: float) -> dict[str, str | None]:
        """The runs whose published steps change at this heartbeat (``None``: none any more)."""
        changed: dict[str, str | None] = {}
        due = now - PUBLISH_AFTER
        for run_id, execution in executions.items():
            steps = sorted(
                (
                    step.live_record()
                    for step in execution.live_steps()
                    if step.started_at is not None and step.started_at <= due
                ),
                key=lambda record: record.seq,
            )[:MAX_PUBLISHED]
            text = encode_live_steps(steps) if steps else None
            if text != self._published.get(run_id):
                changed[run_id] = text
        for run_id in self._published.keys() - executions.keys():
            del self._published[run_id]  # the run left: claiming it again clears what it showed
        return changed

    def renewed(self, changes: Mapping[str, str | None]) -> None:
        """The heartbeat that carried ``changes`` committed."""
        for run_id, text in changes.items():
            if text is None:
                self._published.pop(run_id, None)
            else:
                self._published[run_id] = text


def with_live_steps(
    status: RunStatus, live_steps: Sequence[LiveStep], owner: tuple[str, float | None]
) -> RunStatus:
    """``status`` with ``live_steps`` (executing now) shown by ``owner`` (id, lease expiry)."""
    if not live_steps:
        return status
    live: dict[str, StepStatus] = {
        step.name: step_status(step.live_record(), owner=owner) for step in live_steps
    }
    # A live step keeps the errors of its stored failed attempts (shown while it retries).
    merged = [
        live.pop(step.name).model_copy(update={"attempt_errors": step.attempt_errors})
        if step.name in live
        else step
        for step in status.steps
    ]
    seqs = {step.name: step.seq for step in live_steps}
    merged.extend(sorted(live.values(), key=lambda s: seqs.get(s.name, 0)))
    return status.model_copy(update={"steps": merged})
