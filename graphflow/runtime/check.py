"""``engine.check``: replay stored runs against the code now loaded, executing nothing.

An imperative run is replayed by its own workflow function on a *dry* execution: recorded steps
return their stored results and pass the usual non-determinism checks; the replay stops where a
step would execute or a wait would begin (every branch of a gather runs to such a point). A run
diverges when a recorded step is called differently, or when recorded steps are left that the
code no longer issues (a renamed or removed step). A graph run diverges when its stored graph hash
differs from the loaded graph's. Histories are read a page at a time; no lease is taken and
nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict

from .._types import JSON, RUN_STATES, TERMINAL
from ..errors import DuplicateStepError, GraphflowError, NonDeterminismError
from ..functions import Registry
from ..graph.spec import GraphWorkflow
from ..store.base import Fence, JobRecord, RunRecord, StepRecord, Store
from .clock import Clock
from .execution import RunExecution
from .fork import step_node
from .gates import Gates
from .host import Slots
from .status import RunStatus

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer
from .workflow import ImperativeWorkflow, Workflow, running_workflow

__all__ = ("UNFINISHED_STATES", "CheckResult", "Checker")

UNFINISHED_STATES: tuple[str, ...] = tuple(state for state in RUN_STATES if state not in TERMINAL)
"""The run states ``check`` looks at by default: runs that will replay again."""

_PAGE = 500
"""Runs read per query."""

_QUIET_TURNS = 5
"""Loop turns without progress after which a dry replay has reached every stop point."""


class CheckResult(BaseModel):
    """How one stored run replays against the code now loaded.

    ``ok`` is False when it diverges: ``step`` names the recorded step, ``recorded`` says what
    was recorded there and ``now`` what the code does instead.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    ok: bool
    step: str | None = None
    recorded: str | None = None
    now: str | None = None

    def __str__(self) -> str:
        where = f"run {self.run_id} of workflow {self.workflow!r}"
        if self.ok:
            return f"{where}: ok"
        at = f" at step {self.step!r}" if self.step is not None else ""
        return f"{where} diverges{at}: recorded {self.recorded}; the code now {self.now}"


def _describe(kind: str, function: str | None) -> str:
    return f"{kind} step" + (f" of {function!r}" if function else "")


class _DryHost:
    """The ``RunHost`` of dry replays: it reads, and never starts, waits for or runs anything."""

    def __init__(self, store: Store, registry: Registry, clock: Clock, lease: float) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.owner_id = ""
        self.job_slots = Slots(1)
        self.threads = Executor()  # submits nothing: a dry replay runs no function
        self.closing = False
        self.in_flight = 0
        self.tracer: Tracer | None = None  # a dry replay executes nothing worth a span
        # Steps are built with their gates; a dry replay stops before any would be entered.
        self.gates = Gates(store=store, clock=clock, owner_id="", lease=lease, poll=1.0)
        self._lease = lease
        self._served: set[str] | None = None

    async def start_run(
        self, workflow: str, data: JSON, run_id: str, parent: tuple[str, str]
    ) -> str:
        """Never called: a dry replay stops before a child run would start."""
        raise AssertionError("a dry replay starts no child run")

    async def wait_run(self, run_id: str) -> RunStatus:
        """Never called: a dry replay stops before a child run would start."""
        raise AssertionError("a dry replay waits for no child run")

    async def remote_functions(self) -> set[str]:
        """Functions that live workers serve: an RPC step to one of them replays as one."""
        if self._served is None:
            self._served = await self.store.served_functions(self._lease)
        return self._served

    async def wait_job(self, job_id: str) -> JobRecord:
        """Never called: a dry replay stops before a job would be queued."""
        raise AssertionError("a dry replay queues no job")

    def step_changed(self, run_id: str) -> None:
        """Nobody watches a dry replay."""

    async def renewal(self) -> None:
        """Never called: a dry replay holds no lease and stops before any attempt."""
        raise AssertionError("a dry replay renews no lease")


class _DryExecution(RunExecution):
    """A run replayed from its history that blocks where it would act, remembering where."""

    dry = True

    def __init__(self, host: _DryHost, run: RunRecord, history: list[StepRecord]) -> None:
        fence = Fence(run_id=run.run_id, owner_id="", epoch=-1)  # nothing may be written
        super().__init__(host, run, fence, history)
        self.stops: list[tuple[str, str, str | None, tuple[str, ...]]] = []

    async def stop_point(
        self, name: str, kind: str, function: str | None, parents: tuple[str, ...]
    ) -> None:
        """Remember the stop and block until the check is over."""
        self.stops.append((name, kind, function, parents))
        self.signal()
        await anyio.sleep_forever()


class _Outcome:
    """How a dry replay ended: returned, raised, or stopped (neither)."""

    def __init__(self) -> None:
        self.ended = anyio.Event()
        self.error: BaseException | None = None
        self.returned = False


async def _drive(
    definition: ImperativeWorkflow, execution: _DryExecution, data: Any, outcome: _Outcome
) -> None:
    try:
        with running_workflow(Workflow(execution)) as handle:
            await definition.fn(handle, data)
        outcome.returned = True
    except Exception as exc:
        outcome.error = exc
    finally:
        outcome.ended.set()


