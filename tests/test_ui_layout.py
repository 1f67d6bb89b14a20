"""The page's pure parts: the layered layout, the SVG drawing and the resume form's schema mapping."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any, Literal

import networkx as nx
import pytest
from pydantic import BaseModel, TypeAdapter

from graphflow.ui.forms import FormError, fields_of, form_data, render_form, validation_errors
from graphflow.ui.layout import layout
from graphflow.ui.svg import MAX_NODES, draw


def diamond() -> nx.DiGraph[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_edges_from([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")])
    return graph


def sizes(graph: nx.DiGraph[str], width: float = 80.0) -> dict[Any, tuple[float, float]]:
    return dict.fromkeys(graph, (width, 40.0))


def test_every_edge_points_down_and_long_edges_bend_through_the_ranks_between() -> None:
    graph = diamond()
    placed = layout(graph, sizes(graph))
    for edge in placed.edges:
        assert placed.nodes[edge.source].y < placed.nodes[edge.target].y
        assert edge.points[0][1] < edge.points[-1][1]
        assert not edge.back
    long_edge = next(e for e in placed.edges if (e.source, e.target) == ("a", "d"))
    assert len(long_edge.points) == 3  # one bend on b's and c's rank


def test_nodes_of_one_rank_do_not_overlap_and_stay_inside_the_picture() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_edges_from(("root", f"child {i}") for i in range(7))
    placed = layout(graph, {n: (60.0 + 10 * len(n), 40.0) for n in graph})
    row = sorted((placed.nodes[f"child {i}"] for i in range(7)), key=lambda box: box.x)
    for left, right in itertools.pairwise(row):
        assert left.x + left.width / 2 < right.x - right.width / 2
    for box in placed.nodes.values():
        assert box.x - box.width / 2 >= 0 and box.x + box.width / 2 <= placed.width
        assert box.y - box.height / 2 >= 0 and box.y + box.height / 2 <= placed.height


def test_a_cycle_is_drawn_with_its_closing_edge_marked_back() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_edges_from([("a", "b"), ("b", "c"), ("c", "a")])
    placed = layout(graph, sizes(graph))
    back = [(e.source, e.target) for e in placed.edges if e.back]
    assert back == [("c", "a")]
    closing = next(e for e in placed.edges if e.back)
    assert closing.points[0][1] > closing.points[-1][1]  # it runs upwards, from c to a


def test_an_empty_graph_and_a_lonely_node_lay_out() -> None:
    empty: nx.DiGraph[str] = nx.DiGraph()
    assert layout(empty, {}).nodes == {}
    lonely: nx.DiGraph[str] = nx.DiGraph()
    lonely.add_node("only")
    assert set(layout(lonely, sizes(lonely)).nodes) == {"only"}


def test_the_drawing_is_the_same_whatever_the_hash_seed() -> None:
    script = (
        "import networkx as nx\n"
        "from graphflow.ui.svg import draw\n"
        "g = nx.DiGraph()\n"
        "g.add_edges_from([(f'n{i}', f'n{j}') for i in range(12) for j in range(i + 1, 12)"
        " if (i * 7 + j) % 5 == 0])\n"
        "print(draw(g))\n"
    )
    drawings = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(drawings) == 1


def test_svg_nodes_carry_their_state_and_every_text_is_escaped() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_node('<b>"bold"</b>', kind="do", function="f&g", state="failed", attempts=3)
    graph.add_node("next", kind="do", function="f", state="pending", attempts=0)
    graph.add_edge('<b>"bold"</b>', "next", branch="<yes>")
    svg = draw(graph)
    assert 'data-step="&lt;b&gt;&quot;bold&quot;&lt;/b&gt;" data-state="failed"' in svg
    assert "f&amp;g · failed, 3 attempts" in svg
    assert "&lt;yes&gt;</text>" in svg
    assert "<b>" not in svg


def test_too_many_nodes_are_refused_rather_than_drawn() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(str(i) for i in range(MAX_NODES + 1))
    with pytest.raises(ValueError, match="more than the"):
        draw(graph)


# --- resume forms ---------------------------------------------------------------------------------


class Address(BaseModel):
    city: str


class Decision(BaseModel):
    approved: bool
    level: Literal["low", "high"] = "low"
    note: str | None = None
    count: int
    ratio: float = 0.5
    address: Address | None = None


def decision_fields() -> Any:
    fields = fields_of(TypeAdapter(Decision).json_schema())
    assert fields is not None
    return {field.name: field for field in fields}


def test_each_property_gets_the_control_its_type_needs() -> None:
    fields = decision_fields()
    assert {name: field.control for name, field in fields.items()} == {
        "approved": "checkbox",
        "level": "select",
        "note": "text",
        "count": "integer",
        "ratio": "number",
        "address": "json",
    }
    assert fields["level"].options == ('"low"', '"high"')
    assert fields["level"].default == '"low"'
    assert fields["approved"].required and fields["count"].required
    assert not fields["note"].required


def test_submitted_text_becomes_typed_json() -> None:
    fields = list(decision_fields().values())
    data, errors = form_data(
        fields,
        {
            "approved": "true",
            "level": '"high"',
            "count": "4",
            "ratio": "2",
            "note": "",
            "address": '{"city": "Oslo"}',
        },
    )
    assert errors == []
    assert data == {
        "approved": True,
        "level": "high",
        "count": 4,
        "ratio": 2.0,
        "address": {"city": "Oslo"},
    }
    assert TypeAdapter(Decision).validate_python(data).address == Address(city="Oslo")


def test_unconvertible_text_is_left_for_validation_and_bad_json_is_named() -> None:
    fields = list(decision_fields().values())
    data, errors = form_data(fields, {"count": "many", "address": "{oops"})
    assert data == {"approved": False, "count": "many"}
    assert [e.field for e in errors] == ["address"]
    assert errors[0].message.startswith("not valid JSON")


def test_a_schema_without_properties_gets_one_json_area() -> None:
    assert fields_of(None) is None
    assert fields_of({"type": "integer"}) is None
    assert form_data(None, {"__json__": "[1, 2]"}) == ([1, 2], [])
    assert form_data(None, {"__json__": " "}) == ({}, [])
    form = render_form(action="/x", reason="Why?", schema=None, prefix="p")
    assert '<textarea id="p-__json__" name="__json__"' in form


def test_validation_errors_go_under_their_fields() -> None:
    placed = validation_errors(
        [
            {"loc": ("count",), "msg": "Input should be a valid integer"},
            {"loc": ("address", "city"), "msg": "Field required"},
            {"loc": (), "msg": "whole thing wrong"},
        ],
        {"count", "address"},
    )
    assert placed == [
        FormError(field="count", message="Input should be a valid integer"),
        FormError(field="address", message="city: Field required"),
        FormError(field=None, message="whole thing wrong"),
    ]
