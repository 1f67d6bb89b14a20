from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Any

import networkx as nx
import pytest

from graphflow.errors import GraphflowError
from graphflow.functions import Registry, function
from graphflow.graph.render import RenderError, to_dot, to_mermaid, to_svg
from graphflow.graph.spec import GraphWorkflow, workflow_graph

if TYPE_CHECKING:
    from pathlib import Path


def step(data: Any = None) -> Any:
    return data


@pytest.fixture
def signup() -> GraphWorkflow:
    registry = Registry()
    for name in ("create_user_profile", "send_email", "review_account", "refund"):
        function(name=name, registry=registry)(step)
    return workflow_graph(
        name="signup",
        nodes={
            "create_profile": "create_user_profile",
            "send_welcome": "send_email",
            "review": "review_account",
            "undo": "refund",
        },
        config={
            "create_profile": {
                "next": {"pro": ["review", "send_welcome"], "basic": "send_welcome"},
                "on_error": "undo",
            }
        },
        registry=registry,
    )


@pytest.fixture
def run_graph() -> nx.DiGraph[str]:
    """Shaped like engine.run_graph(): kind, function, state, attempts per step."""
    graph: nx.DiGraph[str] = nx.DiGraph(name="run 'r1'")
    graph.add_node("approval", kind="suspend", function=None, state="suspended", attempts=0)
    graph.add_node("review", kind="node", function="review_account", state="skipped", attempts=0)
    graph.add_node("Wait 5 minutes", kind="sleep", function=None, state="sleeping", attempts=1)
    graph.add_node('Say "hi"', kind="inline", function=None, state="failed", attempts=3)
    graph.add_node("notify", kind="rpc", function="send_email", state="pending", attempts=0)
    graph.add_node("stop", kind="rpc", function="stop", state="cancelled", attempts=1)
    graph.add_node("poll", kind="rpc", function="poll", state="running", attempts=1)
    graph.add_node(
        "Create profile",
        kind="rpc",
        function="create_user_profile",
        state="completed",
        attempts=1,
        started_at="2026-01-01T00:00:00Z",
    )
    graph.add_edge("Wait 5 minutes", "approval")
    graph.add_edge("Create profile", "review", branch="pro")
    graph.add_edge("Create profile", 'Say "hi"')
    graph.add_edge("Create profile", "Wait 5 minutes")
    return graph


SIGNUP_DOT = r"""digraph "signup" {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
  edge [fontname="Helvetica"];
  "create_profile" [label="create_profile\ncreate_user_profile"];
  "review" [label="review\nreview_account"];
  "send_welcome" [label="send_welcome\nsend_email"];
  "undo" [label="undo\nrefund"];
  "create_profile" -> "review" [label="pro"];
  "create_profile" -> "send_welcome" [label="basic | pro"];
  "create_profile" -> "undo" [label="on_error", style=dashed, color="#c62828", fontcolor="#c62828"];
}
"""

SIGNUP_MERMAID = """flowchart LR
  n0["create_profile<br/>create_user_profile"]
  n1["review<br/>review_account"]
  n2["send_welcome<br/>send_email"]
  n3["undo<br/>refund"]
  n0 -->|"pro"| n1
  n0 -->|"basic #124; pro"| n2
  n0 -.->|"on_error"| n3
"""

RUN_DOT = r"""digraph "run 'r1'" {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
  edge [fontname="Helvetica"];
  "Create profile" [label="Create profile\ncreate_user_profile\ncompleted", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32"];
  "Say \"hi\"" [label="Say \"hi\"\ninline\nfailed, 3 attempts", style="rounded,filled", fillcolor="#ffcdd2", color="#c62828"];
  "Wait 5 minutes" [label="Wait 5 minutes\nsleep\nsleeping", style="rounded,filled", fillcolor="#ffe0b2", color="#ef6c00"];
  "approval" [label="approval\nsuspend\nsuspended", style="rounded,filled", fillcolor="#ffe0b2", color="#ef6c00"];
  "notify" [label="notify\nsend_email\npending", style="rounded,filled", fillcolor="#ffffff", color="#9e9e9e"];
  "poll" [label="poll\nrunning", style="rounded,filled", fillcolor="#bbdefb", color="#1565c0"];
  "review" [label="review\nreview_account\nskipped", style="rounded,filled,dashed", fillcolor="#eeeeee", color="#9e9e9e", fontcolor="#616161"];
  "stop" [label="stop\ncancelled", style="rounded,filled", fillcolor="#616161", color="#212121", fontcolor="#ffffff"];
  "Create profile" -> "Say \"hi\"";
  "Create profile" -> "Wait 5 minutes";
  "Create profile" -> "review" [label="pro"];
  "Wait 5 minutes" -> "approval";
}
"""

