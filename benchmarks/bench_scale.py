"""Scale-out benchmark: 1, 2 and 4 worker processes on PostgreSQL and on MariaDB, beside SQLite.

Run ``python benchmarks/bench_scale.py`` (``--quick`` for smaller sizes, ``--repeat N`` for the
number of repetitions whose median is printed). The workload is ``--workflows`` runs of ``--steps``
sequential RPC steps of a trivial async function. On a database server a client (this process, an
engine with ``worker=False``) starts every run and then waits for all of them, while worker
processes (``python benchmarks/bench_scale.py --worker URL``, started and warm before the timing)
execute them; on SQLite this process runs the same workload on one engine with ``worker=True``.
Each measurement uses a fresh database (servers) or file (SQLite) and is printed beside the raw
floor of its store measured in the same repetition: one INSERT + COMMIT per row. A last table
shows where the CPU went (read from ``/proc`` on Linux). Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import math
import os
import platform
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
from floor import sqlite_floor_seconds
from servers import Mariadb, Postgres, Server

import graphflow as gf

ADMIN_URL = os.environ.get("GRAPHFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("GRAPHFLOW_BENCH_MYSQL", "mariadb://root@127.0.0.1:3306/test")
WORKFLOW = "scale_seq"
REGISTRY = gf.Registry()
POLL_INTERVAL = 0.1
WORKER_COUNTS = (1, 2, 4)
SQLITE_MODES = ("normal", "full")
CPUS = os.cpu_count() or 1
NA = math.nan
DISTURBED = 0.2  # share of the busy CPU used by other processes that flags a line

# --- the workload (registered in the client and in every worker process) --------------------------

EXECUTED = {"steps": 0}


@gf.function(registry=REGISTRY)
async def bump(x: int) -> int:
    """A trivial async step (counted, so each worker can say how many it ran)."""
    EXECUTED["steps"] += 1
    return x + 1


@gf.workflow(registry=REGISTRY)
async def scale_seq(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``k`` sequential RPC steps, starting from ``x``."""
    x = data["x"]
    for i in range(data["k"]):
        x = await wf.do(f"step {i}", bump, {"x": x})
    return x


# --- sizes, settings, samples ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    workflows: int
    steps: int
    floor_rows: int

    @property
    def total_steps(self) -> int:
        """RPC steps in the whole workload."""
        return self.workflows * self.steps


DEFAULT_SIZES = Sizes(workflows=200, steps=10, floor_rows=2_000)
QUICK_SIZES = Sizes(workflows=200, steps=3, floor_rows=300)
WARM_UP_SIZES = Sizes(workflows=20, steps=3, floor_rows=50)


@dataclasses.dataclass(frozen=True)
class Options:
    """Engine settings of the workers (and of the SQLite engine)."""

    max_runs: int
    max_jobs: int


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measurement of the workload. CPU figures are seconds over the same window."""

    seconds: float
    """From just before the first ``start`` to the last run's ``finished_at`` in the store."""
    wait_lag: float
    """How much later the client's ``wait`` calls had all returned (not in ``seconds``)."""
    window: float
    """The CPU window: from the first ``start`` until every ``wait`` returned."""
    workers_cpu: float
    """The worker processes (the engine's own process, on SQLite)."""
    client_cpu: float
    """The client process (PostgreSQL only)."""
    server_cpu: float
    """The database server's processes (NaN when they cannot be read)."""
    busy_cpu: float
    """The whole machine (NaN without ``/proc/stat``)."""
    split: tuple[int, ...] = ()
    """Steps run by each worker process, busiest first."""


