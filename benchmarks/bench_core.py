"""Core benchmark: graphflow's per-step cost beside the raw SQLite floor, measured in the same run.

Run ``python benchmarks/bench_core.py`` (``--quick`` for smaller sizes, ``--repeat N`` for the
number of repetitions whose median is printed). Every measurement uses a fresh SQLite file. Nothing
here asserts on timings; the figures are printed with their ratio to the floor of the same mode.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floor import sqlite_floor_seconds

import graphflow as gf

MODES = ("normal", "full")
REGISTRY = gf.Registry()

# --- workflows under test ---------------------------------------------------------------------


@gf.function(registry=REGISTRY)
async def inc(x: int) -> int:
    """A trivial async step."""
    return x + 1


@gf.function(registry=REGISTRY)
def inc_sync(x: int) -> int:
    """A trivial sync step (runs in a worker thread)."""
    return x + 1


# Steps run by this process (the crash workload's check that completed steps are not re-run).
EXECUTED = {"crashy": 0}


@gf.function(registry=REGISTRY)
async def crashy(x: int, crash: bool, marker: str) -> int:
    """``inc``, but SIGKILLs its own process the first time it runs with ``crash``."""
    EXECUTED["crashy"] += 1
    if crash and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


@gf.workflow(registry=REGISTRY)
async def seq_rpc(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential RPC steps of the async function."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", inc, {"x": x})
    return x


@gf.workflow(registry=REGISTRY)
async def seq_rpc_sync(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential RPC steps of the sync function."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", inc_sync, {"x": x})
    return x


def _plus_one(x: int) -> int:
    return x + 1


@gf.workflow(registry=REGISTRY)
async def seq_inline(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential inline steps."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", functools.partial(_plus_one, x))
    return x


@gf.workflow(registry=REGISTRY)
async def fan_out(wf: gf.Workflow, data: dict[str, int]) -> int:
    """An ``n``-way fan-out of RPC steps."""
    steps = [wf.do(f"step {i}", inc, {"x": i}) for i in range(data["n"])]
    return sum(await asyncio.gather(*steps))


@gf.workflow(registry=REGISTRY)
async def three_steps(wf: gf.Workflow, data: dict[str, int]) -> int:
    """Three sequential RPC steps."""
    x = data["x"]
    for i in range(3):
        x = await wf.do(f"step {i}", inc, {"x": x})
    return x


@gf.workflow(registry=REGISTRY)
async def crash_run(wf: gf.Workflow, data: dict[str, Any]) -> int:
    """``n`` sequential steps; the one at index ``crash_at`` kills the process once."""
    x = 0
    for i in range(data["n"]):
        args = {"x": x, "crash": i == data["crash_at"], "marker": data["marker"]}
        x = await wf.do(f"step {i}", crashy, args)
    return x


# --- sizes, results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    floor_rows: int
    steps: int
    fan_out: int
    workflows: int
    crash_steps: int

    @property
    def crash_at(self) -> int:
        """Index of the step that kills the first process: half the run is left."""
        return self.crash_steps // 2


DEFAULT_SIZES = Sizes(
    floor_rows=2_000, steps=1_000, fan_out=1_000, workflows=1_000, crash_steps=200
)
QUICK_SIZES = Sizes(floor_rows=300, steps=200, fan_out=200, workflows=200, crash_steps=40)
WARM_UP_SIZES = Sizes(floor_rows=50, steps=50, fan_out=50, workflows=50, crash_steps=10)


@dataclass(frozen=True)
class Workload:
    """One row of the results table."""

    label: str
    unit: str
    target: str
    measure: Callable[[str, Sizes, Path], float]
    per_second: bool = False


@dataclass(frozen=True)
class Figure:
    """A median, and the median of its ratios to the floor measured in the same repetition."""

    value: float
    ratio: float


# --- the raw SQLite floor -------------------------------------------------------------------


def measure_floor(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per row of the raw SQLite floor (see ``floor.py``)."""
    return sqlite_floor_seconds(mode, sizes.floor_rows, tmp) * 1e6


# --- graphflow workloads --------------------------------------------------------------------


def store_url(mode: str, tmp: Path) -> str:
    """A fresh SQLite store in ``tmp``."""
    return f"sqlite:///{tmp / 'graphflow.db'}?durability={mode}"


def engine(mode: str, tmp: Path) -> gf.Engine:
    """An engine with default settings on a fresh store, seeing only this benchmark's workflows."""
    return gf.Engine(store_url(mode, tmp), registry=REGISTRY)


async def _timed_run(mode: str, tmp: Path, workflow: str, n: int, expected: int) -> float:
    """Seconds of ``engine.run(workflow, {"n": n})`` on an open engine."""
    async with engine(mode, tmp) as eng:
        started = time.perf_counter()
        output = await eng.run(workflow, {"n": n})
        elapsed = time.perf_counter() - started
    _check(output, expected, workflow)
    return elapsed


