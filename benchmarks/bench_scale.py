"""Scale-out benchmark: throughput with 1, 2 and 4 worker processes on PostgreSQL, beside SQLite.

Run ``python benchmarks/bench_scale.py`` (``--quick`` for smaller sizes, ``--repeat N`` for the
number of repetitions whose median is printed). The workload is ``--workflows`` runs of ``--steps``
sequential RPC steps of a trivial async function. On PostgreSQL a client process (this one, an
engine with ``worker=False``) starts every run and then waits for all of them, while worker
processes (``python benchmarks/bench_scale.py --worker URL``) execute them; on SQLite this process
runs the same workload on one engine with ``worker=True``. Every measurement uses a fresh database
(PostgreSQL) or file (SQLite), and is printed beside the raw floor of its store measured in the same
repetition: one INSERT + COMMIT per row. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
from psycopg import sql

import graphflow as gf

ADMIN_URL = os.environ.get("GRAPHFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
WORKFLOW = "scale_seq"
REGISTRY = gf.Registry()
ROW = "x" * 200
POLL_INTERVAL = 0.1
WORKER_COUNTS = (1, 2, 4)
SQLITE_MODES = ("normal", "full")

# --- the workload (registered in the client and in every worker process) -------------------------


@gf.function(registry=REGISTRY)
async def bump(x: int) -> int:
    """A trivial async step."""
    return x + 1


@gf.workflow(registry=REGISTRY)
async def scale_seq(wf: gf.Workflow, data: dict[str, int]) -> int:
    """``k`` sequential RPC steps, starting from ``x``."""
    x = data["x"]
    for i in range(data["k"]):
        x = await wf.do(f"step {i}", bump, {"x": x})
    return x


# --- sizes and results ---------------------------------------------------------------------------


@dataclass(frozen=True)
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
QUICK_SIZES = Sizes(workflows=60, steps=5, floor_rows=300)
WARM_UP_SIZES = Sizes(workflows=20, steps=3, floor_rows=50)


@dataclass(frozen=True)
class Options:
    """Engine settings of the workers (and of the SQLite engine)."""

    max_runs: int
    max_jobs: int


@dataclass(frozen=True)
class Sample:
    """One measurement of the workload."""

    seconds: float
    """From just before the first ``start`` to the last run's ``finished_at`` in the store."""
    wait_lag: float
    """How much later the client's ``wait`` calls had all returned."""
    worker_cpu: float
    """CPU seconds used by the worker processes (or the SQLite process) while measuring."""
    client_cpu: float
    """CPU seconds used by this process while measuring (the client, on PostgreSQL)."""


@dataclass(frozen=True)
class Row:
    """One line of the graphflow table: medians over the repetitions."""

    label: str
    floor: str
    steps_per_s: float
    workflows_per_s: float
    us_per_step: float
    x_floor: float
    wait_lag_ms: float
    worker_cpu_us: float
    client_cpu_us: float


# --- floors ----------------------------------------------------------------------------------------


