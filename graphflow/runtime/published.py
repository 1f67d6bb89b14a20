"""What an owner's heartbeat publishes of the steps it executes, for ``status`` in other processes.

A step is published once it has been executing (``running`` or ``queued``) at two heartbeats in a
row, so short steps cost no write; a run's published text is written only when it changes, in the
transaction that renews the owner's leases. It holds what ``status`` shows of a step but its input
and its last error (a retried step has those stored), for at most ``MAX_PUBLISHED`` steps per run.
"""

from __future__ import annotations

from collections.abc import Mapping

from .execution import RunExecution
from .status import encode_live_steps

__all__ = ("MAX_PUBLISHED", "LivePublisher")

MAX_PUBLISHED = 200
"""The most steps of one run a heartbeat publishes (the first issued): a bounded write."""


class LivePublisher:
    """Tracks what the last heartbeats saw and published, per run held here."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._published: dict[str, str] = {}

    def changes(self, executions: Mapping[str, RunExecution]) -> dict[str, str | None]:
        """The runs whose published steps change at this heartbeat (``None``: none any more)."""
        changed: dict[str, str | None] = {}
        seen: dict[str, set[str]] = {}
        for run_id, execution in executions.items():
            live = execution.live_steps()
            before = self._seen.get(run_id, set())
            seen[run_id] = {step.name for step in live}
            steps = sorted(
                (step.live_record() for step in live if step.name in before),
                key=lambda record: record.seq,
            )[:MAX_PUBLISHED]
            text = encode_live_steps(steps) if steps else None
            if text != self._published.get(run_id):
                changed[run_id] = text
        self._seen = seen
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
