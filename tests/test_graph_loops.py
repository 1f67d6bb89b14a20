"""Bounded loops in graphs: back edges declared with ``loop=``, passes recorded as ``node#2``..."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import graphflow as gf
from graphflow.graph.loops import split_pass_name
from graphflow.graph.plan import Topology
from graphflow.runtime.frontier import Frontier
from tests.flows import graph_flows
from tests.test_crash import executions, run_flow


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "log.txt"
    monkeypatch.setenv("GF_CRASH_LOG", str(path))
    return path


def _names(status: gf.RunStatus) -> list[str]:
    return [step.name for step in status.steps]


async def test_three_pass_loop_records_each_pass_and_refs_read_the_latest(
    log: Path, tmp_path: Path
) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'loop.db'}") as engine:
        run_id = await engine.start("loop_article", {"topic": "durability", "needed": 3})
        status = await engine.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == {"publish": "published: durability v3"}
    assert _names(status) == [
        "draft",
        "review",
        "draft#2",
        "review#2",
        "draft#3",
        "review#3",
        "publish",
    ]
    outputs = {step.name: step.output for step in status.steps}
    # Each pass's review read its own pass's draft; publish read the last one.
    assert outputs["review"] == {"reviewed": "durability v1", "version": 1}
    assert outputs["review#2"] == {"reviewed": "durability v2", "version": 2}
    assert outputs["review#3"] == {"reviewed": "durability v3", "version": 3}
    assert executions(tmp_path) == Counter(
        {"draft 1": 1, "review 1": 1, "draft 2": 1, "review 2": 1, "draft 3": 1}
        | {"review 3": 1, "publish": 1}
    )
    parents = {step.name: step.parents for step in status.steps}
    assert parents["draft#2"] == ["review"]
    assert parents["review#2"] == ["draft#2"]
    assert parents["publish"] == ["review#3"]


async def test_loop_that_ends_at_once_runs_one_pass(log: Path, tmp_path: Path) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'loop.db'}") as engine:
        output = await engine.run("loop_article", {"topic": "t", "needed": 1}, timeout=30)
        runs = await engine.list_runs(workflow="loop_article")
        status = await engine.status(runs[0].run_id)
    assert output == {"publish": "published: t v1"}
    assert _names(status) == ["draft", "review", "publish"]


async def test_a_pass_beyond_the_limit_fails_the_run_with_loop_limit_error(
    log: Path, tmp_path: Path
) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'loop.db'}") as engine:
        run_id = await engine.start("loop_article", {"topic": "t", "needed": 5})
        status = await engine.wait(run_id, timeout=30)
        with pytest.raises(gf.RunFailed) as failed:
            await engine.run("loop_article", {"topic": "t", "needed": 5}, run_id=run_id)
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.type == "LoopLimitError"
    assert "node 'review'" in status.error.message
    assert "back to 'draft' after 3 passes" in status.error.message
    assert _names(status) == ["draft", "review", "draft#2", "review#2", "draft#3", "review#3"]
    assert "LoopLimitError" in str(failed.value)
    assert "publish" not in executions(tmp_path)


async def test_loop_limit_error_is_exported_and_names_its_facts() -> None:
    error = gf.LoopLimitError(
        workflow="w", run_id="r1", node="review", target="draft", max_iterations=3
    )
    assert isinstance(error, gf.RunError)
    assert (error.node, error.target, error.max_iterations) == ("review", "draft", 3)
    assert "loop={'max_iterations': 3}" in str(error)


async def test_replay_of_a_finished_loop_run_runs_nothing_again(log: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    async with gf.Engine(url) as engine:
        await engine.run("loop_article", {"topic": "t", "needed": 2}, run_id="l1", timeout=30)
    before = executions(tmp_path)
    async with gf.Engine(url) as engine:
        assert await engine.run("loop_article", {"topic": "t", "needed": 2}, run_id="l1") == {
            "publish": "published: t v2"
        }
    assert executions(tmp_path) == before


@pytest.mark.slow
async def test_killed_mid_loop_resumes_in_the_pass_it_was_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    data = {"topic": "crash", "needed": 3, "kill_at": 2}
    killed = run_flow(url, "loop_article", "loop-1", data, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    async with gf.Engine(url, worker=False) as client:
        before = await client.status("loop-1")
    assert before.state == "running"
    assert [(s.name, s.state) for s in before.steps] == [
        ("draft", "completed"),
        ("review", "completed"),
    ]

    recovered = run_flow(url, "-", "loop-1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == {
        "publish": "published: crash v3"
    }
    assert executions(tmp_path) == Counter(
        {"draft 1": 1, "review 1": 1, "draft 2": 2, "review 2": 1, "draft 3": 1}
        | {"review 3": 1, "publish": 1}
    )
    async with gf.Engine(url, worker=False) as client:
        after = await client.status("loop-1")
    assert _names(after) == [
        *("draft", "review", "draft#2", "review#2", "draft#3", "review#3"),
        "publish",
    ]


def test_dot_and_mermaid_draw_the_back_edge_dashed_with_its_bound() -> None:
    dot = gf.to_dot(graph_flows.loop_article)
    assert dot == (
        'digraph "loop_article" {\n'
        "  rankdir=LR;\n"
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];\n'
        '  edge [fontname="Helvetica"];\n'
        '  "draft" [label="draft\\nloop_draft"];\n'
        '  "publish" [label="publish\\nloop_publish"];\n'
        '  "review" [label="review\\nloop_review"];\n'
        '  "draft" -> "review";\n'
        '  "review" -> "draft" [label="retry (max 3 passes)", style=dashed, constraint=false];\n'
        '  "review" -> "publish" [label="done"];\n'
        "}\n"
    )
    mermaid = gf.to_mermaid(graph_flows.loop_article)
    assert '  n2 -.->|"retry (max 3 passes)"| n0' in mermaid.splitlines()
    edge = graph_flows.loop_article.nx.edges["review", "draft"]
    assert (edge["kind"], edge["max_iterations"]) == ("loop", 3)


# --- definition errors ----------------------------------------------------------------------------


@gf.function(name="loop_step")
def loop_step(value: int = 0) -> int:
    return value


def _graph(config: dict[str, Any], nodes: tuple[str, ...] = ("a", "b", "c")) -> gf.GraphWorkflow:
    return gf.workflow_graph(
        name="loop_errors", nodes=dict.fromkeys(nodes, "loop_step"), config=config
    )


def test_a_cycle_without_loop_stays_a_graph_definition_error() -> None:
    with pytest.raises(gf.GraphDefinitionError, match="cycle: .*loop=\\{'max_iterations': N\\}"):
        _graph({"a": {"next": "b"}, "b": {"next": {"retry": "a", "done": "c"}}})


def test_an_unconditional_back_edge_is_refused() -> None:
    with pytest.raises(gf.GraphDefinitionError, match="unconditional, so the loop could never"):
        _graph({"a": {"next": "b"}, "b": {"next": ["a", "c"], "loop": {"max_iterations": 2}}})


def test_loop_without_a_back_edge_is_refused() -> None:
    with pytest.raises(gf.GraphDefinitionError, match="none of its next targets leads back"):
        _graph({"a": {"next": "b"}, "b": {"next": "c", "loop": {"max_iterations": 2}}})


@pytest.mark.parametrize("bad", [{"max_iterations": 0}, {"max": 3}, 3, {"max_iterations": True}])
def test_bad_loop_options_are_refused(bad: object) -> None:
    with pytest.raises(gf.GraphDefinitionError, match="loop must be"):
        _graph({"a": {"next": "b"}, "b": {"next": {"retry": "a", "done": "c"}, "loop": bad}})


def test_leaving_a_loop_from_inside_its_body_is_refused() -> None:
    with pytest.raises(gf.GraphDefinitionError, match="leave the loop from 'c'"):
        _graph(
            {
                "a": {"next": ["b", "d"]},
                "b": {"next": "c"},
                "c": {"next": {"retry": "a", "done": []}, "loop": {"max_iterations": 2}},
            },
            nodes=("a", "b", "c", "d"),
        )


def test_a_self_loop_reruns_the_node() -> None:
    graph = _graph(
        {"a": {"next": {"again": "a", "done": "b"}, "loop": {"max_iterations": 4}}},
        nodes=("a", "b"),
    )
    (loop,) = graph.plan.loops
    assert (loop.source, loop.target, loop.body) == ("a", "a", ("a",))


def test_graphs_without_loops_keep_their_hash() -> None:
    plain = _graph({"a": {"next": "b"}}, nodes=("a", "b"))
    # The graph hash of runs stored before loops existed must not change.
    assert plain.hash == _graph({"a": {"next": "b"}}, nodes=("a", "b")).hash
    looped = _graph(
        {"a": {"next": {"again": "a", "done": "b"}, "loop": {"max_iterations": 4}}},
        nodes=("a", "b"),
    )
    assert (
        looped.hash
        != _graph(
            {"a": {"next": {"again": "a", "done": "b"}, "loop": {"max_iterations": 5}}},
            nodes=("a", "b"),
        ).hash
    )


# --- the kernel -----------------------------------------------------------------------------------


def _loop_topology() -> Topology:
    return Topology.build(
        order=["a", "b", "c"],
        edges=[("a", "b", None), ("b", "c", "done")],
        keys={"b": ["retry", "done"]},
        loops=[("b", "a", ["retry"], 2, ["a", "b"])],
    )


def test_frontier_resets_the_body_for_each_pass_then_enforces_the_limit() -> None:
    frontier = Frontier(_loop_topology())
    assert frontier.ready() == ["a"]
    frontier.done("a")
    assert frontier.ready() == ["b"]
    frontier.done("b", "retry")
    assert frontier.ready() == ["a"]
    assert (frontier.pass_of("a"), frontier.step_name("b")) == (2, "b#2")
    frontier.done("a")
    assert frontier.ready() == ["b"]
    with pytest.raises(gf.LoopLimitError):
        frontier.done("b", "retry")


def test_frontier_replay_restores_the_pass_in_flight() -> None:
    frontier = Frontier(_loop_topology())
    frontier.replay([("a", 1, "completed", None), ("b", 1, "completed", "retry")])
    assert frontier.ready() == ["a"]
    assert frontier.step_name("a") == "a#2"
    frontier.done("a")
    assert frontier.ready() == ["b"]
    frontier.done("b", "done")
    assert frontier.ready() == ["c"]


def test_pass_names_split_back() -> None:
    assert split_pass_name("draft#3") == ("draft", 3)
    assert split_pass_name("draft") == ("draft", 1)
    assert split_pass_name("a#b") == ("a#b", 1)
    assert split_pass_name("square#2[0]") == ("square#2[0]", 1)


# --- feedback: a node reads a later node of its loop from the previous pass --------------------


def _feedback_graph(registry: gf.Registry, calls: list[tuple[Any, Any]]) -> gf.GraphWorkflow:
    @gf.function(registry=registry)
    def write(topic: str, notes: str | None, previous: int | None) -> dict[str, Any]:
        calls.append((notes, previous))
        version = 1 if previous is None else previous + 1
        return {"text": f"{topic} v{version}", "version": version, "applied": notes}

    @gf.function(registry=registry)
    def critique(version: int) -> dict[str, str]:
        gf.branch("done" if version >= 3 else "retry")
        return {"notes": f"tighten v{version}"}

    return gf.workflow_graph(
        name="feedback_loop",
        nodes={"draft": write, "review": critique},
        config={
            "draft": {
                "next": "review",
                "input": lambda ref: {
                    "topic": ref("$input", "topic"),
                    "notes": ref("review", "notes", default=None),  # the previous pass's review
                    "previous": ref("draft", "version", default=None),  # its own previous pass
                },
            },
            "review": {
                "next": {"retry": "draft", "done": []},
                "input": lambda ref: {"version": ref("draft", "version")},
                "loop": {"max_iterations": 5},
            },
        },
        output=lambda ref: {"text": ref("draft", "text"), "applied": ref("draft", "applied")},
        registry=registry,
    )


async def test_a_node_reads_the_previous_pass_of_later_loop_nodes(
    registry: gf.Registry, tmp_path: Path
) -> None:
    calls: list[tuple[Any, Any]] = []
    graph = _feedback_graph(registry, calls)
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    async with gf.Engine(url, registry=registry) as engine:
        output = await engine.run(graph, {"topic": "t"}, run_id="f1", timeout=30)
    # The first pass gets the defaults; each later one its previous pass's review and draft.
    assert calls == [(None, None), ("tighten v1", 1), ("tighten v2", 2)]
    assert output == {"text": "t v3", "applied": "tighten v2"}
    async with gf.Engine(url, registry=registry) as engine:  # replay: nothing runs again
        assert await engine.run(graph, {"topic": "t"}, run_id="f1") == output
    assert len(calls) == 3


def test_a_feedback_ref_without_default_is_a_definition_error(registry: gf.Registry) -> None:
    gf.function(name="step", registry=registry)(lambda value=None: {"v": value})
    with pytest.raises(gf.GraphDefinitionError, match=r"previous pass.*default="):
        gf.workflow_graph(
            name="no_default",
            nodes={"a": "step", "b": "step"},
            config={
                "a": {"next": "b", "input": lambda ref: {"value": ref("b", "v")}},
                "b": {"next": {"again": "a", "done": []}, "loop": {"max_iterations": 2}},
            },
            registry=registry,
        )


def test_refs_to_later_nodes_outside_a_loop_stay_refused(registry: gf.Registry) -> None:
    gf.function(name="step", registry=registry)(lambda value=None: {"v": value})
    with pytest.raises(gf.GraphDefinitionError, match="not an ancestor"):
        gf.workflow_graph(
            name="plain",
            nodes={"a": "step", "b": "step"},
            config={"a": {"next": "b", "input": lambda ref: {"value": ref("b", "v", default=1)}}},
            registry=registry,
        )