RUN_MERMAID = """flowchart LR
  n0["Create profile<br/>create_user_profile<br/>completed"]
  n1["Say #quot;hi#quot;<br/>inline<br/>failed, 3 attempts"]
  n2["Wait 5 minutes<br/>sleep<br/>sleeping"]
  n3["approval<br/>suspend<br/>suspended"]
  n4["notify<br/>send_email<br/>pending"]
  n5["poll<br/>running"]
  n6["review<br/>review_account<br/>skipped"]
  n7["stop<br/>cancelled"]
  n0 --> n1
  n0 --> n2
  n0 -->|"pro"| n6
  n2 --> n3
  classDef cancelled fill:#616161,stroke:#212121,color:#ffffff
  class n7 cancelled
  classDef completed fill:#c8e6c9,stroke:#2e7d32,color:#000000
  class n0 completed
  classDef failed fill:#ffcdd2,stroke:#c62828,color:#000000
  class n1 failed
  classDef pending fill:#ffffff,stroke:#9e9e9e,color:#000000
  class n4 pending
  classDef running fill:#bbdefb,stroke:#1565c0,color:#000000
  class n5 running
  classDef skipped fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:5 5
  class n6 skipped
  classDef sleeping fill:#ffe0b2,stroke:#ef6c00,color:#000000
  class n2 sleeping
  classDef suspended fill:#ffe0b2,stroke:#ef6c00,color:#000000
  class n3 suspended
"""


def test_declared_graph_dot_golden(signup: GraphWorkflow) -> None:
    assert to_dot(signup) == SIGNUP_DOT
    assert to_dot(signup.nx) == SIGNUP_DOT


def test_declared_graph_mermaid_golden(signup: GraphWorkflow) -> None:
    assert to_mermaid(signup) == SIGNUP_MERMAID


def test_run_graph_dot_golden_coloured_by_state(run_graph: nx.DiGraph[str]) -> None:
    assert to_dot(run_graph) == RUN_DOT


def test_run_graph_mermaid_golden_coloured_by_state(run_graph: nx.DiGraph[str]) -> None:
    assert to_mermaid(run_graph) == RUN_MERMAID


def test_output_does_not_depend_on_insertion_order(run_graph: nx.DiGraph[str]) -> None:
    reversed_graph: nx.DiGraph[str] = nx.DiGraph(name=run_graph.graph["name"])
    reversed_graph.add_nodes_from(reversed(list(run_graph.nodes(data=True))))
    reversed_graph.add_edges_from(reversed(list(run_graph.edges(data=True))))
    assert to_dot(reversed_graph) == RUN_DOT
    assert to_mermaid(reversed_graph) == RUN_MERMAID


def test_text_is_escaped() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph(name='say "x"')
    graph.add_node('a\\b "c"\nd <e> #f', function="fn")
    assert r'"a\\b \"c\"\nd <e> #f" [label="a\\b \"c\"\nd <e> #f\nfn"];' in to_dot(graph)
    assert r'digraph "say \"x\"" {' in to_dot(graph)
    assert 'n0["a\\b #quot;c#quot;\nd #lt;e#gt; #35;f<br/>fn"]' in to_mermaid(graph)


def test_svg_without_graphviz_says_how_to_fix(
    signup: GraphWorkflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError) as caught:
        to_svg(signup)
    assert isinstance(caught.value, GraphflowError)
    assert "apt-get install graphviz" in str(caught.value)
    assert "'dot' or 'mermaid'" in str(caught.value)


def fake_dot(tmp_path: Path, body: str) -> str:
    script = tmp_path / "dot"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_svg_pipes_dot_through_graphviz(
    signup: GraphWorkflow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dot = fake_dot(
        tmp_path,
        "assert sys.argv[1:] == ['-Tsvg']\nprint('<svg>' + str(len(sys.stdin.read())) + '</svg>')",
    )
    monkeypatch.setattr(shutil, "which", lambda name: dot if name == "dot" else None)
    assert to_svg(signup) == f"<svg>{len(SIGNUP_DOT)}</svg>\n"


def test_svg_reports_a_failing_dot(
    signup: GraphWorkflow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dot = fake_dot(tmp_path, "sys.stderr.write('syntax error in line 3')\nsys.exit(1)")
    monkeypatch.setattr(shutil, "which", lambda name: dot)
    with pytest.raises(RenderError, match="exited with 1: syntax error in line 3"):
        to_svg(signup)
