"""Repair and retention benchmark: ``engine.check`` over a big store, and pruning beside live work.

Run ``python benchmarks/bench_repair.py`` (``--quick`` for smaller sizes). It prints, with the raw
SQLite floors measured in the same run:

- **check**: seconds to check N stored runs (default 10,000: five RPC steps each, parked at a
  suspend) against the same code, in µs per run; beside the raw read of the same rows.
- **prune**: seconds to prune M finished runs (default 100,000, four steps each), with one engine
  and with a second process writing the same file; the batches' durations; and the gaps between
  consecutive steps of a workflow running meanwhile (in the pruning engine, and in the second
  process), beside the same workflows' gaps over an equally long window with no prune (median,
  99th percentile, maximum, in ms). A gap is the time one step (its durable write included) takes.

Stores are built once through the engine, then cloned in SQL (the runs are identical but for
their ids). Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from floor import sqlite_floor_seconds

import graphflow as gf

REGISTRY = gf.Registry()
MODE = "normal"


@gf.function(registry=REGISTRY)
def touch(n: int) -> int:
    """A trivial step."""
    return n + 1


@gf.workflow(registry=REGISTRY)
async def parked(wf: gf.Workflow, data: dict[str, int]) -> int:
    """Five RPC steps, then a suspend: a run in flight."""
    n = data["n"]
    for i in range(5):
        n = await wf.do(f"step {i}", touch, {"n": n})
    await wf.suspend("Approval")
    return n


@gf.workflow(registry=REGISTRY)
async def short(wf: gf.Workflow, data: dict[str, int]) -> int:
    """Four RPC steps: a finished run to prune."""
    n = data["n"]
    for i in range(4):
        n = await wf.do(f"step {i}", touch, {"n": n})
    return n


PROBE = {"stop": False}


@gf.workflow(registry=REGISTRY)
async def probe(wf: gf.Workflow, data: dict[str, str]) -> list[float]:
    """Inline steps until told to stop; returns the time each one finished (perf_counter)."""
    stamps: list[float] = []
    i = 0
    while not (PROBE["stop"] or os.path.exists(data["stop"])):
        await wf.do(f"tick {i}", lambda: None)
        stamps.append(time.perf_counter())
        if i == 0 and "ready" in data:
            Path(data["ready"]).touch()
        i += 1
        await anyio.sleep(0)  # a lone writer's commit does not yield: let the loop run
    return stamps


def url(path: Path) -> str:
    """The store URL of ``path``."""
    return f"sqlite:///{path}?durability={MODE}"


def clone(path: Path, template: str, count: int, *, finished_at: float | None = None) -> None:
    """Copy run ``template`` and its steps ``count`` times (ids ``template-000001``...)."""
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
    params = {"count": count, "template": template, "finished_at": finished_at}
    conn = sqlite3.connect(path)
    try:
        for table in ("gf_runs", "gf_steps"):
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            values = {column: column for column in columns}
            values["run_id"] = "printf('%s-%06d', run_id, i)"
            if table == "gf_runs" and finished_at is not None:
                values["finished_at"] = ":finished_at"
            conn.execute(
                f"{numbers} INSERT INTO {table} ({', '.join(columns)})"
                f" SELECT {', '.join(values.values())} FROM {table}, n WHERE run_id = :template",
                params,
            )
        conn.commit()
    finally:
        conn.close()


async def build(path: Path, workflow: str) -> str:
    """One run of ``workflow`` through the engine; returns its id once settled."""
    async with gf.Engine(url(path), registry=REGISTRY) as engine:
        run_id = await engine.start(workflow, {"n": 1})
        with anyio.fail_after(30):
            while (await engine.status(run_id)).state not in ("suspended", "completed"):
                await anyio.sleep(0.01)
    return run_id


def raw_read_seconds(path: Path) -> float:
    """The floor of a check: reading every run and step row with raw ``sqlite3``."""
    conn = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        conn.execute("SELECT * FROM gf_runs ORDER BY run_id").fetchall()
        conn.execute("SELECT * FROM gf_steps ORDER BY run_id, seq").fetchall()
        return time.perf_counter() - started
    finally:
        conn.close()


async def measure_check(tmp: Path, runs: int) -> dict[str, float]:
    """Seconds to check ``runs`` parked runs, and the raw read floor of the same rows."""
    path = tmp / "check.db"
    template = await build(path, "parked")
    clone(path, template, runs - 1)
    async with gf.Engine(url(path), registry=REGISTRY, worker=False) as client:
        started = time.perf_counter()
        results = await client.check()
        elapsed = time.perf_counter() - started
    if len(results) != runs or not all(r.ok for r in results):
        raise RuntimeError(f"check: {len(results)} results, expected {runs} ok ones")
    return {"check": elapsed, "raw_read": raw_read_seconds(path)}


def gaps_ms(stamps: list[float]) -> dict[str, float]:
    """Median, 99th percentile and maximum of the gaps between consecutive stamps, in ms."""
    return _spread([(b - a) * 1e3 for a, b in itertools.pairwise(stamps)])


def start_probe_process(path: Path, stop: Path) -> subprocess.Popen[str]:
    """A second process running ``probe`` on the same store until ``stop`` exists."""
    return subprocess.Popen(
        [sys.executable, __file__, "--probe", str(path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def run_probe(path: Path, stop: Path) -> list[float]:
    """Run ``probe`` to its end in an engine of its own (``stop.ready`` once it runs)."""
    async with gf.Engine(url(path), registry=REGISTRY) as engine:
        stamps = await engine.run("probe", {"stop": str(stop), "ready": f"{stop}.ready"})
    return list(stamps)


async def measure_prune(tmp: Path, runs: int, *, second_process: bool) -> dict[str, Any]:
    """Prune ``runs`` finished runs while a workflow runs (and one in another process); then the
    same workflows as long again with no prune (``idle``), for figures over equal windows."""
    path = tmp / f"prune-{second_process}.db"
    template = await build(path, "short")
    clone(path, template, runs, finished_at=1_000_000.0)  # long ago
    result: dict[str, Any] = {}
    window = 0.0
    for label in ("pruning", "idle"):
        stop = tmp / f"stop-{label}-{second_process}"
        other = start_probe_process(path, stop) if second_process else None
        PROBE["stop"] = False
        async with gf.Engine(url(path), registry=REGISTRY) as engine:
            run_id = await engine.start("probe", {"stop": str(stop)})
            with anyio.fail_after(60):
                while other is not None and not Path(f"{stop}.ready").exists():
                    await anyio.sleep(0.05)
            await anyio.sleep(0.2)  # the probes are running
            batches = _timed_batches(engine.store)
            started = time.perf_counter()
            if label == "pruning":
                deleted = await engine.prune(older_than="1d")
                if deleted != runs:
                    raise RuntimeError(f"pruned {deleted} runs, expected {runs}")
                window = time.perf_counter() - started
            else:
                await anyio.sleep(window)
            PROBE["stop"] = True
            stop.touch()
            stamps = (await engine.wait(run_id, timeout=60)).output
        other_stamps: list[float] = []
        if other is not None:
            out, _ = other.communicate(timeout=60)
            other_stamps = json.loads(out.strip().splitlines()[-1])
        result[label] = {
            "seconds": window,
            "batches": _spread(batches),
            "here": gaps_ms(_during(stamps, started, window)),
            "other": gaps_ms(_during(other_stamps, started, window)),
        }
    return result


def _timed_batches(store: Any) -> list[float]:
    """Record how long each prune batch (one transaction) takes on ``store``, in ms."""
    durations: list[float] = []
    prune_runs = store.prune_runs

    async def timed(query: Any) -> Any:
        started = time.perf_counter()
        try:
            return await prune_runs(query)
        finally:
            durations.append((time.perf_counter() - started) * 1e3)

    store.prune_runs = timed
    return durations


def _spread(values: list[float]) -> dict[str, float]:
    """Median, 99th percentile, maximum and count of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "steps": 0}
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
        "steps": len(ordered),
    }


