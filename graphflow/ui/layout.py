"""A layered (Sugiyama-style) layout of a directed graph, in pure Python.

The web page draws run graphs itself so that it needs no Graphviz. The steps are the classic ones,
kept small: break cycles by reversing the back edges a depth-first search finds, rank nodes by
their longest path from a source, put a dummy node on every rank a long edge crosses, order each
rank by the barycentre of its neighbours (a few sweeps down and up), then give each rank a row and
each node an x near the mean of its neighbours. Everything is ordered by the graph's insertion
order, so the same graph always gives the same picture, whatever the hash seed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

__all__ = ("EdgePath", "Layout", "NodeBox", "layout")

_RANK_GAP = 56.0
_NODE_GAP = 28.0
_DUMMY_WIDTH = 12.0
_MARGIN = 16.0
_SWEEPS = 8
_PORT_SPREAD = 0.5
_PLACEMENT_ROUNDS = 4

Point = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeBox:
    """Where a node goes: its centre and size."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgePath:
    """An edge as the points it passes through, from its source to its target."""

    source: Hashable
    target: Hashable
    points: tuple[Point, ...]
    back: bool
    """Whether the edge points against the ranks (it closed a cycle)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The laid-out graph: a box per node and a path per edge, within ``width`` x ``height``."""

    width: float
    height: float
    nodes: Mapping[Hashable, NodeBox]
    edges: tuple[EdgePath, ...]


@dataclass(slots=True)
class _Chain:
    """An edge of the acyclic graph, with the dummy nodes it passes through."""

    source: int
    target: int
    dummies: list[int]
    back: bool
    original: tuple[Hashable, Hashable]


def _back_edges(
    order: Sequence[Hashable], graph: nx.DiGraph[Any]
) -> set[tuple[Hashable, Hashable]]:
    """The edges that close a cycle in a depth-first search taken in insertion order."""
    position = {node: i for i, node in enumerate(order)}
    visited: set[Hashable] = set()
    on_stack: set[Hashable] = set()
    back: set[tuple[Hashable, Hashable]] = set()
    for root in order:
        if root in visited:
            continue
        visited.add(root)
        on_stack.add(root)
        stack = [(root, iter(sorted(graph.successors(root), key=position.__getitem__)))]
        while stack:
            node, successors = stack[-1]
            child = next(successors, None)
            if child is None:
                on_stack.discard(node)
                stack.pop()
            elif child in on_stack:
                back.add((node, child))
            elif child not in visited:
                visited.add(child)
                on_stack.add(child)
                stack.append(
                    (child, iter(sorted(graph.successors(child), key=position.__getitem__)))
                )
    return back


