"""Errors about one run: conflicts, replay rules, failed and timed-out steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import GraphflowError, where

if TYPE_CHECKING:
    from ._info import ErrorInfo

__all__ = (
    "RunError",
    "RunConflictError",
    "InvalidStateError",
    "RunFailed",
    "DuplicateStepError",
    "NonDeterminismError",
    "BranchError",
    "LoopLimitError",
    "StepFailed",
    "SuspendTimeout",
    "StepTimeout",
    "StepNameError",
    "PatchIdError",
    "StepTargetError",
    "BranchKeyTypeError",
    "AmbiguousResumeError",
    "RecoveryLimitError",
)


# --- runs -------------------------------------------------------------------------------------


class RunError(GraphflowError):
    """An error about one run."""


class RunConflictError(RunError):
    """``start`` reused a run id with a different input or workflow."""

    run_id: str
    workflow: str
    reason: str

    def __init__(self, *, run_id: str, workflow: str, reason: str) -> None:
        super().__init__(
            f"run {run_id!r} already exists with {reason} (starting workflow {workflow!r}):"
            " use a new run id, or the same input to get the existing run",
            run_id=run_id,
            workflow=workflow,
            reason=reason,
        )


class InvalidStateError(RunError):
    """The run is not in a state that allows this operation."""

    run_id: str
    state: str
    operation: str
    allowed: str

    def __init__(self, *, run_id: str, state: str, operation: str, allowed: str) -> None:
        super().__init__(
            f"cannot {operation} run {run_id!r}: it is {state!r}; {operation} needs a run that is"
            f" {allowed}",
            run_id=run_id,
            state=state,
            operation=operation,
            allowed=allowed,
        )


class RunFailed(RunError):
    """A run ended failed or cancelled."""

    run_id: str
    workflow: str
    state: str
    error: ErrorInfo | None

    def __init__(self, *, run_id: str, workflow: str, state: str, error: ErrorInfo | None) -> None:
        detail = f": {error}" if error is not None else ""
        super().__init__(
            f"run {run_id!r} of workflow {workflow!r} ended {state}{detail}",
            run_id=run_id,
            workflow=workflow,
            state=state,
            error=error,
        )


class DuplicateStepError(RunError):
    """Two steps of one run have the same name."""

    workflow: str
    run_id: str
    step: str

    def __init__(self, *, workflow: str, run_id: str, step: str) -> None:
        super().__init__(
            f"duplicate step name {step!r}{where(workflow, run_id)}: step names are the replay"
            " keys and must be unique within a run; include the loop variable, e.g."
            " f'Get user {user_id}'",
            workflow=workflow,
            run_id=run_id,
            step=step,
        )


class NonDeterminismError(RunError):
    """Replay met a step that the code now calls differently than recorded."""

    workflow: str
    run_id: str
    step: str
    recorded: str
    new: str

    def __init__(
        self, *, workflow: str, run_id: str, step: str, recorded: str, new: str
    ) -> None:  # fmt: skip
        super().__init__(
            f"non-deterministic replay{where(workflow, run_id, step)}: recorded as {recorded},"
            f" the code now calls {new}. Workflow code must issue the same steps on replay:"
            " branch on wf.patched(...) for runs in flight, or deploy the change under a new"
            " workflow name; `graphflow check` finds such runs before a deploy",
            workflow=workflow,
            run_id=run_id,
            step=step,
            recorded=recorded,
            new=new,
        )


class BranchError(RunError):
    """A branching node selected no key, or a key it has no edge for."""

    workflow: str
    run_id: str | None
    node: str
    key: str | None
    keys: list[str]

    def __init__(
        self, *, workflow: str, run_id: str | None, node: str, key: str | None, keys: list[str]
    ) -> None:
        what = "selected no branch key" if key is None else f"selected unknown branch key {key!r}"
        super().__init__(
            f"node {node!r}{where(workflow, run_id)} {what}; its keys are {sorted(keys)}."
            " Call gf.branch(key) in the node's function or give config 'branch'",
            workflow=workflow,
            run_id=run_id,
            node=node,
            key=key,
            keys=keys,
        )


class LoopLimitError(RunError):
    """A graph loop would start a pass beyond its ``max_iterations``."""

    workflow: str
    run_id: str | None
    node: str
    target: str
    max_iterations: int

    def __init__(
        self, *, workflow: str, run_id: str | None, node: str, target: str, max_iterations: int
    ) -> None:
        super().__init__(
            f"node {node!r}{where(workflow, run_id)} took its loop back to {target!r} after"
            f" {max_iterations} passes, its limit (loop={{'max_iterations': {max_iterations}}})."
            " Raise max_iterations, or make the node take another branch key sooner",
            workflow=workflow,
            run_id=run_id,
            node=node,
            target=target,
            max_iterations=max_iterations,
        )


class StepFailed(RunError):
    """A step failed after its last attempt."""

    workflow: str
    run_id: str
    step: str
    error: ErrorInfo

    def __init__(self, *, workflow: str, run_id: str, step: str, error: ErrorInfo) -> None:
        super().__init__(
            f"step {step!r} failed{where(workflow, run_id)}: {error}",
            workflow=workflow,
            run_id=run_id,
            step=step,
            error=error,
        )


class SuspendTimeout(RunError):
    """A suspend's timeout passed before it was resumed."""

    workflow: str
    run_id: str
    step: str
    timeout: float

    def __init__(self, *, workflow: str, run_id: str, step: str, timeout: float) -> None:
        super().__init__(
            f"suspend {step!r}{where(workflow, run_id)} was not resumed within {timeout:g}s",
            workflow=workflow,
            run_id=run_id,
            step=step,
            timeout=timeout,
        )


