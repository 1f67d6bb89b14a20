"""Graph benchmark: compile and run a 10,000-node random DAG beside the raw SQLite floor.

Run ``python benchmarks/bench_graph.py`` (``--quick`` for 2,000 nodes, ``--repeat N`` for the
number of repetitions whose median is printed, ``--nodes N`` for another size). Every run uses a
fresh SQLite file. Nothing here asserts on timings; the figures are printed beside the floor of the
same durability mode, measured in the same repetition.

Scheduling overhead is the graph run's wall time minus the same steps run as a plain imperative
workflow that follows the same DAG (one ``asyncio.gather`` per topological generation), on the
same store and settings: what the graph layer (frontier, refs, default inputs, run records)
costs on top of executing and storing the steps.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

import graphflow as gf
from graphflow.runtime.frontier import Frontier

MODES = ("normal", "full")
REGISTRY = gf.Registry()
ROW = "x" * 200
TARGET_OVERHEAD_S = 1.0


@gf.function(registry=REGISTRY)
async def noop() -> int:
    """A trivial async node."""
    return 1


# --- the DAG --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dag:
    """A random DAG: ``children[node]`` in declaration (topological) order."""

    children: dict[str, list[str]]

    @property
    def size(self) -> int:
        """Number of nodes."""
        return len(self.children)

    @property
    def edges(self) -> int:
        """Number of edges."""
        return sum(len(targets) for targets in self.children.values())

    def generations(self) -> list[list[str]]:
        """The nodes by topological generation (each generation's parents all come before)."""
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(self.children)
        graph.add_edges_from((s, t) for s, ts in self.children.items() for t in ts)
        return [sorted(generation) for generation in nx.topological_generations(graph)]

    def sinks(self) -> list[str]:
        """Nodes without children."""
        return [node for node, targets in self.children.items() if not targets]


def random_dag(size: int, *, seed: int = 7, window: int = 200) -> Dag:
    """``size`` nodes; each but ~2% has 1-3 parents among the ``window`` nodes before it."""
    rnd = random.Random(seed)
    children: dict[str, list[str]] = {f"n{i}": [] for i in range(size)}
    for i in range(1, size):
        if rnd.random() < 0.02:
            continue  # another entry node
        for parent in rnd.sample(range(max(0, i - window), i), min(rnd.randint(1, 3), i)):
            children[f"n{parent}"].append(f"n{i}")
    return Dag(children)


def declare(dag: Dag, name: str) -> tuple[gf.GraphWorkflow, float]:
    """``workflow_graph`` over ``dag`` (every node runs ``noop``); also its seconds to compile."""
    started = time.perf_counter()
    graph = gf.workflow_graph(
        name=name,
        nodes=dict.fromkeys(dag.children, "noop"),
        config={node: {"next": targets} for node, targets in dag.children.items() if targets},
        registry=REGISTRY,
    )
    return graph, time.perf_counter() - started


def imperative_twin(dag: Dag, name: str) -> None:
    """Imperative workflows issuing the same steps: ``name`` gathers one topological generation
    at a time (the DAG's dependencies, with a barrier per generation); ``{name}_flat`` gathers
    all at once (no dependencies at all)."""
    generations = dag.generations()

    async def same_steps(wf: gf.Workflow, data: None) -> int:
        total = 0
        for generation in generations:
            total += sum(await asyncio.gather(*(wf.do(node, noop) for node in generation)))
        return total

    gf.workflow(name=name, registry=REGISTRY)(same_steps)

    async def flat(wf: gf.Workflow, data: None) -> int:
        return sum(await asyncio.gather(*(wf.do(node, noop) for node in dag.children)))

    gf.workflow(name=f"{name}_flat", registry=REGISTRY)(flat)


def frontier_seconds(graph: gf.GraphWorkflow) -> float:
    """The pure scheduling kernel alone: drive a ``Frontier`` over the plan, no I/O."""
    started = time.perf_counter()
    frontier = Frontier(graph.plan)
    while frontier.is_active():
        for node_id in frontier.ready():
            frontier.done(node_id)
        frontier.skipped()
    return time.perf_counter() - started


# --- measurements ---------------------------------------------------------------------------


def floor_seconds(mode: str, rows: int, tmp: Path) -> float:
    """Seconds per row: one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per ~200-byte row, WAL."""
    conn = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={mode.upper()}")
        conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, run TEXT, body TEXT)")
        started = time.perf_counter()
        for i in range(rows):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO rows (run, body) VALUES (?, ?)", (f"run-{i}", ROW))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return elapsed / rows


