"""Compile normalised node specs into a ``networkx.DiGraph`` and the frozen ``Plan`` that runs.

networkx is used here, at definition time only: to check targets, find cycles and take a
deterministic topological order (declaration order breaks ties). Refs are checked against the nodes
that are always resolved before their consumer. networkx is imported inside the functions that use
it (here, in ``loops`` and ``run_graph``), so ``import graphflow`` does not load it.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import operator
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import GraphDefinitionError
from ..functions import StepOptions
from ..refs import ERROR, INPUT, ITEM, Ref, iter_refs
from .loops import LoopEdge, add_loop_edges, finish_loops, split_back_edges
from .plan import BranchFn, Mode, Plan, PlanNode, Topology

if TYPE_CHECKING:
    import networkx as nx

    from .._types import JSON

__all__ = ("NodeSpec", "canonical", "compile_graph", "declared_graph")


@dataclass(slots=True, kw_only=True)
class NodeSpec:
    """One declared node, normalised from ``workflow_graph(config=...)``.

    A value, never changed once built; not declared ``frozen`` because a frozen dataclass sets
    each field through ``object.__setattr__``, which makes building one three times slower (a
    10,000-node graph builds 10,000).
    """

    node_id: str
    function: str
    next: Mapping[str | None, tuple[str, ...]]
    """Targets by branch key; the ``None`` key holds unconditional targets."""
    input: JSON | None = None
    branch: BranchFn | None = None
    for_each: Ref | None = None
    mode: Mode = "parallel"
    on_error: tuple[str, ...] = ()
    options: StepOptions = field(default_factory=StepOptions)
    loop: int | None = None
    """``max_iterations`` of the node's back edge (``loop=`` config), or ``None``."""

    @property
    def keyed(self) -> bool:
        """Whether ``next`` is a dict of branch keys."""
        return bool(self.next) and None not in self.next


def compile_graph(*, name: str, specs: Sequence[NodeSpec], output: JSON | None) -> Plan:
    """Validate ``specs`` (declaration order) and build the graph's plan.

    The checks and the plan need no networkx graph (``declared_graph`` builds one from the plan
    when asked), except for bounded loops, whose bodies are found on one.

    Raises:
        GraphDefinitionError: unknown targets, cycles, misplaced handlers or refs.
    """
    by_id = {spec.node_id: spec for spec in specs}
    _check_targets(name, specs, by_id)
    back: list[LoopEdge] = []
    graph = None
    if any(spec.loop for spec in specs):
        graph = _build_graph(name, specs)
        # Bounded loops: their back edges leave the graph, which must then be acyclic.
        back = split_back_edges(name, graph, specs)
    skip = {(loop.source, loop.target) for loop in back}
    targets = _next_targets(specs, skip)
    order = _topological_order(name, specs, targets, skip)
    rank = {node_id: i for i, node_id in enumerate(order)}
    loops = finish_loops(name, graph, back, rank) if graph is not None and back else ()
    if _has_refs(specs, output):
        _check_refs(name, [by_id[node_id] for node_id in order], output, skip, loops)
    topology = Topology.build(
        name=name,
        order=order,
        edges=[
            (s.node_id, t, k)
            for s in specs
            for k, ts in s.next.items()
            for t in ts
            if (s.node_id, t) not in skip
        ],
        keys={s.node_id: [k for k in s.next if k is not None] for s in specs if s.keyed},
        on_error={s.node_id: s.on_error for s in specs},
        loops=[(x.source, x.target, x.keys, x.max_iterations, x.body) for x in loops],
    )
    parents, handles = _incoming(order, by_id, targets)
    nodes = {  # in declaration order, as the declared graph lists them
        spec.node_id: _plan_node(spec, parents[spec.node_id], handles[spec.node_id])
        for spec in specs
    }
    return Plan(
        name=name,
        order=order,
        nodes=MappingProxyType(nodes),
        entries=tuple(n for n in order if not nodes[n].parents and not nodes[n].handles),
        sinks=tuple(n for n in order if not by_id[n].next and not nodes[n].handles),
        output=output,
        digest=functools.partial(_hash, name, tuple(specs)),
        topology=topology,
        loops=loops,
    )


