"""Graph benchmark: compile and run a 10,000-node random DAG beside the raw SQLite floor.

Run ``python benchmarks/bench_graph.py`` (``--quick`` for 2,000 nodes, ``--repeat N`` for the
number of repetitions whose median is printed, ``--nodes N`` for another size). Every run uses a
fresh SQLite file. Nothing here asserts on timings; the figures are printed beside the floor of the
same durability mode, measured in the same repetition.

Scheduling overhead is the graph run's wall time minus the same steps run by a plain imperative
workflow that follows the same DAG, on the same store and settings (the faster of two: one
``asyncio.gather`` per topological generation, or one task per node awaiting its parents'
events): what the graph layer (frontier, refs, default inputs, node records) costs on top of
executing and storing the steps. Its target: at most 3x one WAL commit per node. Compiling is
printed beside its own floor, networkx building the same DAG and sorting it topologically (target:
at most 3x).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
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

import anyio
import networkx as nx
from floor import sqlite_floor_seconds

import graphflow as gf
from graphflow.runtime.frontier import Frontier

MODES = ("normal", "full")
REGISTRY = gf.Registry()
TARGET_NODE_X_COMMIT = 3.0
TARGET_COMPILE_X_NX = 3.0


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


def _graph_config(dag: Dag) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    nodes = dict.fromkeys(dag.children, "noop")
    config = {node: {"next": targets} for node, targets in dag.children.items() if targets}
    return nodes, config


def declare(dag: Dag, name: str) -> gf.GraphWorkflow:
    """``workflow_graph`` over ``dag``: every node runs ``noop``."""
    nodes, config = _graph_config(dag)
    return gf.workflow_graph(name=name, nodes=nodes, config=config, registry=REGISTRY)


def compile_seconds(dag: Dag, times: int) -> float:
    """Seconds per ``workflow_graph`` over ``dag``, compiling it ``times`` times in a row.

    Each graph goes to a registry of its own and is dropped before the next, so the garbage
    collections that a compile's allocations bring about land in the block (the last one's aside).
    CPU time: compiling is pure computation (the same as wall time on an idle machine), and CPU
    time stays fair when other processes load the machine.
    """
    nodes, config = _graph_config(dag)
    gc.collect()
    started = time.process_time()
    for i in range(times):
        registry = gf.Registry()
        registry.add_function(noop)
        gf.workflow_graph(name=f"bench_compile_{i}", nodes=nodes, config=config, registry=registry)
    return (time.process_time() - started) / times


def hash_seconds(dag: Dag, times: int) -> float:
    """Seconds for a compiled graph's hash: computed when first needed (its first run's start)."""
    nodes, config = _graph_config(dag)
    total = 0.0
    for i in range(times):
        registry = gf.Registry()
        registry.add_function(noop)
        graph = gf.workflow_graph(
            name=f"bench_hash_{i}", nodes=nodes, config=config, registry=registry
        )
        started = time.process_time()
        assert graph.hash
        total += time.process_time() - started
    return total / times


def networkx_seconds(dag: Dag, times: int) -> float:
    """The compile floor: networkx builds the same DAG (nodes, edges) and sorts it (CPU time)."""
    edges = [(source, target) for source, targets in dag.children.items() for target in targets]
    gc.collect()
    started = time.process_time()
    for _ in range(times):
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(dag.children)
        graph.add_edges_from(edges)
        order = list(nx.topological_sort(graph))
        if len(order) != dag.size:
            raise RuntimeError("the DAG has a cycle")
    return (time.process_time() - started) / times


def imperative_twins(dag: Dag, name: str) -> None:
    """Imperative workflows issuing the same steps as the graph, with the same dependencies.

    ``{name}_gen`` gathers one topological generation at a time (a barrier per generation);
    ``{name}_events`` starts a task per node that awaits its parents' events (no barriers, but
    every task exists from the start).
    """
    generations = dag.generations()
    parents: dict[str, list[str]] = {node: [] for node in dag.children}
    for node, targets in dag.children.items():
        for target in targets:
            parents[target].append(node)

    async def by_generation(wf: gf.Workflow, data: None) -> int:
        total = 0
        for generation in generations:
            total += sum(await asyncio.gather(*(wf.do(node, noop) for node in generation)))
        return total

    async def by_events(wf: gf.Workflow, data: None) -> int:
        done = {node: anyio.Event() for node in dag.children}
        results: list[int] = []

        async def one(node: str) -> None:
            for parent in parents[node]:
                await done[parent].wait()
            results.append(await wf.do(node, noop))
            done[node].set()

        async with anyio.create_task_group() as tg:
            for node in dag.children:
                tg.start_soon(one, node)
        return sum(results)

    gf.workflow(name=f"{name}_gen", registry=REGISTRY)(by_generation)
    gf.workflow(name=f"{name}_events", registry=REGISTRY)(by_events)


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
    """Seconds per row of the raw SQLite floor (see ``floor.py``)."""
    return sqlite_floor_seconds(mode, rows, tmp)


def run_seconds(url: str, workflow: str, expected: Any) -> float:
    """Wall seconds of ``engine.run(workflow)`` on an open engine with default settings."""

    async def run() -> float:
        async with gf.Engine(url, registry=REGISTRY) as engine:
            started = time.perf_counter()
            output = await engine.run(workflow)
            elapsed = time.perf_counter() - started
        if output != expected:
            raise RuntimeError(f"{workflow}: wrong output ({str(output)[:200]}...)")
        return elapsed

    gc.collect()
    return asyncio.run(run())


@dataclass
class Repetition:
    """One repetition's figures for one durability mode (seconds)."""

    floor_row: float
    graph_run: float
    by_generation: float
    by_events: float

    @property
    def overhead(self) -> float:
        """Graph run minus the faster imperative twin."""
        return self.graph_run - min(self.by_generation, self.by_events)


