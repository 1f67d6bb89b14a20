"""Errors found before or outside a run: definitions, engine options, input, lookups."""

from __future__ import annotations

from typing import Any

from ._base import GraphflowError, where

__all__ = (
    "DefinitionError",
    "RegistrationError",
    "GraphDefinitionError",
    "DurationError",
    "WorkflowDefinitionError",
    "EngineConfigError",
    "EngineStateError",
    "OutsideStepError",
    "InputValidationError",
    "NotFoundError",
    "UnknownWorkflowError",
    "UnknownFunctionError",
    "RunNotFoundError",
)


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


class WorkflowDefinitionError(DefinitionError, TypeError):
    """A function given to ``@gf.workflow`` cannot be a workflow."""

    workflow: str
    problem: str
    fix: str

    def __init__(self, *, workflow: str, problem: str, fix: str) -> None:
        super().__init__(
            f"workflow {workflow!r} {problem}: {fix}", workflow=workflow, problem=problem, fix=fix
        )


# --- engine -----------------------------------------------------------------------------------


class EngineConfigError(GraphflowError, ValueError):
    """An ``Engine`` option is out of range."""

    option: str
    value: object
    expected: str

    def __init__(self, *, option: str, value: object, expected: str) -> None:
        super().__init__(
            f"Engine({option}={value!r}): {option} must be {expected}",
            option=option,
            value=value,
            expected=expected,
        )


class EngineStateError(GraphflowError, RuntimeError):
    """The engine is not open for this operation (or was opened twice)."""

    operation: str
    is_open: bool

    def __init__(self, *, operation: str, is_open: bool) -> None:
        if is_open:
            message = f"cannot {operation}: this engine is already open; open each Engine once"
        else:
            message = (
                f"cannot {operation}: the engine is not open. Use `async with gf.Engine(...) as"
                " engine:` (or `await engine.__aenter__()`) before starting or inspecting runs"
            )
        super().__init__(message, operation=operation, is_open=is_open)


class OutsideStepError(GraphflowError, RuntimeError):
    """A step-only call (``gf.current_step()``, ``gf.branch()``) was made outside a step."""

    call: str
    needs: str

    def __init__(self, *, call: str, needs: str) -> None:
        super().__init__(
            f"{call} was called outside a running {needs}: call it inside a function that an"
            f" engine executes as a {needs}",
            call=call,
            needs=needs,
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
            f"invalid {what}{where(workflow, run_id, step)}: {fields}."
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
            f"unknown function {name!r}{where(workflow, run_id, step)}: decorate it with"
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
