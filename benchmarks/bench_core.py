"""Core benchmark: graphflow's per-step cost beside the raw floors, measured in the same run.

Run ``python benchmarks/bench_core.py`` (``--quick`` for smaller sizes, ``--repeat N`` for the
number of repetitions whose median is printed). Every measurement uses a fresh SQLite file. Nothing
here asserts on timings; each figure is printed with its ratio to its floor (one WAL commit, a
group-committed row, a raw thread hop, or a raw read of the same rows) measured in the same
repetition, and the target for that ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import math
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
from typing import Any, Literal

import floor as floors_module
from floor import (
    read_decode_seconds,
    sqlite_floor_seconds,
    sqlite_group_floor_seconds,
    step_row_floor_seconds,
    step_row_group_floor_seconds,
    thread_hop_seconds,
)

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


def _on_loop(x: int) -> int:
    """``inc_sync`` declared ``thread=False``: runs on the event loop."""
    return x + 1


try:
    inc_on_loop: Any = gf.function(registry=REGISTRY, thread=False, name="inc_on_loop")(_on_loop)
except TypeError:  # a graphflow without thread= (comparing with an older version)
    inc_on_loop = None


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
async def seq_rpc_on_loop(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential RPC steps of the sync function declared ``thread=False``."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", "inc_on_loop", {"x": x})
    return x


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
async def fan_out_sync(wf: gf.Workflow, data: dict[str, int]) -> int:
    """An ``n``-way fan-out of RPC steps of the sync function (each in a worker thread)."""
    steps = [wf.do(f"step {i}", inc_sync, {"x": i}) for i in range(data["n"])]
    return sum(await asyncio.gather(*steps))


@gf.workflow(registry=REGISTRY)
async def history_then_suspend(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``n`` sequential steps, then a suspend: resuming replays the whole history."""
    x = 0
    for i in range(data["n"]):
        x = await wf.do(f"step {i}", inc, {"x": x})
    await wf.suspend("go on")
    return x


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
    history: int
    hops: int

    @property
    def crash_at(self) -> int:
        """Index of the step that kills the first process: half the run is left."""
        return self.crash_steps // 2


DEFAULT_SIZES = Sizes(
    floor_rows=2_000,
    steps=1_000,
    fan_out=1_000,
    workflows=1_000,
    crash_steps=200,
    history=10_000,
    hops=2_000,
)
QUICK_SIZES = Sizes(
    floor_rows=300, steps=200, fan_out=200, workflows=200, crash_steps=40, history=2_000, hops=300
)
WARM_UP_SIZES = Sizes(
    floor_rows=50, steps=50, fan_out=50, workflows=50, crash_steps=10, history=50, hops=50
)

Floor = Literal["commit", "group", "hop", "read", "step_row", "step_group_row"]
FLOOR_NAMES: dict[str, str] = {
    "commit": "one commit",
    "group": "group row",
    "hop": "extra ÷ hop",
    "read": "read+decode",
}


@dataclass(frozen=True)
class Measured:
    """A figure that brings its own floor (seconds for the same unit of work)."""

    value: float
    floor_s: float


@dataclass(frozen=True)
class Workload:
    """One row of the results table: what it measures, against which floor, and the target.

    ``floor`` names what the ratio divides by: one WAL commit (``commit``), one group-committed
    row (``group``), one raw thread hop (``hop``: the ratio is this row minus the async step,
    over the hop) or the workload's own raw read (``read``).
    """

    label: str
    unit: str
    floor: Floor
    target: str
    measure: Callable[[str, Sizes, Path], float | Measured]
    per_second: bool = False
    row_floor: Floor | None = None
    """A second floor: graphflow's own step row written raw (``x row``: the engine's share)."""


@dataclass(frozen=True)
class Figure:
    """A median, and the median of its ratios to the floor measured in the same repetition."""

    value: float
    ratio: float
    row_ratio: float = math.nan


# --- floors ---------------------------------------------------------------------------------


