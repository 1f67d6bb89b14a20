"""Bounded loops: a node's ``next`` may go back to an ancestor when it declares ``loop=``.

``"check": {"next": {"retry": "draft", "done": "publish"}, "loop": {"max_iterations": 3}}`` in
``config``: the edge ``check -> draft`` is a *back edge*. Its *body* is every node on a path from
``draft`` to ``check``. Taking the back edge starts a new pass over the body (its nodes recorded as
``draft#2``, ``check#2``...); a pass beyond ``max_iterations`` fails the run with
``LoopLimitError``.

Rules, checked at definition time: the back edge is under a branch key (an unconditional one could
never leave the loop); a node has at most one back-edge target; a loop is left only from the node
that declares it (no other body node has an edge out of the body); loops do not share nodes.
Without ``loop=``, a cycle stays a ``GraphDefinitionError``.

Inside a body, a node may ref a body node that is not before it (itself included): the ref reads
that node's previous pass (its feedback), and must give ``default=`` for the first pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import GraphDefinitionError

if TYPE_CHECKING:
    import networkx as nx

    from .compile import NodeSpec

__all__ = ("LoopEdge", "add_loop_edges", "pass_name", "split_back_edges", "split_pass_name")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopEdge:
    """A back edge ``source -> target`` taken under ``keys``, at most ``max_iterations`` passes."""

    source: str
    target: str
    keys: tuple[str, ...]
    max_iterations: int
    body: tuple[str, ...] = ()
    """The nodes of one pass, in topological order (``target`` first, ``source`` last)."""


def pass_name(node_id: str, pass_number: int) -> str:
    """The step name of ``node_id`` in pass ``pass_number``: ``node``, ``node#2``, ``node#3``..."""
    return node_id if pass_number == 1 else f"{node_id}#{pass_number}"


def split_pass_name(step_name: str) -> tuple[str, int]:
    """``("node", 2)`` for ``"node#2"``; ``(step_name, 1)`` when it carries no pass number."""
    node_id, mark, number = step_name.rpartition("#")
    if mark and number.isdigit() and number[0] != "0" and int(number) > 1:
        return node_id, int(number)
    return step_name, 1


def _fail(graph: str, node: str, problem: str, fix: str) -> GraphDefinitionError:
    return GraphDefinitionError(graph=graph, node=node, problem=problem, fix=fix)


def split_back_edges(
    name: str, graph: nx.DiGraph[str], specs: Sequence[NodeSpec]
) -> list[LoopEdge]:
    """Take the back edges of nodes that declare ``loop=`` out of ``graph``; return them.

    An edge ``s -> t`` of such a node is a back edge when ``t`` reaches ``s``. Bodies are not
    filled in yet (``finish_loops`` does it on the then acyclic graph).

    Raises:
        GraphDefinitionError: a loop node has no back edge, an unkeyed one, or two targets.
    """
    import networkx as nx

    loops: list[LoopEdge] = []
    for spec in specs:
        if spec.loop is None:
            continue
        back: dict[str, list[str | None]] = {}
        for key, targets in spec.next.items():
            for target in targets:
                if target == spec.node_id or nx.has_path(graph, target, spec.node_id):
                    back.setdefault(target, []).append(key)
        if not back:
            raise _fail(
                name,
                spec.node_id,
                "it declares loop= but none of its next targets leads back to it",
                "remove loop=, or point a branch key of next at an ancestor to loop to",
            )
        if len(back) > 1:
            raise _fail(
                name,
                spec.node_id,
                f"its next goes back to several nodes ({', '.join(sorted(back))})",
                "a node loops back to one node; restructure the loops so each has its own node",
            )
        ((target, keys),) = back.items()
        if None in keys:
            raise _fail(
                name,
                spec.node_id,
                f"its edge back to {target!r} is unconditional, so the loop could never end",
                f"put {target!r} under a branch key: next={{'retry': {target!r}, 'done': ...}}",
            )
        graph.remove_edge(spec.node_id, target)
        loops.append(
            LoopEdge(
                source=spec.node_id,
                target=target,
                keys=tuple(sorted(k for k in keys if k is not None)),
                max_iterations=spec.loop,
            )
        )
    return loops


def finish_loops(
    name: str, graph: nx.DiGraph[str], loops: Sequence[LoopEdge], rank: Mapping[str, int]
) -> tuple[LoopEdge, ...]:
    """Fill in each loop's body from the acyclic ``graph`` and check the loop rules.

    Raises:
        GraphDefinitionError: a loop is left from a node other than its own, or loops overlap.
    """
    import networkx as nx

    finished: list[LoopEdge] = []
    owner: dict[str, str] = {}
    for loop in loops:
        after: set[str] = set(nx.descendants(graph, loop.target))
        before: set[str] = set(nx.ancestors(graph, loop.source))
        inside = (after & before) | {loop.target, loop.source}
        for node_id in sorted(inside, key=rank.__getitem__):
            if node_id in owner:
                raise _fail(
                    name,
                    node_id,
                    f"it is in the loop of {owner[node_id]!r} and in the loop of {loop.source!r}",
                    "loops may not share nodes: give each loop its own nodes",
                )
            owner[node_id] = loop.source
            leaving = [
                target
                for target, data in graph.succ[node_id].items()
                if data["kind"] == "next" and target not in inside
            ]
            if node_id != loop.source and leaving:
                raise _fail(
                    name,
                    node_id,
                    f"it is inside the loop {loop.target!r} -> ... -> {loop.source!r} but its next"
                    f" leaves the loop to {', '.join(sorted(leaving))}",
                    f"leave the loop from {loop.source!r} (under another branch key)",
                )
        body = tuple(sorted(inside, key=rank.__getitem__))
        finished.append(
            LoopEdge(
                source=loop.source,
                target=loop.target,
                keys=loop.keys,
                max_iterations=loop.max_iterations,
                body=body,
            )
        )
    return tuple(finished)


def add_loop_edges(graph: nx.DiGraph[str], loops: Sequence[LoopEdge]) -> None:
    """Put the back edges into the declared graph (edge ``kind="loop"``), for rendering."""
    for loop in loops:
        graph.add_edge(
            loop.source,
            loop.target,
            kind="loop",
            branch=" | ".join(loop.keys),
            keys=loop.keys,
            max_iterations=loop.max_iterations,
        )
