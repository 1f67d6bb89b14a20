"""What a running step can ask about itself: ``gf.current_step()`` and ``gf.branch(key)``."""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, field

from ..errors import BranchKeyTypeError, OutsideStepError

__all__ = ("StepInfo", "branch", "current_step", "find_step", "idempotency_key")

_NAMESPACE = uuid.UUID("6f6e0b38-5d0e-4a44-9a38-1a2f2b9e7c11")


def idempotency_key(run_id: str, step_name: str) -> str:
    """A stable key for ``(run_id, step_name)``: the same on every attempt and after replay."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_id}\x00{step_name}"))


@dataclass(slots=True, kw_only=True)
class StepInfo:
    """The step being executed: pass ``idempotency_key`` to external APIs."""

    run_id: str
    workflow: str
    step_name: str
    attempt: int
    selected_branch: str | None = field(default=None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and replays of this step: safe to send to external APIs."""
        return idempotency_key(self.run_id, self.step_name)


_CURRENT: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "graphflow_step", default=None
)


def current_step() -> StepInfo:
    """The step this code runs in.

    Raises:
        OutsideStepError: called outside a step executed by an engine.
    """
    info = _CURRENT.get()
    if info is None:
        raise OutsideStepError(call="gf.current_step()", needs="step")
    return info


def find_step() -> StepInfo | None:
    """The step this code runs in, or ``None`` outside any step."""
    return _CURRENT.get()


def branch(key: str) -> None:
    """Select the outgoing edge ``key`` of the graph node being executed."""
    info = _CURRENT.get()
    if info is None:
        raise OutsideStepError(call=f"gf.branch({key!r})", needs="graph node")
    if not isinstance(key, str):
        raise BranchKeyTypeError(
            workflow=info.workflow, run_id=info.run_id, node=info.step_name, key=key
        )
    info.selected_branch = key


def enter_step(info: StepInfo | None) -> contextvars.Token[StepInfo | None]:
    """Make ``info`` the current step (``None``: no step, for a run started inside one)."""
    return _CURRENT.set(info)


def exit_step(token: contextvars.Token[StepInfo | None]) -> None:
    """Restore the step that was current before ``enter_step``."""
    _CURRENT.reset(token)