def declared_graph(plan: Plan, description: str | None) -> nx.DiGraph[str]:
    """The declared graph as a ``networkx.DiGraph``, built from its ``plan``.

    Node attrs ``function``, ``handler``, ``for_each``, ``mode``, ``on_error``; edge attrs
    ``kind`` (``"next"``, ``"on_error"``, ``"loop"`` for a bounded loop's back edge), ``branch``
    (the label) and ``keys``. Nodes and edges come in declaration order.
    """
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph(name=plan.name, description=description)
    graph.add_nodes_from(
        (
            node_id,
            {
                "function": node.function,
                "handler": bool(node.handles),
                "for_each": None if node.for_each is None else repr(node.for_each),
                "mode": node.mode if node.for_each is not None else None,
                "on_error": node.on_error,
            },
        )
        for node_id, node in plan.nodes.items()
    )
    back = {(loop.source, loop.target) for loop in plan.loops}
    graph.add_edges_from(
        edge
        for node_id, node in plan.nodes.items()
        for edge in _edges(node_id, node.successors, node.on_error)
        if edge[:2] not in back
    )
    add_loop_edges(graph, plan.loops)
    return graph


def _build_graph(name: str, specs: Sequence[NodeSpec]) -> nx.DiGraph[str]:
    """A graph of ``specs``' edges, to find loops or name a cycle on (attrs as declared)."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph(name=name)
    graph.add_nodes_from(spec.node_id for spec in specs)
    graph.add_edges_from(
        edge for spec in specs for edge in _edges(spec.node_id, spec.next, spec.on_error)
    )
    return graph


def _edges(
    node_id: str, next_: Mapping[str | None, tuple[str, ...]], on_error: tuple[str, ...]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """A node's edges with their attributes (one per target, its branch keys merged)."""
    targets: dict[str, list[str]] = {}
    for key, node_targets in next_.items():
        for target in node_targets:
            targets.setdefault(target, []).extend([] if key is None else [key])
    for target, keys in targets.items():
        label = " | ".join(sorted(keys)) if keys else None
        yield node_id, target, {"kind": "next", "branch": label, "keys": tuple(sorted(keys))}
    for target in on_error:
        yield node_id, target, {"kind": "on_error", "branch": None, "keys": ()}


def _check_targets(name: str, specs: Sequence[NodeSpec], by_id: Mapping[str, NodeSpec]) -> None:
    """Every ``next`` and ``on_error`` target is a declared node of the right kind."""
    handled = {target for spec in specs for target in spec.on_error}
    for spec in specs:
        for node_targets in spec.next.values():
            for target in node_targets:
                _check_target(name, spec.node_id, target, by_id, handled, "next")
        for target in spec.on_error:
            _check_target(name, spec.node_id, target, by_id, set(), "on_error")


def _check_target(
    name: str,
    node_id: str,
    target: str,
    by_id: Mapping[str, NodeSpec],
    handled: Collection[str],
    option: str,
) -> None:
    if target not in by_id:
        raise GraphDefinitionError(
            graph=name,
            node=node_id,
            problem=f"its {option} names unknown node {target!r}",
            fix=f"declare {target!r} in nodes= or use one of {sorted(by_id)}",
        )
    if target in handled:
        raise GraphDefinitionError(
            graph=name,
            node=node_id,
            problem=f"its next names {target!r}, which is an on_error handler",
            fix="handlers run only when a node fails; declare another node for the same"
            " function to use it in the normal flow",
        )
    if option == "on_error" and by_id[target].next:
        raise GraphDefinitionError(
            graph=name,
            node=target,
            problem="it is an on_error handler but has next (handlers end the failing path)",
            fix="remove its next; the run fails once its handlers have run",
        )


def _next_targets(
    specs: Sequence[NodeSpec], skip: Collection[tuple[str, str]]
) -> dict[str, tuple[str, ...]]:
    """Each node's ``next`` targets, once each, without the ``skip``ped (loop back) edges."""
    found: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        unique = tuple(dict.fromkeys(t for ts in spec.next.values() for t in ts))
        if skip:
            unique = tuple(t for t in unique if (spec.node_id, t) not in skip)
        found[spec.node_id] = unique
    return found