def _during(stamps: list[float], started: float, seconds: float) -> list[float]:
    """The stamps taken while the measured phase ran (perf_counter is system-wide)."""
    return [stamp for stamp in stamps if started <= stamp <= started + seconds]


def report(sizes: argparse.Namespace, check: dict[str, float], prunes: dict[str, Any]) -> None:
    """Print the figures."""
    floor_us = sqlite_floor_seconds(MODE, 2_000, Path(tempfile.gettempdir())) * 1e6
    print(f"raw SQLite floor ({MODE}): {floor_us:.1f} µs per committed row\n")
    per_run = check["check"] / sizes.runs * 1e6
    print(f"check {sizes.runs:,} parked runs (5 steps + a suspend each):")
    print(f"  graphflow   {check['check']:.2f} s  ({per_run:.0f} µs per run)")
    print(f"  raw read of the same rows  {check['raw_read'] * 1e3:.0f} ms\n")
    for title, prune in prunes.items():
        pruning = prune["pruning"]
        rate = sizes.prune / pruning["seconds"]
        b = pruning["batches"]
        print(f"prune {sizes.prune:,} finished runs (4 steps each), {title}:"
              f" {pruning['seconds']:.1f} s ({rate:,.0f} runs/s)")  # fmt: skip
        print(f"  {b['steps']:.0f} batches (one transaction each), ms: p50 {b['p50']:.2f},"
              f" p99 {b['p99']:.2f}, max {b['max']:.2f}")  # fmt: skip
        print("  gaps between steps of a workflow running meanwhile, ms (idle: as long, no prune):")
        print(f"  {'':28}{'p50':>8}{'p99':>8}{'max':>8}{'steps':>8}")
        for label in ("idle", "pruning"):
            for where in ("here", "other"):
                g = prune[label][where]
                if not g["steps"]:
                    continue
                name = f"{label}, {'same engine' if where == 'here' else 'other process'}"
                print(f"  {name:28}{g['p50']:8.2f}{g['p99']:8.2f}{g['max']:8.2f}{g['steps']:8.0f}")
        print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--runs", type=int, default=10_000, help="runs to check")
    parser.add_argument("--prune", type=int, default=100_000, help="runs to prune")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.prune = 1_000, 10_000
    return args


async def _prune(tmp: Path, runs: int, second_process: bool) -> dict[str, Any]:
    return await measure_prune(tmp, runs, second_process=second_process)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with ``--probe``, the second process's workflow)."""
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(anyio.run(run_probe, Path(args.probe[0]), Path(args.probe[1]))))
        return
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        check = anyio.run(measure_check, tmp, args.runs)
        prunes = {
            "one engine": anyio.run(_prune, tmp, args.prune, False),
            "and a second process writing": anyio.run(_prune, tmp, args.prune, True),
        }
        report(args, check, prunes)


if __name__ == "__main__":
    main()
