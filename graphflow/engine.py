"""The ``Engine``: the public facade, its lifecycle and the client API.

``start``, ``run``, ``watch``, ``wait``, ``status``, ``list_runs``, ``resume`` and ``cancel``
(``check``, ``fork`` and ``prune`` come from ``RepairOperations``, in ``_repair``). An
engine opened with ``async with`` opens its store, listens for its notifications, and (unless
``worker=False``) opens a ``Worker`` that executes runs: it recovers abandoned runs, wakes sleepers
and takes runs started by clients. What the engine does not own lives below it: executing
(``worker``), storing a new run (``_start``), waiting for a run to change (``_watch``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._repair import RepairOperations
from ._schedules import Schedules
from ._start import RunStarter
from ._types import JSON, TERMINAL
from ._watch import RunEvents, changes, terminal_status, time_limit, until_terminal
from .durations import Duration, to_seconds
from .errors import (
    AmbiguousResumeError,
    EngineConfigError,
    EngineStateError,
    EventLoopError,
    InvalidStateError,
    RunFailed,
    RunNotFoundError,
)
from .functions import DEFAULT_REGISTRY, Registry, WorkflowDefinition
from .graph.run_graph import build_run_graph, load_structure
from .runtime import logs, tracing
from .runtime.clock import Clock, SystemClock
from .runtime.resume import check_message, check_resume_data
from .runtime.schedules import ScheduleInfo
from .runtime.status import (
    RunList,
    RunStatus,
    find_owner,
    load_error,
    parse_cursor,
    run_cursor,
    run_status,
)
from .store import open_store
from .store.base import LISTEN_BACK, RunRecord, StepRecord, Store
from .worker import EngineStats, Worker

if TYPE_CHECKING:
    import networkx as nx

__all__ = ("Engine", "EngineStats", "run")


@dataclass(frozen=True, slots=True)
class EventLook:
    """What ``get_event`` sees of a run at one look: its state and the event's value (JSON)."""

    state: str
    workflow: str
    value: str | None


