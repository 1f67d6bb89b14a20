"""Render a declared graph or a run graph as DOT, Mermaid or SVG text.

Input is a ``networkx.DiGraph`` (a ``GraphWorkflow``'s ``.nx``, or the run graph from
``engine.run_graph``) or a ``GraphWorkflow``. Node labels show the node id and its function (or
step kind); edge labels show branch keys; a bounded loop's back edge is dashed, labelled with its
keys and bound. Run graph nodes carry ``state`` and are coloured by it.
Output is deterministic: nodes and edges are sorted by id, whatever the hash seed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import GraphflowError
from .spec import GraphWorkflow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from networkx import DiGraph

__all__ = ("RenderError", "to_dot", "to_mermaid", "to_svg")


class RenderError(GraphflowError):
    """A graph could not be rendered (e.g. SVG without Graphviz installed)."""

    problem: str
    fix: str

    def __init__(self, *, problem: str, fix: str) -> None:
        super().__init__(
            f"cannot render the graph: {problem}. Fix: {fix}", problem=problem, fix=fix
        )


@dataclass(frozen=True, slots=True)
class Colours:
    """How a node in one state is drawn."""

    fill: str
    border: str
    font: str = "#000000"
    dashed: bool = False


STATE_COLOURS: Mapping[str, Colours] = {
    "pending": Colours("#ffffff", "#9e9e9e"),
    "queued": Colours("#fff9c4", "#9e9e9e"),
    "running": Colours("#bbdefb", "#1565c0"),
    "completed": Colours("#c8e6c9", "#2e7d32"),
    "failed": Colours("#ffcdd2", "#c62828"),
    "skipped": Colours("#eeeeee", "#9e9e9e", "#616161", dashed=True),
    "sleeping": Colours("#ffe0b2", "#ef6c00"),
    "suspended": Colours("#ffe0b2", "#ef6c00"),
    "cancelled": Colours("#616161", "#212121", "#ffffff"),
}
"""The colours of each run or step state, shared by every renderer (DOT, Mermaid, the web page)."""
_ERROR_EDGE = "#c62828"


def _as_graph(graph: DiGraph[Any] | GraphWorkflow) -> DiGraph[Any]:
    return graph.nx if isinstance(graph, GraphWorkflow) else graph


def _label_lines(node: object, attrs: Mapping[str, Any]) -> list[str]:
    lines = [str(node)]
    detail = attrs.get("function") or attrs.get("kind")
    if detail and detail != "node" and str(detail) != str(node):
        lines.append(str(detail))
    state = attrs.get("state")
    if state:
        attempts = attrs.get("attempts")
        plural = f", {attempts} attempts" if isinstance(attempts, int) and attempts > 1 else ""
        lines.append(f"{state}{plural}")
    return lines


def _edge_label(attrs: Mapping[str, Any]) -> str | None:
    if attrs.get("kind") == "on_error":
        return "on_error"
    branch = attrs.get("branch")
    if attrs.get("kind") == "loop":  # a bounded loop's back edge shows its bound
        return f"{branch} (max {attrs.get('max_iterations')} passes)"
    return None if branch is None else str(branch)


def _sorted_nodes(graph: DiGraph[Any]) -> list[tuple[Any, Mapping[str, Any]]]:
    return sorted(graph.nodes(data=True), key=lambda item: str(item[0]))


def _sorted_edges(graph: DiGraph[Any]) -> list[tuple[Any, Any, Mapping[str, Any]]]:
    return sorted(graph.edges(data=True), key=lambda edge: (str(edge[0]), str(edge[1])))


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_quote(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_node(node: object, attrs: Mapping[str, Any]) -> str:
    label = "\\n".join(_dot_escape(line) for line in _label_lines(node, attrs))
    parts = [f'label="{label}"']
    colours = STATE_COLOURS.get(str(attrs.get("state")))
    if colours is not None:
        style = "rounded,filled,dashed" if colours.dashed else "rounded,filled"
        parts += [f'style="{style}"', f'fillcolor="{colours.fill}"', f'color="{colours.border}"']
        if colours.font != "#000000":
            parts.append(f'fontcolor="{colours.font}"')
    return f"  {_dot_quote(str(node))} [{', '.join(parts)}];"


def _dot_edge(source: object, target: object, attrs: Mapping[str, Any]) -> str:
    parts = []
    label = _edge_label(attrs)
    if label is not None:
        parts.append(f"label={_dot_quote(label)}")
    if attrs.get("kind") == "on_error":
        parts += ["style=dashed", f'color="{_ERROR_EDGE}"', f'fontcolor="{_ERROR_EDGE}"']
    elif attrs.get("kind") == "loop":
        parts += ["style=dashed", "constraint=false"]  # a back edge: no say in the layout
    suffix = f" [{', '.join(parts)}]" if parts else ""
    return f"  {_dot_quote(str(source))} -> {_dot_quote(str(target))}{suffix};"


def to_dot(graph: DiGraph[Any] | GraphWorkflow) -> str:
    """The graph as Graphviz DOT text (deterministic: sorted nodes and edges)."""
    digraph = _as_graph(graph)
    lines = [
        f"digraph {_dot_quote(str(digraph.graph.get('name') or 'graph'))} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
        '  edge [fontname="Helvetica"];',
    ]
    lines += [_dot_node(node, attrs) for node, attrs in _sorted_nodes(digraph)]
    lines += [_dot_edge(s, t, attrs) for s, t, attrs in _sorted_edges(digraph)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    for raw, entity in (
        ("#", "#35;"),
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
        ("|", "#124;"),
    ):
        text = text.replace(raw, entity)
    return text


def _mermaid_class(state: str) -> str:
    colours = STATE_COLOURS[state]
    style = f"fill:{colours.fill},stroke:{colours.border},color:{colours.font}"
    return f"  classDef {state} {style}" + (",stroke-dasharray:5 5" if colours.dashed else "")


def to_mermaid(graph: DiGraph[Any] | GraphWorkflow) -> str:
    """The graph as a Mermaid flowchart (deterministic: sorted nodes and edges)."""
    digraph = _as_graph(graph)
    nodes = _sorted_nodes(digraph)
    ids = {node: f"n{i}" for i, (node, _) in enumerate(nodes)}
    lines = ["flowchart LR"]
    by_state: dict[str, list[str]] = {}
    for node, attrs in nodes:
        label = "<br/>".join(_mermaid_text(line) for line in _label_lines(node, attrs))
        lines.append(f'  {ids[node]}["{label}"]')
        state = str(attrs.get("state"))
        if state in STATE_COLOURS:
            by_state.setdefault(state, []).append(ids[node])
    for source, target, attrs in _sorted_edges(digraph):
        arrow = "-.->" if attrs.get("kind") in ("on_error", "loop") else "-->"
        edge_label = _edge_label(attrs)
        text = "" if edge_label is None else f'|"{_mermaid_text(edge_label)}"|'
        lines.append(f"  {ids[source]} {arrow}{text} {ids[target]}")
    for state in sorted(by_state):
        lines.append(_mermaid_class(state))
        lines.append(f"  class {','.join(by_state[state])} {state}")
    return "\n".join(lines) + "\n"


def to_svg(graph: DiGraph[Any] | GraphWorkflow, *, timeout: float = 30.0) -> str:
    """The graph as SVG, drawn by the Graphviz ``dot`` program (a blocking subprocess call).

    Raises:
        RenderError: Graphviz is not installed, or ``dot`` failed.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise RenderError(
            problem="SVG needs the Graphviz 'dot' program, which is not on PATH",
            fix="install Graphviz (apt-get install graphviz, brew install graphviz) or use"
            " format 'dot' or 'mermaid'",
        )
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=to_dot(graph),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(problem=f"running {dot!r} failed: {exc}", fix=_DOT_FIX) from exc
    if done.returncode != 0:
        problem = f"{dot!r} exited with {done.returncode}: {done.stderr.strip()}"
        raise RenderError(problem=problem, fix=_DOT_FIX)
    return done.stdout


_DOT_FIX = "check the Graphviz installation (dot -V), or use format 'dot' or 'mermaid'"
