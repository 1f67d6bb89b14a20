"""Errors found before or outside a run: definitions, engine options, input, lookups."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from ._base import GraphflowError, where

__all__ = (
    "DefinitionError",
    "RegistrationError",
    "GraphDefinitionError",
    "DurationError",
    "GraphDurationError",
    "WorkflowDefinitionError",
    "EngineConfigError",
    "EngineStateError",
    "EventLoopError",
    "OutsideStepError",
    "InputValidationError",
    "NotFoundError",
    "UnknownWorkflowError",
    "UnknownFunctionError",
    "RunNotFoundError",
    "StepNotFoundError",
    "PruneStateError",
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


class GraphDurationError(GraphDefinitionError, DurationError):
    """A graph node's ``retry_delay`` or ``timeout`` is not a duration: both kinds of error."""

    option: str
    text: object

    def __init__(self, *, graph: str, node: str, option: str, text: object) -> None:
        problem = f"its {option} {text!r} is not a duration"
        fix = (
            f"give {option} as a number of seconds, a timedelta, or text such as '500ms', '1s',"
            " '5min', '2h', '1d' or '1h30m'"
        )
        GraphflowError.__init__(
            self,
            f"invalid workflow graph {graph!r} at node {node!r}: {problem}. Fix: {fix}",
            graph=graph,
            node=node,
            option=option,
            text=text,
        )
        self.problem = problem
        self.fix = fix


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


class EventLoopError(GraphflowError, RuntimeError):
    """A synchronous entry point (``gf.run``) was called where an event loop already runs."""

    call: str

    def __init__(self, *, call: str) -> None:
        super().__init__(
            f"{call} was called inside a running event loop (a Jupyter cell, a FastAPI or other"
            " async handler): it would block that loop. Await the engine instead:"
            " `async with gf.Engine(store=...) as engine: output = await engine.run(workflow,"
            " data)` (in Jupyter, `await` works at the top level of a cell)",
            call=call,
        )


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


def did_you_mean(name: str, known: Iterable[str] | None) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, or empty."""
    close = difflib.get_close_matches(name, list(known or ()), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownWorkflowError(NotFoundError):
    """No workflow is registered under this name."""

    name: str
    known: list[str] | None

    def __init__(self, *, name: str, known: list[str] | None = None) -> None:
        hint = f" Registered workflows: {', '.join(sorted(known))}." if known else ""
        super().__init__(
            f"unknown workflow {name!r}{did_you_mean(name, known)}: register it with"
            " @gf.workflow or gf.workflow_graph(...) and import its module before using it."
            f"{hint}",
            name=name,
            known=known,
        )


class UnknownFunctionError(NotFoundError):
    """No function is registered under this name (``known``: the names that are)."""

    name: str
    workflow: str | None
    run_id: str | None
    step: str | None
    known: list[str] | None

    def __init__(
        self, *, name: str, workflow: str | None = None, run_id: str | None = None,
        step: str | None = None, known: list[str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            f"unknown function {name!r}{did_you_mean(name, known)}"
            f"{where(workflow, run_id, step)}: decorate it with @gf.function and import its"
            " module before the workflow runs",
            name=name,
            workflow=workflow,
            run_id=run_id,
            step=step,
            known=known,
        )


class RunNotFoundError(NotFoundError):
    """No run has this id in the store."""

    run_id: str

    def __init__(self, *, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} in this store: check the id and the --store URL", run_id=run_id
        )


class StepNotFoundError(NotFoundError):
    """A run has no step of this name (``engine.fork(run_id, from_step=...)``)."""

    run_id: str
    step: str
    steps: list[str]

    def __init__(self, *, run_id: str, step: str, steps: list[str]) -> None:
        known = ", ".join(repr(name) for name in steps) if steps else "none yet"
        super().__init__(
            f"run {run_id!r} has no step {step!r}: give one of its steps ({known})",
            run_id=run_id,
            step=step,
            steps=steps,
        )


class PruneStateError(GraphflowError, ValueError):
    """``prune`` was asked to delete runs in a state that is not finished."""

    states: list[str]

    def __init__(self, *, states: list[str]) -> None:
        super().__init__(
            f"cannot prune runs in states {states}: prune deletes only finished runs; give"
            " states among 'completed', 'failed' and 'cancelled'",
            states=states,
        )