def sqlite_floor(mode: str, rows: int) -> float:
    """µs per row: one ``BEGIN IMMEDIATE; INSERT; COMMIT`` per ~200-byte row, WAL."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
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
    return elapsed / rows * 1e6


def postgres_floor(admin_url: str, rows: int) -> float:
    """µs per row: psycopg, one ``INSERT`` + ``COMMIT`` per ~200-byte row, on a fresh database."""
    with fresh_database(admin_url) as url, psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE rows (id BIGSERIAL PRIMARY KEY, run TEXT, body TEXT)")
        conn.commit()
        started = time.perf_counter()
        for i in range(rows):
            conn.execute("INSERT INTO rows (run, body) VALUES (%s, %s)", (f"run-{i}", ROW))
            conn.commit()
        elapsed = time.perf_counter() - started
    return elapsed / rows * 1e6


# --- PostgreSQL: fresh databases and worker processes ----------------------------------------------


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database ``gf_bench_<random>`` on the server of ``admin_url``, dropped afterwards."""
    name = f"gf_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}", query=""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class WorkerPool:
    """Worker processes running ``bench_scale.py --worker URL``, each ready (and warm) once up."""

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
        self.ready_cpu = [self._expect(proc, "ready") for proc in self.procs]

    @staticmethod
    def _expect(proc: subprocess.Popen[str], word: str) -> float:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != word:
            proc.kill()
            raise RuntimeError(f"worker {proc.pid} said {line!r}, expected {word!r} (see stderr)")
        return float(line[1])

    def stop(self) -> float:
        """SIGTERM every worker; return the CPU seconds they used since they were ready."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        used = 0.0
        for proc, ready in zip(self.procs, self.ready_cpu, strict=True):
            used += self._expect(proc, "cpu") - ready
            proc.wait(timeout=30)
        return used

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
                print("ready", time.process_time(), flush=True)
                async for _ in signals:
                    break
            await engine.aclose()
        print("cpu", time.process_time(), flush=True)

    anyio.run(main)


# --- the workload, driven from this process --------------------------------------------------------


async def drive(url: str, sizes: Sizes, *, worker: bool, options: Options) -> Sample:
    """Start every run, then wait for all; time from the first start to the last completion."""
    engine = gf.Engine(
        url,
        registry=REGISTRY,
        worker=worker,
        max_runs=options.max_runs,
        max_jobs=options.max_jobs,
        poll_interval=POLL_INTERVAL,
    )
    async with engine:
        cpu = time.process_time()
        started = time.time()
        run_ids = await asyncio.gather(
            *(engine.start(WORKFLOW, {"x": i, "k": sizes.steps}) for i in range(sizes.workflows))
        )
        statuses = await asyncio.gather(*(engine.wait(run_id) for run_id in run_ids))
        waited = time.time()
        cpu = time.process_time() - cpu
    outputs = [status.output for status in statuses]
    expected = [i + sizes.steps for i in range(sizes.workflows)]
    if outputs != expected:
        raise RuntimeError(f"wrong outputs: {outputs[:5]}..., expected {expected[:5]}...")
    finished = max(s.finished_at.timestamp() if s.finished_at else waited for s in statuses)
    return Sample(
        seconds=finished - started,
        wait_lag=waited - finished,
        worker_cpu=cpu if worker else 0.0,
        client_cpu=0.0 if worker else cpu,
    )


def measure_postgres(admin_url: str, workers: int, sizes: Sizes, options: Options) -> Sample:
    """The workload on a fresh PostgreSQL database, with ``workers`` ready worker processes."""
    with fresh_database(admin_url) as url:
        pool = WorkerPool(url, workers, options, sizes.steps)
        try:
            gc.collect()
            sample = asyncio.run(drive(url, sizes, worker=False, options=options))
            worker_cpu = pool.stop()
        finally:
            pool.kill()
    return Sample(sample.seconds, sample.wait_lag, worker_cpu, sample.client_cpu)


def measure_sqlite(mode: str, sizes: Sizes, options: Options) -> Sample:
    """The workload on a fresh SQLite file, executed by this process (``worker=True``)."""
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'graphflow.db'}?durability={mode}"
        gc.collect()
        return asyncio.run(drive(url, sizes, worker=True, options=options))


def warm_up(options: Options) -> None:
    """An untimed small pass in this process, so first-use costs land in no figure."""
    measure_sqlite("normal", WARM_UP_SIZES, options)


# --- running and printing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One graphflow line: how to measure it, and which floor it is compared with."""

    label: str
    floor: str
    measure: Callable[[], Sample]


def configs(admin_url: str, sizes: Sizes, options: Options) -> list[Config]:
    """The graphflow lines of the table, in order."""
    rows = []
    for count in WORKER_COUNTS:
        label = f"PostgreSQL, {count} worker process{'es' if count > 1 else ''}"
        if count + 1 > (os.cpu_count() or 1):
            label += " *"

        def pg(count: int = count) -> Sample:
            return measure_postgres(admin_url, count, sizes, options)

        rows.append(Config(label, "postgres", pg))
    for mode in SQLITE_MODES:

        def lite(mode: str = mode) -> Sample:
            return measure_sqlite(mode, sizes, options)

        rows.append(Config(f"SQLite {mode}, 1 process (worker=True)", f"sqlite {mode}", lite))
    return rows


FLOORS: dict[str, str] = {
    "postgres": "raw PostgreSQL: psycopg INSERT + COMMIT",
    "sqlite normal": "raw SQLite WAL, synchronous=NORMAL: INSERT + COMMIT",
    "sqlite full": "raw SQLite WAL, synchronous=FULL: INSERT + COMMIT",
}


def measure_floor(name: str, admin_url: str, rows: int) -> float:
    """µs per row of the named floor."""
    if name == "postgres":
        return postgres_floor(admin_url, rows)
    return sqlite_floor(name.removeprefix("sqlite "), rows)


def measure_all(
    admin_url: str, sizes: Sizes, options: Options, repeat: int
) -> tuple[dict[str, float], list[Row]]:
    """Medians of every floor and line; each repetition measures its floors beside its lines."""
    lines = configs(admin_url, sizes, options)
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    samples: dict[str, list[Sample]] = {line.label: [] for line in lines}
    ratios: dict[str, list[float]] = {line.label: [] for line in lines}
    for rep in range(repeat):
        floor_now: dict[str, float] = {}
        for line in lines:
            if line.floor not in floor_now:
                progress(f"repetition {rep + 1} of {repeat}: floor {line.floor}")
                floor_now[line.floor] = measure_floor(line.floor, admin_url, sizes.floor_rows)
                floors[line.floor].append(floor_now[line.floor])
            progress(f"repetition {rep + 1} of {repeat}: {line.label}")
            sample = line.measure()
            samples[line.label].append(sample)
            us_per_step = sample.seconds / sizes.total_steps * 1e6
            ratios[line.label].append(us_per_step / floor_now[line.floor])
    median = statistics.median
    rows = []
    for line in lines:
        got = samples[line.label]
        seconds = median(s.seconds for s in got)
        rows.append(
            Row(
                label=line.label,
                floor=line.floor,
                steps_per_s=sizes.total_steps / seconds,
                workflows_per_s=sizes.workflows / seconds,
                us_per_step=seconds / sizes.total_steps * 1e6,
                x_floor=median(ratios[line.label]),
                wait_lag_ms=median(s.wait_lag for s in got) * 1e3,
                worker_cpu_us=median(s.worker_cpu for s in got) / sizes.total_steps * 1e6,
                client_cpu_us=median(s.client_cpu for s in got) / sizes.total_steps * 1e6,
            )
        )
    return {name: median(values) for name, values in floors.items()}, rows


