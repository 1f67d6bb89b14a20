"""The run graph: a run's steps (or a graph run's nodes) as a ``networkx.DiGraph``.

Imperative runs grow their graph as they issue steps (each step's parents are the run's frontier
when it was issued); graph runs show their declared graph with each node's state, unreached
nodes ``pending``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx

__all__ = ("build_run_graph", "dump_structure", "load_structure")

_STEP_FIELDS = ("kind", "function", "state", "attempts", "started_at", "finished_at", "wake_at")


def build_run_graph(
    steps: Iterable[Mapping[str, Any]],
    declared: nx.DiGraph[str] | None = None,
    *,
    name: str | None = None,
) -> nx.DiGraph[str]:
    """Nodes with ``kind``, ``function``, ``state``, ``attempts`` and timings; edges from parents.

    ``steps`` are mappings with a ``name``, ``parents`` and the fields above, in issue order.
    With ``declared`` (a graph workflow's ``nx``), every declared node and edge is kept and the
    steps fill in the states; ``for_each`` item steps (``node[i]``) stay folded into their node.
    The graph is named ``name``, else after the declared graph (what renderers print as title).
    """
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    if declared is not None:
        graph.graph.update(declared.graph)
        for node_id, attrs in declared.nodes(data=True):
            graph.add_node(
                node_id, kind="node", function=attrs.get("function"), state="pending", attempts=0
            )
        for source, target, attrs in declared.edges(data=True):
            graph.add_edge(source, target, **{k: v for k, v in attrs.items() if k != "keys"})
    if name is not None:
        graph.graph["name"] = name
    for step in steps:
        step_name = step["name"]
        if declared is not None and step_name not in graph:
            continue
        graph.add_node(step_name, **{key: step.get(key) for key in _STEP_FIELDS})
        if declared is None:
            for parent in step.get("parents") or ():
                graph.add_edge(parent, step_name)
    return graph


def dump_structure(declared: nx.DiGraph[str]) -> str:
    """A declared graph as JSON (its name, nodes and edges with their attributes)."""
    return json.dumps(
        {
            "graph": dict(declared.graph),
            "nodes": [[node, attrs] for node, attrs in declared.nodes(data=True)],
            "edges": [
                [source, target, attrs] for source, target, attrs in declared.edges(data=True)
            ],
        },
        sort_keys=True,
        default=str,
    )


def load_structure(text: str) -> nx.DiGraph[str]:
    """The declared graph that ``dump_structure`` wrote (lists where it had tuples)."""
    import networkx as nx

    data = json.loads(text)
    graph: nx.DiGraph[str] = nx.DiGraph(**data["graph"])
    for node, attrs in data["nodes"]:
        graph.add_node(node, **attrs)
    for source, target, attrs in data["edges"]:
        graph.add_edge(source, target, **attrs)
    return graph