async def _settle(execution: _DryExecution, outcome: _Outcome) -> None:
    """Return once the replay ended or every branch sits at a stop point (no progress).

    A replay does no I/O (recorded results return at once; the served functions are read before
    any replay), so a few loop turns without progress mean every branch has stopped. Workflow
    code that awaits something else between steps would be taken as stopped there.
    """
    quiet = 0
    progress = execution.progress
    while not outcome.ended.is_set() and quiet < _QUIET_TURNS:
        await anyio.lowlevel.checkpoint()
        if execution.progress == progress:
            quiet += 1
        else:
            progress, quiet = execution.progress, 0


class Checker:
    """Checks stored runs against the workflows of ``registry``."""

    def __init__(self, store: Store, registry: Registry, clock: Clock, lease: float) -> None:
        self.store = store
        self.registry = registry
        self.host = _DryHost(store, registry, clock, lease)

    async def run(self, workflow: str | None, states: Sequence[str]) -> list[CheckResult]:
        """Every stored run of ``workflow`` (all if ``None``) in ``states``, checked."""
        results: list[CheckResult] = []
        after: str | None = None
        # Read once, before any replay: a store read inside one could look like a stop.
        await self.host.remote_functions()
        while True:
            page = await self.store.load_histories(
                states=states, workflow=workflow, after=after, limit=_PAGE
            )
            for run, steps in page:
                results.append(await self.check(run, steps))
            if len(page) < _PAGE:
                return results
            after = page[-1][0].run_id

    async def check(self, run: RunRecord, steps: list[StepRecord]) -> CheckResult:
        """How one run replays against the loaded code."""
        definition = self.registry.find_workflow(run.workflow)
        if definition is None:
            return _diverged(
                run, None, f"a run of workflow {run.workflow!r}", "registers no such workflow"
            )
        if (definition.graph_hash is None) != (run.graph_hash is None):
            kinds = {True: "a graph workflow", False: "an imperative workflow"}
            return _diverged(
                run,
                None,
                f"a run of {kinds[run.graph_hash is not None]}",
                f"declares {kinds[definition.graph_hash is not None]}",
            )
        if isinstance(definition, GraphWorkflow):
            return _check_graph(run, steps, definition)
        if not isinstance(definition, ImperativeWorkflow):
            return _diverged(run, None, "a run", f"cannot replay workflow {definition.name!r}")
        return await self._check_imperative(run, steps, definition)

    async def _check_imperative(
        self, run: RunRecord, steps: list[StepRecord], definition: ImperativeWorkflow
    ) -> CheckResult:
        try:
            data = definition.validate_input(json.loads(run.input), run_id=run.run_id)
        except GraphflowError as exc:
            return _diverged(run, "(input)", f"input {run.input}", f"rejects it: {exc}")
        execution = _DryExecution(self.host, run, steps)
        outcome = _Outcome()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drive, definition, execution, data, outcome)
            await _settle(execution, outcome)
            tg.cancel_scope.cancel()
        return _verdict(run, steps, execution, outcome)


def _verdict(
    run: RunRecord, steps: list[StepRecord], execution: _DryExecution, outcome: _Outcome
) -> CheckResult:
    fatal = execution.fatal
    if isinstance(fatal, NonDeterminismError):
        return _diverged(run, fatal.step, fatal.recorded, f"calls {fatal.new}")
    if isinstance(fatal, DuplicateStepError):
        return _diverged(run, fatal.step, "one step of that name", "issues two steps of that name")
    left = [step for step in steps if not execution.replay.accounted(step.name)]
    if left:
        first = min(left, key=lambda step: step.seq)
        return _diverged(
            run,
            first.name,
            _describe(first.kind, first.function),
            _instead(first, execution, outcome),
        )
    if run.state == "completed" and outcome.error is not None:
        return _diverged(run, None, "a completed run", f"fails: {_error(outcome.error)}")
    return CheckResult(run_id=run.run_id, workflow=run.workflow, ok=True)


def _instead(missing: StepRecord, execution: _DryExecution, outcome: _Outcome) -> str:
    """What the code does where the recorded step ``missing`` was."""
    new = [stop for stop in execution.stops if execution.replay.recorded(stop[0]) is None]
    if new:
        same_place = [stop for stop in new if stop[3] == missing.parents]
        name, kind, function, _ = (same_place or new)[0]
        return f"issues step {name!r} ({_describe(kind, function)}) in its place"
    if outcome.error is not None:
        return f"fails before issuing it: {_error(outcome.error)}"
    if outcome.returned:
        return "ends the run without issuing it"
    return "no longer issues it"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_graph(run: RunRecord, steps: list[StepRecord], definition: GraphWorkflow) -> CheckResult:
    if run.graph_hash == definition.graph_hash:
        return CheckResult(run_id=run.run_id, workflow=run.workflow, ok=True)
    nodes = definition.plan.nodes
    for step in steps:
        node_id = step_node(step.name)
        if step.kind != "node" or (node_id != step.name and node_id in nodes):
            continue  # for_each items and loop passes are checked through their node
        recorded = _describe("node", step.function)
        if node_id not in nodes:
            return _diverged(run, step.name, recorded, "declares no such node")
        if nodes[node_id].function != step.function:
            now = _describe("node", nodes[node_id].function)
            return _diverged(run, step.name, recorded, f"declares it as {now}")
    assert run.graph_hash is not None
    return _diverged(
        run,
        "(graph)",
        f"graph {run.graph_hash[:12]}",
        f"declares graph {definition.graph_hash[:12]}",
    )


def _diverged(run: RunRecord, step: str | None, recorded: str, now: str) -> CheckResult:
    return CheckResult(
        run_id=run.run_id, workflow=run.workflow, ok=False, step=step, recorded=recorded, now=now
    )
