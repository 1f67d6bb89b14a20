"""The ``Worker``: the part of an engine that executes runs.

A worker claims runnable runs (new, recovered from dead owners, woken, resumed), holds each in a
task as its ``RunHost``, renews their leases, and serves RPC jobs queued for its functions. An
``Engine(worker=True)`` (the default) owns one; a client engine has none.

Its background work is the list ``Worker.loops``: each loop runs in the worker's task group from
``open`` to ``aclose``. Schedules add a loop there. A limit on what may be claimed (concurrency,
rate) belongs in ``ClaimQuery``, which ``_claim`` builds and the store enforces in the database.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._start import RunStarter
from ._threads import CallThreads
from ._types import JSON
from ._watch import RunEvents, until_terminal
from .errors import (
    EngineStateError,
    RecoveryLimitError,
    RunNotFoundError,
    StoreError,
    StoreFileLostError,
    StoreUnavailableError,
)
from .functions import Registry, WorkflowDefinition
from .runtime import logs
from .runtime.clock import Clock, until_set
from .runtime.execution import LiveStep, RunExecution
from .runtime.failures import error_info
from .runtime.faults import fault_backoff, replayable
from .runtime.gates import Gates
from .runtime.host import Slots
from .runtime.jobs import run_job
from .runtime.leases import Leases
from .runtime.published import LivePublisher, with_live_steps
from .runtime.release import HeldAtClose, release_held
from .runtime.retention import retention_loop
from .runtime.runner import UNSET, cancel_run, drive_run
from .runtime.schedules import Scheduler
from .runtime.status import RunStatus, run_status
from .store.base import ClaimQuery, Fence, JobRecord, OwnerRecord, RunRecord, Store

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ("EngineStats", "Worker")

_CLAIM_BATCH = 10
"""Runs claimed per query: workers woken by one notification share the new work."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStats:
    """What an engine holds in memory right now."""

    held_runs: int
    """Runs with a coroutine in this engine (parked runs hold none)."""
    executing_steps: int
    """Step attempts executing now."""
    waiting_steps: int
    """Sleeps and suspends waiting in memory (in runs that cannot park yet)."""


