"""The graphflow exception hierarchy.

```
GraphflowError
├─ DefinitionError
│  ├─ RegistrationError            a name is taken by another callable
│  ├─ GraphDefinitionError         an invalid workflow_graph()
│  └─ DurationError(ValueError)    an unparseable duration
├─ InputValidationError(ValueError)  workflow input, step input or resume data is invalid
├─ NotFoundError(LookupError)
│  ├─ UnknownWorkflowError, UnknownFunctionError, RunNotFoundError
├─ RunError                        facts about one run
│  ├─ RunConflictError, InvalidStateError, RunFailed
│  ├─ DuplicateStepError, NonDeterminismError, BranchError
│  ├─ StepFailed, SuspendTimeout, StepTimeout(TimeoutError)
├─ StoreError
│  ├─ SchemaVersionError
│  └─ LeaseLostError               this process no longer owns the run
└─ NonRetryableError               raised by user code to fail a step at once
```

Every constructor takes keyword facts, keeps them as attributes and builds a message that says
what went wrong, where, and how to fix it. Errors pickle (``__reduce__``) so they cross process
boundaries.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = (
    "BranchError",
    "DefinitionError",
    "DuplicateStepError",
    "DurationError",
    "ErrorInfo",
    "GraphDefinitionError",
    "GraphflowError",
    "InputValidationError",
    "InvalidStateError",
    "LeaseLostError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "RegistrationError",
    "RunConflictError",
    "RunError",
    "RunFailed",
    "RunNotFoundError",
    "SchemaVersionError",
    "StepFailed",
    "StepTimeout",
    "StoreError",
    "SuspendTimeout",
    "UnknownFunctionError",
    "UnknownWorkflowError",
)


class ErrorInfo(BaseModel):
    """A stored error: the exception's class name, its message and the formatted traceback."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def _restore(cls: type[GraphflowError], facts: dict[str, Any]) -> GraphflowError:
    return cls(**facts)


class GraphflowError(Exception):
    """Root of every error graphflow raises."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self._facts = facts
        for key, value in facts.items():
            setattr(self, key, value)

    @property
    def message(self) -> str:
        """The full message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        if not self._facts:
            return (type(self), self.args)
        return (_restore, (type(self), self._facts))


def _where(workflow: str | None = None, run_id: str | None = None, step: str | None = None) -> str:
    parts = []
    if workflow is not None:
        parts.append(f"workflow {workflow!r}")
    if run_id is not None:
        parts.append(f"run {run_id!r}")
    if step is not None:
        parts.append(f"step {step!r}")
    return " in " + ", ".join(parts) if parts else ""


# --- definitions -------------------------------------------------------------------------------


class DefinitionError(GraphflowError):
    """Something was declared wrongly: found at definition time, before any run."""


class RegistrationError(DefinitionError):
    """A function or workflow name is already taken by another callable."""

    name: str
    existing: str
    new: str

    def __init__(self, *, name: str, existing: str, new: str) -> None:
        super().__init__(
            f"the name {name!r} is already registered to {existing}; cannot register {new}"
            " under it. Functions and workflows share one namespace: pass a distinct name=...",
            name=name,
            existing=existing,
            new=new,
        )


class GraphDefinitionError(DefinitionError):
    """A workflow graph is invalid (cycle, unknown node, bad option...)."""

    graph: str
    problem: str
    fix: str
    node: str | None

    def __init__(self, *, graph: str, problem: str, fix: str, node: str | None = None) -> None:
        where = f" at node {node!r}" if node is not None else ""
        super().__init__(
            f"invalid workflow graph {graph!r}{where}: {problem}. Fix: {fix}",
            graph=graph,
            problem=problem,
            fix=fix,
            node=node,
        )


class DurationError(DefinitionError, ValueError):
    """A duration could not be parsed."""

    text: object

    def __init__(self, *, text: object) -> None:
        super().__init__(
            f"invalid duration {text!r}: use a number of seconds, a timedelta, or text such as"
            " '500ms', '1s', '5min', '2h', '1d' or '1h30m'",
            text=text,
        )


# --- input ------------------------------------------------------------------------------------


