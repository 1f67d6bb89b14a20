"""Memory benchmark: what parked runs cost a worker (nothing, ideally).

Run ``python benchmarks/bench_memory.py`` (``--runs N``, default 10,000). A worker engine on a
fresh SQLite file starts N runs that each sleep an hour, so each parks (leaves memory) once its
sleep is stored; the benchmark then waits until every run is ``sleeping`` and measures what the
worker still holds: Python objects left allocated (``tracemalloc``, after a full collection) and
the process's resident memory (RSS, from ``/proc``), each beside the same engine before the runs.
Nothing here asserts; the target is under 20 MB for 10,000 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import graphflow as gf

REGISTRY = gf.Registry()
TARGET_MB = 20.0


@gf.workflow(registry=REGISTRY)
async def napper(wf: gf.Workflow, data: dict[str, int]) -> int:
    """Sleeps an hour: the run parks once the sleep is stored."""
    await wf.sleep("nap", "1h")
    return data["i"]


def rss_mb() -> float:
    """The process's resident memory in MB (NaN without ``/proc``)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return float("nan")
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def held_mb() -> float:
    """MB of Python objects allocated now (after a full collection)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1e6


async def measure(runs: int, directory: Path) -> dict[str, float]:
    """Before/after figures of one engine parking ``runs`` runs."""
    url = f"sqlite:///{directory / 'graphflow.db'}?durability=normal"
    async with gf.Engine(url, registry=REGISTRY) as engine:
        warm = await engine.start("napper", {"i": -1})
        await _until_parked(engine, [warm])
        before_held, before_rss = held_mb(), rss_mb()
        started = time.perf_counter()
        run_ids = [await engine.start("napper", {"i": i}) for i in range(runs)]
        await _until_parked(engine, run_ids)
        elapsed = time.perf_counter() - started
        after_held, after_rss = held_mb(), rss_mb()
        stats = engine.stats()
    return {
        "held": after_held - before_held,
        "rss": after_rss - before_rss,
        "seconds": elapsed,
        "held_runs": stats.held_runs,
    }


async def _until_parked(engine: gf.Engine, run_ids: list[str]) -> None:
    """Wait until every run is ``sleeping`` (the last ones are checked first)."""
    for run_id in reversed(run_ids):
        while (await engine.status(run_id)).state != "sleeping":
            await asyncio.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs to park (default 10,000)")
    args = parser.parse_args(argv)
    tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="gf-bench-memory-") as name:
        figures = asyncio.run(measure(args.runs, Path(name)))
    tracemalloc.stop()
    n = args.runs
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"graphflow bench_memory: Python {platform.python_version()}, load {load}")
    print(f"{n:,} runs started, each parked on a one-hour sleep in {figures['seconds']:.1f} s;"
          f" runs still held in memory: {figures['held_runs']:.0f}")  # fmt: skip
    verdict = "within" if figures["rss"] < TARGET_MB * n / 10_000 else "OVER"
    print(f"  Python objects still allocated  {figures['held']:8.2f} MB"
          f"   ({figures['held'] * 1e6 / n:,.0f} bytes per parked run)")  # fmt: skip
    print(f"  resident memory (RSS) added     {figures['rss']:8.2f} MB"
          f"   (target < {TARGET_MB * n / 10_000:.0f} MB: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
