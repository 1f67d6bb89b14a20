"""Run a graph workflow: the pure ``Frontier`` decides, an anyio task group executes.

Every ready node starts at once (RPC concurrency is bounded by the engine's job slots); each node's
result and selected branch are stored in one write before its children start. A replay restores
the frontier from the stored nodes, so no completed node runs again.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from .._types import JSON
from ..errors import BranchError, ErrorInfo, GraphflowError, NonDeterminismError, StepFailed
from ..functions import StepOptions
from ..graph.plan import Plan
from ..graph.spec import GraphWorkflow
from ..refs import SKIPPED, RefResolutionError, Scope
from ..store.base import StepRecord
from .execution import RunExecution, StepCall
from .frontier import Frontier, RestoreError
from .workflow import _ANY, _load_any, rpc_step

__all__ = ("run_graph_workflow",)


class _GraphRun:
    """One execution of a graph run: outputs so far, the frontier, and failures."""

    def __init__(self, definition: GraphWorkflow, execution: RunExecution, data: JSON) -> None:
        self.definition = definition
        self.plan: Plan = definition.plan
        self.execution = execution
        self.outputs: dict[str, JSON] = {}
        self.scope = Scope(outputs=self.outputs, workflow_input=data)
        self.frontier = Frontier(self.plan, run_id=execution.run_id)
        self.errors: dict[str, JSON] = {}
        self.branches: dict[str, str | None] = {}
        self.first_failure: StepFailed | GraphflowError | None = None
        self.changed = anyio.Event()

    def restore(self) -> None:
        """Seed the frontier and outputs from the stored nodes of this run."""
        nodes = {
            name: step
            for name, step in self.execution.history.items()
            if step.kind == "node" and name in self.plan.nodes
        }
        completed = {
            name: json.loads(step.detail or "{}").get("branch")
            for name, step in nodes.items()
            if step.state == "completed"
        }
        skipped = [name for name, step in nodes.items() if step.state == "skipped"]
        failed = [name for name, step in nodes.items() if step.state == "failed"]
        try:
            self.frontier.restore(completed, skipped, failed)
        except RestoreError as exc:
            raise self.execution.fail_run(
                NonDeterminismError(
                    workflow=self.execution.workflow,
                    run_id=self.execution.run_id,
                    step=exc.node,
                    recorded="a node outcome of the stored run",
                    new=f"a graph where {exc.reason}",
                )
            ) from exc
        for name in completed:
            self.outputs[name] = json.loads(nodes[name].output or "null")
        for name in skipped:
            self.outputs[name] = SKIPPED
        for name in failed:
            self._remember_failure(name, ErrorInfo.model_validate_json(nodes[name].error or "{}"))

    async def run(self) -> JSON:
        """Drive the frontier to the end; return the run's output or raise its failure."""
        async with anyio.create_task_group() as tg:
            while True:
                for node_id in self.frontier.skipped():
                    await self._record_skip(node_id)
                for node_id in self.frontier.ready():
                    tg.start_soon(self._run_node, node_id)
                if not self.frontier.is_active():
                    break
                changed = self.changed
                await changed.wait()
        if self.first_failure is not None:
            raise self.first_failure
        return self.plan.run_output(self.scope)

    def _signal(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def _record_skip(self, node_id: str) -> None:
        execution = self.execution
        self.outputs[node_id] = SKIPPED
        seq, parents = execution.issue(
            node_id, "node", self.plan.nodes[node_id].function, self.plan.nodes[node_id].parents
        )
        now = execution.host.clock.time()
        record = StepRecord(
            run_id=execution.run_id,
            name=node_id,
            seq=seq,
            kind="node",
            function=self.plan.nodes[node_id].function,
            state="skipped",
            parents=parents,
            started_at=now,
            finished_at=now,
        )
        await execution.host.store.record_step(execution.fence, record)

    async def _run_node(self, node_id: str) -> None:
        node = self.plan.nodes[node_id]
        lookup = self.scope.with_error(self.errors[node_id]) if node.handles else self.scope
        try:
            if node.for_each is not None:
                output, branch = await self._run_for_each(node_id, lookup)
            else:
                data = self.plan.node_input(node_id, lookup)
                output, branch = await self._run_step(node_id, node_id, data, lookup)
        except StepFailed as failure:
            self._failed(node_id, failure)
        except RefResolutionError as exc:
            await self._fail_before_running(node_id, exc)
        else:
            self.outputs[node_id] = output
            self.frontier.done(node_id, branch)
        self._signal()

    def _remember_failure(self, node_id: str, error: ErrorInfo) -> None:
        payload = {
            "error": {"type": error.type, "message": error.message},
            "step": node_id,
            "input": None,
        }
        for handler in self.plan.nodes[node_id].on_error:
            self.errors.setdefault(handler, payload)

    async def _fail_before_running(self, node_id: str, exc: GraphflowError) -> None:
        """A node whose input cannot be built fails at once, recorded like a failed step."""
        spec = self._spec(node_id, node_id, None)

        async def refuse() -> Any:
            raise exc

        spec.call = refuse
        spec.options = StepOptions(retries=0)
        try:
            await self.execution.step(spec)
        except StepFailed as failure:
            self._failed(node_id, failure)

    def _failed(self, node_id: str, failure: StepFailed) -> None:
        self._remember_failure(node_id, failure.error)
        if self.first_failure is None:
            # A wrong branch key is the run's own error, not just a failed node.
            cause = failure.__cause__
            self.first_failure = cause if isinstance(cause, BranchError) else failure
        self.frontier.failed(node_id)

    def _spec(self, node_id: str, step_name: str, data: JSON) -> StepCall:
        node = self.plan.nodes[node_id]
        fn = self.execution.host.registry.get_function(node.function)
        spec = rpc_step(self.execution, step_name, fn, data, node.options, kind="node")
        spec.load = _load_any
        spec.parents = node.parents if step_name == node_id else (node_id,)
        return spec

    async def _run_step(
        self, node_id: str, step_name: str, data: JSON, lookup: Scope
    ) -> tuple[JSON, str | None]:
        spec = self._spec(node_id, step_name, data)
        if step_name == node_id:
            spec.detail = lambda selected, raw: self._branch_detail(node_id, selected, raw)
        output = await self.execution.step(spec)
        return output, self.branches.pop(step_name, None)

    def _branch_detail(self, node_id: str, selected: str | None, raw: bytes) -> str | None:
        key = self.plan.branch_key(
            node_id, selected=selected, output=json.loads(raw), run_id=self.execution.run_id
        )
        self.branches[node_id] = key
        return None if key is None else json.dumps({"branch": key})

    async def _run_for_each(self, node_id: str, lookup: Scope) -> tuple[JSON, str | None]:
        node = self.plan.nodes[node_id]
        items = self.plan.items(node_id, lookup)
        results: list[JSON] = [None] * len(items)

        async def one(index: int, item: JSON) -> None:
            data = self.plan.node_input(node_id, lookup.with_item(item))
            results[index], _ = await self._run_step(node_id, f"{node_id}[{index}]", data, lookup)

        if node.mode == "sequential":
            for index, item in enumerate(items):
                await one(index, item)
        else:
            async with anyio.create_task_group() as tg:
                for index, item in enumerate(items):
                    tg.start_soon(one, index, item)
        branch = self.plan.branch_key(
            node_id, selected=None, output=results, run_id=self.execution.run_id
        )
        await self._record_aggregate(node_id, results, branch)
        return results, branch

    async def _record_aggregate(
        self, node_id: str, results: list[JSON], branch: str | None
    ) -> None:
        execution = self.execution
        node = self.plan.nodes[node_id]
        seq, parents = execution.issue(node_id, "node", node.function, node.parents)
        now = execution.host.clock.time()
        record = StepRecord(
            run_id=execution.run_id,
            name=node_id,
            seq=seq,
            kind="node",
            function=node.function,
            state="completed",
            attempts=1,
            output=json.dumps(results),
            parents=parents,
            started_at=now,
            finished_at=now,
            detail=None if branch is None else json.dumps({"branch": branch}),
        )
        await execution.host.store.record_step(execution.fence, record)
        execution.completed(node_id, parents, now)


async def run_graph_workflow(definition: Any, execution: RunExecution, data: JSON) -> bytes:
    """Execute (or replay) a graph run and return its output as JSON bytes.

    Raises:
        NonDeterminismError: the run was stored under a different graph.
        StepFailed: a node failed after its last attempt (after its ``on_error`` handlers ran).
    """
    if not isinstance(definition, GraphWorkflow):
        raise GraphflowError(f"workflow {definition.name!r} is neither imperative nor a graph")
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
    return _ANY.dump_json(await graph_run.run())
