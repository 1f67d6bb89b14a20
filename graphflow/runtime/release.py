"""Giving runs back as an engine closes, except those whose steps it interrupted.

A run released at close is taken over by the next engine without counting a recovery. A run
whose step still executes in this process when the close's grace runs out is treated as after a
crash instead: it stays owned with its lease run out, so the next engine takes it over at once and
counts a recovery. Otherwise a step that makes its own process shut down (a signal to itself)
would be released "gracefully" each time and loop forever; this way ``max_recoveries`` ends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..functions import Registry
from ..store.base import Store
from . import logs
from .execution import RunExecution

__all__ = ("HeldAtClose", "release_held")


@dataclass(frozen=True, slots=True)
class HeldAtClose:
    """The runs an engine holds as its close's grace runs out, and those it interrupts."""

    held: list[RunExecution] = field(default_factory=list)
    interrupted: list[RunExecution] = field(default_factory=list)

    @classmethod
    def of(cls, executions: Iterable[RunExecution], registry: Registry) -> HeldAtClose:
        """Snapshot ``executions`` (before they unwind: then no step executes any more)."""
        held = list(executions)
        return cls(held, [e for e in held if _executing_here(e, registry)])


def _executing_here(execution: RunExecution, registry: Registry) -> bool:
    """Whether one of the run's steps executes in this process now.

    Not one queued behind a limit, a child run, or a job that another process executes.
    """
    return any(
        not step.queued
        and step.kind in ("rpc", "inline")
        and (step.function is None or registry.find_function(step.function) is not None)
        for step in execution.live_steps()
    )


async def release_held(store: Store, owner_id: str, lease: float, runs: HeldAtClose) -> None:
    """Release every run ``owner_id`` held (and the owner), except the interrupted ones."""
    interrupted = runs.interrupted
    if not interrupted:
        await store.remove_owner(owner_id)
        return
    for execution in runs.held:
        if execution not in interrupted:
            await store.release_run(execution.fence)
    # What the owner still holds are the interrupted runs: their leases run out now (a renewal
    # into the past), so any engine takes them over at once and counts a recovery.
    await store.renew_leases(owner_id, -lease)
    for execution in interrupted:
        why = "left owned: a step was still executing as its engine closed; recovery counts"
        logs.run_state(execution.run_id, execution.workflow, "running", why=why)
