"""``status.steps`` order of graph runs, ``engine.run_graph`` for both kinds of run, goldens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import graphflow as gf
from tests.flows import graph_flows
from tests.graph_helpers import echo_function, engine, failed_run, states

ROOT = Path(__file__).resolve().parents[1]


async def test_status_lists_nodes_in_the_order_they_were_resolved(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def pick(key: str) -> str:
        gf.branch(key)
        return key

    echo_function(registry, "echo")
    gf.workflow_graph(
        name="ordered",
        nodes={"start": pick, "left": "echo", "right": "echo", "end": "echo", "after": "echo"},
        config={
            "start": {"next": {"left": "left", "right": "right"}},
            "left": {"next": "end", "input": {}},
            "right": {"next": "end", "input": {}},
            "end": {"next": "after", "input": {}},
            "after": {"input": {}},
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("ordered", {"key": "left"})
        status = await e.wait(run_id)
    assert states(status) == [
        ("start", "completed"),
        ("right", "skipped"),
        ("left", "completed"),
        ("end", "completed"),
        ("after", "completed"),
    ]


async def test_parallel_nodes_are_listed_as_they_finish(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def slow() -> str:
        await anyio.sleep(0.2)
        return "slow"

    @gf.function(registry=registry)
    async def fast() -> str:
        return "fast"

    gf.workflow_graph(
        name="racing",
        nodes={"a_slow": slow, "b_fast": fast},
        config={"a_slow": {"input": {}}, "b_fast": {"input": {}}},
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await e.wait(await e.start("racing", {}))
    assert [step.name for step in status.steps] == ["b_fast", "a_slow"]


async def test_run_graph_of_a_graph_run_shows_every_declared_node_with_its_state(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def ok(n: int) -> int:
        return n

    @gf.function(registry=registry)
    async def boom(n: int) -> int:
        raise RuntimeError(f"boom {n}")

    gf.workflow_graph(
        name="partial",
        nodes={"a": ok, "b": boom, "c": ok, "d": ok},
        config={
            "a": {"next": ["b", "d"], "input": {"n": 1}},
            "b": {"next": "c", "retries": 1, "input": {"n": 2}},
            "d": {"input": {"n": 3}},
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "partial")
        graph = await e.run_graph(status.run_id)
    assert graph.graph["name"] == "partial"
    assert sorted(graph.edges) == [("a", "b"), ("a", "d"), ("b", "c")]
    assert {
        node: (attrs["state"], attrs["attempts"]) for node, attrs in graph.nodes(data=True)
    } == {
        "a": ("completed", 1),
        "b": ("failed", 2),
        "c": ("pending", 0),
        "d": ("completed", 1),
    }
    assert all(attrs["kind"] == "node" for _, attrs in graph.nodes(data=True))
    assert graph.nodes["b"]["function"] == "boom"
    assert graph.nodes["a"]["finished_at"] is not None


async def test_run_graph_of_an_imperative_run_shows_gather_as_fan_out_and_fan_in(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def square(x: int) -> int:
        await anyio.sleep(0.001 * (3 - x))
        return x * x

    @gf.workflow(registry=registry)
    async def fan(wf: gf.Workflow, data: None) -> int:
        first = await wf.do("first", lambda: 1)
        async with anyio.create_task_group() as tg:
            for x in range(3):
                tg.start_soon(wf.do, f"square {x}", square, {"x": x + first})
        return await wf.do("last", lambda: 0)

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("fan")
        await e.wait(run_id)
        graph = await e.run_graph(run_id)
    squares = [f"square {x}" for x in range(3)]
    assert sorted(graph.edges) == sorted(
        [("first", name) for name in squares] + [(name, "last") for name in squares]
    )
    assert {node: graph.nodes[node]["kind"] for node in graph} == {
        "first": "inline",
        **dict.fromkeys(squares, "rpc"),
        "last": "inline",
    }
    assert all(attrs["state"] == "completed" for _, attrs in graph.nodes(data=True))
    assert graph.nodes["square 0"]["function"] == "square"


GOLDEN_DOT = r"""digraph "golden_signup" {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
  edge [fontname="Helvetica"];
  "classify" [label="classify\nclassify_plan\ncompleted", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32"];
  "notify" [label="notify\nnotify_user\ncompleted", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32"];
  "undo" [label="undo\nundo_signup\npending", style="rounded,filled", fillcolor="#ffffff", color="#9e9e9e"];
  "upgrade" [label="upgrade\nupgrade_account\nskipped", style="rounded,filled,dashed", fillcolor="#eeeeee", color="#9e9e9e", fontcolor="#616161"];
  "welcome" [label="welcome\nsend_welcome\ncompleted, 2 attempts", style="rounded,filled", fillcolor="#c8e6c9", color="#2e7d32"];
  "classify" -> "undo" [label="on_error", style=dashed, color="#c62828", fontcolor="#c62828"];
  "classify" -> "upgrade" [label="pro"];
  "classify" -> "welcome" [label="basic | pro"];
  "upgrade" -> "notify";
  "welcome" -> "notify";
}
"""

GOLDEN_MERMAID = """flowchart LR
  n0["classify<br/>classify_plan<br/>completed"]
  n1["notify<br/>notify_user<br/>completed"]
  n2["undo<br/>undo_signup<br/>pending"]
  n3["upgrade<br/>upgrade_account<br/>skipped"]
  n4["welcome<br/>send_welcome<br/>completed, 2 attempts"]
  n0 -.->|"on_error"| n2
  n0 -->|"pro"| n3
  n0 -->|"basic #124; pro"| n4
  n3 --> n1
  n4 --> n1
  classDef completed fill:#c8e6c9,stroke:#2e7d32,color:#000000
  class n0,n1,n4 completed
  classDef pending fill:#ffffff,stroke:#9e9e9e,color:#000000
  class n2 pending
  classDef skipped fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:5 5
  class n3 skipped
"""


async def test_finished_run_graph_renders_to_golden_dot_and_mermaid(sqlite_url: str) -> None:
    dot, mermaid = await graph_flows.golden_texts(sqlite_url)
    assert dot == GOLDEN_DOT
    assert mermaid == GOLDEN_MERMAID


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_finished_run_graph_renders_identically_under_another_hash_seed(
    tmp_path: Path, seed: str
) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    url = f"sqlite:///{tmp_path / 'golden.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "tests.flows.graph_flows", url],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == GOLDEN_DOT + GOLDEN_MERMAID


async def test_a_client_without_the_code_draws_a_run_as_the_declared_graph(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def classify(n: int) -> dict[str, object]:
        gf.branch("small" if n < 5 else "big")
        return {"items": [1, 2, 3], "n": n}

    echo_function(registry, "echo")
    gf.workflow_graph(
        name="drawn",
        nodes={"classify": classify, "each": "echo", "small": "echo", "big": "echo"},
        config={
            "classify": {"next": {"small": ["small", "each"], "big": "big"}},
            "each": {"for_each": gf.ref("classify", "items"), "input": {"item": gf.ref("$item")}},
            "small": {"input": {}},
            "big": {"input": {}},
        },
        registry=registry,
    )
    async with engine(store_url, registry) as e:
        run_id = await e.start("drawn", {"n": 1})
        await e.wait(run_id)
        with_code = gf.to_dot(await e.run_graph(run_id))
        if store_url.startswith("memory"):
            without_code = with_code  # a private store: no other engine sees it
        else:
            async with gf.Engine(store_url, worker=False) as client:  # default registry: no code
                without_code = gf.to_dot(await client.run_graph(run_id))
    assert without_code == with_code
    assert '"classify" -> "each" [label="small"];' in with_code
    assert '"classify" -> "big" [label="big"];' in with_code
    assert "each[0]" not in with_code  # for_each items fold into their node, as declared
