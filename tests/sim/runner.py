"""Running many seeds (in a few processes), shrinking a failure, and reporting it.

Seeds are independent, so they run in ``jobs`` processes; the result of a seed does not depend on
which process ran it. A failing seed is shrunk: its faults are replayed as an explicit schedule,
dropping one fault at a time while the seed still fails the same way, so the trace printed is
the smallest found.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

from .driver import SeedConfig, SeedResult, run_seed
from .faults import ALL_KINDS, FaultKind

__all__ = ("CI_KINDS", "Report", "describe", "reproduce_command", "run_seeds", "shrink")

CI_KINDS: tuple[FaultKind, ...] = ALL_KINDS
"""The fault kinds CI injects: all of them."""

_CHUNK = 50
_TRACE_LINES = 80


@dataclass(slots=True, kw_only=True)
class Report:
    """The outcome of a batch of seeds."""

    seeds: int = 0
    seconds: float = 0.0
    runs: int = 0
    steps: int = 0
    crashes: int = 0
    faults: int = 0
    failures: list[SeedResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Seeds simulated per second of wall time."""
        return self.seeds / self.seconds if self.seconds else 0.0

    def add(self, result: SeedResult) -> None:
        self.seeds += 1
        self.runs += result.runs
        self.steps += result.steps
        self.crashes += result.crashes
        self.faults += len(result.faults)
        if not result.ok:
            self.failures.append(result)

    def summary(self) -> str:
        return (
            f"{self.seeds} seeds in {self.seconds:.1f}s ({self.rate:.0f} seeds/s): {self.runs} runs,"
            f" {self.steps} steps, {self.faults} faults, {self.crashes} crashes;"
            f" {len(self.failures)} failing seed(s)"
        )


def _run_chunk(args: tuple[Sequence[int], tuple[FaultKind, ...]]) -> list[SeedResult]:
    seeds, kinds = args
    results = []
    for seed in seeds:
        result = run_seed(SeedConfig(seed=seed, kinds=kinds))
        if result.ok:
            result.trace = []  # what travels back between processes stays small
        results.append(result)
    return results


def _chunks(seeds: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(seeds), _CHUNK):
        yield seeds[start : start + _CHUNK]


def run_seeds(
    seeds: Sequence[int],
    *,
    kinds: tuple[FaultKind, ...] = CI_KINDS,
    jobs: int = 1,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Simulate ``seeds`` in ``jobs`` processes; failures come back with their traces.

    ``progress`` is called with the report so far after every chunk of seeds.
    """
    report = Report()
    started = time.perf_counter()
    work = [(chunk, kinds) for chunk in _chunks(seeds)]

    def collect(results: list[SeedResult]) -> None:
        for result in results:
            report.add(result)
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(report)

    if jobs <= 1:
        for item in work:
            collect(_run_chunk(item))
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            for results in pool.map(_run_chunk, work):
                collect(results)
    report.seconds = time.perf_counter() - started
    return report


def _tags(result: SeedResult) -> set[str]:
    return {problem.split(":", 1)[0] for problem in result.problems}


def shrink(failure: SeedResult, budget: int = 80) -> SeedResult:
    """The failing run of ``failure``'s seed with the fewest faults that still fail alike."""
    tags = _tags(failure)
    best = failure
    faults = list(failure.faults)
    index = 0
    while index < len(faults) and budget > 0:
        budget -= 1
        trial = faults[:index] + faults[index + 1 :]
        result = run_seed(replace(failure.config, schedule={o: f for o, _, f in trial}))
        if not result.ok and _tags(result) & tags:
            best, faults = result, list(result.faults)
        else:
            index += 1
    return best


def reproduce_command(seed: int, kinds: tuple[FaultKind, ...]) -> str:
    """The command that replays ``seed`` exactly."""
    option = "" if kinds == CI_KINDS else f" --sim-kinds {','.join(kinds)}"
    return f"pytest tests/test_simulation.py --sim-seeds 1 --sim-seed {seed}{option}"


def describe(failure: SeedResult, *, shrunk: bool = True) -> str:
    """A failing seed: its problems, how to reproduce it, and its (shrunk) trace."""
    kinds = failure.config.kinds
    minimal = shrink(failure) if shrunk and failure.faults else failure
    lines = [
        f"seed {failure.seed} ({failure.backend}) failed: {reproduce_command(failure.seed, kinds)}",
        *(f"  {problem}" for problem in failure.problems),
        f"  minimal trace: {len(minimal.faults)} of {len(failure.faults)} faults"
        f" ({', '.join(f'#{o} {f} in {m}' for o, m, f in minimal.faults) or 'none'}),"
        f" still failing with: {'; '.join(minimal.problems)[:400]}",
    ]
    trace = minimal.trace
    if len(trace) > _TRACE_LINES:
        lines.append(f"    ... {len(trace) - _TRACE_LINES} earlier lines")
        trace = trace[-_TRACE_LINES:]
    lines.extend(f"    {line}" for line in trace)
    return "\n".join(lines)