def _topological_order(
    name: str,
    specs: Sequence[NodeSpec],
    targets: Mapping[str, tuple[str, ...]],
    skip: Collection[tuple[str, str]],
) -> tuple[str, ...]:
    """The nodes in topological order, the earliest declared first among those ready.

    Kahn's algorithm over declaration positions, on the ``next`` ``targets`` and ``on_error``
    edges: the order ``nx.lexicographical_topological_sort`` gives with that key, at a fraction
    of its cost.

    Raises:
        GraphDefinitionError: the graph has a cycle (named in the message).
    """
    position = {spec.node_id: i for i, spec in enumerate(specs)}
    successors = [
        [position[t] for t in targets[spec.node_id]] + [position[t] for t in spec.on_error]
        for spec in specs
    ]
    in_degree = [0] * len(specs)
    for children in successors:
        for child in children:
            in_degree[child] += 1
    ready = [i for i, degree in enumerate(in_degree) if not degree]  # ascending: a heap
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(specs[i].node_id)
        for child in successors[i]:
            in_degree[child] -= 1
            if not in_degree[child]:
                heapq.heappush(ready, child)
    if len(order) == len(specs):
        return tuple(order)
    import networkx as nx

    graph = _build_graph(name, specs)
    graph.remove_edges_from(skip)
    cycle = nx.find_cycle(graph)
    path = " -> ".join([str(edge[0]) for edge in cycle] + [str(cycle[0][0])])
    raise GraphDefinitionError(
        graph=name,
        node=str(cycle[0][0]),
        problem=f"it has a cycle: {path}",
        fix="a workflow graph must be acyclic; remove one of these next/on_error edges, or bound"
        " the loop: loop={'max_iterations': N} on the node whose keyed next goes back",
    )


def _has_refs(specs: Sequence[NodeSpec], output: JSON | None) -> bool:
    """Whether any template or ``for_each`` holds a ref (otherwise there is nothing to check)."""
    if output is not None and next(iter_refs(output), None) is not None:
        return True
    return any(
        spec.for_each is not None
        or (spec.input is not None and next(iter_refs(spec.input), None) is not None)
        for spec in specs
    )


