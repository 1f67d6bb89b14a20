"""``FaultyStore``: the whole ``Store`` protocol, delegated to a real store, with faults injected.

One ``FaultyStore`` serves one engine incarnation (a process life). Every call first asks the
seed's ``FaultPlan`` what happens to it:

- ``fail_before`` / ``fail_after``: the store's transient error, before the real call or after
  it committed (the engine cannot tell which);
- ``crash_before`` / ``crash_after``: the process dies there: the incarnation's tasks are
  cancelled, every later call (and step function) of it raises ``ProcessDied``, nothing is
  released; a new engine on the same database recovers once the leases expire;
- ``disconnect``: the connection is lost (the call committed or not) and the database is out of
  reach for a while: every call fails;
- ``stall``: the call waits (virtual seconds) before it reaches the database;
- ``freeze``: the call blocks the event loop (as a SQLite lock wait did, or a VM pause): the
  virtual time jumps with no task running, so every engine of the process finds its leases
  expired at once;
- ``disk_full``: writes fail with the disk-full error for a while (reads still work).

The completed step records that reach the database are reported to the ledger (the oracle's
"committed" mark), whatever the engine hears back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, TypeVar

import anyio

from graphflow._types import RunState
from graphflow.store.base import (
    AttemptRecord,
    ClaimQuery,
    Fence,
    JobRecord,
    OwnerRecord,
    PruneBatch,
    PruneQuery,
    RunLimit,
    RunRecord,
    ScheduleRecord,
    SlotRequest,
    StepRecord,
    Store,
)

from .faults import FaultPlan, disk_full_error, lost_connection_error, transient_error
from .ledger import Ledger, ProcessDied
from .loop import freeze

__all__ = ("FaultyStore", "Incarnation", "Mutation", "Ordinals")

T = TypeVar("T")

Mutation = Literal["forget_completed", "drop_resume", "corrupt_output"]
"""A bug planted in the store, to show that the oracle catches it: replay forgets completed
steps (they run again), a resume is acknowledged but not stored (the run never ends), or a run's
output is stored wrong."""


class Ordinals:
    """Numbers the store calls of one seed, across every engine incarnation."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count


