"""One simulated seed: programs, engines that crash and restart, faults, and the oracle's verdict.

The driver plays the operator and the users: it starts the seed's runs (again after every
restart: ``start`` with an explicit run id is idempotent), resumes every suspend it finds, and
restarts the engine after each crash (a new engine on the same database, which recovers the runs
once their leases expire on the virtual clock). Client calls that meet a store fault are tried
again a second later, as a user would.

Once the faults stop (``quiet_at``), every run must complete within ``LIVENESS`` virtual seconds
with the output of its fault-free run (``programs.evaluate``), and no completed step may have
executed again (``ledger``).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any, Literal, TypeVar

import anyio

import graphflow as gf
from graphflow.store.base import Store
from graphflow.store.sql import SqlStore

from .faults import ALL_KINDS, Fault, FaultKind, FaultPlan
from .ledger import INCARNATION, Ledger, ProcessDied, use_ledger
from .loop import LoopClock, SimulationStuck, run_simulated
from .programs import (
    REGISTRY,
    WORKFLOW,
    Program,
    evaluate,
    generate,
    resume_data,
    step_count,
    suspends,
)
from .store import FaultyStore, Incarnation, Mutation, Ordinals

__all__ = ("LEASE", "Backend", "SeedConfig", "SeedResult", "run_seed")

T = TypeVar("T")
Backend = Literal["memory", "sqlite"]

LEASE = 30.0
"""The engines' lease (virtual seconds): a crashed engine's runs are recovered after it."""
POLL = 10.0
TICK = 5.0
"""How often the driver looks for suspends to resume and for the runs' ends."""
LIVENESS = 3600.0
"""Once the faults stop, every run must end within this many virtual seconds."""
CLIENT_RETRY = 1.0
_TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedConfig:
    """What to simulate: a seed, the fault kinds it may inject, and optionally more."""

    seed: int
    kinds: tuple[FaultKind, ...] = ALL_KINDS
    backend: Backend | None = None
    """``None``: drawn from the seed (a SQLite file one seed in ten, else ``memory://``)."""
    schedule: Mapping[int, Fault] | None = None
    """Replay exactly these faults (by store call ordinal) instead of drawing them."""
    mutation: Mutation | None = None
    """A bug to plant in the store (to show that the oracle catches it)."""


@dataclass(slots=True, kw_only=True)
class SeedResult:
    """What one seed did, and what the oracle found wrong (``problems``; empty: it passed)."""

    config: SeedConfig
    backend: Backend
    problems: list[str]
    trace: list[str]
    faults: list[tuple[int, str, Fault]]
    runs: int
    steps: int
    crashes: int
    store_calls: int
    virtual_seconds: float

    @property
    def seed(self) -> int:
        """The seed simulated."""
        return self.config.seed

    @property
    def ok(self) -> bool:
        """Whether the seed kept every guarantee."""
        return not self.problems


