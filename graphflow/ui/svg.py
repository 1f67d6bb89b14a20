"""Draw a run graph as inline SVG, coloured by state, from the pure-Python layout.

Every node is a ``<g class="node" data-step=... data-state=...>`` so the page (and its tests) can
find a step by name; every text is escaped. Colours are presentation attributes, not ``style``, so
the page's Content-Security-Policy can forbid inline styles.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from html import escape
from typing import Any

import networkx as nx

from ..graph.render import STATE_COLOURS, Colours
from .layout import EdgePath, Layout, NodeBox, layout

__all__ = ("MAX_NODES", "draw")

MAX_NODES = 600
"""Graphs with more nodes are not drawn (the page says so and shows the steps table)."""

_NAME_LIMIT = 36
_NAME_CHAR = 7.6
_DETAIL_CHAR = 6.4
_MIN_WIDTH = 96.0
_NODE_HEIGHT = 46.0
_UNKNOWN = Colours("#ffffff", "#9e9e9e")
_EDGE = "#78909c"
_ERROR_EDGE = "#c62828"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(node: Hashable, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """The node's two lines: its name, then its function or kind and state."""
    detail = attrs.get("function") or attrs.get("kind") or ""
    if detail == "node" or str(detail) == str(node):
        detail = ""
    state = str(attrs.get("state") or "")
    attempts = attrs.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        state = f"{state}, {attempts} attempts"
    second = " · ".join(part for part in (str(detail), state) if part)
    return _short(str(node), _NAME_LIMIT), _short(second, _NAME_LIMIT + 8)


def _size(lines: tuple[str, str]) -> tuple[float, float]:
    width = max(len(lines[0]) * _NAME_CHAR, len(lines[1]) * _DETAIL_CHAR) + 24
    return max(width, _MIN_WIDTH), _NODE_HEIGHT


def _curve(points: tuple[tuple[float, float], ...]) -> str:
    """A path through ``points``: vertical-tangent cubic curves between consecutive points."""
    (x, y), rest = points[0], points[1:]
    parts = [f"M{x:.1f},{y:.1f}"]
    for nx_, ny in rest:
        mid = (y + ny) / 2
        parts.append(f"C{x:.1f},{mid:.1f} {nx_:.1f},{mid:.1f} {nx_:.1f},{ny:.1f}")
        x, y = nx_, ny
    return " ".join(parts)


def _edge_svg(edge: EdgePath, attrs: Mapping[str, Any]) -> str:
    on_error = attrs.get("kind") == "on_error"
    colour = _ERROR_EDGE if on_error else _EDGE
    dash = ' stroke-dasharray="5 4"' if on_error or edge.back else ""
    marker = "url(#gf-arrow-error)" if on_error else "url(#gf-arrow)"
    path = (
        f'<path class="edge" d="{_curve(edge.points)}" fill="none" stroke="{colour}"'
        f' stroke-width="1.4"{dash} marker-end="{marker}"/>'
    )
    label = "on_error" if on_error else attrs.get("branch")
    if label is None:
        return path
    x, y = edge.points[len(edge.points) // 2]
    if len(edge.points) == 2:
        x = (edge.points[0][0] + edge.points[1][0]) / 2
        y = (edge.points[0][1] + edge.points[1][1]) / 2
    text = escape(_short(str(label), 24))
    return (
        f'{path}<text class="edge-label" x="{x + 4:.1f}" y="{y + 4:.1f}" font-size="11"'
        f' fill="{colour}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{text}</text>'
    )


def _node_svg(
    node: Hashable, attrs: Mapping[str, Any], box: NodeBox, lines: tuple[str, str]
) -> str:
    state = str(attrs.get("state") or "pending")
    colours = STATE_COLOURS.get(state, _UNKNOWN)
    dash = ' stroke-dasharray="4 3"' if colours.dashed else ""
    left, top = box.x - box.width / 2, box.y - box.height / 2
    name = escape(str(node))
    return (
        f'<g class="node state-{escape(state)}" data-step="{name}" data-state="{escape(state)}">'
        f"<title>{name} ({escape(state)})</title>"
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{box.width:.1f}" height="{box.height:.1f}"'
        f' rx="8" fill="{colours.fill}" stroke="{colours.border}" stroke-width="1.6"{dash}/>'
        f'<text x="{box.x:.1f}" y="{box.y - 4:.1f}" text-anchor="middle" font-size="13"'
        f' font-weight="600" fill="{colours.font}">{escape(lines[0])}</text>'
        f'<text x="{box.x:.1f}" y="{box.y + 13:.1f}" text-anchor="middle" font-size="11"'
        f' fill="{colours.font}" opacity="0.8">{escape(lines[1])}</text></g>'
    )


_DEFS = (
    "<defs>"
    '<marker id="gf-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
    f' orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{_EDGE}"/></marker>'
    '<marker id="gf-arrow-error" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
    ' markerHeight="7" orient="auto-start-reverse">'
    f'<path d="M0,0 L10,5 L0,10 z" fill="{_ERROR_EDGE}"/></marker>'
    "</defs>"
)


def draw(graph: nx.DiGraph[Any]) -> str:
    """The graph as an ``<svg>`` element: nodes coloured by ``state``, edges with branch labels.

    Raises:
        ValueError: the graph has more than ``MAX_NODES`` nodes.
    """
    if graph.number_of_nodes() > MAX_NODES:
        raise ValueError(
            f"the graph has {graph.number_of_nodes()} nodes, more than the {MAX_NODES} drawn here"
        )
    labels = {node: _label(node, attrs) for node, attrs in graph.nodes(data=True)}
    placed: Layout = layout(graph, {node: _size(lines) for node, lines in labels.items()})
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="run-graph"'
        f' width="{placed.width:.0f}" height="{placed.height:.0f}"'
        f' viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" font-family="system-ui,'
        ' -apple-system, Segoe UI, Helvetica, Arial, sans-serif" role="img"'
        ' aria-label="run graph">',
        _DEFS,
    ]
    parts += [_edge_svg(edge, graph.edges[edge.source, edge.target]) for edge in placed.edges]
    parts += [
        _node_svg(node, attrs, placed.nodes[node], labels[node])
        for node, attrs in graph.nodes(data=True)
    ]
    parts.append("</svg>")
    return "".join(parts)
