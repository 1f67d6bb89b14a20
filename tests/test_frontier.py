from __future__ import annotations

import graphlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphflow.errors import BranchError
from graphflow.functions import Registry, function
from graphflow.graph.plan import Topology
from graphflow.graph.spec import workflow_graph
from graphflow.runtime.frontier import Frontier, RestoreError

if TYPE_CHECKING:
    import random

ROOT = Path(__file__).resolve().parents[1]


# --- random DAGs and a plain reference evaluation ---------------------------------------------


@dataclass
class Dag:
    order: list[str]
    edges: list[tuple[str, str, str | None]]
    keys: dict[str, list[str]]
    choice: dict[str, str | None]
    """The branch key each keyed node selects when it runs (None for unkeyed nodes)."""

    def topology(self) -> Topology:
        return Topology.build(order=self.order, edges=self.edges, keys=self.keys)

    def reference(self) -> tuple[set[str], set[str]]:
        """(ran, skipped) by a plain topological evaluation of the skip rule."""
        incoming: dict[str, list[tuple[str, str | None]]] = {n: [] for n in self.order}
        for source, target, key in self.edges:
            incoming[target].append((source, key))
        ran: dict[str, bool] = {}
        for node in self.order:
            edges = incoming[node]
            ran[node] = not edges or any(
                ran[s] and (key is None or key == self.choice[s]) for s, key in edges
            )
        return {n for n in self.order if ran[n]}, {n for n in self.order if not ran[n]}


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    size = draw(st.integers(1, 40))
    order = [f"n{i}" for i in range(size)]
    edges: list[tuple[str, str, str | None]] = []
    keys: dict[str, list[str]] = {}
    choice: dict[str, str | None] = {}
    for i, node in enumerate(order):
        targets = (
            sorted(draw(st.sets(st.integers(i + 1, size - 1), max_size=4))) if i + 1 < size else []
        )
        if draw(st.booleans()):
            node_keys = [f"k{j}" for j in range(draw(st.integers(1, 3)))]
            keys[node] = node_keys
            for target in targets:
                chosen = draw(st.sets(st.sampled_from(node_keys), min_size=1))
                edges.extend((node, order[target], key) for key in sorted(chosen))
            choice[node] = draw(st.sampled_from(node_keys))
        else:
            edges.extend((node, order[target], None) for target in targets)
            choice[node] = None
    return Dag(order=order, edges=edges, keys=keys, choice=choice)


@dataclass
class Trace:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    handed_out: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)


def drive(
    dag: Dag, frontier: Frontier, rng: random.Random, trace: Trace, steps: int | None = None
) -> Trace:
    """Run ready nodes in a random order, checking each is resolved once, after its parents."""
    parents: dict[str, set[str]] = {n: set() for n in dag.order}
    for source, target, _ in dag.edges:
        parents[target].add(source)
    resolved = set(trace.ran) | set(trace.skipped)
    while steps is None or steps > 0:
        for node in frontier.skipped():
            assert node not in resolved
            assert parents[node] <= resolved
            resolved.add(node)
            trace.skipped.append(node)
        for node in frontier.ready():
            assert node not in resolved
            assert node not in trace.running
            assert parents[node] <= resolved
            trace.handed_out.append(node)
            trace.running.append(node)
        if not trace.running:
            break
        node = trace.running.pop(rng.randrange(len(trace.running)))
        frontier.done(node, dag.choice[node])
        resolved.add(node)
        trace.ran.append(node)
        if steps is not None:
            steps -= 1
    return trace


@settings(max_examples=300, deadline=None)
@given(dag=dags(), rng=st.randoms(use_true_random=False))
def test_every_node_resolves_once_by_the_skip_rule_in_any_order(
    dag: Dag, rng: random.Random
) -> None:
    frontier = Frontier(dag.topology())
    trace = drive(dag, frontier, rng, Trace())
    ran, skipped = dag.reference()
    assert sorted(trace.ran) == sorted(ran)
    assert sorted(trace.skipped) == sorted(skipped)
    assert not frontier.is_active()
    assert all(frontier.state(n) == "completed" for n in ran)
    assert all(frontier.state(n) == "skipped" for n in skipped)


