"""Replay bookkeeping of one run: what was recorded, what was issued, and where the run stands.

Pure in-memory state with no I/O: the recorded steps (replayed instead of executed), the names
issued so far (a duplicate is an error), the numbering of new steps, the run-graph frontier (the
parents of the next step) and the ``now()`` marks that make ``wf.now()`` identical on replay.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from ..errors import DuplicateStepError, NonDeterminismError
from ..store.base import StepRecord

__all__ = ("Replay",)

_NOW_MARK: contextvars.ContextVar[tuple[object, float]] = contextvars.ContextVar(
    "graphflow_now_mark"
)


class Replay:
    """The recorded history of a run and the progress of this execution through it."""

    __slots__ = (
        "_answers",
        "_frontier",
        "_history",
        "_issued",
        "_marked",
        "_next_seq",
        "_patches",
        "_pending",
        "_replayed",
        "_run_id",
        "_start",
        "_workflow",
    )

    def __init__(
        self, history: list[StepRecord], *, workflow: str, run_id: str, start: float
    ) -> None:
        self._workflow = workflow
        self._run_id = run_id
        self._start = start
        self._history: dict[str, StepRecord] = {}
        self._next_seq = 0
        self._issued: set[str] = set()
        self._frontier: dict[str, None] = {}
        self._answers: dict[str, bool] = {}
        self._pending: list[str] = []
        self.load(history)

    def load(self, history: list[StepRecord]) -> None:
        """Take the run's recorded steps, replayed instead of executed."""
        self._history = {step.name: step for step in history}
        self._replayed = 0
        # New steps are numbered after every recorded one: a replayed gather issues its steps
        # in another interleaving than the first run did.
        self._next_seq = max((step.seq for step in history), default=-1) + 1
        # Patch markers ride on the step records written after ``wf.patched`` said True.
        self._marked: dict[str, tuple[str, ...]] = {}
        for step in history:
            if step.detail is not None and '"patches"' in step.detail:
                self._marked[step.name] = tuple(json.loads(step.detail)["patches"])
        self._patches = {patch for marks in self._marked.values() for patch in marks}

    def recorded(self, name: str) -> StepRecord | None:
        """The recorded step named ``name``, if any."""
        return self._history.get(name)

    def recorded_steps(self) -> Iterable[StepRecord]:
        """Every recorded step."""
        return self._history.values()

    def issue(
        self, name: str, kind: str, function: str | None, parents: tuple[str, ...] | None
    ) -> tuple[int, tuple[str, ...]]:
        """Register a new step; return its sequence number and run-graph parents.

        Raises:
            DuplicateStepError: ``name`` was issued before in this run.
            NonDeterminismError: ``name`` was recorded as another kind of step or function.
        """
        if name in self._issued:
            raise DuplicateStepError(workflow=self._workflow, run_id=self._run_id, step=name)
        self._issued.add(name)
        recorded = self._history.get(name)
        if recorded is not None:
            self._replayed += 1
            self._check_same_call(recorded, kind, function)
            return recorded.seq, recorded.parents
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq, tuple(self._frontier) if parents is None else parents

    def issued(self, name: str) -> bool:
        """Whether step ``name`` was issued in this execution."""
        return name in self._issued

    # --- patches ------------------------------------------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the code path of ``patch_id`` (the same answer at every call).

        True where the run recorded the patch's marker, or where it recorded nothing past this
        point (it is new here): the marker then rides on the run's next step record, so it costs
        no write of its own. False where recorded steps wait to be replayed without it.
        """
        answer = self._answers.get(patch_id)
        if answer is None:
            answer = patch_id in self._patches or self._replayed == len(self._history)
            if answer and patch_id not in self._patches:
                self._patches.add(patch_id)
                self._pending.append(patch_id)
            self._answers[patch_id] = answer
        return answer

    def with_markers(self, step: StepRecord) -> StepRecord:
        """``step`` carrying the patch markers it must store (every write of it keeps them)."""
        if not self._pending and not self._marked:
            return step
        marks = self._marked.get(step.name, ())
        if self._pending:
            marks = (*marks, *self._pending)
            self._pending.clear()
            self._marked[step.name] = marks
        if not marks:
            return step
        detail = json.loads(step.detail or "{}") | {"patches": list(marks)}
        return replace(step, detail=json.dumps(detail))

    def take_seq(self) -> int:
        """A new sequence number (for steps numbered when they finish)."""
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def _check_same_call(self, recorded: StepRecord, kind: str, function: str | None) -> None:
        if recorded.kind == kind and (kind == "inline" or recorded.function == function):
            return
        raise NonDeterminismError(
            workflow=self._workflow,
            run_id=self._run_id,
            step=recorded.name,
            recorded=_describe(recorded.kind, recorded.function),
            new=_describe(kind, function),
        )

    def completed(self, name: str, parents: tuple[str, ...], finished_at: float | None) -> None:
        """Advance the run-graph frontier and ``now()`` past a completed step."""
        for parent in parents:
            self._frontier.pop(parent, None)
        self._frontier[name] = None
        if finished_at is not None:
            owner, mark = _NOW_MARK.get((None, 0.0))
            if owner is not self:
                mark = self._start
            if finished_at > mark:
                _NOW_MARK.set((self, finished_at))

    def now(self) -> datetime:
        """The time this point of the workflow was first reached (deterministic on replay).

        Each branch of a gather keeps its own mark (a context variable, which tasks inherit), so
        a sibling's completion, replayed in another order, never moves it.
        """
        owner, mark = _NOW_MARK.get((None, 0.0))
        return datetime.fromtimestamp(mark if owner is self else self._start, UTC)


def _describe(kind: str, function: str | None) -> str:
    return f"{kind} step" + (f" of {function!r}" if function else "")
