"""One run in memory: its replay bookkeeping, the steps executing now, its waits and its stop.

``RunExecution`` is what the rest of the runtime and the engine hold of a run. Other modules act
on it through methods: the attempt loop reports steps beginning and ending, waits register and
park, the engine delivers resumes and stops the run; nobody writes its fields.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio

from .._types import StepState
from ..errors import (
    DuplicateStepError,
    GraphflowError,
    LeaseLostError,
    NonDeterminismError,
    StoreUnavailableError,
)
from ..store.base import AttemptRecord, Fence, RunRecord, StepRecord
from .failures import Closing
from .host import RunHost
from .replay import Replay
from .tracing import RunTrace

__all__ = ("STEPS_PER_TURN", "LiveStep", "Parking", "RunExecution", "Wait")

STEPS_PER_TURN = 16
"""Completed steps after which a workflow yields to the event loop once (see ``turn_due``):
about a millisecond of fast steps, for a loop turn of a few microseconds."""


@dataclass(slots=True, kw_only=True)
class LiveStep:
    """A step executing now: what it was issued as, its attempts so far, and when it began.

    The attempt loop updates it in place; ``record`` builds the step's record from it only when
    one is stored or shown.
    """

    run_id: str
    name: str
    seq: int
    kind: str
    function: str | None
    input: str | None
    parents: tuple[str, ...]
    attempt: int
    """The current attempt (counting those recorded before a crash)."""
    started_at: float | None
    """When the first attempt began."""
    error: str | None = None
    """The last failed attempt's error (JSON), shown while the next one runs."""
    queued: bool = False
    """The current attempt waits for its function's concurrency slot or rate-limit window."""

    def record(
        self,
        state: StepState,
        *,
        seq: int | None = None,
        output: str | None = None,
        error: str | None = None,
        finished_at: float | None = None,
        detail: str | None = None,
    ) -> StepRecord:
        """The step's record in ``state`` after its current attempt (``seq``: another number)."""
        return StepRecord(
            run_id=self.run_id,
            name=self.name,
            seq=self.seq if seq is None else seq,
            kind=self.kind,
            function=self.function,
            state=state,
            attempts=self.attempt,
            input=self.input,
            output=output,
            error=error,
            parents=self.parents,
            started_at=self.started_at,
            finished_at=finished_at,
            detail=detail,
        )

    def live_record(self) -> StepRecord:
        """The step's record as ``status`` shows it now (``running``, or ``queued``)."""
        return self.record("queued" if self.queued else "running", error=self.error)


@dataclass(frozen=True, slots=True)
class Wait:
    """A sleep, suspend or receive waiting in memory, with its deadline (``None``: no timeout)."""

    kind: Literal["sleep", "suspend", "receive"]
    wake_at: float | None
    topic: str | None = None
    """What a receive waits for."""


@dataclass(frozen=True, slots=True)
class Parking:
    """Why and until when a run left memory: stored as its state, ``wake_at`` and reason."""

    state: Literal["sleeping", "suspended"]
    wake_at: float | None
    reason: str | None
    """The first waiting suspend's (or receive's) name (``status.suspend_reason``)."""
    resumable: tuple[str, ...]
    """Every suspend waiting when the run parked: what a resume may complete."""
    receiving: tuple[str, ...] = ()
    """The topics of the receives waiting when the run parked: what a message wakes it for."""