def run_seconds(url: str, workflow: str, expected: Any) -> float:
    """Wall seconds of ``engine.run(workflow)`` on an open engine with default settings."""

    async def main() -> float:
        async with gf.Engine(url, registry=REGISTRY) as engine:
            started = time.perf_counter()
            output = await engine.run(workflow)
            elapsed = time.perf_counter() - started
        if output != expected:
            raise RuntimeError(f"{workflow}: wrong output ({str(output)[:200]}...)")
        return elapsed

    gc.collect()
    return asyncio.run(main())


@dataclass
class Repetition:
    """One repetition's figures for one durability mode (seconds)."""

    floor_row: float
    graph_run: float
    imperative_run: float
    flat_run: float

    @property
    def overhead(self) -> float:
        """Graph run minus the same steps run imperatively."""
        return self.graph_run - self.imperative_run


def measure(mode: str, dag: Dag, floor_rows: int) -> Repetition:
    """Floor, graph run and imperative twin, each on a fresh file in one temporary directory."""
    expected_graph = dict.fromkeys(dag.sinks(), 1)
    with tempfile.TemporaryDirectory(prefix="gf-bench-graph-") as name:
        tmp = Path(name)
        floor = floor_seconds(mode, floor_rows, tmp)
        graph = run_seconds(
            f"sqlite:///{tmp / 'g.db'}?durability={mode}", "bench_dag", expected_graph
        )
        twin = run_seconds(f"sqlite:///{tmp / 'i.db'}?durability={mode}", "bench_twin", dag.size)
        flat = run_seconds(
            f"sqlite:///{tmp / 'f.db'}?durability={mode}", "bench_twin_flat", dag.size
        )
    return Repetition(floor_row=floor, graph_run=graph, imperative_run=twin, flat_run=flat)


# --- printing -------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def report(mode: str, dag: Dag, reps: list[Repetition]) -> None:
    """One block of figures for one durability mode."""
    n = dag.size
    floor = median([r.floor_row for r in reps])
    graph = median([r.graph_run for r in reps])
    twin = median([r.imperative_run for r in reps])
    flat = median([r.flat_run for r in reps])
    overhead = median([r.overhead for r in reps])
    verdict = "within" if overhead < TARGET_OVERHEAD_S else "OVER"
    print(f"\nSQLite durability={mode}  (medians of {len(reps)})")
    print(f"  raw SQLite floor, INSERT+COMMIT       {floor * 1e6:9.1f} µs/row"
          f"   ({floor * n:.2f} s for {n:,} rows, one commit each)")  # fmt: skip
    print(f"  graph run, total                      {graph:9.2f} s"
          f"   ({graph / n * 1e3:.3f} ms/node, {graph / n / floor:.2f}x floor)")  # fmt: skip
    print(f"  same steps, imperative by generation  {twin:9.2f} s"
          f"   ({twin / n * 1e3:.3f} ms/step)")  # fmt: skip
    print(f"  same steps, one flat gather           {flat:9.2f} s"
          f"   ({flat / n * 1e3:.3f} ms/step, all {n:,} in flight at once)")  # fmt: skip
    target = f"target < {TARGET_OVERHEAD_S:.0f} s: {verdict}"
    print(f"  scheduling overhead                   {overhead:9.2f} s"
          f"   ({overhead / n * 1e3:.3f} ms/node; {target})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="DAG size (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="2,000 nodes, one repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per mode (default 3)")
    parser.add_argument("--modes", default=",".join(MODES), help="normal,full (default both)")
    args = parser.parse_args(argv)
    size, repeat = (2_000, 1) if args.quick else (args.nodes, args.repeat)
    modes = [mode for mode in args.modes.split(",") if mode]

    dag = random_dag(size)
    graph, compile_s = declare(dag, "bench_dag")
    imperative_twin(dag, "bench_twin")
    kernel_s = frontier_seconds(graph)
    print(f"graphflow bench_graph: Python {platform.python_version()}, {platform.system()}"
          f" {platform.machine()}, SQLite {sqlite3.sqlite_version}")  # fmt: skip
    print(f"DAG: {dag.size:,} nodes, {dag.edges:,} edges, {len(graph.plan.entries)} entries,"
          f" {len(dag.sinks())} sinks, {len(dag.generations())} generations")  # fmt: skip
    print(f"  compile (workflow_graph)              {compile_s:9.3f} s")
    print(f"  frontier alone (pure kernel, no I/O)  {kernel_s * 1e3:9.1f} ms"
          f"   ({kernel_s / dag.size * 1e6:.2f} µs/node)")  # fmt: skip
    run_seconds("memory://", "bench_dag", dict.fromkeys(dag.sinks(), 1))  # warm-up, untimed
    for mode in modes:
        reps = []
        for rep in range(repeat):
            print(f"  {mode}: repetition {rep + 1} of {repeat}...", file=sys.stderr)
            reps.append(measure(mode, dag, floor_rows=min(dag.size, 2_000)))
        report(mode, dag, reps)


if __name__ == "__main__":
    main()