@settings(max_examples=300, deadline=None)
@given(dag=dags(), rng=st.randoms(use_true_random=False), data=st.data())
def test_restoring_a_partial_run_gives_the_same_result(
    dag: Dag, rng: random.Random, data: st.DataObject
) -> None:
    first = Frontier(dag.topology())
    partial = drive(dag, first, rng, Trace(), steps=data.draw(st.integers(0, len(dag.order))))
    # A crash may lose the record of skips derived by the last completion.
    recorded_skips = partial.skipped[: data.draw(st.integers(0, len(partial.skipped)))]
    restored = Frontier(dag.topology())
    restored.restore({n: dag.choice[n] for n in partial.ran}, skipped=recorded_skips)
    resumed = drive(dag, restored, rng, Trace(ran=list(partial.ran), skipped=recorded_skips))
    ran, skipped = dag.reference()
    assert sorted(resumed.ran) == sorted(ran)
    assert sorted(resumed.skipped) == sorted(skipped)
    assert set(partial.running) <= set(resumed.handed_out)  # in flight at the crash: run again


# --- examples ---------------------------------------------------------------------------------


def topology(
    edges: str, keys: dict[str, list[str]] | None = None, **on_error: list[str]
) -> Topology:
    """`edges` like "a>b b>c:key"; handlers as keyword arguments (source=[handler, ...])."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    parsed: list[tuple[str, str, str | None]] = []
    for item in edges.split():
        source, rest = item.split(">")
        target, _, key = rest.partition(":")
        parsed.append((source, target, key or None))
        sorter.add(target, source)
    for source, handlers in on_error.items():
        for handler in handlers:
            sorter.add(handler, source)
    order = list(sorter.static_order())
    return Topology.build(order=order, edges=parsed, keys=keys, on_error=on_error)


def test_entry_nodes_are_ready_first() -> None:
    frontier = Frontier(topology("a>c b>c"))
    assert frontier.ready() == ["a", "b"]
    assert frontier.ready() == []
    frontier.done("a")
    assert frontier.ready() == []
    frontier.done("b")
    assert frontier.ready() == ["c"]
    frontier.done("c")
    assert not frontier.is_active()


def test_branch_not_taken_skips_and_skipping_propagates() -> None:
    frontier = Frontier(topology("a>b:pro a>c:basic b>d c>d b>e", keys={"a": ["pro", "basic"]}))
    frontier.ready()
    frontier.done("a", "basic")
    assert frontier.skipped() == ["b", "e"]
    assert frontier.ready() == ["c"]
    frontier.done("c")
    assert frontier.ready() == ["d"]  # one incoming edge taken is enough
    frontier.done("d")
    assert frontier.skipped() == []
    assert not frontier.is_active()


def test_a_key_that_leads_nowhere_skips_every_target() -> None:
    frontier = Frontier(topology("a>b:go b>c", keys={"a": ["go", "stop"]}))
    frontier.ready()
    frontier.done("a", "stop")
    assert frontier.skipped() == ["b", "c"]
    assert not frontier.is_active()


@pytest.mark.parametrize(("key", "problem"), [(None, "no branch key"), ("gold", "'gold'")])
def test_done_with_a_missing_or_unknown_key_is_a_branch_error(
    key: str | None, problem: str
) -> None:
    frontier = Frontier(topology("a>b:pro", keys={"a": ["pro", "basic"]}), run_id="r1")
    frontier.ready()
    with pytest.raises(BranchError, match=problem) as caught:
        frontier.done("a", key)
    assert "['basic', 'pro']" in str(caught.value)
    assert "run 'r1'" in str(caught.value)
    assert frontier.state("a") == "running"  # nothing changed: the caller fails the node


def test_unkeyed_nodes_ignore_a_selected_key() -> None:
    frontier = Frontier(topology("a>b"))
    frontier.ready()
    frontier.done("a", "whatever")
    assert frontier.ready() == ["b"]


def test_done_needs_a_running_node() -> None:
    frontier = Frontier(topology("a>b"))
    with pytest.raises(ValueError, match="'a' is ready, not running"):
        frontier.done("a")
    with pytest.raises(ValueError, match="unknown node 'z'"):
        frontier.done("z")


def test_failure_releases_only_on_error_handlers() -> None:
    frontier = Frontier(topology("a>b a>c b>d", b=["undo_b"], c=["undo_c"]))
    assert frontier.ready() == ["a"]
    frontier.done("a")
    assert frontier.ready() == ["b", "c"]
    assert frontier.failed("b") == ["undo_b"]
    assert frontier.failing
    frontier.done("c")  # in flight when b failed: its completion is still recorded
    assert frontier.ready() == ["undo_b"]
    assert frontier.state("d") == "pending"
    frontier.done("undo_b")
    assert not frontier.is_active()
    assert frontier.state("undo_c") == "pending"


def test_a_handler_runs_once_for_several_failures() -> None:
    frontier = Frontier(topology("a>b a>c", b=["undo"], c=["undo"]))
    frontier.ready()
    frontier.done("a")
    frontier.ready()
    assert frontier.failed("b") == ["undo"]
    assert frontier.failed("c") == []
    assert frontier.ready() == ["undo"]


def test_handlers_are_never_entry_nodes() -> None:
    frontier = Frontier(topology("a>b", a=["undo"]))
    assert frontier.ready() == ["a"]
    frontier.done("a")
    frontier.ready()
    frontier.done("b")
    assert not frontier.is_active()
    assert frontier.state("undo") == "pending"


def test_restore_re_delivers_nodes_in_flight_and_unrecorded_skips() -> None:
    topo = topology("a>b:pro a>c:basic c>d a>e:basic", keys={"a": ["pro", "basic"]})
    frontier = Frontier(topo)
    frontier.restore({"a": "basic"}, skipped=[])
    assert frontier.skipped() == ["b"]
    assert frontier.ready() == ["c", "e"]


def test_restore_of_a_failed_run_re_delivers_its_handler() -> None:
    frontier = Frontier(topology("a>b", a=["undo"]))
    frontier.restore({}, failed=["a"])
    assert frontier.failing
    assert frontier.ready() == ["undo"]


@pytest.mark.parametrize(
    ("completed", "skipped", "reason"),
    [
        ({"b": None}, [], "could not have run yet"),
        ({"a": "gold"}, [], "unknown branch key 'gold'"),
        ({"a": "pro"}, ["b"], "it is not skipped"),
        ({"zz": None}, [], "the graph has no such node"),
    ],
)
def test_restore_refuses_history_that_does_not_fit(
    completed: dict[str, str | None], skipped: list[str], reason: str
) -> None:
    frontier = Frontier(topology("a>b:pro", keys={"a": ["pro", "basic"]}))
    with pytest.raises(RestoreError, match=reason):
        frontier.restore(completed, skipped=skipped)


def test_restore_needs_a_fresh_frontier() -> None:
    frontier = Frontier(topology("a>b"))
    frontier.ready()
    with pytest.raises(ValueError, match="fresh"):
        frontier.restore({})


def test_frontier_runs_a_compiled_plan() -> None:
    registry = Registry()
    function(name="step", registry=registry)(lambda data=None: data)
    graph = workflow_graph(
        name="g",
        nodes=dict.fromkeys(["fetch", "pro", "basic", "notify"], "step"),
        config={
            "fetch": {"next": {"pro": "pro", "basic": "basic"}},
            "pro": {"next": "notify"},
            "basic": {"next": "notify"},
        },
        registry=registry,
    )
    frontier = Frontier(graph.plan, run_id="r1")
    assert frontier.ready() == ["fetch"]
    frontier.done("fetch", "pro")
    assert frontier.skipped() == ["basic"]
    assert frontier.ready() == ["pro"]
    frontier.done("pro")
    assert frontier.ready() == ["notify"]


@pytest.mark.parametrize(
    ("edges", "keys"),
    [
        ([("b", "a", None)], None),
        ([("a", "b", "k")], None),
        ([("a", "b", None)], {"a": ["k"]}),
        ([("a", "b", "x")], {"a": ["k"]}),
    ],
)
def test_topology_build_checks_its_input(
    edges: list[tuple[str, str, str | None]], keys: dict[str, list[str]] | None
) -> None:
    with pytest.raises(ValueError, match="edge"):
        Topology.build(order=["a", "b"], edges=edges, keys=keys)


# --- determinism across processes -------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import graphflow.functions as f, graphflow.graph.spec as s, graphflow.graph.render as r
    from graphflow.refs import ref
    reg = f.Registry()
    f.function(name="step", registry=reg)(lambda data=None: data)
    names = ["fetch", "score", "pro", "basic", "gold", "merge", "notify", "undo", "audit"]
    g = s.workflow_graph(
        name="g", nodes=dict.fromkeys(names, "step"), registry=reg,
        config={
            "fetch": {"next": ["score", "audit"], "on_error": "undo"},
            "score": {"next": {"pro": ["pro", "merge"], "basic": "basic", "gold": "gold"}},
            "pro": {"next": "merge"}, "basic": {"next": "merge"}, "gold": {"next": "merge"},
            "merge": {"next": "notify", "input": {"s": ref("score", "$..x")}},
            "notify": {"for_each": ref("fetch", "users"), "input": {"u": ref("$item")}},
        },
    )
    print(g.hash, g.plan.order, g.plan.topology.children, sorted(g.plan.nodes["merge"].parents))
    print(r.to_dot(g), r.to_mermaid(g))
    """
)


def test_plan_hash_and_renders_are_identical_under_two_hash_seeds() -> None:
    outputs = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert "digraph" in outputs[0]