def measure_floor(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per row of one WAL commit per row (see ``floor.py``)."""
    return sqlite_floor_seconds(mode, sizes.floor_rows, tmp) * 1e6


def measure_group_floor(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per row of ``sizes.fan_out`` rows in one commit (see ``floor.py``)."""
    return sqlite_group_floor_seconds(mode, sizes.fan_out, tmp) * 1e6


def measure_step_row(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per step row, graphflow's upsert by raw sqlite3, one commit each (see ``floor.py``)."""
    return step_row_floor_seconds(mode, sizes.floor_rows, tmp) * 1e6


def measure_step_group_row(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per step row of ``sizes.fan_out`` such upserts in one commit (see ``floor.py``)."""
    return step_row_group_floor_seconds(mode, sizes.fan_out, tmp) * 1e6


def measure_hop(mode: str, sizes: Sizes, tmp: Path) -> float:
    """µs per raw thread hop, ``loop.run_in_executor`` (see ``floor.py``)."""
    return thread_hop_seconds(sizes.hops) * 1e6


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
        started = floors_module.timer()
        output = await eng.run(workflow, {"n": n})
        elapsed = floors_module.timer() - started
    _check(output, expected, workflow)
    return elapsed


def _check(output: Any, expected: Any, what: str) -> None:
    if output != expected:
        raise RuntimeError(f"{what}: wrong output {output!r}, expected {expected!r}")


def per_step(workflow: str) -> Callable[[str, Sizes, Path], float]:
    """µs per step of one ``sizes.steps``-step run of ``workflow``."""

    def measure(mode: str, sizes: Sizes, tmp: Path) -> float:
        n = sizes.steps
        if workflow == "seq_rpc_on_loop" and inc_on_loop is None:
            return math.nan
        return asyncio.run(_timed_run(mode, tmp, workflow, n, expected=n)) / n * 1e6

    return measure


def fan_out_step(workflow: str) -> Callable[[str, Sizes, Path], float]:
    """µs per step of one ``sizes.fan_out``-way fan-out (``asyncio.gather`` of RPC steps)."""

    def measure(mode: str, sizes: Sizes, tmp: Path) -> float:
        n = sizes.fan_out
        expected = n * (n + 1) // 2
        return asyncio.run(_timed_run(mode, tmp, workflow, n, expected=expected)) / n * 1e6

    return measure


def measure_workflows(mode: str, sizes: Sizes, tmp: Path) -> float:
    """Three-step workflows per second: start them all concurrently, then wait for all."""
    n = sizes.workflows

    async def main() -> float:
        async with engine(mode, tmp) as eng:
            started = floors_module.timer()
            run_ids = await asyncio.gather(*(eng.start("three_steps", {"x": i}) for i in range(n)))
            statuses = await asyncio.gather(*(eng.wait(run_id) for run_id in run_ids))
            elapsed = floors_module.timer() - started
        _check([s.output for s in statuses], [i + 3 for i in range(n)], "three_steps")
        return elapsed

    return n / asyncio.run(main())


def measure_replay(mode: str, sizes: Sizes, tmp: Path) -> Measured:
    """ms to replay ``sizes.history`` steps: from a resume to the run's output.

    The clock starts once ``resume`` returned (it reads the run's steps to find the suspend);
    ``engine.run`` with the run's id then waits for the run and returns its output, without a
    status of every step. Its floor: a raw read of the same rows (one ``SELECT``, ``json.loads``
    of each row's JSON).
    """
    n = sizes.history
    data = {"n": n}

    async def main() -> tuple[float, float]:
        async with engine(mode, tmp) as eng:
            run_id = await eng.start("history_then_suspend", data)
            async for status in eng.watch(run_id, steps=False):
                if status.state == "suspended":
                    break
            await eng.resume(run_id, None)  # wakes the worker, which replays once this awaits
            gc.collect()
            started = floors_module.timer()
            output = await eng.run("history_then_suspend", data, run_id=run_id)
            elapsed = floors_module.timer() - started
        _check(output, n, "history_then_suspend")
        raw = min(read_decode_seconds(tmp / "graphflow.db", run_id) for _ in range(3))
        return elapsed, raw

    elapsed, raw = asyncio.run(main())
    return Measured(elapsed * 1e3, raw)


def measure_recovery(mode: str, sizes: Sizes, tmp: Path) -> float:
    """ms from opening an engine to the result of a run crashed (SIGKILL) half-way."""
    run_id = str(uuid.uuid4())
    crash_in_subprocess(store_url(mode, tmp), run_id, sizes, tmp / "crashed.marker")
    EXECUTED["crashy"] = 0

    async def main() -> tuple[float, Any]:
        started = floors_module.timer()
        async with engine(mode, tmp) as eng:
            status = await eng.wait(run_id)
            elapsed = floors_module.timer() - started
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

FLOORS = (
    Workload("floor: one WAL commit (INSERT + COMMIT)", "µs/row", "commit", "", measure_floor),
    Workload(
        "floor: group commit (all rows, 1 COMMIT)", "µs/row", "group", "", measure_group_floor
    ),
    Workload("floor: thread hop (run_in_executor)", "µs/call", "hop", "", measure_hop),
    Workload("floor: step row, raw upsert + COMMIT", "µs/row", "step_row", "", measure_step_row),
    Workload(
        "floor: step row in a group commit",
        "µs/row",
        "step_group_row",
        "",
        measure_step_group_row,
    ),
)
ASYNC_STEP = "sequential RPC step, async fn"


def workloads(sizes: Sizes) -> list[Workload]:
    """The graphflow rows of the table, in order (the async step before the sync ones)."""
    left = sizes.crash_steps - sizes.crash_at
    fan = f"{sizes.fan_out:,}-way gather"
    return [
        Workload(
            ASYNC_STEP,
            "µs/step",
            "commit",
            "≤2x / ≤1.3x",
            per_step("seq_rpc"),
            row_floor="step_row",
        ),
        Workload(
            "sequential RPC step, sync fn (thread)",
            "µs/step",
            "hop",
            "≤1x",
            per_step("seq_rpc_sync"),
        ),
        Workload(
            "sequential RPC step, sync fn thread=False",
            "µs/step",
            "commit",
            "≈ async",
            per_step("seq_rpc_on_loop"),
            row_floor="step_row",
        ),
        Workload("sequential inline step", "µs/step", "commit", "", per_step("seq_inline")),
        Workload(
            f"fan-out step, async fn ({fan})",
            "µs/step",
            "group",
            "≤3x",
            fan_out_step("fan_out"),
            row_floor="step_group_row",
        ),
        Workload(
            f"fan-out step, sync fn ({fan})",
            "µs/step",
            "group",
            "≤6x",
            fan_out_step("fan_out_sync"),
            row_floor="step_group_row",
        ),
        Workload(
            f"3-step workflows ({sizes.workflows:,} started at once)",
            "wf/s",
            "group",
            "≥5,000/s",
            measure_workflows,
            per_second=True,
        ),
        Workload(
            f"replay of a {sizes.history:,}-step history", "ms", "read", "≤3x", measure_replay
        ),
        Workload(
            f"recovery: open → result ({sizes.crash_steps} steps, {left} left)",
            "ms",
            "commit",
            "<50 ms",
            measure_recovery,
        ),
    ]


def measure_once(workload: Workload, mode: str, sizes: Sizes) -> float | Measured:
    """One measurement in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        gc.collect()
        return workload.measure(mode, sizes, Path(tmp))


def unit_seconds(workload: Workload, value: float) -> float:
    """Seconds per unit of work: per row, step, workflow, call or whole measurement."""
    if workload.per_second:
        return 1.0 / value
    return value / (1e3 if workload.unit == "ms" else 1e6)


def warm_up() -> None:
    """An untimed small pass, so first-use costs (imports, caches) land in no figure."""
    for workload in workloads(WARM_UP_SIZES):
        if workload.measure is not measure_recovery:
            measure_once(workload, MODES[0], WARM_UP_SIZES)


def _ratio(workload: Workload, seconds: float, floors: dict[str, float], async_s: float) -> float:
    if workload.floor == "hop":  # what the thread costs beyond the async step
        return (seconds - async_s) / floors["hop"]
    return seconds / floors[workload.floor]


def measure_mode(
    mode: str, sizes: Sizes, repeat: int, progress: Callable[[str], None]
) -> dict[str, Figure]:
    """Median of each row in one mode; each repetition measures its own floors first.

    Repetitions interleave the floors with the workloads, so a drift in fsync latency or in the
    machine's load moves both.
    """
    rows = [*FLOORS, *workloads(sizes)]
    values: dict[str, list[float]] = {w.label: [] for w in rows}
    ratios: dict[str, list[float]] = {w.label: [] for w in rows}
    row_ratios: dict[str, list[float]] = {w.label: [] for w in rows}
    for rep in range(repeat):
        progress(f"{mode}: repetition {rep + 1} of {repeat}")
        floors: dict[str, float] = {}
        for row in FLOORS:
            value = float(measure_once(row, mode, sizes))  # type: ignore[arg-type]
            floors[row.floor] = unit_seconds(row, value)
            values[row.label].append(value)
            ratios[row.label].append(1.0)
        async_s = math.nan
        for workload in rows[len(FLOORS) :]:
            measured = measure_once(workload, mode, sizes)
            if isinstance(measured, Measured):
                floors[workload.floor] = measured.floor_s
                measured = measured.value
            seconds = unit_seconds(workload, measured)
            if workload.label == ASYNC_STEP:
                async_s = seconds
            values[workload.label].append(measured)
            ratios[workload.label].append(_ratio(workload, seconds, floors, async_s))
            if workload.row_floor is not None:
                row_ratios[workload.label].append(seconds / floors[workload.row_floor])
    return {
        label: Figure(
            statistics.median(values[label]),
            statistics.median(ratios[label]),
            statistics.median(row_ratios[label]) if row_ratios[label] else math.nan,
        )
        for label in values
    }


def format_value(value: float) -> str:
    """Three significant figures, thousands separated."""
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def print_results(table: dict[str, dict[str, Figure]], sizes: Sizes) -> None:
    """The measured table: value and x floor per mode, the floor's name and the target."""
    modes = list(table)
    rows = [*FLOORS, *workloads(sizes)]
    width = max(len(w.label) for w in rows) + 2
    header = f"{'workload':<{width}}{'unit':<9}"
    header += "".join(f"{mode + ' ':>12}{'x floor':>9}{'x row':>7}" for mode in modes)
    header += f"  {'floor':<13}target (normal / full)"
    print(header)
    print("-" * (len(header) + 4))
    for workload in rows:
        line = f"{workload.label:<{width}}{workload.unit:<9}"
        for mode in modes:
            figure = table[mode][workload.label]
            ratio = "" if workload in FLOORS else format_value(figure.ratio)
            ratio += "x" if ratio[:1].isdigit() else ""
            row = "" if math.isnan(figure.row_ratio) else f"{format_value(figure.row_ratio)}x"
            line += f"{format_value(figure.value):>12}{ratio:>9}{row:>7}"
        floor = "" if workload in FLOORS else FLOOR_NAMES[workload.floor]
        print(f"{line}  {floor:<13}{workload.target}".rstrip())
    print(
        "x floor: this row's time per unit (per workflow for wf/s, the whole replay or recovery"
        " for ms)\n÷ its floor in the same mode and repetition: one WAL commit, one row of a"
        " group commit, the raw\nread + JSON decode of the replayed rows; for the sync step,"
        " (sync step - async step) ÷ one raw\nthread hop. Default Engine settings, one fresh"
        " SQLite file per measurement.\nx row: the same time ÷ graphflow's own step row"
        " written raw (its fenced upsert by sqlite3,\none commit each or all in one):"
        " what graphflow's Python adds to what the database charges."
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
    """What was measured, where, and how loaded the machine was."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"graphflow {gf.__version__} bench_core: Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs (load {load}),"
        f" medians of {repeat}, temp dir {tempfile.gettempdir()}"
    )
    print(
        f"sizes: floor {sizes.floor_rows:,} rows, {sizes.steps:,} sequential steps,"
        f" {sizes.fan_out:,}-way fan-out, {sizes.workflows:,} workflows,"
        f" {sizes.history:,}-step replay, {sizes.crash_steps}-step crash at step"
        f" {sizes.crash_at}\n"
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
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="measure CPU time instead of wall time (fair on a loaded machine; not for `full`)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="normal,full (default both)")
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
    if args.cpu:
        floors_module.use_cpu_time()
    print_header(sizes, args.repeat)
    print("clock: CPU time of this process (--cpu)\n" if args.cpu else "clock: wall time\n")
    if args.gc_freeze:
        gc.freeze()
        print(f"gc.freeze(): {gc.get_freeze_count():,} objects moved out of the GC's scans\n")
    progress("warming up")
    warm_up()
    modes = [mode for mode in args.modes.split(",") if mode]
    table = {mode: measure_mode(mode, sizes, args.repeat, progress) for mode in modes}
    print_results(table, sizes)
    print()
    print(PEERS)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n(total {time.perf_counter() - started:.1f} s, load average now {load})")


if __name__ == "__main__":
    main()
