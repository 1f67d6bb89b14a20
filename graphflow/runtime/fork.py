"""``engine.fork``: which steps of a run a fork copies, so that only ``from_step`` on runs again.

An imperative fork copies the steps issued before ``from_step``; a graph fork copies every node
that is not ``from_step`` nor one of its descendants in the declared graph. Only settled outcomes
are copied (completed, skipped, failed): steps in flight, sleeping or suspended run again, as do
``from_step`` and everything after it. The copies replay in the fork exactly as in the original.
"""

from __future__ import annotations

from ..errors import StepNotFoundError, UnknownWorkflowError
from ..functions import WorkflowDefinition
from ..graph.loops import split_pass_name
from ..graph.spec import GraphWorkflow
from ..store.base import RunRecord, StepRecord

__all__ = ("fork_steps", "item_node", "step_node")

_SETTLED = frozenset({"completed", "skipped", "failed"})


def item_node(name: str) -> str | None:
    """The node of a ``for_each`` item step named ``node[i]``, else ``None``."""
    base, bracket, rest = name.rpartition("[")
    return base if bracket and rest.endswith("]") and rest[:-1].isdigit() else None


def step_node(name: str) -> str:
    """The graph node a step of a graph run belongs to (items ``node[i]``, passes ``node#2``)."""
    return split_pass_name(item_node(name) or name)[0]


def fork_steps(
    run: RunRecord,
    steps: list[StepRecord],
    from_step: str,
    definition: WorkflowDefinition | None,
) -> list[str]:
    """The names of the steps of ``run`` that a fork from ``from_step`` copies.

    Raises:
        StepNotFoundError: the run has no such step (the message lists its steps).
        UnknownWorkflowError: a graph run's workflow is not registered here (its graph is needed).
    """
    if run.graph_hash is not None:
        if not isinstance(definition, GraphWorkflow):
            raise UnknownWorkflowError(name=run.workflow)
        return _graph_steps(run, steps, from_step, definition)
    start = next((step for step in steps if step.name == from_step), None)
    if start is None:
        raise StepNotFoundError(
            run_id=run.run_id, step=from_step, steps=[step.name for step in steps]
        )
    return [step.name for step in steps if step.seq < start.seq and step.state in _SETTLED]


def _graph_steps(
    run: RunRecord, steps: list[StepRecord], from_step: str, definition: GraphWorkflow
) -> list[str]:
    import networkx as nx  # imported when used: ``import graphflow`` does not load it

    graph = definition.nx
    if from_step not in definition.plan.nodes:
        raise StepNotFoundError(run_id=run.run_id, step=from_step, steps=list(graph.nodes))
    forward = nx.subgraph_view(graph, filter_edge=lambda u, v: graph.edges[u, v]["kind"] != "loop")
    again = nx.descendants(forward, from_step) | {from_step}
    start = next((step for step in steps if step.name == from_step), None)
    return [
        step.name
        for step in steps
        if step.state in _SETTLED
        and step_node(step.name) not in again
        # A later loop pass copies only if it ended before ``from_step`` first did.
        and (_first_pass(step.name) or start is None or step.seq < start.seq)
    ]


def _first_pass(name: str) -> bool:
    return split_pass_name(item_node(name) or name)[1] == 1