class StepTimeout(RunError, TimeoutError):
    """One attempt of a step exceeded its timeout."""

    workflow: str
    run_id: str
    step: str
    timeout: float

    def __init__(self, *, workflow: str, run_id: str, step: str, timeout: float) -> None:
        super().__init__(
            f"step {step!r}{where(workflow, run_id)} timed out after {timeout:g}s;"
            " raise its timeout= or make the step faster",
            workflow=workflow,
            run_id=run_id,
            step=step,
            timeout=timeout,
        )


class StepNameError(RunError, ValueError):
    """A step name (or suspend reason) is empty, not a string, or uses the reserved suffix."""

    workflow: str
    run_id: str
    name: object
    what: str

    def __init__(
        self, *, workflow: str, run_id: str, name: object, what: str = "step name"
    ) -> None:
        super().__init__(
            f"invalid {what} {name!r}{where(workflow, run_id)}: give a non-empty string not"
            " ending in ':on_error' (that suffix is reserved for compensation steps)",
            workflow=workflow,
            run_id=run_id,
            name=name,
            what=what,
        )


class PatchIdError(RunError, ValueError):
    """``wf.patched`` was given an id that is not a non-empty string."""

    workflow: str
    run_id: str
    patch_id: object

    def __init__(self, *, workflow: str, run_id: str, patch_id: object) -> None:
        super().__init__(
            f"invalid patch id {patch_id!r}{where(workflow, run_id)}: give wf.patched a"
            " non-empty string, e.g. wf.patched('sms-receipt')",
            workflow=workflow,
            run_id=run_id,
            patch_id=patch_id,
        )


class StepTargetError(RunError, TypeError):
    """``wf.do`` was given a target it cannot run, or data an inline step cannot take."""

    workflow: str
    run_id: str
    step: str
    target: str
    problem: str
    fix: str

    def __init__(
        self, *, workflow: str, run_id: str, step: str, target: str, problem: str, fix: str
    ) -> None:
        super().__init__(
            f"step {step!r}{where(workflow, run_id)}: target {target} {problem}; {fix}",
            workflow=workflow,
            run_id=run_id,
            step=step,
            target=target,
            problem=problem,
            fix=fix,
        )


class BranchKeyTypeError(RunError, TypeError):
    """``gf.branch()`` was given a key that is not a string."""

    workflow: str
    run_id: str
    node: str
    key: object

    def __init__(self, *, workflow: str, run_id: str, node: str, key: object) -> None:
        super().__init__(
            f"gf.branch() takes a string key, got {key!r} in node {node!r}"
            f"{where(workflow, run_id)}: pass one of the node's branch keys",
            workflow=workflow,
            run_id=run_id,
            node=node,
            key=key,
        )


class AmbiguousResumeError(RunError, ValueError):
    """A resume without ``reason=`` met several waiting suspends."""

    run_id: str
    suspends: list[str]

    def __init__(self, *, run_id: str, suspends: list[str]) -> None:
        super().__init__(
            f"run {run_id!r} waits on several suspends {suspends}: pass reason=... to choose one",
            run_id=run_id,
            suspends=suspends,
        )


class RecoveryLimitError(RunError):
    """A run was recovered more often than ``max_recoveries``: its process keeps dying."""

    run_id: str
    workflow: str
    recoveries: int
    max_recoveries: int

    def __init__(self, *, run_id: str, workflow: str, recoveries: int, max_recoveries: int) -> None:
        super().__init__(
            f"run {run_id!r} of workflow {workflow!r} was recovered {recoveries} times"
            f" (max_recoveries={max_recoveries}): its process keeps dying. Fix the crash and"
            " start a new run",
            run_id=run_id,
            workflow=workflow,
            recoveries=recoveries,
            max_recoveries=max_recoveries,
        )
