"""Run a graph workflow: the pure ``Frontier`` decides, an anyio task group executes.

Every ready node starts at once (RPC concurrency is bounded by the engine's job slots); each node's
result and selected branch are stored in one write before its children start. A replay restores
the frontier from the stored nodes, so no completed node runs again. A bounded loop's passes
record their nodes as ``node#2``, ``node#3``...; outputs (and so refs) hold the latest pass.

A ``for_each`` node runs its items as steps ``node[i]``, then stores the node itself: the ordered
list of results, or the first failing item's error. Failures of nodes travel as ``StepFailed``
into the frontier; anything else (the engine closing, a lost lease, a bug) cancels the run's task
group and is re-raised bare, never inside an exception group.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.abc

from .._json import dump_any, load_any
from .._types import JSON, StepState
from ..errors import (
    BranchError,
    ErrorInfo,
    GraphflowError,
    LoopLimitError,
    NonDeterminismError,
    StepFailed,
)
from ..functions import StepOptions
from ..graph.loops import pass_name, split_pass_name
from ..graph.spec import GraphWorkflow
from ..refs import SKIPPED, RefResolutionError, Scope
from ..store.base import StepRecord
from .attempts import StepCall, run_step
from .execution import RunExecution
from .failures import Closing, error_info
from .frontier import Frontier, RestoreError
from .steps import rpc_step

if TYPE_CHECKING:
    from ..graph.plan import Plan

__all__ = ("drive_graph",)

_NO_RETRY = StepOptions(retries=0)


class _GraphRun:
    """One execution of a graph run: outputs so far, the frontier, and failures."""

    def __init__(self, definition: GraphWorkflow, execution: RunExecution, data: JSON) -> None:
        self.plan: Plan = definition.plan
        self.execution = execution
        self.outputs: dict[str, JSON] = {}
        self.scope = Scope(
            outputs=self.outputs,
            workflow_input=data,
            feedback=frozenset(node for loop in self.plan.loops for node in loop.body),
        )
        self.frontier = Frontier(self.plan, run_id=execution.run_id)
        self.errors: dict[str, JSON] = {}
        self.branches: dict[str, str | None] = {}
        self.inputs: dict[str, JSON] = {}
        self.first_failure: GraphflowError | None = None
        self.abort: BaseException | None = None
        self.changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None

    # --- replay ---------------------------------------------------------------------------------

    def restore(self) -> None:
        """Seed the frontier, outputs and failures from the stored nodes of this run.

        Raises:
            NonDeterminismError: the stored nodes could not have come from this graph.
        """
        if self.plan.loops:
            self._restore_passes()
            return
        nodes = sorted(
            (
                step
                for step in self.execution.replay.recorded_steps()
                if step.kind == "node" and step.name in self.plan.nodes
            ),
            key=lambda step: step.seq,
        )
        completed = {
            step.name: json.loads(step.detail or "{}").get("branch")
            for step in nodes
            if step.state == "completed"
        }
        skipped = [step.name for step in nodes if step.state == "skipped"]
        failed = [step for step in nodes if step.state == "failed"]
        try:
            self.frontier.restore(completed, skipped, [step.name for step in failed])
        except RestoreError as exc:
            raise self._diverged(exc) from exc
        for step in nodes:
            if step.state == "completed":
                self.outputs[step.name] = json.loads(step.output or "null")
            elif step.state == "skipped":
                self.outputs[step.name] = SKIPPED
        for step in failed:
            info = ErrorInfo.model_validate_json(step.error or '{"type": "?", "message": "?"}')
            self._failed(step.name, self._step_failed(step.name, info), running=False)

    def _diverged(self, exc: RestoreError) -> GraphflowError:
        return self.execution.fail_run(
            NonDeterminismError(
                workflow=self.execution.workflow,
                run_id=self.execution.run_id,
                step=exc.node,
                recorded="a node outcome of the stored run",
                new=f"a graph where {exc.reason}",
            )
        )

    def _restore_passes(self) -> None:
        """``restore`` for graphs with loops: outcomes replayed in the order they were stored."""
        events: list[tuple[str, int, str, str | None]] = []
        records: list[tuple[str, StepRecord]] = []
        recorded = self.execution.replay.recorded_steps()
        for step in sorted(recorded, key=lambda step: step.seq):
            node_id, number = split_pass_name(step.name)
            if step.kind != "node" or node_id not in self.plan.nodes:
                continue
            if step.state in ("completed", "skipped", "failed"):
                branch = json.loads(step.detail or "{}").get("branch")
                events.append((node_id, number, step.state, branch))
                records.append((node_id, step))
        try:
            self.frontier.replay(events)
        except RestoreError as exc:
            raise self._diverged(exc) from exc
        except LoopLimitError as exc:
            raise self.execution.fail_run(exc) from None
        for node_id, step in records:  # in order: the latest pass wins
            if step.state == "completed":
                self.outputs[node_id] = json.loads(step.output or "null")
            elif step.state == "skipped":
                self.outputs[node_id] = SKIPPED
            else:
                info = ErrorInfo.model_validate_json(step.error or '{"type": "?", "message": "?"}')
                self._failed(node_id, self._step_failed(step.name, info), running=False)

    def _parents(self, node_id: str) -> tuple[str, ...]:
        """The run-graph parents of ``node_id``'s step in its current pass."""
        node = self.plan.nodes[node_id]
        if not self.plan.loops:
            return node.parents
        parents = tuple(self.frontier.step_name(parent) for parent in node.parents)
        number = self.frontier.pass_of(node_id)
        for loop in self.plan.loops:
            if loop.target == node_id and number > 1:
                parents += (pass_name(loop.source, number - 1),)
        return parents

    # --- driving --------------------------------------------------------------------------------

    async def run(self) -> JSON:
        """Drive the frontier to the end; return the run's output or raise its failure."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._guarded(self._drive, tg)
        if self.abort is not None:
            raise self.abort
        if self.first_failure is not None:
            raise self.first_failure
        return self.plan.run_output(self.scope)

    async def _drive(self, tg: anyio.abc.TaskGroup) -> None:
        frontier = self.frontier
        while True:
            # Fresh before any await: a node finishing while skips are stored wakes the loop.
            self.changed = changed = anyio.Event()
            while skipped := frontier.skipped():
                for node_id in skipped:
                    await self._record(node_id, "skipped")
            # Every ready node starts now; the engine's job slots bound how many execute.
            for node_id in frontier.ready():
                tg.start_soon(self._run_node, node_id)
            if not frontier.is_active():
                return
            await changed.wait()

    async def _guarded(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn``; an error that is not a node's failure stops the whole run, bare."""
        try:
            await fn(*args)
        except (Exception, Closing) as exc:
            self._abort(exc)

    def _abort(self, exc: BaseException) -> None:
        if self.abort is None:
            self.abort = exc
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # --- nodes ----------------------------------------------------------------------------------

    async def _run_node(self, node_id: str) -> None:
        node = self.plan.nodes[node_id]
        lookup = self.scope.with_error(self.errors[node_id]) if node.handles else self.scope
        step_name = self.frontier.step_name(node_id)
        try:
            if node.for_each is None:
                output, branch = await self._run_single(node_id, step_name, lookup)
            else:
                output, branch = await self._run_for_each(node_id, step_name, lookup)
        except StepFailed as failure:
            self._failed(node_id, failure)
        except (Exception, Closing) as exc:  # not the node's failure: it stops the whole run
            self._abort(exc)
        else:
            self.outputs[node_id] = output
            try:
                self.frontier.done(node_id, branch)
            except LoopLimitError as exc:
                self._abort(self.execution.fail_run(exc))
        self.changed.set()

    async def _run_single(
        self, node_id: str, step_name: str, lookup: Scope
    ) -> tuple[JSON, str | None]:
        try:
            data = self.plan.node_input(node_id, lookup)
        except RefResolutionError as exc:
            await self._refuse(node_id, step_name, exc, own=True)
        self.inputs[node_id] = data
        spec = self._spec(node_id, step_name, data, own=True)
        if self.plan.nodes[node_id].keys is not None:
            spec.detail = lambda selected, raw: self._branch_detail(node_id, selected, raw)
        output = await run_step(self.execution, spec)
        return output, self.branches.pop(node_id, None)

    def _branch_detail(self, node_id: str, selected: str | None, raw: bytes) -> str | None:
        key = self.plan.branch_key(
            node_id, selected=selected, output=json.loads(raw), run_id=self.execution.run_id
        )
        self.branches[node_id] = key
        return None if key is None else json.dumps({"branch": key})

    async def _run_for_each(
        self, node_id: str, step_name: str, lookup: Scope
    ) -> tuple[JSON, str | None]:
        started = self.execution.host.clock.time()
        try:
            items = self.plan.items(node_id, lookup)
        except RefResolutionError as exc:
            await self._refuse(node_id, step_name, exc, own=True)
        self.inputs[node_id] = items
        results: list[JSON] = [None] * len(items)
        failures: dict[int, StepFailed] = {}

        async def one(index: int, item: JSON) -> None:
            item_name = f"{step_name}[{index}]"
            try:
                try:
                    data = self.plan.node_input(node_id, lookup.with_item(item))
                except RefResolutionError as exc:
                    await self._refuse(node_id, item_name, exc)
                spec = self._spec(node_id, item_name, data)
                spec.parents = (step_name,)
                results[index] = await run_step(self.execution, spec)
            except StepFailed as failure:
                failures[index] = failure

        if self.plan.nodes[node_id].mode == "sequential":
            for index, item in enumerate(items):
                await one(index, item)
                if failures:
                    break
        else:
            async with anyio.create_task_group() as tg:
                for index, item in enumerate(items):
                    tg.start_soon(self._guarded, one, index, item)
        if failures:
            failure = failures[min(failures)]
            await self._record(node_id, "failed", started=started, error=failure.error)
            raise failure
        return results, await self._aggregate(node_id, results, started)

    async def _aggregate(self, node_id: str, results: list[JSON], started: float) -> str | None:
        """Store a ``for_each`` node's results; return its branch key."""
        try:
            branch = self.plan.branch_key(
                node_id, selected=None, output=results, run_id=self.execution.run_id
            )
        except Exception as exc:  # BranchError, or the user's branch= callable raised
            info = error_info(exc)
            await self._record(node_id, "failed", started=started, error=info)
            raise self._step_failed(node_id, info) from exc
        detail = None if branch is None else json.dumps({"branch": branch})
        await self._record(node_id, "completed", started=started, output=results, detail=detail)
        return branch

    async def _refuse(
        self, node_id: str, step_name: str, exc: GraphflowError, *, own: bool = False
    ) -> NoReturn:
        """Fail a step whose input cannot be built, recorded like any failed step (no retry)."""
        spec = self._spec(node_id, step_name, None, own=own)

        async def refuse() -> Any:
            raise exc

        spec.call = refuse
        spec.options = _NO_RETRY
        await run_step(self.execution, spec)
        # Only a step recorded completed gets here: the graph that ran it built its input.
        raise self.execution.fail_run(
            NonDeterminismError(
                workflow=self.execution.workflow,
                run_id=self.execution.run_id,
                step=step_name,
                recorded="a completed step",
                new=f"a step whose input cannot be built ({exc})",
            )
        ) from exc

    def _spec(self, node_id: str, step_name: str, data: JSON, *, own: bool = False) -> StepCall:
        """The step of node ``node_id`` (``own``: the node's own, else one ``for_each`` item)."""
        node = self.plan.nodes[node_id]
        fn = self.execution.host.registry.get_function(node.function)
        spec = rpc_step(self.execution, step_name, fn, data, node.options, kind="node")
        spec.load = load_any
        spec.parents = self._parents(node_id) if own else (node_id,)
        spec.number_at_finish = own
        return spec

    # --- failures and records -------------------------------------------------------------------

    def _step_failed(self, node_id: str, info: ErrorInfo) -> StepFailed:
        execution = self.execution
        return StepFailed(
            workflow=execution.workflow, run_id=execution.run_id, step=node_id, error=info
        )

    def _failed(self, node_id: str, failure: StepFailed, *, running: bool = True) -> None:
        payload = {
            "error": {"type": failure.error.type, "message": failure.error.message},
            "step": node_id,
            "input": self.inputs.get(node_id),  # unknown for a failure replayed from the store
        }
        for handler in self.plan.nodes[node_id].on_error:
            self.errors.setdefault(handler, payload)
        if self.first_failure is None:
            # A wrong branch key is the run's own error, not just a failed node.
            cause = failure.__cause__
            self.first_failure = cause if isinstance(cause, BranchError) else failure
        if running:
            self.frontier.failed(node_id)

    async def _record(
        self,
        node_id: str,
        state: StepState,
        *,
        started: float | None = None,
        output: JSON = None,
        error: ErrorInfo | None = None,
        detail: str | None = None,
    ) -> None:
        """Store a node that ran no step of its own: skipped, or a ``for_each`` aggregate."""
        execution = self.execution
        node = self.plan.nodes[node_id]
        step_name = self.frontier.step_name(node_id)
        seq, parents = execution.issue(step_name, "node", node.function, self._parents(node_id))
        now = execution.host.clock.time()
        record = StepRecord(
            run_id=execution.run_id,
            name=step_name,
            seq=seq,
            kind="node",
            function=node.function,
            state=state,
            attempts=0 if state == "skipped" else 1,
            output=None if state != "completed" else json.dumps(output),
            error=None if error is None else error.model_dump_json(),
            parents=parents,
            started_at=now if started is None else started,
            finished_at=now,
            detail=detail,
        )
        if state == "skipped":
            self.outputs[node_id] = SKIPPED
        await execution.host.store.record_step(execution.fence, record)
        execution.host.step_changed(execution.run_id)
        if state == "completed":
            execution.completed(step_name, parents, now)


async def drive_graph(definition: GraphWorkflow, execution: RunExecution, data: JSON) -> bytes:
    """Drive (or replay) a graph run to its end and return its output as JSON bytes.

    Raises:
        NonDeterminismError: the run was stored under a different graph.
        StepFailed: a node failed after its last attempt (after its ``on_error`` handlers ran).
        BranchError: a node selected no branch key or an unknown one.
    """
    stored = execution.run.graph_hash
    if stored is not None and stored != definition.hash:
        raise execution.fail_run(
            NonDeterminismError(
                workflow=definition.name,
                run_id=execution.run_id,
                step="(graph)",
                recorded=f"graph {stored[:12]}",
                new=f"graph {definition.hash[:12]}",
            )
        )
    graph_run = _GraphRun(definition, execution, data)
    graph_run.restore()
    return dump_any(await graph_run.run())