class Engine(RepairOperations):
    """Runs workflows durably on a store.

    Args:
        store: a URL (``sqlite:///x.db``, ``postgresql://...``) or a ``Store``; ``None``: default.
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
        for option, value in (("max_runs", max_runs), ("max_jobs", max_jobs)):
            if value < 1:
                raise EngineConfigError(option=option, value=value, expected="at least 1")
        self.store: Store = open_store(store) if store is None or isinstance(store, str) else store
        self.registry = registry or DEFAULT_REGISTRY
        self.worker = worker
        self.max_runs = max_runs
        self.lease = to_seconds(lease or os.environ.get("GRAPHFLOW_LEASE") or 15.0)
        self.max_recoveries = max_recoveries
        self.clock: Clock = clock or SystemClock()
        self.poll_interval = to_seconds(poll_interval)
        self.owner_id = uuid.uuid4().hex
        self._events = RunEvents()
        # A notifying store (PostgreSQL NOTIFY) tells of run ends and wake-ups elsewhere.
        self._events.notifies = self.store.notifies
        self._starter = RunStarter(
            store=self.store, registry=self.registry, clock=self.clock, lease=self.lease
        )
        self._worker: Worker | None = None
        if worker:
            self._worker = Worker(
                store=self.store,
                registry=self.registry,
                clock=self.clock,
                starter=self._starter,
                events=self._events,
                owner_id=self.owner_id,
                max_runs=max_runs,
                max_jobs=max_jobs,
                lease=self.lease,
                max_recoveries=max_recoveries,
                poll_interval=self.poll_interval,
            )
        wake = self._worker.schedules.wake if self._worker is not None else None
        self._schedules = Schedules(self.store, self._starter, self.clock, wake)
        self._tg: anyio.abc.TaskGroup | None = None
        self._open = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the engine is between ``__aenter__`` and ``__aexit__``."""
        return self._open

    async def __aenter__(self) -> Engine:
        """Open the store, listen for its notifications and open the worker (which recovers).

        Raises:
            StoreError: the store cannot be opened (nothing is left running).
            SchemaVersionError: the database's schema is another version.
        """
        if self._open:
            raise EngineStateError(operation="open the engine", is_open=True)
        try:
            await self.store.open()
        except BaseException:
            await self.store.aclose()
            raise
        # Tracing is decided here, once: without a tracer provider set by now, a run costs nothing.
        self._starter.tracer = tracing.tracer()
        if self._worker is not None:
            self._worker.tracer = self._starter.tracer
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._open = True
        try:
            if self._worker is not None:
                await self._worker.open()
            self._tg.start_soon(self.store.listen, self._on_notify)
        except BaseException:
            await self.aclose(grace=0)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop claiming, let in-flight steps persist (``grace`` s), release runs: Worker.aclose."""
        if not self._open or self._tg is None:
            return
        self._open = False
        try:
            if self._worker is not None:
                await self._worker.aclose(grace)
        finally:
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(None, None, None)
            finally:
                self._tg = None
                with anyio.CancelScope(shield=True):
                    await self.store.aclose()
                self._events.close()

    def _require_open(self) -> None:
        if self._worker is not None and self._worker.failure is not None:
            raise self._worker.failure  # it stopped on its own (its store file was lost)
        if self._tg is None:
            raise EngineStateError(operation="start or inspect runs", is_open=False)

    def _executing_steps(self, run_id: str) -> list[StepRecord]:
        if self._worker is None:
            return []
        return [step.live_record() for step in self._worker.live_steps(run_id)]

    def _runs_waiting(self) -> None:
        if self._worker is not None:
            self._worker.claim_soon()

    def _on_notify(self, payload: str) -> None:
        """A store notification: a run ended or became runnable, a job finished, work is queued."""
        kind, _, key = payload.partition(":")
        if kind in ("end", "run"):
            self._events.run_changed(key)
        elif kind == "event":
            self._events.step_changed(key)
        elif kind == "listen":  # LISTEN_LOST: poll until LISTEN_BACK
            self._events.listening(payload == LISTEN_BACK and self.store.notifies)
        if self._worker is not None:
            self._worker.on_notify(kind, key)

    # --- starting -------------------------------------------------------------------------------

    async def start(
        self,
        workflow: str | WorkflowDefinition,
        data: JSON = None,
        *,
        run_id: str | None = None,
        priority: int = 0,
        dedup_key: str | None = None,
    ) -> str:
        """Start a run and return its id once it is stored.

        With an explicit ``run_id`` this is idempotent: the same id and input return the existing
        run; with ``dedup_key``, the workflow's unfinished run that has the key. A worker engine
        executes the run when it has a free slot; otherwise (and on a client) it waits for a
        worker, ``pending`` (``queued`` under a concurrency limit; higher ``priority`` first).

        Raises:
            UnknownWorkflowError: no workflow has that name here.
            InputValidationError: ``data`` does not match the workflow's input type (nothing is
                written).
            RunConflictError: ``run_id`` exists with another workflow or input.
        """
        self._require_open()
        options: dict[str, Any] = {"priority": priority, "dedup_key": dedup_key}
        if self._worker is not None:
            return await self._worker.start_run(workflow, data, run_id, **options)
        return (await self._starter.create(workflow, data, run_id=run_id, **options)).record.run_id

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
        status = run_status(run, steps, attempts, owner=await find_owner(self.store, run))
        if self._worker is None:
            return status
        return self._worker.with_live_steps(status, run.lease_expires_at)

    async def run_graph(self, run_id: str) -> nx.DiGraph[str]:
        """The run as a graph: each step a node (kind, function, state, attempts, timings).

        Graph runs show every declared node (unreached ones ``pending``) and their edges;
        imperative runs show the steps issued so far, linked to the steps they followed.

        Raises:
            RunNotFoundError: no run has this id.
        """
        status = await self.status(run_id)
        return build_run_graph(
            (step.model_dump() for step in status.steps),
            await self._declared_graph(run_id, status.workflow),
            name=status.workflow,
        )

    async def _declared_graph(self, run_id: str, workflow: str) -> nx.DiGraph[str] | None:
        """The graph a graph run was started under: the code's if it is the same, else stored."""
        run = await self._get_run(run_id)
        if run.graph_hash is None:
            return None
        definition = self.registry.find_workflow(workflow)
        if definition is not None and definition.graph_hash == run.graph_hash:
            return definition.declared_graph
        stored = await self.store.get_graph(run.graph_hash)
        return None if stored is None else load_structure(stored)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunList:
        """Runs (without steps), newest first, at most ``limit``; a list with ``next_cursor``.

        Pass ``cursor=runs.next_cursor`` for the next page: pages never skip or repeat a run,
        whatever is started meanwhile (new runs come before the first page).

        Raises:
            InputValidationError: ``cursor`` is not a ``next_cursor``.
        """
        self._require_open()
        before = None if cursor is None else parse_cursor(cursor)
        runs = await self.store.list_runs(
            workflow=workflow, state=state, limit=limit + 1, before=before
        )
        more = len(runs) > limit
        runs = runs[:limit]
        next_cursor = run_cursor(runs[-1]) if more and runs else None
        return RunList([run_status(run) for run in runs], next_cursor)

    async def watch(self, run_id: str, *, steps: bool = True) -> AsyncGenerator[RunStatus, None]:
        """Yield the run's status now and after every change, until it is terminal.

        A change is a step issued, started, retried or finished, or the run's own state moving
        (started, sleeping, suspended, resumed, ended); ``steps=False`` wakes on the latter only.
        The terminal status is yielded last; a consumer may stop early. Runs this engine executes
        report every change as it happens; PostgreSQL notifies run state changes made by other
        processes; the rest is polled, every ``poll_interval`` at most, so changes quicker than
        that may merge into one status.

        Raises:
            RunNotFoundError: no run has this id.
        """
        async for status in changes(
            run_id, self.status, self._events, steps=steps, poll_interval=self.poll_interval
        ):
            yield status

    async def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Wait until the run is completed, failed or cancelled and return its status.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            RunNotFoundError: no run has this id.
        """
        with time_limit(timeout):
            return await terminal_status(
                run_id, self.status, self._get_run, self._events, poll_interval=self.poll_interval
            )

    async def _until_terminal(self, run_id: str, timeout: float | None) -> RunRecord:
        # Run state changes only (no per-step wake-ups): a long run costs nothing per step.
        with time_limit(timeout):
            return await until_terminal(
                run_id, self._get_run, self._events, poll_interval=self.poll_interval
            )

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
        run = await self._until_terminal(run_id, timeout)
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
        steps = await self.store.waiting_steps(run_id)
        waiting = [s for s in steps if s.kind == "suspend"]
        if reason is not None:
            waiting = [step for step in waiting if step.name == reason]
        if not waiting:
            state = run.state if reason is None else f"{run.state}, not waiting on {reason!r}"
            receiving = [s.name for s in steps if s.kind == "receive"]
            if receiving and reason is None:
                state = f"{run.state} on {receiving[0]!r}, which waits for a message: send one"
            raise InvalidStateError(
                run_id=run_id, state=state, operation="resume", allowed="suspended on wf.suspend"
            )
        if len(waiting) > 1:
            raise AmbiguousResumeError(run_id=run_id, suspends=[s.name for s in waiting])
        step = waiting[0]
        check_resume_data(run, step, data)
        output = json.dumps(data)
        if not await self.store.resume_step(run_id, step.name, output, self.clock.time()):
            raise InvalidStateError(
                run_id=run_id, state="resumed", operation="resume", allowed="suspended"
            )
        logs.run_state(run_id, run.workflow, "running", why=f"resumed at {step.name!r}")
        if self._worker is not None:
            self._worker.deliver(run_id, step.name, output)
        self._events.run_changed(run_id)

    # --- messages and events ------------------------------------------------------------------

    async def send(self, run_id: str, topic: str, data: JSON = None) -> None:
        """Send ``data`` (JSON) to the run on ``topic``: its next ``wf.receive(topic)`` gets it.

        Messages are stored and kept in the order sent until received, each by one receive. When
        a receive of ``topic`` waits with a ``schema``, the data is validated against it first
        (stored as JSON Schema, so a client without the code validates too).

        Raises:
            InvalidStateError: the run already ended (nothing would ever receive the message).
            InputValidationError: the waiting receive's schema refuses the data (nothing stored).
            RunNotFoundError: no run has this id.
        """
        run = await self._get_run(run_id)
        if run.state not in TERMINAL:
            check_message(run, await self.store.waiting_steps(run_id), topic, data)
        outcome = await self.store.send_message(run_id, topic, json.dumps(data), self.clock.time())
        if outcome == "missing":
            raise RunNotFoundError(run_id=run_id)
        if outcome.startswith("ended:"):
            raise InvalidStateError(
                run_id=run_id,
                state=outcome.removeprefix("ended:"),
                operation="message",
                allowed="pending, running, sleeping or suspended (a finished run receives nothing)",
            )
        if self._worker is not None:
            self._worker.message_sent(run_id, topic)
        self._events.run_changed(run_id)

    async def get_event(self, run_id: str, key: str, timeout: float | None = None) -> JSON:
        """The latest value the run published as event ``key`` (``wf.set_event``).

        Until the key is set, waits up to ``timeout`` seconds (``None``: until it is set or the
        run ends; ``0``: not at all) and returns ``None`` if it is still unset then.

        Raises:
            RunNotFoundError: no run has this id.
        """
        self._require_open()

        async def look(run_id: str) -> EventLook:
            run = await self._get_run(run_id)
            event = await self.store.get_event(run_id, key)
            return EventLook(state=run.state, workflow=run.workflow, value=event)

        with anyio.move_on_after(timeout):
            async for found in changes(
                run_id, look, self._events, steps=True, poll_interval=self.poll_interval
            ):
                if found.value is not None:
                    return json.loads(found.value)
        if timeout is None or timeout <= 0:
            value = await self.store.get_event(run_id, key)  # set as the run ended, or at once
            return None if value is None else json.loads(value)
        return None

    async def cancel(self, run_id: str) -> None:
        """Cancel a run and its child runs: nothing of it runs after this returns.

        A run held by another engine is flagged; that engine cancels it at its next lease renewal.

        Raises:
            InvalidStateError: the run already ended.
            RunNotFoundError: no run has this id.
        """
        self._require_open()
        held = self._worker is not None and await self._worker.cancel_held(run_id)
        run = await self.store.get_run(run_id)
        if held and run is not None and run.state in TERMINAL:
            # The run ended while the cancel landed: cancelled, or it finished first.
            outcome = "cancelled" if run.state == "cancelled" else f"ended:{run.state}"
            stored_here = False  # the run's own execution stored (and logged) its end
        else:  # unheld, or it parked before the cancel reached it
            outcome = await self.store.cancel_run(run_id, self.clock.time())
            stored_here = True
        if outcome == "missing" or run is None:
            raise RunNotFoundError(run_id=run_id)
        if outcome.startswith("ended:"):
            raise InvalidStateError(
                run_id=run_id,
                state=outcome.removeprefix("ended:"),
                operation="cancel",
                allowed="pending, running, sleeping or suspended",
            )
        if outcome == "cancelled" and stored_here:
            logs.run_state(run_id, run.workflow, "cancelled")
        elif outcome == "requested":
            logs.run_state(run_id, run.workflow, run.state, why="cancel requested from its owner")
        self._events.run_changed(run_id)
        for child in await self.store.list_runs(parent_run_id=run_id, limit=10_000):
            if child.state not in TERMINAL:
                try:
                    await self.cancel(child.run_id)
                except InvalidStateError:
                    pass

    # --- schedules ------------------------------------------------------------------------------

    async def add_schedule(
        self, name: str, workflow: str | WorkflowDefinition, cron: str, *, input: JSON = None,
        timezone: str = "UTC", catch_up: str = "latest",
    ) -> ScheduleInfo:  # fmt: skip
        """Store a cron schedule: one run of ``workflow`` per tick, across every worker.

        Tick run ids are ``"{name}@{scheduled_at}"``, inputs ``{"scheduled_at": ...} | input``;
        a taken name is replaced (last tick kept). See ``graphflow._schedules.Schedules.add``.
        """
        self._require_open()
        return await self._schedules.add(name, workflow, cron, input, timezone, catch_up)

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule added with ``add_schedule`` (``ScheduleNotFoundError`` if none)."""
        self._require_open()
        await self._schedules.remove(name)

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule by name: stored ones and those declared in the code loaded here."""
        self._require_open()
        return await self._schedules.list()

    def stats(self) -> EngineStats:
        """What this engine holds in memory now (parked runs hold nothing; a client nothing)."""
        if self._worker is None:
            return EngineStats(held_runs=0, executing_steps=0, waiting_steps=0)
        return self._worker.stats()


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
        EventLoopError: called inside a running event loop (Jupyter, an async handler): there,
            ``await engine.run(...)`` instead.
    """
    if _in_event_loop():
        raise EventLoopError(call="gf.run()")

    async def main() -> JSON:
        async with Engine(store=store, **options) as engine:
            return await engine.run(workflow, data)

    return anyio.run(main)


def _in_event_loop() -> bool:
    """Whether an asyncio event loop runs in this thread now (as in Jupyter, or async code)."""
    try:
        return asyncio.get_running_loop() is not None
    except RuntimeError:
        return False
