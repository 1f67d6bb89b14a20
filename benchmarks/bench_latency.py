"""Step latency of a long sequential run, and how long the event loop stalls meanwhile.

Run ``python benchmarks/bench_latency.py`` (``--steps N`` for ``normal``, ``--full-steps N`` for
``full``, ``--repeat N``). One run of N sequential async steps on a fresh SQLite file; the time of
each ``wf.do`` is recorded, and a ticker beside the run asks to wake every millisecond and records
how late it woke: a stall of the loop (a checkpoint inside a commit, a long statement) makes every
task on it late, a run's steps and an HTTP handler's alike. Printed: median, p99, p99.9 and max of
the step times, the steps over 5 ms, and the ticker's p99.9 and worst lateness. Medians over the
repetitions; wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import graphflow as gf

REGISTRY = gf.Registry()
STEP_SECONDS: list[float] = []


@gf.function(registry=REGISTRY)
async def inc(x: int) -> int:
    """A trivial async step."""
    return x + 1


@gf.workflow(registry=REGISTRY)
async def timed_steps(wf: gf.Workflow, data: int) -> int:
    """``data`` sequential steps, each timed from the workflow's side."""
    x = 0
    for i in range(data):
        started = time.perf_counter()
        x = await wf.do(f"step {i}", inc, {"x": x})
        STEP_SECONDS.append(time.perf_counter() - started)
    return x


async def _ticker(lateness: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        asked = time.perf_counter() + 0.001
        await asyncio.sleep(0.001)
        lateness.append(time.perf_counter() - asked)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(mode: str, steps: int) -> dict[str, float]:
    """One run of ``steps`` steps; its step-time and lateness figures in µs (and a count)."""
    STEP_SECONDS.clear()
    lateness: list[float] = []
    stop = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'latency.db'}?durability={mode}"
        async with gf.Engine(url, registry=REGISTRY) as engine:
            ticker = asyncio.create_task(_ticker(lateness, stop))
            output = await engine.run("timed_steps", steps)
            stop.set()
            await ticker
    if output != steps:
        raise RuntimeError(f"wrong output {output!r}")
    us = [s * 1e6 for s in STEP_SECONDS]
    late = [s * 1e6 for s in lateness]
    return {
        "median": statistics.median(us),
        "p99": quantile(us, 0.99),
        "p99.9": quantile(us, 0.999),
        "max": max(us),
        "over 5 ms": float(sum(u > 5_000 for u in us)),
        "tick p99.9": quantile(late, 0.999),
        "tick max": max(late),
    }


def main() -> None:
    """Measure and print one line per durability mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=20_000, help="steps in normal (20,000)")
    parser.add_argument("--full-steps", type=int, default=5_000, help="steps in full (5,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median)")
    args = parser.parse_args()
    columns = ["median", "p99", "p99.9", "max", "over 5 ms", "tick p99.9", "tick max"]
    print(f"{'mode (steps)':<16}" + "".join(f"{c:>12}" for c in columns) + "   (µs; count)")
    for mode, steps in (("normal", args.steps), ("full", args.full_steps)):
        runs = [asyncio.run(measure(mode, steps)) for _ in range(args.repeat)]
        figures = {c: statistics.median(run[c] for run in runs) for c in columns}
        label = f"{mode} ({steps:,})"
        print(f"{label:<16}" + "".join(f"{figures[c]:>12,.0f}" for c in columns))


if __name__ == "__main__":
    main()