def _check(output: Any, expected: Any, what: str) -> None:
    if output != expected:
        raise RuntimeError(f"{what}: wrong output {output!r}, expected {expected!r}")


def per_step(workflow: str) -> Callable[[str, Sizes, Path], float]:
    """µs per step of one ``sizes.steps``-step run of ``workflow``."""

    def measure(mode: str, sizes: Sizes, tmp: Path) -> float:
        n = sizes.steps
        return asyncio.run(_timed_run(mode, tmp, workflow, n, expected=n)) / n * 1e6

    return measure


def measure_fan_out(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per step of one ``sizes.fan_out``-way fan-out (``asyncio.gather`` of RPC steps)."""
    n = sizes.fan_out
    return asyncio.run(_timed_run(mode, tmp, "fan_out", n, expected=n * (n + 1) // 2)) / n * 1e6


def measure_workflows(mode: str, sizes: Sizes, tmp: Path) -> float:
    """Three-step workflows per second: start them all concurrently, then wait for all."""
    n = sizes.workflows

    async def main() -> float:
        async with engine(mode, tmp) as eng:
            started = time.perf_counter()
            run_ids = await asyncio.gather(*(eng.start("three_steps", {"x": i}) for i in range(n)))
            statuses = await asyncio.gather(*(eng.wait(run_id) for run_id in run_ids))
            elapsed = time.perf_counter() - started
        _check([s.output for s in statuses], [i + 3 for i in range(n)], "three_steps")
        return elapsed

    return n / asyncio.run(main())


def measure_recovery(mode: str, sizes: Sizes, tmp: Path) -> float:
    """ms from opening an engine to the result of a run crashed (SIGKILL) half-way."""
    run_id = str(uuid.uuid4())
    crash_in_subprocess(store_url(mode, tmp), run_id, sizes, tmp / "crashed.marker")
    EXECUTED["crashy"] = 0

    async def main() -> tuple[float, Any]:
        started = time.perf_counter()
        async with engine(mode, tmp) as eng:
            status = await eng.wait(run_id)
            elapsed = time.perf_counter() - started
        return elapsed, status.output

    elapsed, output = asyncio.run(main())
    _check(output, sizes.crash_steps, "crash_run")
    _check(EXECUTED["crashy"], sizes.crash_steps - sizes.crash_at, "steps executed on recovery")
    return elapsed * 1e3


def crash_in_subprocess(url: str, run_id: str, sizes: Sizes, marker: Path) -> None:
    """Run ``crash_run`` in a child process that SIGKILLs itself at step ``sizes.crash_at``."""
    data = f"{sizes.crash_steps},{sizes.crash_at},{marker}"
    child = subprocess.run(
        [sys.executable, __file__, "--crash-child", url, run_id, data],
        check=False,
        capture_output=True,
        text=True,
    )
    if child.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"the crash child exited with {child.returncode}, not SIGKILL:\n{child.stderr}"
        )


def crash_child(url: str, run_id: str, data: str) -> None:
    """The child process of ``measure_recovery``: runs until step ``crash_at`` kills it."""
    n, crash_at, marker = data.split(",", 2)
    payload = {"n": int(n), "crash_at": int(crash_at), "marker": marker}

    async def main() -> None:
        async with gf.Engine(url, registry=REGISTRY) as eng:
            await eng.run("crash_run", payload, run_id=run_id)

    asyncio.run(main())
    raise SystemExit("the crash child finished its run: it should have been killed")


# --- running and printing -------------------------------------------------------------------

FLOOR = Workload("raw SQLite floor: INSERT + COMMIT", "µs/row", "", measure_floor)


def workloads(sizes: Sizes) -> list[Workload]:
    """The graphflow rows of the table, in order."""
    left = sizes.crash_steps - sizes.crash_at
    return [
        Workload(
            f"sequential RPC step, async fn ({sizes.steps:,} steps)",
            "µs/step",
            "≤3x / ≤1.5x floor",
            per_step("seq_rpc"),
        ),
        Workload(
            f"sequential RPC step, sync fn ({sizes.steps:,} steps)",
            "µs/step",
            "",
            per_step("seq_rpc_sync"),
        ),
        Workload(
            f"sequential inline step ({sizes.steps:,} steps)", "µs/step", "", per_step("seq_inline")
        ),
        Workload(
            f"fan-out RPC step ({sizes.fan_out:,}-way gather)", "µs/step", "≤25 µs", measure_fan_out
        ),
        Workload(
            f"3-step workflows ({sizes.workflows:,} started at once)",
            "wf/s",
            "≥2,000/s",
            measure_workflows,
            per_second=True,
        ),
        Workload(
            f"recovery: open → result ({sizes.crash_steps} steps, {left} left)",
            "ms",
            "<50 ms",
            measure_recovery,
        ),
    ]


def measure_once(workload: Workload, mode: str, sizes: Sizes) -> float:
    """One measurement in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        gc.collect()
        return workload.measure(mode, sizes, Path(tmp))


def unit_seconds(workload: Workload, value: float) -> float:
    """Seconds per unit of work: per row, step, workflow or recovery."""
    if workload.per_second:
        return 1.0 / value
    return value / (1e3 if workload.unit == "ms" else 1e6)


def warm_up() -> None:
    """An untimed small pass, so first-use costs (imports, caches) land in no figure."""
    for workload in workloads(WARM_UP_SIZES):
        if workload.measure is not measure_recovery:
            measure_once(workload, MODES[0], WARM_UP_SIZES)


def measure_mode(
    mode: str, sizes: Sizes, repeat: int, progress: Callable[[str], None]
) -> dict[str, Figure]:
    """Median of each row in one mode; each repetition measures its own floor first.

    Repetitions interleave the floor with the workloads, so a drift in fsync latency moves both.
    """
    rows = [FLOOR, *workloads(sizes)]
    values: dict[str, list[float]] = {w.label: [] for w in rows}
    ratios: dict[str, list[float]] = {w.label: [] for w in rows}
    for rep in range(repeat):
        progress(f"{mode}: repetition {rep + 1} of {repeat}")
        floor_s = unit_seconds(FLOOR, measure_once(FLOOR, mode, sizes))
        values[FLOOR.label].append(floor_s * 1e6)
        ratios[FLOOR.label].append(1.0)
        for workload in rows[1:]:
            value = measure_once(workload, mode, sizes)
            values[workload.label].append(value)
            ratios[workload.label].append(unit_seconds(workload, value) / floor_s)
    return {
        label: Figure(statistics.median(values[label]), statistics.median(ratios[label]))
        for label in values
    }


def format_value(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def print_results(table: dict[str, dict[str, Figure]], sizes: Sizes) -> None:
    """The measured table: value and x floor per mode."""
    rows = [FLOOR, *workloads(sizes)]
    width = max(len(w.label) for w in rows) + 2
    header = f"{'workload':<{width}}{'unit':<9}"
    header += "".join(f"{mode + ' ':>12}{'x floor':>9}" for mode in MODES)
    print(header + "   target")
    print("-" * (len(header) + 20))
    for workload in rows:
        line = f"{workload.label:<{width}}{workload.unit:<9}"
        for mode in MODES:
            figure = table[mode][workload.label]
            line += f"{format_value(figure.value):>12}{format_value(figure.ratio) + 'x':>9}"
        print(f"{line}   {workload.target}".rstrip())
    print(
        "x floor: time per step (per workflow for wf/s, the whole recovery for ms) ÷ time of one"
        " floor INSERT + COMMIT\nin the same mode and repetition. Default Engine settings, one"
        " fresh SQLite file per measurement."
    )


PEERS = """\
Peers: QUOTED from issue 2, NOT measured by this script (2 cores, SQLite, same workloads, medians)
per step / throughput             raw SQLite floor           LangGraph 1.2  DBOS 3.4  Prefect 3.9
sequential step                   22 µs normal, 156 µs full  640-880 µs     1,720 µs  29,800 µs
step in a 500-way fan-out         6 µs with group commit     520 µs         3,450 µs  18,900 µs
3-step workflows per second       8,300/s (normal)           258/s          122/s     0.6/s
recovery, half-done 200-step run  -                          112 ms         1,270 ms  3,290 ms
Peers run synchronous=FULL (LangGraph in WAL, DBOS in rollback-journal mode): compare them with
graphflow's `full` column."""


def print_header(sizes: Sizes, repeat: int) -> None:
    """What was measured, where."""
    print(
        f"graphflow {gf.__version__} bench_core: Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, medians of {repeat},"
        f" temp dir {tempfile.gettempdir()}"
    )
    print(
        f"sizes: floor {sizes.floor_rows:,} rows, {sizes.steps:,} sequential steps,"
        f" {sizes.fan_out:,}-way fan-out, {sizes.workflows:,} workflows,"
        f" {sizes.crash_steps}-step crash at step {sizes.crash_at}\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (median)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after imports, as servers do: the cyclic GC stops rescanning libraries",
    )
    parser.add_argument("--crash-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def progress(what: str) -> None:
    """Where the benchmark is, on stderr."""
    print(f"  … {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Measure and print everything."""
    args = parse_args(argv)
    if args.crash_child:
        crash_child(*args.crash_child)
        return
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    started = time.perf_counter()
    print_header(sizes, args.repeat)
    if args.gc_freeze:
        gc.freeze()
        print(f"gc.freeze(): {gc.get_freeze_count():,} objects moved out of the GC's scans\n")
    progress("warming up")
    warm_up()
    table = {mode: measure_mode(mode, sizes, args.repeat, progress) for mode in MODES}
    print_results(table, sizes)
    print()
    print(PEERS)
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
