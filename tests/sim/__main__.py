"""Long mode: ``python -m tests.sim --seeds 100000`` (nightly), printing seeds/s and failures.

Options: ``--first S`` (first seed; default: a random one, printed), ``--jobs N`` (processes;
default: the CPUs), ``--kinds all|k1,k2`` (fault kinds; default: CI's), ``--max-failures K``
(stop after K failing seeds; default 5). Exit code 1 when a seed failed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from .faults import ALL_KINDS, FaultKind
from .runner import CI_KINDS, Report, describe, run_seeds


def _kinds(text: str) -> tuple[FaultKind, ...]:
    if text == "all":
        return ALL_KINDS
    kinds = tuple(k for k in ALL_KINDS if k in text.split(","))
    unknown = set(text.split(",")) - set(kinds)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {sorted(unknown)}: use {ALL_KINDS}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--first", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kinds", type=_kinds, default=CI_KINDS)
    parser.add_argument("--max-failures", type=int, default=5)
    args = parser.parse_args(argv)
    first = random.randrange(10**9) if args.first is None else args.first
    print(
        f"seeds {first}..{first + args.seeds - 1}, kinds {','.join(args.kinds)}, {args.jobs} jobs"
    )
    last_print = [time.perf_counter()]
    shown: set[int] = set()

    def progress(report: Report) -> None:
        for failure in report.failures:
            if failure.seed not in shown:
                shown.add(failure.seed)
                print(describe(failure), flush=True)
        if time.perf_counter() - last_print[0] > 10:
            last_print[0] = time.perf_counter()
            print(report.summary(), flush=True)
        if len(report.failures) >= args.max_failures:
            raise SystemExit(f"stopping after {len(report.failures)} failing seeds")

    report = run_seeds(
        range(first, first + args.seeds), kinds=args.kinds, jobs=args.jobs, progress=progress
    )
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
