"""What the outside world saw: step side effects, the commits of their records, and a trace.

The step functions of the simulated programs report every execution here, as an external system
would see it; the fault-injecting store reports every completed step record that reached the
database. A completed step executed again *after* its record committed is a violation. An
execution before the commit is allowed: a retried attempt, or the documented at-least-once window
(the process died after the function returned but before the record committed).

A crashed engine is dead: its tasks are cancelled, but until they unwind they might still reach a
step function. Those calls raise ``ProcessDied`` instead of counting: a killed process executes
nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from dataclasses import dataclass, field

__all__ = ("INCARNATION", "Ledger", "ProcessDied", "current_ledger", "use_ledger")

INCARNATION: contextvars.ContextVar[int] = contextvars.ContextVar("sim_incarnation", default=0)
"""Which engine (process life) the current task belongs to: its tasks inherit it."""


class ProcessDied(BaseException):
    """Raised into a crashed engine: nothing it does afterwards reaches the world.

    A ``BaseException``, so that no ``except Exception`` of the engine can treat the death as an
    error of its own and act on it.
    """


@dataclass(slots=True)
class Ledger:
    """Side effects, commits and the trace of one simulated seed."""

    executions: Counter[tuple[str, str]] = field(default_factory=Counter)
    committed: dict[tuple[str, str], float] = field(default_factory=dict)
    """``(run_id, step)`` -> the virtual time its completed record committed."""
    dead: set[int] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    redact: str | None = None
    """Text the trace leaves out (the database's temporary directory)."""

    @property
    def now(self) -> float:
        """The virtual time: seconds since the simulation began."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0

    def note(self, text: str) -> None:
        """Append ``text`` to the trace, stamped with the virtual time and the incarnation."""
        if self.redact is not None:
            text = text.replace(self.redact, "<tmp>")
        self.trace.append(f"t={self.now:9.3f} #{INCARNATION.get()} {text}")

    async def executing(self, run_id: str, step: str, attempt: int) -> None:
        """A step function begins executing (an attempt of ``step`` in ``run_id``)."""
        self.executed(run_id, step, attempt)

    def executed(self, run_id: str, step: str, attempt: int) -> None:
        """A step function began executing (an attempt of ``step`` in ``run_id``)."""
        if INCARNATION.get() in self.dead:
            raise ProcessDied
        key = (run_id, step)
        self.executions[key] += 1
        self.note(f"run {run_id[:12]} step {step!r} attempt {attempt} executes")
        committed_at = self.committed.get(key)
        if committed_at is not None:
            problem = (
                f"re-run: step {step!r} of run {run_id!r} executed again (attempt {attempt},"
                f" execution {self.executions[key]}) after its completed record committed at"
                f" t={committed_at:.3f}"
            )
            self.violations.append(problem)
            self.note(problem)

    def step_committed(self, run_id: str, step: str) -> None:
        """The completed record of ``step`` reached the database."""
        self.note(f"run {run_id[:12]} step {step!r} committed")
        self.committed.setdefault((run_id, step), self.now)


_CURRENT: Ledger | None = None


def use_ledger(ledger: Ledger | None) -> None:
    """Make ``ledger`` the one the step functions report to (one simulation at a time)."""
    global _CURRENT
    _CURRENT = ledger


def current_ledger() -> Ledger:
    """The ledger of the simulation running now."""
    if _CURRENT is None:
        raise RuntimeError("a simulated step ran outside a simulation")
    return _CURRENT