# --- CPU accounting -------------------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int | str) -> tuple[str, float] | None:
    """``(command name, CPU seconds)`` of a process, from ``/proc`` (``None`` if unreadable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK


def _server_cpu(names: Sequence[str]) -> dict[int, float]:
    """CPU seconds of every local process of a database server (all of its processes) by pid."""
    found: dict[int, float] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") and names else ():
        if entry.isdigit() and (stat := _proc_stat(entry)) and stat[0].startswith(tuple(names)):
            found[int(entry)] = stat[1]
    return found


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs), or NaN."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return NA
    return (sum(values) - values[3] - values[4]) / _TICK  # minus idle and iowait


@dataclasses.dataclass(frozen=True)
class CpuMark:
    """A reading of every CPU counter, at one instant."""

    client: float
    workers: tuple[float, ...]
    server: dict[int, float]
    busy: float

    @classmethod
    def read(cls, worker_pids: Sequence[int], server: Sequence[str] = ()) -> CpuMark:
        """Read the counters now (``server``: the command names of the server's processes)."""
        workers = tuple(stat[1] if (stat := _proc_stat(pid)) else NA for pid in worker_pids)
        return cls(time.process_time(), workers, _server_cpu(server), _machine_busy())

    def since(self, start: CpuMark) -> tuple[float, float, float, float]:
        """``(client, workers, server, machine)`` CPU seconds from ``start`` to this mark."""
        server = sum(t - start.server.get(pid, 0.0) for pid, t in self.server.items())
        workers = sum(b - a for a, b in zip(start.workers, self.workers, strict=True))
        client = self.client - start.client
        return client, workers, server if self.server else NA, self.busy - start.busy


# --- floors ---------------------------------------------------------------------------------------


def sqlite_floor(mode: str, rows: int) -> float:
    """µs per row of the raw SQLite floor (see ``floor.py``), in a fresh temp directory."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        return sqlite_floor_seconds(mode, rows, Path(tmp)) * 1e6


# --- database servers: worker processes ----------------------------------------------------------


class WorkerPool:
    """Worker processes running ``bench_scale.py --worker URL``, started at once."""

    def __init__(self, url: str, count: int, options: Options, warm_steps: int) -> None:
        command = [
            sys.executable,
            __file__,
            "--worker",
            url,
            "--max-runs",
            str(options.max_runs),
            "--max-jobs",
            str(options.max_jobs),
            "--steps",
            str(warm_steps),
        ]
        self.procs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)
        ]

    def wait_ready(self) -> None:
        """Return once every worker is open and warm."""
        for proc in self.procs:
            self._expect(proc, "ready")

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [proc.pid for proc in self.procs]

    @staticmethod
    def _expect(proc: subprocess.Popen[str], word: str) -> list[str]:
        """The words after ``word`` on the worker's next line of output."""
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != word:
            proc.kill()
            raise RuntimeError(f"worker {proc.pid} said {line!r}, expected {word!r} (see stderr)")
        return line[1:]

    def stop(self) -> tuple[int, ...]:
        """SIGTERM every worker; return how many steps each ran once ready, busiest first."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        steps = [int(self._expect(proc, "steps")[0]) for proc in self.procs]
        for proc in self.procs:
            proc.wait(timeout=30)
        return tuple(sorted(steps, reverse=True))

    def kill(self) -> None:
        """Kill what is still running (after a failure)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def worker_main(url: str, options: Options, warm_steps: int) -> None:
    """A worker process: warm up on its own runs, say ``ready``, run until SIGTERM/SIGINT."""

    async def main() -> None:
        engine = gf.Engine(
            url,
            registry=REGISTRY,
            max_runs=options.max_runs,
            max_jobs=options.max_jobs,
            poll_interval=POLL_INTERVAL,
        )
        async with engine:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                # First-use costs (statement compilation, validators) land in no figure.
                for i in range(3):
                    await engine.run(WORKFLOW, {"x": i, "k": warm_steps})
                EXECUTED["steps"] = 0
                print("ready", flush=True)
                async for _ in signals:
                    break
            await engine.aclose()
        print("steps", EXECUTED["steps"], flush=True)

    anyio.run(main)


# --- the workload, driven from this process -------------------------------------------------------


async def drive(
    url: str,
    sizes: Sizes,
    options: Options,
    worker_pids: Sequence[int] = (),
    server: Sequence[str] = (),
) -> Sample:
    """Start every run, then wait for all; time from the first start to the last completion.

    Without ``worker_pids`` this engine is the worker (SQLite); with them it is a client.
    """
    worker = not worker_pids
    engine = gf.Engine(
        url,
        registry=REGISTRY,
        worker=worker,
        max_runs=options.max_runs,
        max_jobs=options.max_jobs,
        poll_interval=POLL_INTERVAL,
    )
    async with engine:
        mark = CpuMark.read(worker_pids, server)
        started = time.time()
        run_ids = await asyncio.gather(
            *(engine.start(WORKFLOW, {"x": i, "k": sizes.steps}) for i in range(sizes.workflows))
        )
        statuses = await asyncio.gather(*(engine.wait(run_id) for run_id in run_ids))
        waited = time.time()
        client, workers, server_cpu, busy = CpuMark.read(worker_pids, server).since(mark)
    outputs = [status.output for status in statuses]
    expected = [i + sizes.steps for i in range(sizes.workflows)]
    if outputs != expected:
        raise RuntimeError(f"wrong outputs: {outputs[:5]}..., expected {expected[:5]}...")
    finished = max(s.finished_at.timestamp() if s.finished_at else waited for s in statuses)
    return Sample(
        seconds=finished - started,
        wait_lag=waited - finished,
        window=waited - started,
        workers_cpu=client if worker else workers,
        client_cpu=NA if worker else client,
        server_cpu=NA if worker else server_cpu,
        busy_cpu=busy,
    )


def measure_server(server: Server, workers: int, sizes: Sizes, options: Options) -> Sample:
    """The workload on a fresh database of ``server``, with ``workers`` ready worker processes."""
    with server.fresh_database() as url:
        pool = WorkerPool(url, workers, options, sizes.steps)
        try:
            pool.wait_ready()
            gc.collect()
            sample = asyncio.run(drive(url, sizes, options, pool.pids, server.processes))
            split = pool.stop()
        finally:
            pool.kill()
    if sum(split) != sizes.total_steps:
        raise RuntimeError(f"workers ran {split} steps, expected {sizes.total_steps} in all")
    return dataclasses.replace(sample, split=split)


def measure_sqlite(mode: str, sizes: Sizes, options: Options) -> Sample:
    """The workload on a fresh SQLite file, executed by this process (``worker=True``)."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'graphflow.db'}?durability={mode}"
        gc.collect()
        return asyncio.run(drive(url, sizes, options))


# --- running --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    """One graphflow line: how to measure it, and which floor it is compared with."""

    label: str
    floor: str
    measure: Callable[[], Sample]
    workers: int = 0


SQLITE_FLOORS: dict[str, str] = {
    "sqlite normal": "raw SQLite WAL, synchronous=NORMAL: INSERT + COMMIT",
    "sqlite full": "raw SQLite WAL, synchronous=FULL: INSERT + COMMIT",
}


def floor_labels(servers: Sequence[Server]) -> dict[str, str]:
    """Every floor's key and what it measures, in table order."""
    return {server.key: server.floor_label for server in servers} | SQLITE_FLOORS


def configs(servers: Sequence[Server], sizes: Sizes, options: Options) -> list[Config]:
    """The graphflow lines of the table, in order."""
    lines = []
    for server in servers:
        for count in WORKER_COUNTS:
            label = f"{server.name}, {count} worker process{'es' if count > 1 else ''}"
            label += " *" if count > CPUS else ""

            def on_server(server: Server = server, count: int = count) -> Sample:
                return measure_server(server, count, sizes, options)

            lines.append(Config(label, server.key, on_server, count))
    for mode in SQLITE_MODES:

        def lite(mode: str = mode) -> Sample:
            return measure_sqlite(mode, sizes, options)

        lines.append(Config(f"SQLite {mode}, 1 process", f"sqlite {mode}", lite))
    return lines


def measure_floor(name: str, servers: Sequence[Server], rows: int) -> float:
    """µs per row of the named floor."""
    for server in servers:
        if server.key == name:
            return server.floor(rows)
    return sqlite_floor(name.removeprefix("sqlite "), rows)


@dataclasses.dataclass(frozen=True)
class Results:
    """Every sample and floor of a run, by line label / floor name, in repetition order."""

    lines: list[Config]
    floor_labels: dict[str, str]
    floors: dict[str, list[float]]
    samples: dict[str, list[Sample]]
    ratios: dict[str, list[float]]


def measure_all(servers: Sequence[Server], sizes: Sizes, options: Options, repeat: int) -> Results:
    """Each repetition measures every floor just before the lines compared with it."""
    lines = configs(servers, sizes, options)
    labels = floor_labels(servers)
    results = Results(
        lines,
        labels,
        {name: [] for name in labels},
        {line.label: [] for line in lines},
        {line.label: [] for line in lines},
    )
    for rep in range(repeat):
        floor_now: dict[str, float] = {}
        for line in lines:
            if line.floor not in floor_now:
                progress(f"repetition {rep + 1} of {repeat}: floor {line.floor}")
                floor_now[line.floor] = measure_floor(line.floor, servers, sizes.floor_rows)
                results.floors[line.floor].append(floor_now[line.floor])
            progress(f"repetition {rep + 1} of {repeat}: {line.label}")
            sample = line.measure()
            results.samples[line.label].append(sample)
            us_per_step = sample.seconds / sizes.total_steps * 1e6
            results.ratios[line.label].append(us_per_step / floor_now[line.floor])
    return results


# --- printing -------------------------------------------------------------------------------------


def fmt(value: float, suffix: str = "") -> str:
    """Three significant figures, thousands separated; ``-`` for NaN."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return (f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}") + suffix


def median(values: Sequence[float]) -> float:
    """The median, NaN if any value is NaN."""
    return NA if any(math.isnan(v) for v in values) else statistics.median(values)


def print_floors(results: Results) -> None:
    """The raw floors of every store."""
    width = max(len(label) for label in results.floor_labels.values()) + 2
    print(f"{'floor (one row per transaction)':<{width}}{'µs/row':>9}{'rows/s':>9}")
    print("-" * (width + 18))
    for name, label in results.floor_labels.items():
        value = statistics.median(results.floors[name])
        print(f"{label:<{width}}{fmt(value):>9}{fmt(1e6 / value):>9}")


def print_throughput(results: Results, sizes: Sizes) -> None:
    """Throughput of every line, with its ratio to its floor and to one worker."""
    n = sizes.total_steps
    width = max(len(line.label) for line in results.lines) + 2
    title = f"graphflow: {sizes.workflows} workflows x {sizes.steps} steps"
    header = f"{title:<{width}}{'steps/s':>9}{'wf/s':>8}{'µs/step':>9}{'x floor':>9}{'vs 1 w.':>9}"
    print(header)
    print("-" * len(header))
    one_worker = {
        line.floor: statistics.median(s.seconds for s in results.samples[line.label])
        for line in results.lines
        if line.workers == 1
    }
    for line in results.lines:
        seconds = statistics.median(s.seconds for s in results.samples[line.label])
        speedup = fmt(one_worker[line.floor] / seconds, "x") if line.workers else ""
        print(
            f"{line.label:<{width}}{fmt(n / seconds):>9}{fmt(sizes.workflows / seconds):>8}"
            f"{fmt(seconds / n * 1e6):>9}{fmt(median(results.ratios[line.label]), 'x'):>9}"
            f"{speedup:>9}"
        )
    print(
        "µs/step: wall time ÷ steps, all processes together (time: first start → last"
        " finished_at in the store);\nx floor: that ÷ one floor INSERT + COMMIT of the same store"
        " in the same repetition; vs 1 w.: steps/s ÷ steps/s\nwith 1 worker process on the"
        " same server."
    )


def print_cpu(results: Results, sizes: Sizes) -> None:
    """Where the CPU went: per step, over the window from first start to the last wait."""
    n = sizes.total_steps
    width = max(len(line.label) for line in results.lines) + 2
    header = (
        f"{'CPU µs per step':<{width}}{'busy':>6}{'workers':>9}{'client':>8}{'server':>8}"
        f"{'other':>7}{'wait lag':>10}   steps per worker"
    )
    print(header)
    print("-" * len(header))
    disturbed = []
    for line in results.lines:
        samples = results.samples[line.label]

        def per_step(get: Callable[[Sample], float], samples: list[Sample] = samples) -> float:
            return median([get(s) / n * 1e6 for s in samples])

        busy = median([min(100.0, s.busy_cpu / (s.window * CPUS) * 100) for s in samples])
        other = per_step(_other_cpu)
        if other > DISTURBED * per_step(lambda s: s.busy_cpu):
            disturbed.append(line.label)
        typical = sorted(samples, key=lambda s: s.seconds)[(len(samples) - 1) // 2]
        split = " / ".join(f"{steps:,}" for steps in typical.split)
        print(
            f"{line.label:<{width}}{fmt(busy, '%'):>6}{fmt(per_step(lambda s: s.workers_cpu)):>9}"
            f"{fmt(per_step(lambda s: s.client_cpu)):>8}{fmt(per_step(lambda s: s.server_cpu)):>8}"
            f"{fmt(other):>7}{fmt(median([s.wait_lag * 1e3 for s in samples]), ' ms'):>10}"
            f"   {split}".rstrip()
        )
    print(
        f"busy: the whole machine, % of its {CPUS} CPUs; workers: the worker processes (on SQLite,"
        " the one process);\nclient: the process that starts and waits; server: the database"
        " server's processes; other: the rest of\nthe machine (background load included). wait"
        " lag: how long after the last finished_at the client's waits had\nall returned (outside"
        " the timing). steps per worker: from the repetition with the median time, busiest first."
    )
    if any(line.workers > CPUS for line in results.lines):
        print(
            f"* more worker processes than the {CPUS} CPUs here, which they also share with the"
            " client and the\n  database server: that line measures contention, not scale-out."
        )
    if disturbed:
        note = (
            f"! other processes used over {DISTURBED:.0%} of the busy CPU while measuring"
            f" {'; '.join(disturbed)}: those figures are low, run again on a quieter machine."
        )
        print(textwrap.fill(note, width=100, subsequent_indent="  "))


def _other_cpu(sample: Sample) -> float:
    """CPU seconds of the rest of the machine (never below zero: clock ticks are coarse)."""
    own = sample.workers_cpu + _zero(sample.client_cpu) + _zero(sample.server_cpu)
    return max(0.0, sample.busy_cpu - own)


def _zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def print_header(servers: Sequence[Server], sizes: Sizes, options: Options, repeat: int) -> None:
    """What was measured, where."""
    print(
        f"graphflow {gf.__version__} bench_scale: Python {platform.python_version()},"
        f" {', '.join(server.describe() for server in servers)}, SQLite {sqlite3.sqlite_version},"
        f" {CPUS} CPUs, medians of {repeat}"
    )
    print(
        f"workload: {sizes.workflows} workflows x {sizes.steps} sequential RPC steps (a trivial"
        f" async fn) = {sizes.total_steps:,} steps,\nall started at once by one client, then"
        f" waited for; engines: max_runs={options.max_runs}, max_jobs={options.max_jobs},"
        f" poll_interval={POLL_INTERVAL} s;\nfloors: {sizes.floor_rows:,} rows. Database"
        " servers: worker processes + a client engine (worker=False); SQLite:\none engine"
        " (worker=True) in one process.\n"
    )


def progress(what: str) -> None:
    """Where the benchmark is, on stderr."""
    print(f"  … {what}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (median)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--workflows", type=int, help="workflows per measurement (N)")
    parser.add_argument("--steps", type=int, help="sequential steps per workflow (K)")
    parser.add_argument("--max-runs", type=int, default=100, help="Engine(max_runs=...)")
    parser.add_argument("--max-jobs", type=int, default=64, help="Engine(max_jobs=...)")
    parser.add_argument(
        "--pg", default=ADMIN_URL, help="PostgreSQL server, as a URL of any database on it"
    )
    parser.add_argument(
        "--mysql", default=MYSQL_URL, help="MariaDB/MySQL server, as a URL of any database on it"
    )
    parser.add_argument(
        "--servers",
        default="postgres,mariadb",
        help="database servers to measure, comma-separated: postgres, mariadb (or none: '')",
    )
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for name in ("workflows", "steps", "max_runs", "max_jobs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure and print everything."""
    args = parse_args(argv)
    options = Options(max_runs=args.max_runs, max_jobs=args.max_jobs)
    if args.worker:
        worker_main(args.worker, options, args.steps or DEFAULT_SIZES.steps)
        return
    base = QUICK_SIZES if args.quick else DEFAULT_SIZES
    sizes = Sizes(
        workflows=args.workflows or base.workflows,
        steps=args.steps or base.steps,
        floor_rows=base.floor_rows,
    )
    known: dict[str, Server] = {"postgres": Postgres(args.pg), "mariadb": Mariadb(args.mysql)}
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    if unknown := [name for name in names if name not in known]:
        raise SystemExit(f"unknown --servers {unknown}: use postgres, mariadb")
    servers = [known[name] for name in names]
    for server in servers:
        server.check()
    started = time.perf_counter()
    print_header(servers, sizes, options, args.repeat)
    progress("warming up")
    measure_sqlite("normal", WARM_UP_SIZES, options)
    results = measure_all(servers, sizes, options, args.repeat)
    print_floors(results)
    print()
    print_throughput(results, sizes)
    print()
    print_cpu(results, sizes)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    print(f"\n(total {time.perf_counter() - started:.1f} s; this process {own:.1f} s user CPU)")


if __name__ == "__main__":
    main()