def _check_refs(
    name: str,
    ordered: Sequence[NodeSpec],
    output: JSON | None,
    back_edges: Collection[tuple[str, str]] = (),
    loops: Sequence[LoopEdge] = (),
) -> None:
    """Every ref must name a node that is always resolved before its consumer runs.

    In a loop's body a node may also name a body node that is not before it (itself included):
    such a *feedback* ref reads that node's previous pass, and needs ``default=`` for the first.

    The nodes resolved before each node are kept as bitsets (ints indexed by topological
    position): linear in memory and fast to OR/AND, where sets of names grow quadratically.
    """
    position = {spec.node_id: i for i, spec in enumerate(ordered)}
    parents: list[list[int]] = [[] for _ in ordered]
    sources: dict[int, list[int]] = {}
    for i, spec in enumerate(ordered):
        for target in spec.on_error:
            sources.setdefault(position[target], []).append(i)
        for targets in spec.next.values():
            for target in targets:
                if (spec.node_id, target) not in back_edges:
                    parents[position[target]].append(i)
    names = tuple(spec.node_id for spec in ordered)
    body_of = {node_id: frozenset(loop.body) for loop in loops for node_id in loop.body}
    resolved: list[int] = []
    for i, spec in enumerate(ordered):
        if i in sources:  # a handler: only what every failing source had resolved
            before = functools.reduce(operator.and_, (resolved[s] for s in sources[i]))
        else:
            before = 0
            for p in parents[i]:
                before |= resolved[p] | (1 << p)
        resolved.append(before)
        scope = _RefScope(
            name=name,
            node_id=spec.node_id,
            names=names,
            position=position,
            before=before,
            feedback=body_of.get(spec.node_id, frozenset()),
        )
        special = {ERROR} if i in sources else set()
        scope.check("input", spec.input, special | ({ITEM} if spec.for_each is not None else set()))
        scope.check("for_each", spec.for_each, special)
    handlers = sum(1 << i for i in sources)
    normal = ((1 << len(ordered)) - 1) & ~handlers
    _RefScope(name=name, node_id=None, names=names, position=position, before=normal).check(
        "output", output, set()
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _RefScope:
    name: str
    node_id: str | None
    names: tuple[str, ...]
    """Node ids by topological position."""
    position: Mapping[str, int]
    before: int
    """Bitset of the positions of the nodes a ref here may name."""
    feedback: frozenset[str] = frozenset()
    """The body of the loop this node is in: refs to its later nodes read the previous pass."""

    def check(self, option: str, template: JSON, special: set[str]) -> None:
        for found in iter_refs(template):
            target = found.node_id
            if target == INPUT or target in special:
                continue
            at = self.position.get(target)
            if at is not None and self.before >> at & 1:
                continue
            if target in self.feedback:
                if found.has_default:
                    continue
                raise GraphDefinitionError(
                    graph=self.name,
                    node=self.node_id,
                    problem=(
                        f"its {option} has {found!r}, which reads {target!r} of the previous"
                        " pass of their loop, but the first pass has none"
                    ),
                    fix=f"give the value of the first pass: ref({target!r}, ..., default=...)",
                )
            raise GraphDefinitionError(
                graph=self.name,
                node=self.node_id,
                problem=f"its {option} has {found!r}, {self._why(target)}",
                fix=self._fix(target),
            )

    def _allowed(self) -> list[str]:
        return sorted(n for i, n in enumerate(self.names) if self.before >> i & 1)

    def _why(self, target: str) -> str:
        if target == ITEM:
            return "but $item exists only in the input of a for_each node"
        if target == ERROR:
            return "but $error exists only in the input of an on_error handler"
        if target not in self.position:
            return f"but there is no node {target!r}"
        if target == self.node_id:
            return "a ref to its own output"
        if self.node_id is None:
            return f"but {target!r} is an on_error handler, which a completed run never ran"
        return f"but {target!r} is not an ancestor of {self.node_id!r}, so it may not have run"

    def _fix(self, target: str) -> str:
        allowed = self._allowed()
        choices = f" ({', '.join(allowed)})" if allowed else ""
        if target.startswith("$") or target not in self.position:
            return f"use ref('$input', ...) or a ref to a node it may refer to{choices}"
        if self.node_id is None:
            return f"refer to nodes of the normal flow{choices}"
        return (
            f"add a next path from {target!r} to {self.node_id!r}, or refer to one of its"
            f" ancestors{choices}"
        )


def _incoming(
    order: Sequence[str], by_id: Mapping[str, NodeSpec], targets: Mapping[str, tuple[str, ...]]
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Each node's ``next`` parents and the nodes it handles failures of, in topological order.

    Sources are visited in ``order``, so every list comes out sorted by it.
    """
    parents: dict[str, list[str]] = {node_id: [] for node_id in order}
    handles: dict[str, list[str]] = {node_id: [] for node_id in order}
    for node_id in order:
        for target in targets[node_id]:
            parents[target].append(node_id)
        for target in by_id[node_id].on_error:
            handles[target].append(node_id)
    return (
        {node_id: tuple(found) for node_id, found in parents.items()},
        {node_id: tuple(found) for node_id, found in handles.items()},
    )


def _plan_node(spec: NodeSpec, parents: tuple[str, ...], handles: tuple[str, ...]) -> PlanNode:
    return PlanNode(
        node_id=spec.node_id,
        function=spec.function,
        options=spec.options,
        input=spec.input,
        branch=spec.branch,
        keys=frozenset(k for k in spec.next if k is not None) if spec.keyed else None,
        for_each=spec.for_each,
        mode=spec.mode,
        on_error=spec.on_error,
        handles=handles,
        parents=parents,
        successors=MappingProxyType(dict(spec.next)),
        in_degree=len(parents),
    )


def canonical(template: JSON) -> JSON:
    """A JSON form of a template with refs rendered stably, for hashing."""
    if template is None:  # most nodes have no input template: skip the Mapping check
        return None
    if isinstance(template, Ref):
        return template.canonical()
    if isinstance(template, Mapping):
        return {str(key): canonical(value) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [canonical(value) for value in template]
    return template


def _hash(name: str, specs: Sequence[NodeSpec]) -> str:
    # The unconditional key None is written "" (branch keys are non-empty strings).
    ordered = sorted(specs, key=lambda spec: spec.node_id)
    nodes = [
        {
            "id": spec.node_id,
            "function": spec.function,
            "next": sorted([key or "", sorted(targets)] for key, targets in spec.next.items()),
            "keyed": spec.keyed,
            "input": canonical(spec.input),
            "for_each": canonical(spec.for_each),
            "on_error": sorted(spec.on_error),
        }
        for spec in ordered
    ]
    # Only loop nodes carry the key: the hashes of graphs without loops stay as they were.
    for node, spec in zip(nodes, ordered, strict=True):
        if spec.loop is not None:
            node["loop"] = spec.loop
    text = json.dumps({"graph": name, "nodes": nodes}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