class Incarnation:
    """One life of an engine process: its number, its cancel scope, and whether it died."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.scope = anyio.CancelScope()
        self.dead = False


class FaultyStore:
    """A ``Store`` that delegates to ``inner`` through the seed's fault plan.

    ``owns_inner``: this incarnation opened ``inner`` and closes it (a SQLite file, where each
    process has its own connections); otherwise ``inner`` outlives it (``memory://``, which
    exists only while its one connection is open, plays a database that survives the process).
    """

    def __init__(
        self,
        inner: Store,
        *,
        plan: FaultPlan,
        ledger: Ledger,
        incarnation: Incarnation,
        ordinals: Ordinals,
        owns_inner: bool,
        mutation: Mutation | None = None,
    ) -> None:
        self.url = inner.url
        self._inner = inner
        self._plan = plan
        self._ledger = ledger
        self._incarnation = incarnation
        self._ordinals = ordinals
        self._owns_inner = owns_inner
        self._mutation = mutation

    # --- the faults ---------------------------------------------------------------------------

    def _alive(self) -> None:
        if self._incarnation.dead:
            raise ProcessDied

    def _die(self, why: str) -> ProcessDied:
        self._ledger.note(f"CRASH {why}")
        self._incarnation.dead = True
        self._ledger.dead.add(self._incarnation.number)
        self._incarnation.scope.cancel()
        return ProcessDied()

    async def _call(self, method: str, write: bool, op: Callable[[], Awaitable[T]]) -> T:
        self._alive()
        ordinal = self._ordinals.next()
        now = self._ledger.now
        outage = self._plan.outage(now, write)
        if outage == "offline":
            raise lost_connection_error(self.url)
        if outage == "disk_full":
            raise disk_full_error(self.url)
        fault = self._plan.decide(ordinal, method, now)
        if fault is None:
            return await op()
        self._ledger.note(f"fault #{ordinal} {fault} in {method}")
        match fault.kind:
            case "fail_before":
                raise transient_error(self.url)
            case "fail_after":
                await op()
                raise transient_error(self.url)
            case "crash_before":
                raise self._die(f"before {method} (#{ordinal})")
            case "crash_after":
                await op()
                raise self._die(f"after {method} (#{ordinal})")
            case "disconnect":
                self._plan.offline_until = now + fault.duration
                if fault.committed:
                    await op()
                raise lost_connection_error(self.url)
            case "stall":
                await anyio.sleep(fault.duration)
                self._alive()
                return await op()
            case "freeze":
                freeze(fault.duration)
                return await op()
            case "disk_full":
                if not write:
                    return await op()
                self._plan.disk_full_until = now + fault.duration
                raise disk_full_error(self.url)

    def _read(self, method: str, op: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return self._call(method, False, op)

    def _write(self, method: str, op: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return self._call(method, True, op)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def notifies(self) -> bool:
        return self._inner.notifies

    @property
    def shared(self) -> bool:
        return self._inner.shared

    async def open(self) -> None:
        self._alive()
        if self._owns_inner:
            await self._inner.open()

    async def aclose(self) -> None:
        # A dead process's connections close too (the OS closes them); nothing is written.
        if self._owns_inner:
            await self._inner.aclose()

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        def deliver(payload: str) -> None:
            if not self._incarnation.dead:
                on_notify(payload)

        self._alive()
        await self._inner.listen(deliver)

    # --- reads --------------------------------------------------------------------------------

    async def now(self) -> float:
        return await self._read("now", self._inner.now)

    async def get_owner(self, owner_id: str) -> OwnerRecord | None:
        return await self._read("get_owner", lambda: self._inner.get_owner(owner_id))

    async def owners_on_host(self, host: str) -> list[OwnerRecord]:
        return await self._read("owners_on_host", lambda: self._inner.owners_on_host(host))

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._read("get_run", lambda: self._inner.get_run(run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        state: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        return await self._read(
            "list_runs",
            lambda: self._inner.list_runs(
                workflow=workflow,
                state=state,
                parent_run_id=parent_run_id,
                limit=limit,
                before=before,
            ),
        )

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        steps = await self._read("load_steps", lambda: self._inner.load_steps(run_id))
        if self._mutation == "forget_completed":
            return [step for step in steps if step.state != "completed" or step.kind != "rpc"]
        return steps

    async def get_step(self, run_id: str, name: str) -> StepRecord | None:
        return await self._read("get_step", lambda: self._inner.get_step(run_id, name))

    async def waiting_steps(self, run_id: str) -> list[StepRecord]:
        return await self._read("waiting_steps", lambda: self._inner.waiting_steps(run_id))

    async def load_run(
        self, run_id: str
    ) -> tuple[RunRecord | None, list[StepRecord], list[AttemptRecord]]:
        return await self._read("load_run", lambda: self._inner.load_run(run_id))

    async def has_message(self, run_id: str, topic: str) -> bool:
        return await self._read("has_message", lambda: self._inner.has_message(run_id, topic))

    async def get_event(self, run_id: str, name: str) -> str | None:
        return await self._read("get_event", lambda: self._inner.get_event(run_id, name))

    async def get_graph(self, graph_hash: str) -> str | None:
        return await self._read("get_graph", lambda: self._inner.get_graph(graph_hash))

    async def next_wake_at(self, workflows: Sequence[str]) -> float | None:
        return await self._read("next_wake_at", lambda: self._inner.next_wake_at(workflows))

    async def served_functions(self, lease: float) -> set[str]:
        return await self._read("served_functions", lambda: self._inner.served_functions(lease))

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._read("get_job", lambda: self._inner.get_job(job_id))

    async def load_histories(
        self,
        *,
        states: Sequence[str],
        workflow: str | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        return await self._read(
            "load_histories",
            lambda: self._inner.load_histories(
                states=states, workflow=workflow, after=after, limit=limit
            ),
        )

    async def oldest_finished_at(self, workflow: str) -> float | None:
        return await self._read(
            "oldest_finished_at", lambda: self._inner.oldest_finished_at(workflow)
        )

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._read("list_schedules", self._inner.list_schedules)

    # --- writes -------------------------------------------------------------------------------

    async def register_owner(self, owner: OwnerRecord) -> None:
        await self._write("register_owner", lambda: self._inner.register_owner(owner))

    async def remove_owner(self, owner_id: str) -> None:
        await self._write("remove_owner", lambda: self._inner.remove_owner(owner_id))

    async def renew_leases(
        self, owner_id: str, lease: float, live: Mapping[str, str | None] | None = None
    ) -> dict[str, bool]:
        return await self._write(
            "renew_leases", lambda: self._inner.renew_leases(owner_id, lease, live)
        )

    async def create_run(
        self, run: RunRecord, limit: RunLimit | None = None
    ) -> tuple[RunRecord, bool]:
        return await self._write("create_run", lambda: self._inner.create_run(run, limit))

    async def record_step(
        self, fence: Fence, step: StepRecord, failed: AttemptRecord | None = None
    ) -> None:
        async def op() -> None:
            await self._inner.record_step(fence, step, failed)
            if step.state == "completed":
                self._ledger.step_committed(step.run_id, step.name)

        await self._write("record_step", op)

    async def end_run(
        self, fence: Fence, *, state: RunState, output: str | None, error: str | None, at: float
    ) -> None:
        if self._mutation == "corrupt_output" and output is not None:
            output = '{"value": -1, "steps": {}}'
        await self._write(
            "end_run",
            lambda: self._inner.end_run(fence, state=state, output=output, error=error, at=at),
        )

    async def park_run(
        self,
        fence: Fence,
        *,
        state: RunState,
        at: float,
        wake_at: float | None = None,
        suspend_reason: str | None = None,
        resumable: Sequence[str] = (),
        receiving: Sequence[str] = (),
    ) -> None:
        await self._write(
            "park_run",
            lambda: self._inner.park_run(
                fence,
                state=state,
                at=at,
                wake_at=wake_at,
                suspend_reason=suspend_reason,
                resumable=resumable,
                receiving=receiving,
            ),
        )

    async def send_message(self, run_id: str, topic: str, data: str, at: float) -> str:
        return await self._write(
            "send_message", lambda: self._inner.send_message(run_id, topic, data, at)
        )

    async def take_message(self, fence: Fence, step: StepRecord, topic: str) -> str | None:
        async def op() -> str | None:
            taken = await self._inner.take_message(fence, step, topic)
            if taken is not None:
                self._ledger.step_committed(step.run_id, step.name)
            return taken

        return await self._write("take_message", op)

    async def set_event(self, fence: Fence, step: StepRecord, name: str, value: str) -> None:
        async def op() -> None:
            await self._inner.set_event(fence, step, name, value)
            self._ledger.step_committed(step.run_id, step.name)

        await self._write("set_event", op)

    async def save_graph(self, graph_hash: str, structure: str, at: float) -> None:
        await self._write("save_graph", lambda: self._inner.save_graph(graph_hash, structure, at))

    async def resume_step(self, run_id: str, name: str, output: str, at: float) -> bool:
        if self._mutation == "drop_resume":
            return True
        return await self._write(
            "resume_step", lambda: self._inner.resume_step(run_id, name, output, at)
        )

    async def cancel_run(self, run_id: str, at: float) -> str:
        return await self._write("cancel_run", lambda: self._inner.cancel_run(run_id, at))

    async def cancel_steps(self, run_id: str, at: float) -> None:
        await self._write("cancel_steps", lambda: self._inner.cancel_steps(run_id, at))

    async def release_run(self, fence: Fence) -> None:
        await self._write("release_run", lambda: self._inner.release_run(fence))

    async def set_trace_context(self, fence: Fence, trace_context: str) -> None:
        await self._write(
            "set_trace_context", lambda: self._inner.set_trace_context(fence, trace_context)
        )

    async def enqueue_job(self, job: JobRecord) -> None:
        await self._write("enqueue_job", lambda: self._inner.enqueue_job(job))

    async def claim_jobs(
        self, owner_id: str, functions: Sequence[str], limit: int, lease: float
    ) -> list[JobRecord]:
        return await self._write(
            "claim_jobs", lambda: self._inner.claim_jobs(owner_id, functions, limit, lease)
        )

    async def finish_job(
        self, job: JobRecord, *, output: str | None, error: str | None, retryable: bool, at: float
    ) -> bool:
        return await self._write(
            "finish_job",
            lambda: self._inner.finish_job(
                job, output=output, error=error, retryable=retryable, at=at
            ),
        )

    async def claim_runs(self, query: ClaimQuery, now: float) -> list[RunRecord]:
        async def op() -> list[RunRecord]:
            claimed = await self._inner.claim_runs(query, now)
            for run in claimed:
                self._ledger.note(f"run {run.run_id[:12]} claimed, epoch {run.lease_epoch}")
            return claimed

        return await self._write("claim_runs", op)

    async def fork_run(self, run: RunRecord, source_run_id: str, steps: Sequence[str]) -> None:
        await self._write("fork_run", lambda: self._inner.fork_run(run, source_run_id, steps))

    async def prune_runs(self, query: PruneQuery) -> PruneBatch:
        return await self._write("prune_runs", lambda: self._inner.prune_runs(query))

    async def acquire_slot(self, request: SlotRequest) -> float | None:
        return await self._write("acquire_slot", lambda: self._inner.acquire_slot(request))

    async def release_slot(self, scope: str, holder: str) -> None:
        await self._write("release_slot", lambda: self._inner.release_slot(scope, holder))

    async def save_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        return await self._write("save_schedule", lambda: self._inner.save_schedule(schedule))

    async def remove_schedule(self, name: str) -> bool:
        return await self._write("remove_schedule", lambda: self._inner.remove_schedule(name))

    async def fire_schedule(
        self, name: str, *, last_tick: float, through: float, runs: Sequence[RunRecord]
    ) -> bool:
        return await self._write(
            "fire_schedule",
            lambda: self._inner.fire_schedule(
                name, last_tick=last_tick, through=through, runs=runs
            ),
        )


def _conforms(store: FaultyStore) -> Store:
    return store  # mypy checks here that FaultyStore implements the whole protocol
