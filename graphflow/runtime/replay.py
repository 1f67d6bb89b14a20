"""Replay bookkeeping of one run: what was recorded, what was issued, and where the run stands.

Pure in-memory state with no I/O: the recorded steps (replayed instead of executed), the names
issued so far (a duplicate is an error), the numbering of new steps, the run-graph frontier (the
parents of the next step) and the ``now()`` marks that make ``wf.now()`` identical on replay.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import anyio

from ..errors import DuplicateStepError, NonDeterminismError
from ..store.base import StepRecord

__all__ = ("Replay",)

_SETTLED = frozenset({"completed", "failed"})


class _Mark:
    """The ``now()`` of one task of a run: the latest finish it has seen.

    A task's own completed steps move ``mark``; a branch task (of a gather, a task group) starts
    from its parent's ``mark`` and, when it ends, hands its own to the parent's ``joined``, which
    the parent takes when it next runs, that is after the join. So a branch never sees a
    sibling's progress, and the code after a join sees every branch's.
    """

    __slots__ = ("_task", "joined", "mark", "replay")

    def __init__(self, replay: Replay, task: object, mark: float) -> None:
        self.replay = replay
        # Weak: the task's own context holds this mark, and a strong reference would make a
        # cycle (task, context, mark) that only the garbage collector frees, a branch at a time.
        self._task = weakref.ref(task) if isinstance(task, asyncio.Task) else task
        self.mark = mark
        self.joined = mark

    def of(self, task: object) -> bool:
        """Whether this is ``task``'s own mark."""
        own = self._task
        return own() is task if isinstance(own, weakref.ref) else own == task

    def join(self, branch: _Mark) -> None:
        self.joined = max(self.joined, branch.mark, branch.joined)


_NOW_MARK: contextvars.ContextVar[_Mark | None] = contextvars.ContextVar(
    "graphflow_now_mark", default=None
)


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # not on asyncio: a branch's finishes are not joined
        return anyio.get_current_task().id


def _scopes(name: str) -> Iterator[str]:
    """The steps ``name`` is inside of, innermost first: ``a/b/c`` is inside ``a/b`` and ``a``."""
    scope, _, _ = name.rpartition("/")
    while scope:
        yield scope
        scope, _, _ = scope.rpartition("/")


class Replay:
    """The recorded history of a run and the progress of this execution through it."""

    __slots__ = (
        "_answers",
        "_frontier",
        "_history",
        "_issued",
        "_issued_under",
        "_marked",
        "_next_seq",
        "_numbers",
        "_patches",
        "_pending",
        "_recorded_under",
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
        self._issued_under: set[str] = set()
        """Issued names of steps inside a step (holding a ``/``)."""
        self._numbers: dict[str, int] = {}
        self._frontier: dict[str, None] = {}
        self._answers: dict[str, bool] = {}
        self._pending: list[str] = []
        self.load(history)

    def load(self, history: list[StepRecord]) -> None:
        """Take the run's recorded steps, replayed instead of executed."""
        self._history = {step.name: step for step in history}
        # New steps are numbered after every recorded one: a replayed gather issues its steps
        # in another interleaving than the first run did.
        self._next_seq = max((step.seq for step in history), default=-1) + 1
        # Recorded steps a step's body issued, under each step they are under (set aside when
        # that step's body runs again, as a retry).
        self._recorded_under: dict[str, list[str]] = {}
        for name in [name for name in self._history if "/" in name]:
            for scope in _scopes(name):
                self._recorded_under.setdefault(scope, []).append(name)
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
        if "/" in name:
            self._issued_under.add(name)
        recorded = self._history.get(name)
        if recorded is not None:
            self._check_same_call(recorded, kind, function)
            return recorded.seq, recorded.parents
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq, tuple(self._frontier) if parents is None else parents

    def unissued(self) -> list[str]:
        """Settled recorded steps this execution never issued again, in their recorded order.

        Steps in flight when the history was read (running, sleeping, suspended) are left out:
        an execution may legitimately stop short of them (a race it lost), and so are the steps
        of a step's body (``accounted``).
        """
        return [
            step.name
            for step in sorted(self._history.values(), key=lambda step: step.seq)
            if step.state in _SETTLED and not self.accounted(step.name)
        ]

    def accounted(self, name: str) -> bool:
        """Whether recorded step ``name`` was issued again, or need not be.

        A step's body issues steps of its own (``step/name``, see ``workflow.scoped``). Replayed
        settled, the body does not run; run again (it had not finished), it is step code, run at
        least once and free to issue other steps than the first time (a model's stream of events
        never repeats). Either way its steps are its own business, not the workflow's.
        """
        return name in self._issued or any(scope in self._issued for scope in _scopes(name))

    def forget_under(self, scope: str) -> None:
        """Step ``scope``'s body runs again (its next attempt): its steps run again, as new.

        Their names are free again, numbered from 1, and their records (of an attempt before a
        crash) are set aside, so the attempt does not mix its steps with an earlier one's.
        """
        prefix = f"{scope}/"
        gone = {name for name in self._issued_under if name.startswith(prefix)}
        self._issued -= gone
        self._issued_under -= gone
        for name in self._recorded_under.pop(scope, ()):
            self._history.pop(name, None)
        for key in [key for key in self._numbers if key.startswith(prefix)]:
            del self._numbers[key]

    def number(self, key: str) -> int:
        """How many times ``key`` was numbered in this execution, this call included."""
        count = self._numbers.get(key, 0) + 1
        self._numbers[key] = count
        return count

    # --- patches ------------------------------------------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the code path of ``patch_id`` (the same answer at every call).

        True where the run recorded the patch's marker, or where it recorded nothing past this
        point (it is new here): the marker then rides on the run's next step record, so it costs
        no write of its own. False where recorded steps wait to be replayed without it.
        """
        answer = self._answers.get(patch_id)
        if answer is None:
            answer = patch_id in self._patches or all(map(self.accounted, self._history))
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
            mark = self._mark()
            if finished_at > mark.mark:
                mark.mark = finished_at

    def now(self) -> datetime:
        """The time this point of the workflow was first reached (deterministic on replay).

        Each branch of a gather keeps its own mark, so a sibling's completion, replayed in
        another order, never moves it; after the join, the latest finish of the branches counts.
        """
        return datetime.fromtimestamp(self._mark().mark, UTC)

    def begin(self) -> None:
        """Give the task that runs the workflow its ``now()`` mark, before it starts branches."""
        self._mark()

    def _mark(self) -> _Mark:
        """The current task's mark (a branch's first one starts from its parent's)."""
        mark = _NOW_MARK.get()
        task = _current_task()
        if mark is None or mark.replay is not self:
            mark = _Mark(self, task, self._start)
            _NOW_MARK.set(mark)
        elif not mark.of(task):
            parent, mark = mark, _Mark(self, task, mark.mark)
            _NOW_MARK.set(mark)
            if isinstance(task, asyncio.Task):
                task.add_done_callback(lambda _: parent.join(mark))
        if mark.joined > mark.mark:
            mark.mark = mark.joined
        return mark


def _describe(kind: str, function: str | None) -> str:
    return f"{kind} step" + (f" of {function!r}" if function else "")