def run_seed(config: SeedConfig) -> SeedResult:
    """Simulate one seed on a fresh virtual-time loop. Deterministic: same config, same result."""
    logger = logging.getLogger("graphflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # the planned failures would flood the log
    # The engine jitters its backoffs with the process's RNG: part of the simulated world too.
    jitter = random.getstate()
    random.seed(f"jitter:{config.seed}")
    simulation = Simulation(config)
    try:
        return run_simulated(simulation.run)
    except SimulationStuck as exc:
        return simulation.stuck_loop(exc)
    finally:
        logger.setLevel(level)
        random.setstate(jitter)


@dataclass(slots=True)
class _TopRun:
    program: Program
    value: int
    expected: dict[str, Any]
    status: gf.RunStatus | None = None


@dataclass(slots=True)
class _Outcome:
    done: bool = False
    problems: list[str] = field(default_factory=list)


class Simulation:
    """The state of one seed's simulation."""

    def __init__(self, config: SeedConfig) -> None:
        self.config = config
        seed = config.seed
        programs = Random(f"programs:{seed}")
        self.runs: dict[str, _TopRun] = {}
        for i in range(programs.randint(1, 2)):
            program, value = generate(programs), programs.randrange(1_000_003)
            self.runs[f"sim-{seed}-{i}"] = _TopRun(program, value, evaluate(program, value))
        faults = Random(f"faults:{seed}")
        self.backend: Backend = config.backend or ("sqlite" if faults.random() < 0.1 else "memory")
        rate = faults.choice([0.0, 0.01, 0.03, 0.06, 0.1])
        kinds = config.kinds
        if kinds and faults.random() < 0.5:
            kinds = (faults.choice(kinds),)  # one kind alone: a failure points at its kind
        self.plan = FaultPlan(
            faults,
            kinds=kinds,
            rate=rate,
            quiet_at=faults.uniform(5.0, 120.0),
            lease=LEASE,
            schedule=config.schedule,
        )
        self.restarts = Random(f"restarts:{seed}")
        self.ledger = Ledger()
        self.ordinals = Ordinals()
        self.clock = LoopClock()
        self.outcome = _Outcome()
        self.resumed: set[tuple[str, str]] = set()
        self.engines = 1 if faults.random() < 0.5 else 2
        """Engine processes sharing the database (each restarted when it dies)."""
        self.incarnations = 0
        self.finished: anyio.Event
        self._shared: Store | None = None
        self._path: Path | None = None

    # --- the seed -----------------------------------------------------------------------------

    async def run(self) -> SeedResult:
        """Simulate until every run ended (or a problem showed), then judge."""
        use_ledger(self.ledger)
        self.finished = anyio.Event()
        try:
            with self._database():
                if self._shared is not None:
                    await self._shared.open()
                try:
                    await self._until_done()
                finally:
                    if self._shared is not None:
                        await self._shared.aclose()
        finally:
            use_ledger(None)
        if not self.outcome.problems:
            self._judge()
        return self._result()

    @contextmanager
    def _database(self) -> Iterator[None]:
        if self.backend == "memory":
            self._shared = SqlStore("memory://", host_time=self.clock.time)
            yield
            return
        # In memory (tmpfs) where there is one: the simulation tests no power loss, so no fsync.
        shm = Path("/dev/shm")
        directory = tempfile.mkdtemp(prefix="graphflow-sim-", dir=shm if shm.is_dir() else None)
        self._path = Path(directory) / "sim.db"
        self.ledger.redact = directory  # the trace reads the same whatever the directory
        try:
            yield
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _store_for(self) -> tuple[Store, bool]:
        """The real store the next engine uses, and whether that engine opens and closes it."""
        if self._shared is not None:
            return self._shared, False
        assert self._path is not None
        url = f"sqlite:///{self._path}?durability=normal"
        return SqlStore(url, host_time=self.clock.time), True

    async def _until_done(self) -> None:
        async with anyio.create_task_group() as tg:
            for slot in range(self.engines):
                tg.start_soon(self._slot, slot)
            await self.finished.wait()
            self.plan.stop()  # the engines close gracefully, as an operator would stop them
            tg.cancel_scope.cancel()

    async def _slot(self, slot: int) -> None:
        """One engine process, restarted by its supervisor each time it dies."""
        while not self.finished.is_set():
            self.incarnations += 1
            await self._incarnation(self.incarnations, driving=slot == 0)
            await anyio.sleep(self.restarts.uniform(0.5, 5.0))

    # --- one engine's life ----------------------------------------------------------------------

    async def _incarnation(self, number: int, *, driving: bool) -> None:
        incarnation = Incarnation(number)
        inner, owns_inner = self._store_for()
        store = FaultyStore(
            inner,
            plan=self.plan,
            ledger=self.ledger,
            incarnation=incarnation,
            ordinals=self.ordinals,
            owns_inner=owns_inner,
            mutation=self.config.mutation,
        )
        engine = gf.Engine(
            store, registry=REGISTRY, clock=self.clock, lease=LEASE, poll_interval=POLL
        )
        token = INCARNATION.set(number)
        opened = False
        try:
            self.ledger.note("engine opens")
            with incarnation.scope:
                async with engine:
                    opened = True
                    if driving:
                        await self._drive(engine)
                    else:
                        await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            if not self.finished.is_set():
                self._ended_by(exc, incarnation, opened)
        finally:
            INCARNATION.reset(token)

    def _ended_by(self, exc: BaseException, incarnation: Incarnation, opened: bool) -> None:
        """Judge how an engine's life ended with ``exc``: a crash, a failed open, or a bug."""
        leaves = list(_leaves(exc))
        others = [e for e in leaves if not isinstance(e, ProcessDied)]
        if incarnation.dead:
            for other in others:  # raised while a dead engine unwound: no process would
                self.ledger.note(f"dead engine unwound with {type(other).__name__}: {other}")
            return
        if not opened and all(isinstance(e, gf.StoreError) for e in others):
            self.ledger.note(f"engine failed to open: {others[0]}")
            return
        self._problem(
            "engine: the engine died: " + "; ".join(f"{type(e).__name__}: {e}" for e in others)
        )

    async def _drive(self, engine: gf.Engine) -> None:
        for run_id, run in self.runs.items():
            data = {"program": run.program, "value": run.value}
            await self._client(lambda: engine.start(WORKFLOW, data, run_id=run_id))
        while True:
            if await self._all_ended(engine):
                self.outcome.done = True
                self.finished.set()
                return
            if self.ledger.now > self.plan.quiet_at + LIVENESS:
                self._stuck()
                return
            await anyio.sleep(TICK)

    async def _all_ended(self, engine: gf.Engine) -> bool:
        """Whether every top-level run ended; resumes the suspends waiting meanwhile."""
        runs = await self._client(lambda: engine.list_runs(limit=1000))
        for listed in runs:
            top = self.runs.get(listed.run_id)
            if listed.state in _TERMINAL:
                if top is not None and top.status is None:
                    top.status = listed
                    self.ledger.note(f"run {listed.run_id} ended {listed.state}")
            elif self._may_wait(listed):
                await self._resume_waiting(engine, listed.run_id)
        return all(run.status is not None for run in self.runs.values())

    def _may_wait(self, run: gf.RunStatus) -> bool:
        """Whether ``run`` has a suspend not resumed yet (its program, the input, tells)."""
        program = run.input["program"] if isinstance(run.input, dict) else []
        return any((run.run_id, name) not in self.resumed for name in suspends(program))

    async def _resume_waiting(self, engine: gf.Engine, run_id: str) -> None:
        status = await self._client(lambda: engine.status(run_id))
        for step in status.steps:
            if step.kind == "suspend" and step.state == "suspended":
                self.ledger.note(f"resume {run_id} {step.name!r}")
                try:
                    await self._client(
                        lambda: engine.resume(run_id, resume_data(step.name), reason=step.name)
                    )
                except gf.InvalidStateError:
                    continue  # resumed meanwhile, or not stored yet: looked at again next tick
                self.resumed.add((run_id, step.name))

    async def _client(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again a little later while the store fails (as a user would)."""
        while True:
            try:
                return await call()
            except gf.StoreError as exc:
                self.ledger.note(f"client call failed: {exc}")
                await anyio.sleep(CLIENT_RETRY)

    # --- the verdict ----------------------------------------------------------------------------

    def _stuck(self) -> None:
        waiting = [run_id for run_id, run in self.runs.items() if run.status is None]
        self._problem(
            f"stuck: runs {waiting} had not ended {LIVENESS:.0f} virtual seconds after the"
            f" faults stopped (t={self.plan.quiet_at:.1f})"
        )

    def _problem(self, problem: str) -> None:
        self.ledger.note(problem)
        self.outcome.problems.append(problem)
        self.finished.set()

    def _judge(self) -> None:
        problems = self.outcome.problems
        problems.extend(self.ledger.violations)
        for run_id, run in self.runs.items():
            status = run.status
            assert status is not None
            if status.state != "completed":
                problems.append(f"failed: run {run_id!r} ended {status.state}: {status.error}")
            elif status.output != run.expected:
                problems.append(
                    f"output: run {run_id!r} returned {status.output}, its fault-free run"
                    f" returns {run.expected}"
                )

    def stuck_loop(self, exc: SimulationStuck) -> SeedResult:
        """The result of a seed whose event loop stopped: ``exc`` says why."""
        use_ledger(None)
        self.outcome.problems.append(f"spin: {exc}")
        self.ledger.trace.append(f"the event loop stopped: {exc}")
        return self._result(virtual_seconds=float("nan"))

    def _result(self, virtual_seconds: float | None = None) -> SeedResult:
        return SeedResult(
            config=self.config,
            backend=self.backend,
            problems=self.outcome.problems,
            trace=self.ledger.trace,
            faults=self.plan.injected,
            runs=len(self.runs),
            steps=sum(step_count(run.program) for run in self.runs.values()),
            crashes=len(self.ledger.dead),
            store_calls=self.ordinals.count,
            virtual_seconds=self.ledger.now if virtual_seconds is None else virtual_seconds,
        )


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