class RunExecution:
    """The in-memory state of one run being executed by this engine."""

    dry = False
    """A dry replay (``engine.check``) stops where a step would execute or a wait begin."""

    def __init__(
        self, host: RunHost, run: RunRecord, fence: Fence, history: list[StepRecord]
    ) -> None:
        self.host = host
        """The engine's services (read only)."""
        self.run = run
        """The run as claimed or started (read only)."""
        self.fence = fence
        """The lease every durable write of this run is fenced by (read only)."""
        self.replay = Replay(
            history,
            workflow=run.workflow,
            run_id=run.run_id,
            start=run.started_at or run.created_at,
        )
        self._fatal: GraphflowError | None = None
        self._store_fault: StoreUnavailableError | None = None
        self._live: dict[str, LiveStep] = {}
        self._settled: set[str] = set()
        self._working = 0
        self._waits: dict[str, Wait] = {}
        self._deliveries: dict[str, str] = {}
        self._progress = 0
        self._completions = 0
        self._turned_at = 0
        self._changed = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._parking: Parking | None = None
        self._cancelling = False
        self._live_at_cancel: tuple[LiveStep, ...] = ()
        self._trace: RunTrace | None = None
        self._leased_until = math.inf
        self._ended = False

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    @property
    def workflow(self) -> str:
        """The run's workflow name."""
        return self.run.workflow

    @property
    def trace(self) -> RunTrace | None:
        """This execution's OpenTelemetry span, when tracing is on."""
        return self._trace

    def traced(self, trace: RunTrace | None) -> None:
        """Attach the execution's span: its step attempts become its children."""
        self._trace = trace

    def set_history(self, history: list[StepRecord]) -> None:
        """The run's recorded steps, replayed instead of executed."""
        self.replay.load(history)

    def now(self) -> datetime:
        """The time this point of the workflow was first reached (deterministic on replay)."""
        return self.replay.now()

    # --- issuing ------------------------------------------------------------------------------

    def issue(
        self, name: str, kind: str, function: str | None, parents: tuple[str, ...] | None = None
    ) -> tuple[int, tuple[str, ...]]:
        """Check and register a new step; return its sequence number and run-graph parents.

        Raises:
            Closing: the run is stopping (engine closing, parking or cancelling).
            DuplicateStepError, NonDeterminismError: the step breaks the replay rules (the run
                fails with it even if the workflow catches it).
        """
        stopping = self._parking is not None or self._cancelling or self._store_fault is not None
        if stopping or self._ended or self.host.closing:
            raise Closing
        self._progress += 1
        try:
            return self.replay.issue(name, kind, function, parents)
        except (DuplicateStepError, NonDeterminismError) as exc:
            raise self.fail_run(exc) from None

    def completed(self, name: str, parents: tuple[str, ...], finished_at: float | None) -> None:
        """Note a completed step: the frontier and ``now()`` move past it."""
        self._progress += 1
        self._completions += 1
        self.replay.completed(name, parents, finished_at)

    def turn_due(self) -> bool:
        """Whether the workflow should give the event loop a turn now (every few steps).

        Once per ``STEPS_PER_TURN`` completed steps. A step that completes at once (an async
        function, a SQLite commit, a replayed result) never suspends its task, so a loop of them
        would hold the event loop for the whole run, starving every other task on it: other
        runs, lease renewals, HTTP handlers. Counted in steps, not time, so that a run's
        interleavings stay reproducible. The turn delivers no cancel: the step is recorded, and a
        cancel (a user's ``fail_after`` around ``wf.do``) landing there would take the timeout's
        branch where a replay, returning the recorded value, goes on.
        """
        if self._completions - self._turned_at < STEPS_PER_TURN:
            return False
        self._turned_at = self._completions
        return True

    async def record_step(self, step: StepRecord, failed: AttemptRecord | None = None) -> None:
        """Store a step of this run (fenced by its lease), with any patch markers it carries.

        Raises:
            Closing: the store is unavailable (``store_failed``).
        """
        try:
            await self.host.store.record_step(self.fence, self.replay.with_markers(step), failed)
        except StoreUnavailableError as exc:
            raise self.store_failed(exc) from exc

    async def stop_point(
        self, name: str, kind: str, function: str | None, parents: tuple[str, ...]
    ) -> None:
        """Where a dry replay stops: step ``name`` would execute or a wait would begin.

        Only called when ``dry``; a dry execution blocks here until its check is over.
        """

    @property
    def fatal(self) -> GraphflowError | None:
        """The error that fails the run even though the workflow caught it, if any."""
        return self._fatal

    def fail_run(self, error: GraphflowError) -> GraphflowError:
        """Remember an error that fails the run even if the workflow catches it."""
        if self._fatal is None:
            self._fatal = error
        return error

    @property
    def store_fault(self) -> StoreUnavailableError | None:
        """The store error that stopped this execution, if one did (the run is to be replayed)."""
        return self._store_fault

    def store_failed(self, error: StoreUnavailableError) -> Closing:
        """The store cannot serve the run now: stop it as a crash would, to be replayed later.

        Returns the ``Closing`` to raise: a ``BaseException``, so the workflow's own ``except
        Exception`` cannot swallow the fault and go on without its write.
        """
        if self._store_fault is None:
            self._store_fault = error
        if self._scope is not None:
            self._scope.cancel()
        return Closing()

    # --- steps executing ----------------------------------------------------------------------

    def step_began(self) -> None:
        """A step starts executing: the engine counts it in flight, and the run cannot park."""
        self.host.in_flight += 1
        self._working += 1

    def attempt_began(self, live: LiveStep) -> None:
        """An attempt of a step starts: ``status`` shows it running (watchers are told)."""
        self._live[live.name] = live
        self.host.step_changed(self.run.run_id)

    def step_settled(self, name: str) -> None:
        """A step's outcome (completed or finally failed) is stored."""
        self._settled.add(name)
        self._live.pop(name, None)

    def step_ended(self, name: str) -> None:
        """A step stopped executing (settled, or unwound by a failure or a cancel)."""
        self.host.in_flight -= 1
        self._working -= 1
        self._live.pop(name, None)
        self.host.step_changed(self.run.run_id)
        if self._waits:
            self.signal()

    def live_steps(self) -> tuple[LiveStep, ...]:
        """The steps executing now, with their current attempt."""
        return tuple(self._live.values())

    # --- waiting and parking ------------------------------------------------------------------

    @contextmanager
    def working(self) -> Iterator[None]:
        """Hold the run in memory (no parking) while the body runs."""
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1
            if self._waits:
                self.signal()  # a wait that found the run working looks again

    @property
    def is_working(self) -> bool:
        """Whether anything in the run executes (so it must not park)."""
        return self._working > 0

    @property
    def progress(self) -> int:
        """A counter that moves whenever a step is issued, finishes or is delivered."""
        return self._progress

    @property
    def changed(self) -> anyio.Event:
        """Set at the next ``signal()``."""
        return self._changed

    def signal(self) -> None:
        """Note progress (a step issued, finished, delivered): wakes waiters re-checking parking."""
        self._progress += 1
        self._changed.set()
        self._changed = anyio.Event()

    def add_wait(self, name: str, wait: Wait) -> None:
        """A sleep or suspend begins waiting in memory."""
        self._waits[name] = wait
        self.signal()

    def remove_wait(self, name: str) -> None:
        """A wait ended (woke, resumed, timed out or unwound)."""
        self._waits.pop(name, None)

    @property
    def waiting_count(self) -> int:
        """Sleeps and suspends waiting in memory."""
        return len(self._waits)

    def deliver(self, name: str, output: str) -> None:
        """Hand the JSON resume data of suspend ``name`` to its waiting workflow."""
        self._deliveries[name] = output
        self.signal()

    def message_arrived(self, topic: str | None) -> None:
        """A message on ``topic`` (``None``: some topic) was sent: its receives look for it."""
        for name, wait in self._waits.items():
            if wait.topic is not None and topic in (None, wait.topic):
                self._deliveries[name] = ""
        self.signal()

    def take_delivery(self, name: str) -> str | None:
        """The resume data delivered to suspend ``name``, if any (taken once)."""
        return self._deliveries.pop(name, None)

    def park(self) -> None:
        """Stop the run to leave memory: every active step is a long wait."""
        waits = self._waits
        deadlines = [wait.wake_at for wait in waits.values() if wait.wake_at is not None]
        waiting = sorted(name for name, wait in waits.items() if wait.kind != "sleep")
        self._parking = Parking(
            state="sleeping" if any(w.kind == "sleep" for w in waits.values()) else "suspended",
            wake_at=min(deadlines) if deadlines else None,
            reason=waiting[0] if waiting else None,
            resumable=tuple(name for name, wait in waits.items() if wait.kind == "suspend"),
            receiving=tuple(
                sorted({wait.topic for wait in waits.values() if wait.topic is not None})
            ),
        )
        self.stop(cancel=False)

    @property
    def parking(self) -> Parking | None:
        """How the run parked, once it decided to."""
        return self._parking

    # --- the lease ------------------------------------------------------------------------------

    def lease_renewed(self, until: float) -> None:
        """This engine's lease on the run surely holds until ``until`` (engine clock).

        The worker sets it when it claims the run and moves it on at every renewal: a renewal
        sent at ``t`` makes the lease last at least until ``t + lease``.
        """
        self._leased_until = until

    @property
    def leased_until(self) -> float:
        """Until when (engine clock) this engine's lease on the run surely holds."""
        return self._leased_until

    def end(self) -> None:
        """The execution is over (the run ended, parked, was given back or lost).

        Tasks of it may outlive it: the branches of an ``asyncio.gather`` keep running after one
        of them failed. From now on they issue and attempt nothing (they unwind with ``Closing``).
        """
        self._ended = True

    def lease_doubtful(self) -> bool:
        """Whether ``leased`` must be awaited before an attempt (checked without a coroutine)."""
        return self._ended or self.host.clock.time() >= self._leased_until

    async def leased(self) -> None:
        """Return at once while the lease surely holds; else wait for a renewal first.

        A process that stalled longer than its lease (a frozen event loop, a VM pause) may have
        lost the run to another engine, which may have completed the very step this one is about
        to start. So no step attempt starts on an expired lease: the renewal tells whether the
        run is still held here (then it goes on) or lost (then the worker cancels it here).

        Raises:
            Closing: the execution is over (a stray task of it asks).
            LeaseLostError: the renewal did not extend this execution's lease (the run was lost).
        """
        if self._ended:
            raise Closing
        clock = self.host.clock
        if clock.time() >= self._leased_until:
            await self.host.renewal()
            if clock.time() >= self._leased_until:
                raise LeaseLostError(run_id=self.run_id)

    # --- stopping -----------------------------------------------------------------------------

    def bind_scope(self, scope: anyio.CancelScope) -> None:
        """The cancel scope around the workflow's code: ``stop`` cancels it."""
        self._scope = scope

    def stop(self, *, cancel: bool) -> None:
        """Stop the workflow at its next await: to cancel the run, or to park it."""
        if cancel:
            self._cancelling = True
            self._live_at_cancel = tuple(self._live.values())
        if self._scope is not None:
            self._scope.cancel()

    @property
    def cancelling(self) -> bool:
        """Whether the run is being cancelled."""
        return self._cancelling

    def cancelled_steps(self) -> tuple[LiveStep, ...]:
        """The steps executing when the cancel landed that stored no outcome since."""
        return tuple(s for s in self._live_at_cancel if s.name not in self._settled)
