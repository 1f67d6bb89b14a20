"""A deterministic simulation of graphflow under store faults and crashes (issue 14).

Each seed draws a few random workflows (``programs``), runs them on engines over a real store
wrapped in a fault injector (``store``), on an event loop whose time is virtual (``loop``), and
checks the oracle (``driver``, ``ledger``): every run completes once the faults stop, with its
fault-free output, and no completed step executes again. The same seed replays the same
simulation exactly.

``pytest tests/test_simulation.py --sim-seeds N --sim-seed S`` runs seeds S..S+N-1;
``python -m tests.sim --seeds 100000`` is the long (nightly) mode.
"""

from __future__ import annotations

from .driver import SeedConfig, SeedResult, run_seed
from .faults import ALL_KINDS, Fault, FaultKind

__all__ = ("ALL_KINDS", "Fault", "FaultKind", "SeedConfig", "SeedResult", "run_seed")