def _ranks(count: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """Longest-path ranks of an acyclic graph on nodes ``0..count-1`` (Kahn, lowest index first)."""
    successors: list[list[int]] = [[] for _ in range(count)]
    indegree = [0] * count
    for source, target in edges:
        successors[source].append(target)
        indegree[target] += 1
    rank = [0] * count
    ready = [node for node in range(count) if indegree[node] == 0]
    heapq.heapify(ready)
    while ready:
        node = heapq.heappop(ready)
        for target in successors[node]:
            rank[target] = max(rank[target], rank[node] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(ready, target)
    return rank


def _sweep(rows: list[list[int]], neighbours: Sequence[Sequence[int]], row_range: range) -> None:
    """Reorder each row in ``row_range`` by the mean position of its neighbours in the last row."""
    for row in row_range:
        previous = rows[row - 1] if row_range.step > 0 else rows[row + 1]
        position = {node: i for i, node in enumerate(previous)}

        def key(item: tuple[int, int], position: dict[int, int] = position) -> tuple[float, int]:
            index, node = item
            near = [position[n] for n in neighbours[node] if n in position]
            return (sum(near) / len(near) if near else float(index), index)

        rows[row] = [node for _, node in sorted(enumerate(rows[row]), key=key)]


def _place_row(nodes: list[int], widths: Sequence[float], wanted: Sequence[float]) -> list[float]:
    """Centres for one row, in order, a gap apart, each as near its wish as the row allows."""
    xs: list[float] = []
    for i, node in enumerate(nodes):
        x = wanted[i]
        if xs:
            x = max(x, xs[-1] + (widths[nodes[i - 1]] + widths[node]) / 2 + _NODE_GAP)
        xs.append(x)
    shift = sum(w - x for w, x in zip(wanted, xs, strict=True)) / len(xs) if xs else 0.0
    return [x + shift for x in xs]


def _place(
    rows: list[list[int]], widths: Sequence[float], neighbours: Sequence[Sequence[int]]
) -> list[float]:
    """An x centre per node: rows packed, then pulled towards their neighbours a few times."""
    x = [0.0] * len(widths)
    for row in rows:
        cursor = 0.0
        for node in row:
            x[node] = cursor + widths[node] / 2
            cursor += widths[node] + _NODE_GAP
    order = list(range(len(rows)))
    for round_ in range(_PLACEMENT_ROUNDS):
        for row_index in order if round_ % 2 == 0 else reversed(order):
            row = rows[row_index]
            wanted = []
            for node in row:
                near = [x[n] for n in neighbours[node]]
                wanted.append(sum(near) / len(near) if near else x[node])
            for node, value in zip(row, _place_row(row, widths, wanted), strict=True):
                x[node] = value
    return x


def layout(graph: nx.DiGraph[Any], sizes: Mapping[Any, tuple[float, float]]) -> Layout:
    """Lay ``graph`` out top to bottom; ``sizes`` gives each node's ``(width, height)``.

    Self-loops are left out. The result is deterministic for a given insertion order.
    """
    order = list(graph.nodes)
    index = {node: i for i, node in enumerate(order)}
    back = _back_edges(order, graph)
    chains = []
    for source, target in graph.edges:
        if source == target:
            continue
        is_back = (source, target) in back
        upper, lower = (target, source) if is_back else (source, target)
        chains.append(_Chain(index[upper], index[lower], [], is_back, (source, target)))
    rank = _ranks(len(order), [(chain.source, chain.target) for chain in chains])
    widths = [float(sizes[node][0]) for node in order]
    heights = [float(sizes[node][1]) for node in order]
    for chain in chains:  # a dummy node on every rank the edge crosses
        for step in range(rank[chain.source] + 1, rank[chain.target]):
            chain.dummies.append(len(rank))
            rank.append(step)
            widths.append(_DUMMY_WIDTH)
            heights.append(0.0)
    neighbours: list[list[int]] = [[] for _ in rank]
    for chain in chains:
        path = [chain.source, *chain.dummies, chain.target]
        for upper, lower in itertools.pairwise(path):
            neighbours[upper].append(lower)
            neighbours[lower].append(upper)
    rows: list[list[int]] = [[] for _ in range(max(rank, default=-1) + 1)]
    for node in range(len(rank)):
        rows[rank[node]].append(node)
    for sweep in range(_SWEEPS):
        down = sweep % 2 == 0
        _sweep(rows, neighbours, range(1, len(rows)) if down else range(len(rows) - 2, -1, -1))
    xs = _place(rows, widths, neighbours)
    return _finish(order, rows, xs, widths, heights, chains)


def _ports(
    chains: Sequence[_Chain], xs: Sequence[float], widths: Sequence[float]
) -> list[tuple[float, float]]:
    """Where each chain leaves its upper node and enters its lower one, spread along the sides.

    A node's edges leave (and enter) in the order of the x of their other end, spread over the
    middle of its side, so that fan-out and fan-in do not meet in one point.
    """
    leaving: dict[int, list[tuple[float, int]]] = {}
    entering: dict[int, list[tuple[float, int]]] = {}
    for number, chain in enumerate(chains):
        first = chain.dummies[0] if chain.dummies else chain.target
        last = chain.dummies[-1] if chain.dummies else chain.source
        leaving.setdefault(chain.source, []).append((xs[first], number))
        entering.setdefault(chain.target, []).append((xs[last], number))
    out_x = [0.0] * len(chains)
    in_x = [0.0] * len(chains)
    for sides, found in ((leaving, out_x), (entering, in_x)):
        for node, ends in sides.items():
            span = widths[node] * _PORT_SPREAD
            for i, (_, number) in enumerate(sorted(ends)):
                found[number] = xs[node] - span / 2 + span * (i + 1) / (len(ends) + 1)
    return list(zip(out_x, in_x, strict=True))


def _finish(
    order: Sequence[Hashable],
    rows: Sequence[Sequence[int]],
    xs: list[float],
    widths: Sequence[float],
    heights: Sequence[float],
    chains: Sequence[_Chain],
) -> Layout:
    """Turn ranks and x centres into boxes and edge paths inside a margin."""
    left = min((xs[n] - widths[n] / 2 for row in rows for n in row), default=0.0)
    right = max((xs[n] + widths[n] / 2 for row in rows for n in row), default=0.0)
    offset = _MARGIN - left
    ys = [0.0] * len(xs)
    row_height = [max((heights[n] for n in row), default=0.0) for row in rows]
    top = _MARGIN
    for row, height in zip(rows, row_height, strict=True):
        for node in row:
            ys[node] = top + height / 2
        top += height + _RANK_GAP
    boxes = {
        node: NodeBox(x=xs[i] + offset, y=ys[i], width=widths[i], height=heights[i])
        for i, node in enumerate(order)
    }
    ports = _ports(chains, xs, widths)
    edges = []
    for number, chain in enumerate(chains):
        out_x, in_x = ports[number]
        bottom = ys[chain.source] + heights[chain.source] / 2
        points: list[Point] = [(out_x + offset, bottom)]
        points += [(xs[d] + offset, ys[d]) for d in chain.dummies]
        points.append((in_x + offset, ys[chain.target] - heights[chain.target] / 2))
        if chain.back:
            points.reverse()
        source, target = chain.original
        edges.append(EdgePath(source=source, target=target, points=tuple(points), back=chain.back))
    height = top - _RANK_GAP + _MARGIN if rows else 2 * _MARGIN
    return Layout(width=right - left + 2 * _MARGIN, height=height, nodes=boxes, edges=tuple(edges))
