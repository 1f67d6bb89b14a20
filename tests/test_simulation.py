"""The deterministic simulation (issue 14): random workflows under store faults and crashes.

``pytest tests/test_simulation.py --sim-seeds N --sim-seed S [--sim-kinds all]`` simulates seeds
S..S+N-1; a failing seed prints the command that replays it exactly and its shrunk trace. See
``tests/sim`` for the simulation and ``python -m tests.sim --seeds 100000`` for the long mode.
"""

from __future__ import annotations

import os

import pytest

import graphflow as gf
from graphflow.store.sql import SqlStore
from tests.sim import ALL_KINDS, Fault, FaultKind, SeedConfig, SeedResult, run_seed
from tests.sim.loop import LoopClock, run_simulated
from tests.sim.runner import CI_KINDS, describe, run_seeds, shrink
from tests.sim.store import Mutation

DEFAULT_SEEDS = 1000
"""Seeds CI simulates, in two processes on this 2-core machine: measured 108 seeds/s with the
machine quiet (about 10 s), 34 seeds/s at load 4 (about 30 s), so well under a minute loaded."""


def _kinds(option: str | None) -> tuple[FaultKind, ...]:
    if option is None:
        return CI_KINDS
    if option == "all":
        return ALL_KINDS
    return tuple(kind for kind in ALL_KINDS if kind in option.split(","))


def _tags(result: SeedResult) -> set[str]:
    return {problem.split(":", 1)[0] for problem in result.problems}


def test_simulated_seeds_keep_every_guarantee(request: pytest.FixtureRequest) -> None:
    """Every run completes once faults stop, with its fault-free output; no completed step re-runs."""
    count = request.config.getoption("--sim-seeds") or DEFAULT_SEEDS
    first = request.config.getoption("--sim-seed")
    kinds = _kinds(request.config.getoption("--sim-kinds"))
    jobs = request.config.getoption("--sim-jobs") or (1 if count < 200 else os.cpu_count() or 1)
    report = run_seeds(range(first, first + count), kinds=kinds, jobs=min(jobs, 4))
    print(report.summary())
    failures = report.failures
    assert not failures, f"{report.summary()}\n\n" + "\n\n".join(
        describe(failure) for failure in failures[:3]
    )


def _crashing_seed() -> int:
    """The first seed that crashes an engine twice and stalls a call, under CI's faults."""
    for seed in range(200):
        result = run_seed(SeedConfig(seed=seed, kinds=CI_KINDS))
        if result.crashes >= 2 and any(fault.kind == "stall" for _, _, fault in result.faults):
            return seed
    raise AssertionError("no seed in 0..199 crashes twice and stalls")


def test_a_seed_replays_exactly() -> None:
    config = SeedConfig(seed=_crashing_seed(), kinds=CI_KINDS)
    first, second = run_seed(config), run_seed(config)
    assert first.ok
    assert (first.trace, first.faults, first.store_calls) == (
        second.trace,
        second.faults,
        second.store_calls,
    )


def test_a_seed_replays_exactly_from_its_fault_schedule() -> None:
    seed = _crashing_seed()
    drawn = run_seed(SeedConfig(seed=seed, kinds=CI_KINDS))
    schedule = {ordinal: fault for ordinal, _, fault in drawn.faults}
    replayed = run_seed(SeedConfig(seed=seed, kinds=CI_KINDS, schedule=schedule))
    assert replayed.trace == drawn.trace


@pytest.mark.parametrize(
    ("mutation", "tag"),
    [("forget_completed", "re-run"), ("drop_resume", "stuck"), ("corrupt_output", "output")],
)
def test_the_oracle_catches_a_planted_bug(mutation: Mutation, tag: str) -> None:
    results = [run_seed(SeedConfig(seed=seed, kinds=(), mutation=mutation)) for seed in range(8)]
    assert any(tag in _tags(result) for result in results), [r.problems for r in results]


def test_a_failure_shrinks_to_the_faults_it_needs() -> None:
    """A planted bug that needs no fault fails alike once every fault is dropped."""
    failing = next(
        result
        for seed in range(40)
        if not (result := run_seed(SeedConfig(seed=seed, mutation="drop_resume"))).ok
        and len(result.faults) >= 2
    )
    minimal = shrink(failing)
    assert minimal.faults == []
    assert "stuck" in _tags(minimal)
    assert "minimal trace: 0 of" in describe(failing)


_TRANSIENT: tuple[FaultKind, ...] = ("fail_before", "fail_after", "disconnect", "disk_full")


@pytest.mark.parametrize(
    ("seed", "kinds", "schedule"),
    [
        pytest.param(
            266,
            ("freeze",),
            {47: Fault("freeze", 33.84074223705378), 54: Fault("freeze", 64.13738645346955)},
            id="an-engine-frozen-past-its-lease-reran-a-step-another-engine-completed",
        ),
        pytest.param(
            4270,
            ("crash_before", "crash_after", "stall", "freeze"),
            {26: Fault("freeze", 85.58844360969118), 46: Fault("freeze", 81.78100800780705)},
            id="a-gather-branch-left-by-a-superseded-execution-reran-a-completed-step",
        ),
        pytest.param(
            16,
            _TRANSIENT,
            {5: Fault("fail_after")},
            id="a-start-committed-unseen-left-its-run-leased-to-nobody-forever",
        ),
        pytest.param(
            236,
            ALL_KINDS,
            {20: Fault("fail_before")},
            id="a-store-fault-while-a-suspend-polled-the-store-failed-the-run",
        ),
    ],
)
def test_what_the_simulation_found_stays_fixed(
    seed: int, kinds: tuple[FaultKind, ...], schedule: dict[int, Fault]
) -> None:
    """Failures the simulation found, replayed from their shrunk fault schedules.

    Each failed before its fix. A schedule names store calls by their ordinal in this version of
    the simulation: a change to the programs or the driver moves them, so re-derive them then
    (``python -m tests.sim`` prints a failing seed's shrunk schedule).
    """
    result = run_seed(SeedConfig(seed=seed, kinds=kinds, schedule=schedule))
    assert result.ok, describe(result, shrunk=False)


def test_waiting_on_a_run_parked_for_long_keeps_polling() -> None:
    """``engine.wait`` polls a parked run with a backoff: it never grew past a float (2 ** 1024)."""
    registry = gf.Registry()

    @gf.workflow(registry=registry)
    async def long_sleep(wf: gf.Workflow, data: None) -> str:
        await wf.sleep("nap", "2h")
        return "rested"

    async def main() -> str:
        clock = LoopClock()
        store = SqlStore("memory://", host_time=clock.time)
        async with gf.Engine(store, registry=registry, clock=clock, poll_interval=0.5) as engine:
            status = await engine.wait(await engine.start("long_sleep"))
            return str(status.output)

    assert run_simulated(main) == "rested"