class InputValidationError(GraphflowError, ValueError):
    """Workflow input, step input or resume data failed validation (``.errors``: the details)."""

    what: str
    errors: list[dict[str, Any]]
    workflow: str | None
    run_id: str | None
    step: str | None

    def __init__(
        self,
        *,
        what: str,
        errors: list[dict[str, Any]],
        workflow: str | None = None,
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}"
            for e in errors
        )
        super().__init__(
            f"invalid {what}{_where(workflow, run_id, step)}: {fields}."
            " Fix the data to match the declared type",
            what=what,
            errors=errors,
            workflow=workflow,
            run_id=run_id,
            step=step,
        )


# --- lookups ----------------------------------------------------------------------------------


class NotFoundError(GraphflowError, LookupError):
    """A name or id is unknown."""


class UnknownWorkflowError(NotFoundError):
    """No workflow is registered under this name."""

    name: str
    known: list[str] | None

    def __init__(self, *, name: str, known: list[str] | None = None) -> None:
        hint = f" Registered workflows: {', '.join(sorted(known))}." if known else ""
        super().__init__(
            f"unknown workflow {name!r}: register it with @gf.workflow or gf.workflow_graph(...)"
            f" and import its module before using it.{hint}",
            name=name,
            known=known,
        )


class UnknownFunctionError(NotFoundError):
    """No function is registered under this name."""

    name: str
    workflow: str | None
    run_id: str | None
    step: str | None

    def __init__(
        self, *, name: str, workflow: str | None = None, run_id: str | None = None,
        step: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            f"unknown function {name!r}{_where(workflow, run_id, step)}: decorate it with"
            " @gf.function and import its module before the workflow runs",
            name=name,
            workflow=workflow,
            run_id=run_id,
            step=step,
        )


class RunNotFoundError(NotFoundError):
    """No run has this id in the store."""

    run_id: str

    def __init__(self, *, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} in this store: check the id and the --store URL", run_id=run_id
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
            f"duplicate step name {step!r}{_where(workflow, run_id)}: step names are the replay"
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
            f"non-deterministic replay{_where(workflow, run_id, step)}: recorded as {recorded},"
            f" the code now calls {new}. Workflow code must issue the same steps on replay;"
            " deploy changed workflows under a new name or let old runs finish first",
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
            f"node {node!r}{_where(workflow, run_id)} {what}; its keys are {sorted(keys)}."
            " Call gf.branch(key) in the node's function or give config 'branch'",
            workflow=workflow,
            run_id=run_id,
            node=node,
            key=key,
            keys=keys,
        )


class StepFailed(RunError):
    """A step failed after its last attempt."""

    workflow: str
    run_id: str
    step: str
    error: ErrorInfo

    def __init__(self, *, workflow: str, run_id: str, step: str, error: ErrorInfo) -> None:
        super().__init__(
            f"step {step!r} failed{_where(workflow, run_id)}: {error}",
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
            f"suspend {step!r}{_where(workflow, run_id)} was not resumed within {timeout:g}s",
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
            f"step {step!r}{_where(workflow, run_id)} timed out after {timeout:g}s;"
            " raise its timeout= or make the step faster",
            workflow=workflow,
            run_id=run_id,
            step=step,
            timeout=timeout,
        )


# --- store ------------------------------------------------------------------------------------


class StoreError(GraphflowError):
    """The store failed or is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SchemaVersionError(StoreError):
    """The database schema version differs from the code's."""

    url: str
    found: int
    expected: int

    def __init__(self, *, url: str, found: int, expected: int) -> None:
        newer = "newer" if found > expected else "older"
        fix = "upgrade graphflow" if found > expected else "migrate it or point at a fresh database"
        GraphflowError.__init__(
            self,
            f"the store {url!r} has schema version {found}, {newer} than this graphflow's"
            f" {expected}: {fix}",
            url=url,
            found=found,
            expected=expected,
        )


class LeaseLostError(StoreError):
    """Another engine took over the run: this process may commit nothing more for it."""

    run_id: str

    def __init__(self, *, run_id: str) -> None:
        GraphflowError.__init__(
            self,
            f"lease on run {run_id!r} was lost to another engine; this engine stopped executing it",
            run_id=run_id,
        )


# --- raised by users --------------------------------------------------------------------------


class NonRetryableError(GraphflowError):
    """Raise it in a step to fail the step at once, without further attempts."""

    def __init__(self, message: str = "non-retryable error") -> None:
        super().__init__(message)