def measure(mode: str, dag: Dag, floor_rows: int) -> Repetition:
    """Floor, graph run and imperative twins, each on a fresh file in one temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-graph-") as name:
        tmp = Path(name)

        def url(file: str) -> str:
            return f"sqlite:///{tmp / file}?durability={mode}"

        floor = floor_seconds(mode, floor_rows, tmp)
        graph = run_seconds(url("graph.db"), "bench_dag", dict.fromkeys(dag.sinks(), 1))
        by_generation = run_seconds(url("gen.db"), "bench_twin_gen", dag.size)
        by_events = run_seconds(url("events.db"), "bench_twin_events", dag.size)
    return Repetition(
        floor_row=floor, graph_run=graph, by_generation=by_generation, by_events=by_events
    )


# --- printing -------------------------------------------------------------------------------


def report(mode: str, dag: Dag, reps: list[Repetition]) -> None:
    """One block of figures for one durability mode: medians over the repetitions."""
    n = dag.size
    floor = statistics.median(r.floor_row for r in reps)
    graph = statistics.median(r.graph_run for r in reps)
    by_generation = statistics.median(r.by_generation for r in reps)
    by_events = statistics.median(r.by_events for r in reps)
    overhead = statistics.median(r.overhead for r in reps)
    per_node = overhead / n
    verdict = "within" if per_node <= TARGET_NODE_X_COMMIT * floor else "OVER"
    target = f"{per_node / floor:.2f}x a commit, target ≤{TARGET_NODE_X_COMMIT:.0f}x: {verdict}"
    print(f"\nSQLite durability={mode}  (medians of {len(reps)})")
    print(f"  raw SQLite floor, INSERT+COMMIT       {floor * 1e6:9.1f} µs/row"
          f"   ({floor * n:.2f} s for {n:,} rows, one commit each)")  # fmt: skip
    print(f"  graph run, total                      {graph:9.2f} s"
          f"   ({graph / n * 1e3:.3f} ms/node, {graph / n / floor:.2f}x floor)")  # fmt: skip
    print(f"  same steps, imperative by generation  {by_generation:9.2f} s"
          f"   ({by_generation / n * 1e3:.3f} ms/step)")  # fmt: skip
    print(f"  same steps, imperative by events      {by_events:9.2f} s"
          f"   ({by_events / n * 1e3:.3f} ms/step)")  # fmt: skip
    print(f"  scheduling overhead                   {overhead:9.2f} s"
          f"   ({overhead / n * 1e3:.3f} ms/node; {target})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="DAG size (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="2,000 nodes, one repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per mode (default 3)")
    parser.add_argument("--modes", default=",".join(MODES), help="normal,full (default both)")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once the definitions exist: the cyclic GC stops rescanning them",
    )
    args = parser.parse_args(argv)
    size, repeat = (2_000, 1) if args.quick else (args.nodes, args.repeat)
    modes = [mode for mode in args.modes.split(",") if mode]

    dag = random_dag(size)
    compile_seconds(dag, 1)  # first-use costs (imports) land in no figure
    networkx_s = statistics.median(networkx_seconds(dag, 5) for _ in range(repeat))
    compile_s = statistics.median(compile_seconds(dag, 5) for _ in range(repeat))
    hash_s = statistics.median(hash_seconds(dag, 3) for _ in range(repeat))
    graph = declare(dag, "bench_dag")
    imperative_twins(dag, "bench_twin")
    kernel_s = frontier_seconds(graph)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"graphflow bench_graph: Python {platform.python_version()}, {platform.system()}"
          f" {platform.machine()}, SQLite {sqlite3.sqlite_version}, load {load}")  # fmt: skip
    print(f"DAG: {dag.size:,} nodes, {dag.edges:,} edges, {len(graph.plan.entries)} entries,"
          f" {len(dag.sinks())} sinks, {len(dag.generations())} generations")  # fmt: skip
    ratio = compile_s / networkx_s
    verdict = "within" if ratio <= TARGET_COMPILE_X_NX else "OVER"
    print(f"  networkx: build the DAG + sort (floor) {networkx_s:8.3f} s CPU")
    print(f"  compile (workflow_graph)              {compile_s:9.3f} s CPU"
          f"   ({ratio:.2f}x floor, target ≤{TARGET_COMPILE_X_NX:.0f}x: {verdict})")  # fmt: skip
    print(f"  + its hash, at the first run's start  {hash_s:9.3f} s CPU"
          f"   ({(compile_s + hash_s) / networkx_s:.2f}x floor with the compile)")  # fmt: skip
    print(f"  frontier alone (pure kernel, no I/O)  {kernel_s * 1e3:9.1f} ms"
          f"   ({kernel_s / dag.size * 1e6:.2f} µs/node)")  # fmt: skip
    run_seconds("memory://", "bench_dag", dict.fromkeys(dag.sinks(), 1))  # warm-up, untimed
    if args.gc_freeze:
        gc.freeze()
        print(f"  gc.freeze(): {gc.get_freeze_count():,} objects moved out of the GC's scans")
    for mode in modes:
        reps = []
        for rep in range(repeat):
            print(f"  {mode}: repetition {rep + 1} of {repeat}...", file=sys.stderr)
            reps.append(measure(mode, dag, floor_rows=min(dag.size, 2_000)))
        report(mode, dag, reps)


if __name__ == "__main__":
    main()