@dataclass(eq=False)
class _Held:
    """A run this worker is executing."""

    execution: RunExecution
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class Worker:
    """Executes runs on a store: claims, holds (as their ``RunHost``), leases and jobs."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        clock: Clock,
        starter: RunStarter,
        events: RunEvents,
        owner_id: str,
        max_runs: int,
        max_jobs: int,
        lease: float,
        max_recoveries: int,
        poll_interval: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.owner_id = owner_id
        self.job_slots = Slots(max_jobs)
        self.max_jobs = max_jobs
        self.threads: Executor = self._new_threads()
        self.closing = False
        self.in_flight = 0
        self.tracer: Tracer | None = None
        self.max_runs = max_runs
        self.lease = lease
        self.max_recoveries = max_recoveries
        self.poll_interval = poll_interval
        self.hostname = socket.gethostname()
        self._starter = starter
        self._events = events
        events.claims = lambda name: registry.find_workflow(name) is not None
        self._held: dict[str, _Held] = {}
        self._starting = 0
        """Slots taken by runs being stored or claimed to be held here (not in ``_held`` yet)."""
        self._published = LivePublisher()
        self._job_events: dict[str, anyio.Event] = {}
        self._wake_claimer = anyio.Event()
        self.leases = Leases(store, owner_id)
        self._taking: set[str] = set()
        """Runs claimed whose executions are being set up, or will be (not orphans)."""
        self._tg: anyio.abc.TaskGroup | None = None
        self.failure: StoreError | None = None
        """Why the worker stopped on its own (the store file was lost), if it did."""
        self.gates = Gates(
            store=store, clock=clock, owner_id=owner_id, lease=lease, poll=poll_interval
        )
        self.schedules = Scheduler(
            store=store, registry=registry, clock=clock, poll=poll_interval, fired=self._wake
        )
        self.loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self._claim_loop,
            self._lease_loop,
            self._retention_loop,
            self.schedules.run,
            self.gates.run,
        ]
        """The background loops, started by ``open`` and cancelled by ``aclose``."""

    # --- lifecycle ----------------------------------------------------------------------------

    def _new_threads(self) -> CallThreads:
        # One thread per job slot at most, started on demand; the slots bound the calls anyway.
        return CallThreads(self.max_jobs, "graphflow-step")

    async def open(self) -> None:
        """Register this worker, take the runs waiting for one, and start the loops."""
        await self.store.register_owner(
            OwnerRecord(
                owner_id=self.owner_id,
                host=self.hostname,
                pid=os.getpid(),
                started_at=self.clock.time(),
                functions=tuple(self.registry.function_names),
            )
        )
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.schedules.register_static()
        await self._claim()
        for loop in self.loops:
            self._tg.start_soon(loop)

    async def aclose(self, grace: float) -> None:
        """Stop claiming, let in-flight steps persist for ``grace`` s, release (runtime.release)."""
        self.closing = True
        at_close = HeldAtClose()
        try:
            if self._tg is not None:
                with anyio.move_on_after(grace, shield=True):
                    while self.in_flight:  # noqa: ASYNC110 - a counter many tasks decrement
                        await anyio.sleep(0.01)
                at_close = HeldAtClose.of((h.execution for h in self._held.values()), self.registry)
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None
            # Threads still running a sync step finish it; its result is discarded. A new pool
            # (no thread starts before a call) serves the worker if it is opened again.
            self.threads.shutdown(wait=False, cancel_futures=True)
            self.threads = self._new_threads()
            with anyio.CancelScope(shield=True):
                try:
                    await release_held(self.store, self.owner_id, self.lease, at_close)
                except StoreError as exc:  # its heartbeat stops: it expires like a dead owner's
                    logs.store_fault("unregistering this engine", exc, retry_in=None)

    # --- RunHost ------------------------------------------------------------------------------

    async def start_run(
        self,
        workflow: str | WorkflowDefinition,
        data: JSON,
        run_id: str | None,
        parent: tuple[str, str] | None = None,
        *,
        priority: int = 0,
        dedup_key: str | None = None,
    ) -> str:
        """Store a run and hold it here if a slot is free (else it waits: pending, queued)."""
        tg = self._tg
        if tg is None:
            raise EngineStateError(operation="start runs", is_open=False)
        # A child run is held beside its waiting parent even at max_runs: parents holding every
        # slot while their children wait for one would deadlock.
        owned = len(self._held) + self._starting < self.max_runs or parent is not None
        leased_since = self.clock.time()
        self._starting += owned
        try:
            new = await self._starter.create(
                workflow,
                data,
                run_id=run_id,
                parent=parent,
                owner_id=self.owner_id if owned else None,
                priority=priority,
                dedup_key=dedup_key,
            )
        finally:
            self._starting -= owned
        run = new.record
        if new.created:
            if run.owner_id == self.owner_id:
                fence = Fence(run_id=run.run_id, owner_id=self.owner_id, epoch=1)
                self._hold(tg, run, fence, leased_since, [], new.validated)
            else:
                self._wake_claimer.set()
        return run.run_id

    async def wait_run(self, run_id: str) -> RunStatus:
        """Wait until the run is terminal; its status (without steps)."""
        run = await until_terminal(
            run_id, self._get_run, self._events, poll_interval=self.poll_interval
        )
        return run_status(run)

    async def remote_functions(self) -> set[str]:
        """Functions that live workers elsewhere serve (none on a private memory store)."""
        if not self.store.shared:
            return set()
        return await self.store.served_functions(self.lease)

    async def wait_job(self, job_id: str) -> JobRecord:
        """Wait until the queued job is completed or failed (notified, else polled)."""
        delay = 0.005
        while True:
            event = self._job_events.setdefault(job_id, anyio.Event())
            job = await self.store.get_job(job_id)
            if job is not None and job.state in ("completed", "failed"):
                self._job_events.pop(job_id, None)
                return job
            with anyio.move_on_after(delay):
                await event.wait()
            delay = min(delay * 2, self.poll_interval)

    def step_changed(self, run_id: str) -> None:
        """A step of a held run changed: wake its watchers."""
        self._events.step_changed(run_id)

    # --- held runs ----------------------------------------------------------------------------

    def _hold(
        self,
        tg: anyio.abc.TaskGroup,
        run: RunRecord,
        fence: Fence,
        leased_since: float,
        history: list[Any] | None,
        data: Any = UNSET,
    ) -> None:
        """Execute ``run`` here, leased since ``leased_since`` (engine clock)."""
        held = _Held(RunExecution(self, run, fence, history or []))
        held.execution.lease_renewed(leased_since + self.lease)
        previous = self._held.get(run.run_id)
        self._held[run.run_id] = held
        self._events.local.add(run.run_id)
        tg.start_soon(self._drive, held, previous, history is None, data)

    async def _drive(
        self, held: _Held, previous: _Held | None, load_history: bool, data: Any
    ) -> None:
        """Drive the run; after a store fault, replay it from the store (backing off) until done.

        A store fault is a crash of this run alone: it is replayed, keeping its lease, never failed.
        """
        run_id = held.execution.run_id
        try:
            with held.scope:
                if previous is not None:
                    # This engine's lease on the run expired (the store was out of reach longer
                    # than a lease) and it claimed the run again: the stale execution stops first.
                    previous.scope.cancel()
                    await previous.done.wait()
                faults = 0
                while (fault := await self._drive_once(held, load_history, data)) is not None:
                    faults += 1
                    delay = fault_backoff(faults)
                    logs.store_fault(
                        f"run {run_id} of workflow {held.execution.workflow!r} was interrupted",
                        fault,
                        retry_in=delay,
                        run_id=run_id,
                    )
                    await self.clock.sleep_until(self.clock.time() + delay)
                    if self.closing:
                        return
                    held.execution = replayable(held.execution)
                    load_history, data = True, UNSET
        finally:
            held.execution.end()
            if self._held.get(run_id) is held:
                del self._held[run_id]
                self._events.local.discard(run_id)
            held.done.set()
            self._events.run_changed(run_id)
            self._wake_claimer.set()

    async def _drive_once(
        self, held: _Held, load_history: bool, data: Any
    ) -> StoreUnavailableError | None:
        """Drive the run once; the store fault that interrupted it, if one did."""
        execution = held.execution
        try:
            if load_history:
                execution.set_history(await self.store.load_steps(execution.run_id))
            definition = self.registry.get_workflow(execution.workflow)
            await drive_run(self, definition, execution, data)
        except StoreUnavailableError as exc:
            execution.store_failed(exc)
        return execution.store_fault

    def with_live_steps(self, status: RunStatus, lease_expires_at: float | None) -> RunStatus:
        """``status`` with the steps its run executes here now (``running``, or ``queued``)."""
        held = self._held.get(status.run_id)
        live_steps = held.execution.live_steps() if held is not None else ()
        return with_live_steps(status, live_steps, (self.owner_id, lease_expires_at))

    def live_steps(self, run_id: str) -> tuple[LiveStep, ...]:
        """The steps of ``run_id`` executing here now (none if the run is not held here)."""
        held = self._held.get(run_id)
        return held.execution.live_steps() if held is not None else ()

    def claim_soon(self) -> None:
        """Runs were made claimable here (a fork): look for them now, not at the next poll."""
        self._wake_claimer.set()

    def deliver(self, run_id: str, step_name: str, output: str) -> None:
        """Hand resume data to a suspend waiting here; wake the claimer for a parked run."""
        held = self._held.get(run_id)
        if held is not None:
            held.execution.deliver(step_name, output)
        self._wake_claimer.set()

    def message_sent(self, run_id: str, topic: str | None) -> None:
        """A message was stored for the run: a receive waiting here looks for it at once."""
        held = self._held.get(run_id)
        if held is not None:
            held.execution.message_arrived(topic)
        self._wake_claimer.set()

    async def cancel_held(self, run_id: str) -> bool:
        """Cancel the run if held here, once no further step will be issued; whether it was."""
        held = self._held.get(run_id)
        if held is None:
            return False
        held.execution.stop(cancel=True)
        await held.done.wait()
        return True

    def stats(self) -> EngineStats:
        """What this worker holds in memory now."""
        return EngineStats(
            held_runs=len(self._held),
            executing_steps=self.in_flight,
            waiting_steps=sum(h.execution.waiting_count for h in self._held.values()),
        )

    async def _get_run(self, run_id: str) -> RunRecord:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id=run_id)
        return run

    # --- claiming and leases --------------------------------------------------------------------

    async def _claim(self) -> None:
        """Take runnable runs, a small batch at a time, so idle workers woken together share."""
        dead_owners = await self.leases.dead_owners(self.hostname)
        while True:
            tg = self._tg
            batch = min(self.max_runs - len(self._held) - self._starting, _CLAIM_BATCH)
            if tg is None or batch <= 0 or self.closing:
                return
            query = ClaimQuery(
                owner_id=self.owner_id,
                workflows=self.registry.workflow_names,
                dead_owners=dead_owners,
                limit=batch,
                lease=self.lease,
                limits={
                    d.name: d.concurrency.limit
                    for d in self.registry.workflows
                    if d.concurrency is not None
                },
            )
            leased_since = self.clock.time()
            self._starting += batch
            try:
                claimed = await self.store.claim_runs(query, leased_since)
            finally:
                self._starting -= batch
            self._taking.update(run.run_id for run in claimed)
            for run in claimed:
                try:
                    await self._take(tg, run, leased_since)
                except StoreUnavailableError as exc:  # the run stays claimed here: take it later
                    tg.start_soon(self._take_later, tg, run, leased_since, exc)
                else:
                    self._taking.discard(run.run_id)
            if len(claimed) < batch:
                return

    async def _take_later(
        self,
        tg: anyio.abc.TaskGroup,
        run: RunRecord,
        leased_since: float,
        exc: StoreUnavailableError,
    ) -> None:
        """``_take`` again, backing off, after the store could not take ``run``."""
        faults = 1
        try:
            while True:
                delay = fault_backoff(faults)
                logs.store_fault(f"taking run {run.run_id}", exc, retry_in=delay, run_id=run.run_id)
                await anyio.sleep(delay)
                try:
                    return await self._take(tg, run, leased_since)
                except StoreUnavailableError as again:
                    exc, faults = again, faults + 1
                except StoreError:
                    return  # the lease was lost meanwhile: another engine has the run
        finally:
            self._taking.discard(run.run_id)

    async def _take(self, tg: anyio.abc.TaskGroup, run: RunRecord, leased_since: float) -> None:
        fence = Fence(run_id=run.run_id, owner_id=self.owner_id, epoch=run.lease_epoch)
        if run.cancel_requested:
            await cancel_run(self, RunExecution(self, run, fence, []))
            self._events.run_changed(run.run_id)
        elif run.recoveries > self.max_recoveries:
            await self._give_up(run, fence)
        else:
            why = "claimed" if not run.recoveries else f"recovered, {run.recoveries} time(s)"
            logs.run_state(run.run_id, run.workflow, "running", why=why)
            self._hold(tg, run, fence, leased_since, None)
            self._events.run_changed(run.run_id)  # its waiters stop looking at the store

    async def _give_up(self, run: RunRecord, fence: Fence) -> None:
        error = RecoveryLimitError(
            run_id=run.run_id,
            workflow=run.workflow,
            recoveries=run.recoveries,
            max_recoveries=self.max_recoveries,
        )
        await self.store.end_run(
            fence,
            state="failed",
            output=None,
            error=error_info(error).model_dump_json(),
            at=self.clock.time(),
        )
        logs.run_state(run.run_id, run.workflow, "failed", error=error_info(error))
        self._events.run_changed(run.run_id)

    async def _claim_loop(self) -> None:
        faults = 0
        while True:
            try:
                next_wake = await self.store.next_wake_at(self.registry.workflow_names)
            except StoreError:
                next_wake = None
            await self._idle(next_wake)
            self._wake_claimer = anyio.Event()
            try:
                await self._claim()
                await self._claim_jobs()
                faults = 0
            except StoreError as exc:
                faults += 1
                delay = max(fault_backoff(faults), self.poll_interval)
                logs.store_fault("looking for runs to execute", exc, retry_in=delay)
                await anyio.sleep(delay)

    async def _claim_jobs(self) -> None:
        tg = self._tg
        if tg is None or self.closing or not self.store.shared:
            return
        jobs = await self.store.claim_jobs(
            self.owner_id, self.registry.function_names, self.job_slots.free, self.lease
        )
        for job in jobs:
            tg.start_soon(run_job, self, self.registry.get_function(job.function), job)

    def on_notify(self, kind: str, key: str) -> None:
        """A PostgreSQL notification: a job finished, a run was cancelled or messaged, or work."""
        if kind == "done":
            event = self._job_events.pop(key, None)
            if event is not None:
                event.set()
        elif kind == "cancel":
            held = self._held.get(key)
            if held is not None:
                held.execution.stop(cancel=True)
        elif kind == "message":
            self.message_sent(key, None)
        elif kind == "slot":
            self.gates.released(key)
        elif kind == "schedule":
            self.schedules.wake()
            self._wake_claimer.set()
        elif kind == "listen":
            if key == "back":  # LISTEN_BACK
                self.notifications_missed()
        elif kind not in ("end", "event"):
            self._wake_claimer.set()

    def notifications_missed(self) -> None:
        """The store listens again after losing its connection: look at everything once.

        Whatever was notified meanwhile went unheard: finished jobs, freed slots, messages, due
        schedules and runnable runs. Each waiter looks at the store (as its fallback poll would).
        """
        job_events, self._job_events = self._job_events, {}
        for event in job_events.values():
            event.set()
        self.gates.released_all()
        for held in self._held.values():
            held.execution.message_arrived(None)
        self.schedules.wake()
        self._wake_claimer.set()

    def _wake(self) -> None:
        self._wake_claimer.set()

    async def _idle(self, next_wake: float | None) -> None:
        """Until: woken locally, the next parked run is due (engine clock), or a poll interval."""
        await until_set(self._wake_claimer, self.clock, next_wake, self.poll_interval)

    async def _retention_loop(self) -> None:
        await retention_loop(self.store, self.registry, self.clock)

    async def _lease_loop(self) -> None:
        while True:
            await self.leases.due(self.lease / 3)
            published = self._published.changes(
                {run_id: held.execution for run_id, held in self._held.items()}, self.clock.time()
            )
            sent = self.clock.time()
            try:
                owned = await self.store.renew_leases(self.owner_id, self.lease, published)
            except StoreFileLostError as exc:
                self._stop(exc)
                return
            except StoreError as exc:
                logs.store_fault("renewing the leases of this engine", exc, retry_in=self.lease / 3)
                continue
            self._published.renewed(published)
            executions = {run_id: held.execution for run_id, held in self._held.items()}
            for run_id in self.leases.renewed(executions, owned, sent + self.lease):
                self._held[run_id].scope.cancel()  # taken over elsewhere: commit nothing more
            for run_id, held in list(self._held.items()):
                if owned.get(run_id):
                    held.execution.stop(cancel=True)
            orphans = owned.keys() - self._held.keys() - self._taking
            if orphans:
                await self.leases.release_orphans(
                    orphans, lambda run_id: run_id in self._held or run_id in self._taking
                )
                self._wake_claimer.set()

    async def renewal(self) -> None:
        """Wait for the next renewal of this worker's leases (asking for one now)."""
        await self.leases.renewal()

    def _stop(self, failure: StoreError) -> None:
        """Stop for good (the store file is lost): runs unwind; callers get ``failure``."""
        logs.store_fault("the store", failure, retry_in=None)
        self.failure = failure
        self.closing = True
        for held in self._held.values():
            held.scope.cancel()
        self._events.close()
