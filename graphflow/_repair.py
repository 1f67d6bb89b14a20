"""The engine's repair and retention API: ``check``, ``fork`` and ``prune``.

A base class of ``Engine`` (kept apart so that the engine module stays the lifecycle and the
everyday client API). Each method is a thin client operation over the runtime's ``Checker``,
``fork_steps`` and ``prune``; none needs a worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ._types import JSON, TERMINAL
from .durations import Duration, to_seconds
from .errors import PruneStateError, RunNotFoundError
from .functions import Registry
from .runtime.check import UNFINISHED_STATES, Checker, CheckResult
from .runtime.clock import Clock
from .runtime.fork import fork_steps
from .runtime.retention import prune
from .store.base import RunRecord, StepRecord, Store

__all__ = ("RepairOperations",)


class RepairOperations:
    """``check``, ``fork`` and ``prune``, for ``Engine``."""

    store: Store
    registry: Registry
    clock: Clock
    lease: float

    def _require_open(self) -> None:
        raise NotImplementedError

    def _executing_steps(self, run_id: str) -> list[StepRecord]:
        """The steps of ``run_id`` this engine executes right now (not stored yet)."""
        raise NotImplementedError

    def _runs_waiting(self) -> None:
        """New runs wait to be claimed: claim them now if this engine is a worker."""
        raise NotImplementedError

    async def check(
        self, workflow: str | None = None, states: Sequence[str] = UNFINISHED_STATES
    ) -> list[CheckResult]:
        """Replay every stored run in ``states`` against the code now loaded, executing nothing.

        A run diverges when the code no longer issues its recorded steps the same way (a step
        renamed, removed or calling another function, a graph changed, an input it rejects):
        its ``CheckResult`` has ``ok=False`` and names the step, what was recorded and what the
        code does now. Reads histories a page at a time; takes no lease; writes nothing.
        """
        self._require_open()
        checker = Checker(self.store, self.registry, self.clock, self.lease)
        return await checker.run(workflow, tuple(states))

    async def fork(self, run_id: str, from_step: str, input: JSON = None) -> str:
        """Start a new run of the same workflow that replays ``run_id`` up to ``from_step``.

        The steps issued before ``from_step`` (for a graph run: every node that is neither
        ``from_step`` nor its descendant) are copied with their results and never run again;
        ``from_step`` and what follows run with the code now deployed. The input is the
        original's unless ``input`` is given. A running run may be forked: what it has settled
        is copied. The new run's ``RunStatus.forked_from`` is ``run_id``.

        Raises:
            RunNotFoundError: no run has this id.
            StepNotFoundError: the run has no such step (the message lists its steps).
            UnknownWorkflowError: a graph run (or a new input) needs the workflow registered.
            InputValidationError: ``input`` does not match the workflow's input type.
        """
        self._require_open()
        run, steps, _ = await self.store.load_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id=run_id)
        recorded = {step.name for step in steps}
        steps += [step for step in self._executing_steps(run_id) if step.name not in recorded]
        definition = self.registry.find_workflow(run.workflow)
        copied = fork_steps(run, steps, from_step, definition)
        input_json = run.input
        if input is not None:
            definition = definition or self.registry.get_workflow(run.workflow)
            definition.validate_input(input)
            input_json = definition.dump_input(input)
        now = self.clock.time()
        forked = RunRecord(
            run_id=str(uuid.uuid4()),
            workflow=run.workflow,
            state="pending",
            input=input_json,
            graph_hash=definition.graph_hash if definition is not None else run.graph_hash,
            created_at=now,
            updated_at=now,
            forked_from=run.run_id,
        )
        await self.store.fork_run(forked, run.run_id, copied)
        self._runs_waiting()
        return forked.run_id

    async def prune(
        self,
        older_than: Duration = "30d",
        states: Sequence[str] = ("completed", "failed", "cancelled"),
        workflow: str | None = None,
        *,
        dry_run: bool = False,
    ) -> int:
        """Delete runs that finished more than ``older_than`` ago; return how many.

        Only runs in ``states`` (finished states only) and of ``workflow`` if given; their child
        runs, steps, attempts and jobs go with them. Never a run that has not finished, has an
        unfinished child, or is the child of an unfinished parent. Works in short batches, so
        running workflows are never held up for long. ``dry_run`` counts without deleting.

        Raises:
            PruneStateError: a state is not a finished one.
            DurationError: ``older_than`` is not a duration.
        """
        self._require_open()
        wanted = (states,) if isinstance(states, str) else tuple(states)
        if not wanted or any(state not in TERMINAL for state in wanted):
            raise PruneStateError(states=[s for s in wanted if s not in TERMINAL] or list(wanted))
        return await prune(
            self.store,
            finished_before=self.clock.time() - to_seconds(older_than),
            states=wanted,
            workflow=workflow,
            dry_run=dry_run,
        )