def fmt(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def print_results(floors: dict[str, float], rows: list[Row], sizes: Sizes) -> None:
    """The floors, then the graphflow lines side by side."""
    width = max(len(label) for label in FLOORS.values()) + 2
    print(f"{'floor (one row per transaction)':<{width}}{'µs/row':>9}{'rows/s':>9}")
    print("-" * (width + 18))
    for name, label in FLOORS.items():
        print(f"{label:<{width}}{fmt(floors[name]):>9}{fmt(1e6 / floors[name]):>9}")
    print()
    one_worker = rows[0].steps_per_s
    width = max(len(row.label) for row in rows) + 2
    header = (
        f"{'graphflow, ' + f'{sizes.workflows} × {sizes.steps} steps':<{width}}"
        f"{'steps/s':>9}{'wf/s':>8}{'µs/step':>9}{'x floor':>9}{'vs 1 w.':>9}"
        f"{'wait lag':>10}{'CPU µs/step: workers':>22}{'client':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        speedup = f"{row.steps_per_s / one_worker:.2f}x" if row.floor == "postgres" else ""
        client = fmt(row.client_cpu_us) if row.floor == "postgres" else "-"
        print(
            f"{row.label:<{width}}{fmt(row.steps_per_s):>9}{fmt(row.workflows_per_s):>8}"
            f"{fmt(row.us_per_step):>9}{fmt(row.x_floor) + 'x':>9}{speedup:>9}"
            f"{fmt(row.wait_lag_ms) + ' ms':>10}{fmt(row.worker_cpu_us):>22}{client:>8}"
        )
    cpus = os.cpu_count() or 1
    print(
        "µs/step: wall time ÷ steps (all processes together); x floor: that ÷ one floor INSERT +"
        " COMMIT of the\nsame store in the same repetition; vs 1 w.: steps/s ÷ steps/s with 1"
        " worker; wait lag: how long after\nthe last finished_at the client's waits had all"
        " returned (not in the timing); CPU µs/step: CPU time\nof the worker processes (the"
        " SQLite process) and of the client process, per step."
    )
    if any(count + 1 > cpus for count in WORKER_COUNTS):
        print(
            f"* more processes than the {cpus} CPUs here: the workers, the client and the"
            " PostgreSQL server contend\n  for them, so these lines measure contention, not"
            " scale-out."
        )


def print_header(admin_url: str, sizes: Sizes, options: Options, repeat: int) -> None:
    """What was measured, where."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    version = row[0].split()[0] if row else "?"
    print(
        f"graphflow {gf.__version__} bench_scale: Python {platform.python_version()},"
        f" PostgreSQL {version} (synchronous_commit={sync[0] if sync else '?'}),"
        f" SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, medians of {repeat}"
    )
    print(
        f"workload: {sizes.workflows} workflows × {sizes.steps} sequential RPC steps (trivial"
        f" async fn) = {sizes.total_steps:,} steps, started at once, then waited;"
        f" engines: max_runs={options.max_runs}, max_jobs={options.max_jobs},"
        f" poll_interval={POLL_INTERVAL} s; floors: {sizes.floor_rows:,} rows\n"
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
    parser.add_argument("--pg", default=ADMIN_URL, help="PostgreSQL server (any existing db)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure and print everything."""
    args = parse_args(argv)
    options = Options(max_runs=args.max_runs, max_jobs=args.max_jobs)
    if args.worker:
        worker_main(args.worker, options, args.steps or DEFAULT_SIZES.steps)
        return
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    sizes = Sizes(
        workflows=args.workflows or sizes.workflows,
        steps=args.steps or sizes.steps,
        floor_rows=sizes.floor_rows,
    )
    try:
        psycopg.connect(args.pg, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"bench_scale needs PostgreSQL at {args.pg} ({exc}). Start it with:"
            " pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from exc
    started = time.perf_counter()
    print_header(args.pg, sizes, options, args.repeat)
    progress("warming up")
    warm_up(options)
    floors, rows = measure_all(args.pg, sizes, options, args.repeat)
    print_results(floors, rows, sizes)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\n(total {time.perf_counter() - started:.1f} s, this process {cpu.ru_utime:.1f} s CPU)")


if __name__ == "__main__":
    main()
