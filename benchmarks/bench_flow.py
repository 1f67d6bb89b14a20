"""Flow-control benchmark: the cost of limits, beside the raw SQLite floor measured in the same run.

Run ``python benchmarks/bench_flow.py`` (``--quick`` for smaller sizes, ``--repeat N`` for the
number of repetitions whose median is printed, ``--cpu`` for CPU time instead of wall time). Every
measurement uses a fresh SQLite file. For each durability mode it prints:

- µs per sequential RPC step of a function without limits, and of the same function declared with
  ``concurrency=4`` (the first attempt takes a slot in the database; each next one reuses the slot
  the last one freed in this engine), with their ratio;
- runs per second draining 1,000 runs of a one-step workflow started at once: without a limit, and
  under ``concurrency=10`` (990 of them wait ``queued`` and are claimed as slots free).

Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import floor as floors_module
from floor import sqlite_floor_seconds

import graphflow as gf

MODES = ("normal", "full")
REGISTRY = gf.Registry()


@gf.function(registry=REGISTRY)
async def inc(x: int) -> int:
    """A trivial async step."""
    return x + 1


@gf.function(concurrency=4, registry=REGISTRY)
async def inc_limited(x: int) -> int:
    """The same step under a concurrency limit."""
    return x + 1


@gf.workflow(registry=REGISTRY)
async def seq(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential steps of ``inc``."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", inc, {"x": x})
    return x


@gf.workflow(registry=REGISTRY)
async def seq_limited(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential steps of ``inc_limited``."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", inc_limited, {"x": x})
    return x


@gf.workflow(registry=REGISTRY)
async def one_step(wf: gf.Workflow, data: dict[str, int]) -> int:
    """A run of one step."""
    return await wf.do("inc", inc, {"x": data["x"]})


@gf.workflow(concurrency=10, registry=REGISTRY)
async def one_step_limited(wf: gf.Workflow, data: dict[str, int]) -> int:
    """A run of one step, at most 10 at once across every worker."""
    return await wf.do("inc", inc, {"x": data["x"]})


def _url(mode: str, tmp: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp / 'flow.db'}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{tmp / 'flow.db'}?durability={mode}"


def per_step(workflow: str, steps: int) -> Callable[[str, Path], float]:
    """µs per step of one ``steps``-step run of ``workflow``."""

    async def main(mode: str, tmp: Path) -> float:
        async with gf.Engine(_url(mode, tmp), registry=REGISTRY) as engine:
            started = floors_module.timer()
            output = await engine.run(workflow, {"n": steps})
            elapsed = floors_module.timer() - started
        assert output == steps
        return elapsed / steps * 1e6

    return lambda mode, tmp: asyncio.run(main(mode, tmp))


def drain(workflow: str, runs: int) -> Callable[[str, Path], float]:
    """Runs per second: ``runs`` runs started at once, until the last one completed."""

    async def main(mode: str, tmp: Path) -> float:
        async with gf.Engine(_url(mode, tmp), registry=REGISTRY, poll_interval=0.05) as engine:
            started = floors_module.timer()
            run_ids = [await engine.start(workflow, {"x": i}) for i in range(runs)]
            statuses = [await engine.wait(run_id) for run_id in run_ids]
            elapsed = floors_module.timer() - started
        assert [s.output for s in statuses] == [i + 1 for i in range(runs)]
        return runs / elapsed

    return lambda mode, tmp: asyncio.run(main(mode, tmp))


def median(measure: Callable[[str, Path], float], mode: str, tmp: Path, repeat: int) -> float:
    """The median of ``repeat`` measurements."""
    return statistics.median(measure(mode, tmp) for _ in range(repeat))


def main() -> None:
    """Print the figures of every mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="measure CPU time instead of wall time (fair on a loaded machine; not for `full`)",
    )
    args = parser.parse_args()
    if args.cpu:
        floors_module.use_cpu_time()
    print("clock: CPU time of this process (--cpu)" if args.cpu else "clock: wall time")
    steps, runs = (200, 300) if args.quick else (1_000, 1_000)
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        for mode in MODES:
            floor = statistics.median(
                sqlite_floor_seconds(mode, 2_000, tmp) * 1e6 for _ in range(args.repeat)
            )
            free = median(per_step("seq", steps), mode, tmp, args.repeat)
            limited = median(per_step("seq_limited", steps), mode, tmp, args.repeat)
            unqueued = median(drain("one_step", runs), mode, tmp, args.repeat)
            queued = median(drain("one_step_limited", runs), mode, tmp, args.repeat)
            print(f"[{mode}] raw SQLite floor: {floor:.0f} µs/row")
            print(f"[{mode}] sequential step, no limit: {free:.0f} µs ({free / floor:.1f}x floor)")
            print(
                f"[{mode}] sequential step, concurrency=4: {limited:.0f} µs"
                f" ({limited / floor:.1f}x floor, {limited / free:.2f}x no limit)"
            )
            print(f"[{mode}] {runs:,} one-step runs, no limit: {unqueued:,.0f} runs/s")
            print(f"[{mode}] {runs:,} one-step runs, concurrency=10: {queued:,.0f} runs/s")


if __name__ == "__main__":
    main()
