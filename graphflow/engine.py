"""The ``Engine``: the public facade. Lifecycle, recovery, and start/run/status/wait/list.

An engine opened with ``async with`` owns a task group holding every run it executes, a claim loop
(recovery of abandoned runs, wake-ups of sleepers, runs started by clients) and a lease renewer.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import networkx as nx

from ._types import JSON, TERMINAL_RUN_STATES
from .durations import Duration, to_seconds
from .errors import (
    GraphflowError,
    InvalidStateError,
    RunConflictError,
    RunFailed,
    RunNotFoundError,
    StoreError,
)
from .functions import DEFAULT_REGISTRY, Registry, WorkflowDefinition
from .graph.run_graph import build_run_graph
from .graph.spec import GraphWorkflow
from .runtime.clock import Clock, SystemClock
from .runtime.execution import RunExecution, RunHost, Slots, error_info, live_record
from .runtime.jobs import execute_job
from .runtime.resume import check_resume_data
from .runtime.runner import UNSET, cancel_run, execute_run
from .runtime.status import RunStatus, StepStatus, load_error, run_status, step_status
from .store.base import ClaimQuery, Fence, JobRecord, OwnerRecord, RunRecord, Store, open_store

__all__ = ("Engine", "EngineStats", "run")

_CLAIM_BATCH = 10
"""Runs claimed per query: workers woken by one notification share the new work."""


@dataclass(eq=False)
class _Held:
    """A run this engine is executing."""

    execution: RunExecution
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStats:
    """What an engine holds in memory right now."""

    held_runs: int
    """Runs with a coroutine in this engine (parked runs hold none)."""
    executing_steps: int
    """Step attempts executing now."""
    waiting_steps: int
    """Sleeps and suspends waiting in memory (in runs that cannot park yet)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Engine:
    """Runs workflows durably on a store.

    Args:
        store: a URL (``sqlite:///path.db``, ``postgresql://...``, ``memory://``) or a ``Store``;
            default ``$GRAPHFLOW_STORE`` or ``sqlite:///graphflow.db``.
        registry: where workflows and functions are looked up (default: the decorators' one).
        worker: ``False`` makes a client that starts and inspects runs but executes nothing.
        max_runs: runs held at once; max_jobs: RPC jobs executing at once.
        lease: how long a run stays owned without renewal before other engines take it over.
        max_recoveries: a run recovered more often than this fails instead of crash-looping.
        clock: the time source (``graphflow.testing.VirtualClock`` in tests).
        poll_interval: how often to look for work made by other processes.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        registry: Registry | None = None,
        worker: bool = True,
        max_runs: int = 100,
        max_jobs: int = 64,
        lease: Duration | None = None,
        max_recoveries: int = 10,
        clock: Clock | None = None,
        poll_interval: Duration = 0.5,
    ) -> None:
        if max_runs < 1 or max_jobs < 1:
            raise GraphflowError(
                f"Engine(max_runs={max_runs}, max_jobs={max_jobs}): both must be at least 1"
            )
        self.store: Store = open_store(store) if store is None or isinstance(store, str) else store
        self.registry = registry or DEFAULT_REGISTRY
        self.worker = worker
        self.max_runs = max_runs
        self.lease = to_seconds(lease or os.environ.get("GRAPHFLOW_LEASE") or 15.0)
        self.max_recoveries = max_recoveries
        self.clock: Clock = clock or SystemClock()
        self.poll_interval = to_seconds(poll_interval)
        self.owner_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self._host = RunHost(
            store=self.store,
            registry=self.registry,
            clock=self.clock,
            owner_id=self.owner_id,
            job_slots=Slots(max_jobs),
        )
        self._host.start_run = self._start_child
        self._host.wait_run = self.wait
        self._host.remote_functions = self._remote_functions
        self._host.wait_job = self._wait_job
        self._job_events: dict[str, anyio.Event] = {}
        self._held: dict[str, _Held] = {}
        self._changed: dict[str, anyio.Event] = {}
        self._wake_claimer = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._open = False
        self._last_created = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the engine is between ``__aenter__`` and ``__aexit__``."""
        return self._open

    async def __aenter__(self) -> Engine:
        """Open the store, recover abandoned runs and start the claim, lease and listen loops.

        Raises:
            StoreError: the store cannot be opened (nothing is left running).
            SchemaVersionError: the database's schema is another version.
        """
        if self._open:
            raise GraphflowError("this engine is already open: open each Engine once")
        try:
            await self.store.open()
        except BaseException:
            await self.store.aclose()
            raise
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._open = True
        self._host.closing = False
        try:
            await self._start_loops(self._tg)
        except BaseException:
            await self.aclose(grace=0)
            raise
        return self

    async def _start_loops(self, tg: anyio.abc.TaskGroup) -> None:
        if self.worker:
            await self.store.register_owner(
                OwnerRecord(
                    owner_id=self.owner_id,
                    host=self.host,
                    pid=os.getpid(),
                    started_at=self.clock.time(),
                    functions=tuple(self.registry.function_names),
                )
            )
            await self._claim()
            tg.start_soon(self._claim_loop)
            tg.start_soon(self._lease_loop)
        tg.start_soon(self.store.listen, self._on_notify)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop claiming, let in-flight steps persist (``grace`` seconds), release every run."""
        if not self._open or self._tg is None:
            return
        self._open = False
        self._host.closing = True
        with anyio.move_on_after(grace, shield=True):
            while self._host.in_flight:  # noqa: ASYNC110 - a counter many tasks decrement
                await anyio.sleep(0.01)
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                try:
                    if self.worker:
                        await self.store.remove_owner(self.owner_id)
                finally:
                    await self.store.aclose()
            for event in self._changed.values():
                event.set()

    def _require_open(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise GraphflowError(
                "the engine is not open: use `async with gf.Engine(...) as engine:` (or"
                " `await engine.__aenter__()`) before starting or inspecting runs"
            )
        return self._tg

    # --- starting -------------------------------------------------------------------------------

    def _definition(self, workflow: str | WorkflowDefinition) -> WorkflowDefinition:
        if isinstance(workflow, WorkflowDefinition):
            if self.registry.find_workflow(workflow.name) is not workflow:
                self.registry.add_workflow(workflow)  # so this engine can replay it too
            return workflow
        return self.registry.get_workflow(workflow)

    async def start(
        self,
        workflow: str | WorkflowDefinition,
        data: JSON = None,
        *,
        run_id: str | None = None,
        parent: tuple[str, str] | None = None,
    ) -> str:
        """Start a run and return its id once it is stored.

        With an explicit ``run_id`` this is idempotent: the same id and input return the existing
        run. ``parent`` is ``(parent_run_id, step_name)`` for child runs.

        Raises:
            UnknownWorkflowError: no workflow has that name here.
            InputValidationError: ``data`` does not match the workflow's input type (nothing is
                written).
            RunConflictError: ``run_id`` exists with another workflow or input.
        """
        tg = self._require_open()
        definition = self._definition(workflow)
        validated = definition.validate_input(data, run_id=run_id)
        input_json = definition.dump_input(data)
        # Strictly increasing per engine, so runs started at one (virtual) instant still list
        # newest first.
        now = max(self.clock.time(), self._last_created + 1e-6)
        self._last_created = now
        # A child run is held beside its waiting parent even at max_runs: parents holding every
        # slot while their children wait for one would deadlock.
        owned = self.worker and (len(self._held) < self.max_runs or parent is not None)
        record = RunRecord(
            run_id=run_id or str(uuid.uuid4()),
            workflow=definition.name,
            state="running" if owned else "pending",
            input=input_json,
            parent_run_id=parent[0] if parent else None,
            parent_step=parent[1] if parent else None,
            graph_hash=getattr(definition, "hash", None),
            created_at=now,
            started_at=now if owned else None,
            updated_at=now,
            owner_id=self.owner_id if owned else None,
            lease_epoch=1 if owned else 0,
            lease_expires_at=(await self.store.now()) + self.lease if owned else None,
        )
        stored, created = await self.store.create_run(record)
        if not created:
            self._check_same(stored, definition.name, input_json)
            return stored.run_id
        if owned:
            fence = Fence(run_id=record.run_id, owner_id=self.owner_id, epoch=1)
            self._hold(tg, record, fence, [], validated)
        else:
            self._wake_claimer.set()
        return record.run_id

    async def _start_child(
        self, workflow: str, data: JSON, run_id: str, parent: tuple[str, str]
    ) -> str:
        return await self.start(workflow, data, run_id=run_id, parent=parent)

    @staticmethod
    def _check_same(stored: RunRecord, workflow: str, input_json: str) -> None:
        if stored.workflow != workflow:
            raise RunConflictError(
                run_id=stored.run_id, workflow=workflow, reason=f"workflow {stored.workflow!r}"
            )
        if json.loads(stored.input) != json.loads(input_json):
            raise RunConflictError(
                run_id=stored.run_id, workflow=workflow, reason="a different input"
            )

    def _hold(
        self,
        tg: anyio.abc.TaskGroup,
        run: RunRecord,
        fence: Fence,
        history: list[Any] | None,
        data: Any = UNSET,
    ) -> None:
        execution = RunExecution(self._host, run, fence, history or [])
        held = _Held(execution)
        self._held[run.run_id] = held
        tg.start_soon(self._execute, held, history is None, data)

    async def _execute(self, held: _Held, load_history: bool, data: Any) -> None:
        execution = held.execution
        run_id = execution.run_id
        try:
            with held.scope:
                if load_history:
                    execution.set_history(await self.store.load_steps(run_id))
                definition = self.registry.get_workflow(execution.workflow)
                await execute_run(self._host, definition, execution, data)
        finally:
            self._held.pop(run_id, None)
            held.done.set()
            self._notify(run_id)
            self._wake_claimer.set()

    def _notify(self, run_id: str) -> None:
        event = self._changed.pop(run_id, None)
        if event is not None:
            event.set()

    # --- claiming and leases --------------------------------------------------------------------

    async def _dead_owners(self) -> list[str]:
        owners = await self.store.owners_on_host(self.host)
        return [
            o.owner_id
            for o in owners
            if o.owner_id != self.owner_id and o.pid != os.getpid() and not _pid_alive(o.pid)
        ]

    async def _claim(self) -> None:
        """Take runnable runs, a small batch at a time, so idle workers woken together share."""
        dead_owners = await self._dead_owners()
        while True:
            tg = self._tg
            batch = min(self.max_runs - len(self._held), _CLAIM_BATCH)
            if tg is None or batch <= 0 or not self._open:
                return
            query = ClaimQuery(
                owner_id=self.owner_id,
                workflows=self.registry.workflow_names,
                dead_owners=dead_owners,
                limit=batch,
                lease=self.lease,
            )
            claimed = await self.store.claim_runs(query, self.clock.time())
            for run in claimed:
                await self._take(tg, run)
            if len(claimed) < batch:
                return

    async def _take(self, tg: anyio.abc.TaskGroup, run: RunRecord) -> None:
        fence = Fence(run_id=run.run_id, owner_id=self.owner_id, epoch=run.lease_epoch)
        if run.cancel_requested:
            await cancel_run(self._host, RunExecution(self._host, run, fence, []))
            self._notify(run.run_id)
        elif run.recoveries > self.max_recoveries:
            await self._give_up(run, fence)
        else:
            self._hold(tg, run, fence, None)

    async def _give_up(self, run: RunRecord, fence: Fence) -> None:
        error = GraphflowError(
            f"run {run.run_id!r} of workflow {run.workflow!r} was recovered {run.recoveries} times"
            f" (max_recoveries={self.max_recoveries}): its process keeps dying. Fix the crash and"
            " start a new run"
        )
        await self.store.finish_run(
            fence,
            state="failed",
            output=None,
            error=error_info(error).model_dump_json(),
            at=self.clock.time(),
        )
        self._notify(run.run_id)

    async def _claim_loop(self) -> None:
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
            except StoreError:
                await anyio.sleep(self.poll_interval)

    async def _claim_jobs(self) -> None:
        tg = self._tg
        if tg is None or not self._open or self.store.url.startswith("memory"):
            return
        jobs = await self.store.claim_jobs(
            self.owner_id, self.registry.function_names, self._host.job_slots.free, self.lease
        )
        for job in jobs:
            tg.start_soon(execute_job, self._host, self.registry.get_function(job.function), job)

    async def _remote_functions(self) -> set[str]:
        if self.store.url.startswith("memory"):
            return set()
        return await self.store.served_functions(self.lease)

    async def _wait_job(self, job_id: str) -> JobRecord:
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

    def _on_notify(self, payload: str) -> None:
        """A PostgreSQL notification: a job finished, a run was cancelled, or there is work."""
        kind, _, key = payload.partition(":")
        if kind == "done":
            event = self._job_events.pop(key, None)
            if event is not None:
                event.set()
        elif kind == "cancel":
            held = self._held.get(key)
            if held is not None:
                held.execution.stop(cancel=True)
        elif kind == "end":
            self._notify(key)
        elif kind == "run":
            self._notify(key)
            self._wake_claimer.set()
        else:
            self._wake_claimer.set()

    async def _idle(self, next_wake: float | None) -> None:
        """Until: woken locally, the next parked run is due (engine clock), or a poll interval."""
        wake = self._wake_claimer
        with anyio.move_on_after(self.poll_interval):
            async with anyio.create_task_group() as tg:

                async def timer(deadline: float) -> None:
                    await self.clock.sleep_until(deadline)
                    tg.cancel_scope.cancel()

                if next_wake is not None:
                    tg.start_soon(timer, next_wake)
                await wake.wait()
                tg.cancel_scope.cancel()

    async def _lease_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            try:
                owned = await self.store.renew_leases(self.owner_id, self.lease)
            except StoreError:
                continue
            for run_id, held in list(self._held.items()):
                if run_id not in owned:
                    held.scope.cancel()  # taken over by another engine: commit nothing more
                elif owned[run_id]:
                    held.execution.stop(cancel=True)

    # --- inspecting -----------------------------------------------------------------------------

    async def _get_run(self, run_id: str) -> RunRecord:
        self._require_open()
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id=run_id)
        return run

    async def status(self, run_id: str) -> RunStatus:
        """The run's state, input, output or error and steps (live ones included).

        Raises:
            RunNotFoundError: no run has this id.
        """
        self._require_open()
        run, steps, attempts = await self.store.load_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id=run_id)
        status = run_status(run, steps, attempts)
        held = self._held.get(run_id)
        if held is None or not held.execution.live:
            return status
        live: dict[str, StepStatus] = {
            name: step_status(live_record(step)) for name, step in held.execution.live.items()
        }
        merged = [live.pop(step.name, step) for step in status.steps]
        seqs = {name: step[0].seq for name, step in held.execution.live.items()}
        merged.extend(sorted(live.values(), key=lambda s: seqs.get(s.name, 0)))
        return status.model_copy(update={"steps": merged})

    async def run_graph(self, run_id: str) -> nx.DiGraph[str]:
        """The run as a graph: each step a node (kind, function, state, attempts, timings).

        Graph runs show every declared node (unreached ones ``pending``) and their edges;
        imperative runs show the steps issued so far, linked to the steps they followed.

        Raises:
            RunNotFoundError: no run has this id.
        """
        status = await self.status(run_id)
        definition = self.registry.find_workflow(status.workflow)
        declared = definition.nx if isinstance(definition, GraphWorkflow) else None
        return build_run_graph(
            (step.model_dump() for step in status.steps), declared, name=status.workflow
        )

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[RunStatus]:
        """Runs (without steps), newest first."""
        self._require_open()
        runs = await self.store.list_runs(workflow=workflow, state=state, limit=limit)
        return [run_status(run) for run in runs]

    async def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Wait until the run is completed, failed or cancelled and return its status.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            RunNotFoundError: no run has this id.
        """
        await self._wait_ended(run_id, timeout)
        return await self.status(run_id)

    async def _wait_ended(self, run_id: str, timeout: float | None) -> RunRecord:
        with anyio.fail_after(timeout):
            # Local runs and (on PostgreSQL) notified ends wake the event; polling is the
            # fallback for runs other processes finish without telling us.
            delay = 0.005 if self.store.url.startswith(("sqlite", "memory")) else self.poll_interval
            while True:
                event = self._changed.setdefault(run_id, anyio.Event())
                run = await self._get_run(run_id)
                if run.state in TERMINAL_RUN_STATES:
                    return run
                with anyio.move_on_after(delay if run_id not in self._held else 3600):
                    await event.wait()
                delay = min(delay * 2, self.poll_interval)

    async def run(
        self,
        workflow: str | WorkflowDefinition,
        data: JSON = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Start a run, wait for it, and return its stored JSON output.

        Raises:
            RunFailed: the run ended failed or cancelled.
        """
        run_id = await self.start(workflow, data, run_id=run_id)
        run = await self._wait_ended(run_id, timeout)
        if run.state != "completed":
            raise RunFailed(
                run_id=run_id, workflow=run.workflow, state=run.state, error=load_error(run.error)
            )
        return json.loads(run.output or "null")

    # --- control --------------------------------------------------------------------------------

    async def resume(self, run_id: str, data: JSON = None, *, reason: str | None = None) -> None:
        """Resume a suspended run with ``data`` (what its ``wf.suspend`` returns).

        ``reason`` picks the suspend when several wait at once. The data is validated against the
        suspend's schema, stored as JSON Schema, so a client without the code validates it too.

        Raises:
            InvalidStateError: no suspend is waiting (not suspended, or already resumed).
            InputValidationError: the data fails the schema; the run stays suspended.
            RunNotFoundError: no run has this id.
        """
        run = await self._get_run(run_id)
        waiting = [
            step
            for step in await self.store.load_steps(run_id)
            if step.kind == "suspend" and step.state == "suspended"
        ]
        if reason is not None:
            waiting = [step for step in waiting if step.name == reason]
        if not waiting:
            raise InvalidStateError(
                run_id=run_id,
                state=run.state if reason is None else f"{run.state}, not waiting on {reason!r}",
                operation="resume",
                allowed="suspended",
            )
        if len(waiting) > 1:
            raise GraphflowError(
                f"run {run_id!r} waits on several suspends {[s.name for s in waiting]}:"
                " pass reason=... to choose one"
            )
        step = waiting[0]
        check_resume_data(run, step, data)
        output = json.dumps(data)
        if not await self.store.resume_step(run_id, step.name, output, self.clock.time()):
            raise InvalidStateError(
                run_id=run_id, state="resumed", operation="resume", allowed="suspended"
            )
        held = self._held.get(run_id)
        if held is not None:
            held.execution.delivered[step.name] = output
            held.execution.signal()
        self._wake_claimer.set()

    async def cancel(self, run_id: str) -> None:
        """Cancel a run and its child runs: nothing of it runs after this returns.

        A run held by another engine is flagged; that engine cancels it at its next lease renewal.

        Raises:
            InvalidStateError: the run already ended.
            RunNotFoundError: no run has this id.
        """
        self._require_open()
        held = self._held.get(run_id)
        if held is not None:
            held.execution.stop(cancel=True)
            await held.done.wait()
        run = await self.store.get_run(run_id)
        if held is not None and run is not None and run.state in TERMINAL_RUN_STATES:
            # The run ended while the cancel landed: cancelled, or it finished first.
            outcome = "cancelled" if run.state == "cancelled" else f"ended:{run.state}"
        else:  # unheld, or it parked before the cancel reached it
            outcome = await self.store.cancel_run(run_id, self.clock.time())
        if outcome == "missing":
            raise RunNotFoundError(run_id=run_id)
        if outcome.startswith("ended:"):
            raise InvalidStateError(
                run_id=run_id,
                state=outcome.removeprefix("ended:"),
                operation="cancel",
                allowed="pending, running, sleeping or suspended",
            )
        self._notify(run_id)
        for child in await self.store.list_runs(parent_run_id=run_id, limit=10_000):
            if child.state not in TERMINAL_RUN_STATES:
                try:
                    await self.cancel(child.run_id)
                except InvalidStateError:
                    pass

    def stats(self) -> EngineStats:
        """What this engine holds in memory now (parked runs hold nothing)."""
        return EngineStats(
            held_runs=len(self._held),
            executing_steps=self._host.in_flight,
            waiting_steps=sum(len(h.execution.waiting) for h in self._held.values()),
        )


def run(
    workflow: str | WorkflowDefinition,
    data: JSON = None,
    *,
    store: str | Store | None = None,
    **options: Any,
) -> JSON:
    """Run a workflow to completion from synchronous code and return its output.

    Opens an engine on ``store`` for the duration of the call (``options`` go to ``Engine``).

    Raises:
        RunFailed: the run ended failed or cancelled.
    """

    async def main() -> JSON:
        async with Engine(store=store, **options) as engine:
            return await engine.run(workflow, data)

    return anyio.run(main)
