"""The frozen execution plan of a graph workflow: what the runtime runs, with no networkx.

``Plan`` holds the nodes in a deterministic topological order and the rules that feed them
(input templates, default input, branch selection, output). ``Topology`` is the same graph in
index form, over which ``graphflow.runtime.frontier.Frontier`` schedules with in-degree counters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import BranchError
from ..refs import ERROR, INPUT, ITEM, SKIPPED, RefResolutionError, resolve_refs

if TYPE_CHECKING:
    from .._types import JSON
    from ..functions import StepOptions
    from ..refs import Lookup, Ref
    from .loops import LoopEdge

__all__ = ("BranchFn", "LoopIndex", "Mode", "Plan", "PlanNode", "Topology")

Mode = Literal["parallel", "sequential"]
BranchFn = Callable[[Any], Any]
"""A user callable: the node's stored JSON output -> branch key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopIndex:
    """A back edge in index form: what ``Frontier`` resets when the loop takes another pass."""

    target: int
    keys: frozenset[str]
    max_iterations: int
    body: tuple[int, ...]
    inner_in_degree: tuple[int, ...]
    """Per body node (same order): how many of its parents are in the body."""
    outer_parents: tuple[tuple[tuple[int, frozenset[str] | None], ...], ...]
    """Per body node: its parents outside the body, with the keys of their edges."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """A graph's edges in index form: what ``Frontier`` schedules over.

    Nodes are numbered in topological order. ``children[i]`` lists ``(child, keys)``, where
    ``keys`` is ``None`` for an unconditional edge. ``branch_keys[i]`` is ``None`` unless node
    ``i`` has keyed ``next``. ``handlers[i]`` are the ``on_error`` handler nodes of node ``i``;
    handler nodes (``is_handler``) have no parents and run only when such a node fails.
    """

    name: str
    node_ids: tuple[str, ...]
    index: Mapping[str, int]
    children: tuple[tuple[tuple[int, frozenset[str] | None], ...], ...]
    branch_keys: tuple[frozenset[str] | None, ...]
    in_degree: tuple[int, ...]
    handlers: tuple[tuple[int, ...], ...]
    is_handler: tuple[bool, ...]
    loops: tuple[LoopIndex | None, ...] = ()
    """Per node, the loop it declares (its back edge), or ``None``; empty when none has one."""

    @classmethod
    def build(
        cls,
        *,
        order: Sequence[str],
        edges: Iterable[tuple[str, str, str | None]],
        keys: Mapping[str, Collection[str]] | None = None,
        on_error: Mapping[str, Sequence[str]] | None = None,
        name: str = "graph",
        loops: Sequence[tuple[str, str, Collection[str], int, Sequence[str]]] = (),
    ) -> Topology:
        """Index ``order`` (a topological order) and its ``(source, target, key)`` edges.

        ``keys`` gives each keyed node's declared branch keys (some may lead nowhere). ``loops``
        lists back edges ``(source, target, keys, max_iterations, body)``, not in ``edges``.

        Raises:
            ValueError: ``order`` is not topological, or an edge's key contradicts ``keys``.
        """
        index = {node_id: i for i, node_id in enumerate(order)}
        declared = {index[node]: frozenset(node_keys) for node, node_keys in (keys or {}).items()}
        merged: list[dict[int, set[str] | None]] = [{} for _ in order]
        for source, target, key in edges:
            s, t = index[source], index[target]
            if s >= t or (key is None if s in declared else key is not None):
                raise ValueError(f"bad edge {source!r} -> {target!r} (key {key!r})")
            if key is not None and key not in declared[s]:
                raise ValueError(f"edge {source!r} -> {target!r} has undeclared key {key!r}")
            kept = merged[s].setdefault(t, None if key is None else set())
            if kept is not None and key is not None:
                kept.add(key)
        handlers: list[list[int]] = [[] for _ in order]
        for source, targets in (on_error or {}).items():
            handlers[index[source]].extend(index[target] for target in targets)
        if any(h <= s for s, hs in enumerate(handlers) for h in hs):
            raise ValueError("an on_error handler must come after its source in the order")
        topology = cls._assemble(name, tuple(order), index, merged, declared, handlers)
        if not loops:
            return topology
        indexed: list[LoopIndex | None] = [None] * len(order)
        for source, target, loop_keys, limit, body in loops:
            indexed[index[source]] = _loop_index(
                index, merged, target, loop_keys, limit, [index[node] for node in body]
            )
        return replace(topology, loops=tuple(indexed))

    @classmethod
    def _assemble(
        cls,
        name: str,
        order: tuple[str, ...],
        index: dict[str, int],
        merged: list[dict[int, set[str] | None]],
        declared: dict[int, frozenset[str]],
        handlers: list[list[int]],
    ) -> Topology:
        in_degree = [0] * len(order)
        for targets in merged:
            for target in targets:
                in_degree[target] += 1
        is_handler = [False] * len(order)
        for node_handlers in handlers:
            for handler in node_handlers:
                is_handler[handler] = True
        if any(in_degree[i] and is_handler[i] for i in range(len(order))):
            raise ValueError("an on_error handler cannot also be the target of next")
        return cls(
            name=name,
            node_ids=order,
            index=MappingProxyType(index),
            children=tuple(
                tuple((t, None if k is None else frozenset(k)) for t, k in sorted(targets.items()))
                for targets in merged
            ),
            branch_keys=tuple(declared.get(i) for i in range(len(order))),
            in_degree=tuple(in_degree),
            handlers=tuple(tuple(sorted(set(hs))) if hs else () for hs in handlers),
            is_handler=tuple(is_handler),
        )


def _loop_index(
    index: Mapping[str, int],
    merged: Sequence[Mapping[int, set[str] | None]],
    target: str,
    keys: Collection[str],
    limit: int,
    body: Sequence[int],
) -> LoopIndex:
    inside = set(body)
    inner = dict.fromkeys(body, 0)
    outer: dict[int, list[tuple[int, frozenset[str] | None]]] = {node: [] for node in body}
    for parent, children in enumerate(merged):
        for child, edge_keys in children.items():
            if child not in inside:
                continue
            if parent in inside:
                inner[child] += 1
            else:
                outer[child].append((parent, None if edge_keys is None else frozenset(edge_keys)))
    return LoopIndex(
        target=index[target],
        keys=frozenset(keys),
        max_iterations=limit,
        body=tuple(body),
        inner_in_degree=tuple(inner[node] for node in body),
        outer_parents=tuple(tuple(outer[node]) for node in body),
    )


@dataclass(slots=True, kw_only=True)
class PlanNode:
    """One node of a compiled graph, everything the runtime needs to run it.

    A value, never changed once built; not declared ``frozen`` because a frozen dataclass sets
    each field through ``object.__setattr__``, which makes building one three times slower (a
    10,000-node graph builds 10,000).
    """

    node_id: str
    function: str
    options: StepOptions
    input: JSON | None
    """The input template (refs inside), or ``None`` for the default input rule."""
    branch: BranchFn | None
    keys: frozenset[str] | None
    """The branch keys of a node with keyed ``next``, else ``None``."""
    for_each: Ref | None
    mode: Mode
    on_error: tuple[str, ...]
    handles: tuple[str, ...]
    """The nodes whose failure runs this node (non-empty only for ``on_error`` handlers)."""
    parents: tuple[str, ...]
    successors: Mapping[str | None, tuple[str, ...]]
    in_degree: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A compiled graph: nodes in a deterministic topological order, and how to feed them."""

    name: str
    order: tuple[str, ...]
    nodes: Mapping[str, PlanNode]
    entries: tuple[str, ...]
    sinks: tuple[str, ...]
    output: JSON | None
    """The ``output=`` template, or ``None``: the outputs of completed sink nodes."""
    digest: Callable[[], str] = field(compare=False)
    """Computes the sha256 of the structure (nodes, functions, edges, keys, inputs, for_each,
    on_error): a fifth of a large graph's compile, so it is done when first needed (a run's
    start), not when the graph is declared."""
    topology: Topology
    loops: tuple[LoopEdge, ...] = ()
    """The back edges (bounded loops), each with its body."""

    def node_input(self, node_id: str, lookup: Lookup) -> JSON:
        """The input of ``node_id``: its template resolved, else the default input.

        Default: a ``for_each`` node gets ``$item``; an ``on_error`` handler ``$error``; an entry
        node the workflow input; a node with one parent its output; several parents
        ``{parent: output}`` with skipped parents as ``None``.

        Raises:
            RefResolutionError: a ref cannot be resolved.
        """
        node = self.nodes[node_id]
        if node.input is not None:
            return resolve_refs(node.input, lookup, consumer=node_id)
        if node.for_each is not None:
            return lookup(ITEM)
        if node.handles:
            return lookup(ERROR)
        if not node.parents:
            return lookup(INPUT)
        if len(node.parents) == 1:
            return _unskip(lookup(node.parents[0]))
        return {parent: _unskip(lookup(parent)) for parent in node.parents}

    def items(self, node_id: str, lookup: Lookup) -> list[JSON]:
        """The list a ``for_each`` node iterates over.

        Raises:
            RefResolutionError: the ref cannot be resolved or is not a list.
        """
        source = self.nodes[node_id].for_each
        if source is None:
            raise ValueError(f"node {node_id!r} has no for_each")
        items = source.resolve(lookup, consumer=node_id)
        if not isinstance(items, list):
            got = "null" if items is None else f"a {type(items).__name__}"
            raise RefResolutionError(
                node=source.node_id,
                path=source.path,
                problem=f"for_each needs a list but got {got} (use default=[] when the node"
                " may be skipped)",
                consumer=node_id,
            )
        return items

    def branch_key(
        self, node_id: str, *, selected: str | None, output: JSON, run_id: str | None = None
    ) -> str | None:
        """The branch key a finished node takes: ``selected`` (``gf.branch``), else ``branch=``.

        Nodes without keyed ``next`` take no key (``None``), whatever was selected.

        Raises:
            BranchError: a keyed node selected no key or an unknown one.
        """
        node = self.nodes[node_id]
        if node.keys is None:
            return None
        key: object = selected
        if key is None and node.branch is not None:
            key = node.branch(output)
        if not isinstance(key, str) or key not in node.keys:
            raise BranchError(
                workflow=self.name,
                run_id=run_id,
                node=node_id,
                key=None if key is None else str(key),
                keys=sorted(node.keys),
            )
        return key

    def run_output(self, lookup: Lookup) -> JSON:
        """The run's output: the ``output=`` template resolved, else ``{sink: output}``.

        Raises:
            RefResolutionError: a ref in ``output=`` cannot be resolved.
        """
        if self.output is not None:
            return resolve_refs(self.output, lookup)
        outputs = ((sink, lookup(sink)) for sink in self.sinks)
        return {sink: value for sink, value in outputs if value is not SKIPPED}


def _unskip(value: JSON) -> JSON:
    return None if value is SKIPPED else value
