"""Typed functions and the registry: the unit of reuse.

``@gf.function`` registers a plain (sync or async) function under a name. Its input and output
types are compiled once into pydantic ``TypeAdapter``s so the engine can validate ``data`` into the
call's arguments and store the result as JSON. The decorated object stays an ordinary callable.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    ParamSpec,
    TypeAlias,
    TypeVar,
    overload,
)

import pydantic
from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError
from typing_extensions import is_typeddict

from ._json import (
    ANY_ADAPTER,
    dump_json,
    find_problem,
    may_hide_problem,
    too_deep,
)
from ._threads import run_in_thread
from ._types import JSON
from .cron import Cron
from .durations import Duration, to_seconds
from .errors import (
    DefinitionError,
    InputValidationError,
    RegistrationError,
    UnknownFunctionError,
    UnknownWorkflowError,
)
from .limits import Concurrency, RateLimit, concurrency_option, rate_limit_option

if TYPE_CHECKING:
    from networkx import DiGraph

__all__ = (
    "DEFAULT_REGISTRY",
    "Function",
    "Registry",
    "StepOptions",
    "TypedIO",
    "WorkflowDefinition",
    "WorkflowKind",
    "function",
)

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

WorkflowKind: TypeAlias = Literal["imperative", "graph"]
"""How a workflow is declared: ``@gf.workflow`` code, or a ``gf.workflow_graph`` of functions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOptions:
    """Retry and timeout settings; ``None`` means "not set here"."""

    retries: int | None = None
    retry_delay: float | None = None
    backoff: float | None = None
    timeout: float | None = None

    @classmethod
    def build(
        cls,
        *,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        backoff: float | None = None,
        timeout: Duration | None = None,
        where: str,
    ) -> StepOptions:
        """Validate user-given options (durations parsed, counts non-negative)."""
        if retries is not None and not _is_number(retries, integer=True, minimum=0):
            raise DefinitionError(f"{where}: retries must be an integer >= 0, got {retries!r}")
        if backoff is not None and not _is_number(backoff, integer=False, minimum=1):
            raise DefinitionError(f"{where}: backoff must be a number >= 1, got {backoff!r}")
        return cls(
            retries=retries,
            retry_delay=None if retry_delay is None else to_seconds(retry_delay),
            backoff=None if backoff is None else float(backoff),
            timeout=None if timeout is None else to_seconds(timeout),
        )

    def over(self, base: StepOptions) -> StepOptions:
        """These options where set, else ``base``'s."""
        return StepOptions(
            retries=base.retries if self.retries is None else self.retries,
            retry_delay=base.retry_delay if self.retry_delay is None else self.retry_delay,
            backoff=base.backoff if self.backoff is None else self.backoff,
            timeout=base.timeout if self.timeout is None else self.timeout,
        )


def definition_place(fn: object) -> str:
    """``file:line`` where a function was defined (``""`` for callables without code)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    return f"{code.co_filename}:{code.co_firstlineno}"


def _is_notebook_cell(place: str) -> bool:
    # IPython names each cell's code after its content: re-running an edited cell is a
    # deliberate redefinition, not a copy-paste.
    return "<ipython-input-" in place or "ipykernel_" in place


def _is_number(value: object, *, integer: bool, minimum: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    return value >= minimum


def type_hints(fn: Callable[..., Any], localns: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fn``'s resolved annotations; names local to the decorating scope come from ``localns``."""
    try:
        return typing.get_type_hints(fn, localns=localns, include_extras=True)
    except (NameError, TypeError):
        # Annotations naming classes local to a function cannot be resolved; treat them as Any.
        hints: dict[str, Any] = {}
        for key, value in getattr(fn, "__annotations__", {}).items():
            hints[key] = Any if isinstance(value, str) else value
        return hints


def _is_structured(annotation: Any) -> bool:
    return isinstance(annotation, type) and (
        issubclass(annotation, pydantic.BaseModel)
        or dataclasses.is_dataclass(annotation)
        or is_typeddict(annotation)
    )


class TypedIO:
    """The compiled input and output contract of a user callable."""

    __slots__ = ("_extra", "_fields", "_input_model", "_mode", "_single_adapter", "output_adapter")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        skip_first: bool = False,
        localns: dict[str, Any] | None = None,
    ) -> None:
        hints = type_hints(fn, localns)
        every = list(inspect.signature(fn).parameters.values())
        if skip_first:
            every = every[1:]
        params = [p for p in every if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        # ``def f(**data)`` takes every key of ``data``, unvalidated beyond its named parameters.
        self._extra = any(p.kind == p.VAR_KEYWORD for p in every)
        returns = hints.get("return", Any)
        self.output_adapter: TypeAdapter[Any] = (
            ANY_ADAPTER if returns is Any else TypeAdapter(returns)
        )
        self._single_adapter: TypeAdapter[Any] | None = None
        self._input_model: type[pydantic.BaseModel] | None = None
        self._fields: tuple[str, ...] = ()
        if not params and not self._extra:
            self._mode = "none"
        elif len(params) == 1 and _is_structured(hints.get(params[0].name)):
            self._mode = "single"
            self._single_adapter = TypeAdapter(hints[params[0].name])
        else:
            self._mode = "kwargs"
            fields: dict[str, Any] = {
                p.name: (
                    hints.get(p.name, Any),
                    ... if p.default is inspect.Parameter.empty else p.default,
                )
                for p in params
            }
            self._input_model = pydantic.create_model(
                f"{getattr(fn, '__name__', 'fn')}_input",
                __config__=pydantic.ConfigDict(
                    arbitrary_types_allowed=True, extra="allow" if self._extra else "ignore"
                ),
                **fields,
            )
            self._fields = tuple(fields)

    def validate(self, data: JSON) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn ``data`` into call arguments; raises ``pydantic.ValidationError``."""
        if self._mode == "none":
            return (), {}
        if self._mode == "single":
            assert self._single_adapter is not None
            return (self._single_adapter.validate_python({} if data is None else data),), {}
        assert self._input_model is not None
        model = self._input_model.model_validate({} if data is None else data)
        kwargs = {name: getattr(model, name) for name in self._fields}
        if model.__pydantic_extra__:
            kwargs.update(model.__pydantic_extra__)
        return (), kwargs

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the input ``data`` (``{}``: anything, or not expressible)."""
        try:
            if self._single_adapter is not None:
                return self._single_adapter.json_schema()
            if self._input_model is not None:
                return self._input_model.model_json_schema()
        except pydantic.PydanticUserError:
            return {}  # a type pydantic validates but cannot describe (arbitrary types)
        return {}

    def dump_output(self, value: Any) -> bytes:
        """Validate ``value`` against the return type and serialise it to JSON bytes."""
        if self.output_adapter is not ANY_ADAPTER:
            value = self.output_adapter.validate_python(value)
        return dump_json(self.output_adapter, value)

    def load_output(self, raw: str | bytes) -> Any:
        """Rehydrate stored JSON into the return type."""
        return self.output_adapter.validate_json(raw)


class Function(Generic[P, R_co]):
    """A registered function: still the plain callable, plus its name, options and typed I/O."""

    def __init__(
        self,
        fn: Callable[P, R_co],
        *,
        name: str,
        options: StepOptions,
        localns: dict[str, Any] | None = None,
        thread: bool = True,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.concurrency = concurrency
        """At most this many executions at once, across every worker (per key, with one)."""
        self.rate_limit = rate_limit
        """At most this many attempts started per sliding window, across every worker."""
        self.is_async = inspect.iscoroutinefunction(fn)
        self.thread = thread and not self.is_async
        """Whether calls run in a worker thread (sync functions unless ``thread=False``)."""
        self.io = compile_io(fn, what=f"function {name!r}", localns=localns)
        self.identity = f"{fn.__module__}.{fn.__qualname__}"
        self.defined_at = definition_place(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the plain function, with no engine involved."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<graphflow function {self.name!r}>"

    def validate_input(
        self, data: JSON, *, workflow: str | None = None, run_id: str | None = None,
        step: str | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:  # fmt: skip
        """Validate ``data`` into call arguments or raise ``InputValidationError``."""
        try:
            return self.io.validate(data)
        except pydantic.ValidationError as exc:
            raise InputValidationError(
                what=f"input for function {self.name!r}",
                errors=_errors(exc),
                workflow=workflow,
                run_id=run_id,
                step=step,
            ) from exc

    async def invoke(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], threads: Executor | None = None
    ) -> Any:
        """Call the function: async ones on the loop, sync ones in a worker thread of ``threads``.

        A sync function declared with ``thread=False`` runs on the loop, blocking it meanwhile.
        """
        if self.is_async:
            # is_async: the call returns an awaitable (a cast would build a type per call).
            result: Awaitable[Any] = self.fn(*args, **kwargs)  # type: ignore[assignment]
            return await result
        if not self.thread:
            return self.fn(*args, **kwargs)
        return await run_in_thread(functools.partial(self.fn, *args, **kwargs), threads)


def compile_io(
    fn: Callable[..., Any],
    *,
    what: str,
    skip_first: bool = False,
    localns: dict[str, Any] | None = None,
) -> TypedIO:
    """``TypedIO(fn)``, turning pydantic's schema errors into a ``DefinitionError``."""
    try:
        return TypedIO(fn, skip_first=skip_first, localns=localns)
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
        raise DefinitionError(
            f"cannot use the annotations of {what}: {exc}. Use types pydantic can validate"
        ) from exc


def _errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [dict(error) for error in exc.errors(include_url=False)]


@dataclass(eq=False, kw_only=True)
class WorkflowDefinition:
    """A registered workflow: its name, input type and identity.

    One subclass per ``kind`` holds what running that kind needs (the runner matches on
    ``kind``); what clients need of any kind is here: ``graph_hash``, ``declared_graph`` and
    ``load_output``.
    """

    kind: ClassVar[WorkflowKind]
    name: str
    description: str | None
    identity: str
    defined_at: str = ""
    """``file:line`` of the definition: the same identity at another place is a redefinition."""
    input_adapter: TypeAdapter[Any] = field(default=ANY_ADAPTER)
    retention: float | None = None
    """Seconds a finished run is kept before workers prune it (``None``: kept)."""
    schedule: Cron | None = None
    """A static schedule: every worker that registers the workflow fires its ticks."""
    concurrency: Concurrency | None = None
    """At most this many runs executing at once, across every worker (per key, with one)."""

    def validate_input(self, data: JSON, *, run_id: str | None = None) -> Any:
        """Validate workflow input or raise ``InputValidationError``."""
        try:
            return self.input_adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise InputValidationError(
                what="workflow input",
                errors=_errors(exc),
                workflow=self.name,
                run_id=run_id,
            ) from exc

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the workflow's input (``{}``: any JSON)."""
        try:
            return self.input_adapter.json_schema()
        except pydantic.PydanticUserError:
            return {}  # a type pydantic validates but cannot describe (arbitrary types)

    def dump_input(self, data: JSON, *, run_id: str | None = None) -> str:
        """The raw JSON text of the input as stored (validated against the type separately).

        Raises:
            InputValidationError: ``data`` holds what JSON cannot (NaN, ±Infinity, a lone
                surrogate, bytes that are not UTF-8) or nests deeper than stored JSON can be
                read back: refused here, before anything is stored, rather than failing later.
        """
        try:
            raw = ANY_ADAPTER.dump_json(data)
        except PydanticSerializationError as exc:
            problem = find_problem(data, strings=True)
            errors = [problem.error()] if problem else [
                {"type": "json_invalid", "loc": (), "msg": str(exc)}
            ]  # fmt: skip
            raise InputValidationError(
                what="workflow input", errors=errors, workflow=self.name, run_id=run_id
            ) from exc
        if may_hide_problem(raw, data) or too_deep(raw):
            problem = find_problem(data)
            if problem is not None:
                raise InputValidationError(
                    what="workflow input", errors=[problem.error()], workflow=self.name,
                    run_id=run_id,
                )  # fmt: skip
        return raw.decode()

    def load_output(self, raw: str | bytes) -> Any:
        """A run's stored output rehydrated as its caller (a parent step) receives it."""
        return ANY_ADAPTER.validate_json(raw)

    @property
    def graph_hash(self) -> str | None:
        """The hash of the declared graph, stored with each run (``None``: not a graph)."""
        return None

    @property
    def declared_graph(self) -> DiGraph[str] | None:
        """The declared graph (``None``: an imperative workflow's graph exists per run only)."""
        return None


class Registry:
    """Functions and workflows by name, in one namespace."""

    def __init__(self) -> None:
        self._functions: dict[str, Function[..., Any]] = {}
        self._workflows: dict[str, WorkflowDefinition] = {}

    def _check_free(self, name: str, identity: str, defined_at: str) -> None:
        existing = self._functions.get(name) or self._workflows.get(name)
        if existing is None:
            return
        if existing.identity != identity:
            raise RegistrationError(name=name, existing=existing.identity, new=identity)
        if existing.defined_at != defined_at and not _is_notebook_cell(defined_at):
            raise RegistrationError(
                name=name,
                existing=f"{existing.identity} (defined at {existing.defined_at})",
                new=f"a second definition at {defined_at}",
            )

    def add_function(self, fn: Function[..., Any]) -> None:
        """Register ``fn``.

        Registering the same ``module.qualname`` defined at the same place again (a module
        re-imported or reloaded) replaces it; the same name defined at another line (a
        copy-paste) is refused.
        """
        self._check_free(fn.name, fn.identity, fn.defined_at)
        self._workflows.pop(fn.name, None)
        self._functions[fn.name] = fn

    def add_workflow(self, definition: WorkflowDefinition) -> None:
        """Register a workflow; re-registering the same identity and place replaces it."""
        self._check_free(definition.name, definition.identity, definition.defined_at)
        self._functions.pop(definition.name, None)
        self._workflows[definition.name] = definition

    def find_function(self, name: str) -> Function[..., Any] | None:
        """The function registered as ``name``, or ``None``."""
        return self._functions.get(name)

    def get_function(self, name: str) -> Function[..., Any]:
        """The function registered as ``name``; raises ``UnknownFunctionError``."""
        fn = self._functions.get(name)
        if fn is None:
            raise UnknownFunctionError(name=name, known=list(self._functions))
        return fn

    def find_workflow(self, name: str) -> WorkflowDefinition | None:
        """The workflow registered as ``name``, or ``None``."""
        return self._workflows.get(name)

    def get_workflow(self, name: str) -> WorkflowDefinition:
        """The workflow registered as ``name``; raises ``UnknownWorkflowError``."""
        definition = self._workflows.get(name)
        if definition is None:
            raise UnknownWorkflowError(name=name, known=list(self._workflows))
        return definition

    @property
    def workflows(self) -> list[WorkflowDefinition]:
        """Every registered workflow."""
        return list(self._workflows.values())

    @property
    def workflow_names(self) -> list[str]:
        """Names of every registered workflow."""
        return list(self._workflows)

    @property
    def function_names(self) -> list[str]:
        """Names of every registered function."""
        return list(self._functions)


DEFAULT_REGISTRY = Registry()
"""The registry that the decorators use unless given ``registry=``."""


@overload
def function(fn: Callable[P, R], /) -> Function[P, R]: ...
@overload
def function(
    *,
    name: str | None = None,
    retries: int | None = None,
    retry_delay: Duration | None = None,
    backoff: float | None = None,
    timeout: Duration | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: str | None = None,
    registry: Registry | None = None,
    thread: bool = True,
) -> Callable[[Callable[P, R]], Function[P, R]]: ...
def function(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int | None = None,
    retry_delay: Duration | None = None,
    backoff: float | None = None,
    timeout: Duration | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: str | None = None,
    registry: Registry | None = None,
    thread: bool = True,
) -> Function[P, R] | Callable[[Callable[P, R]], Function[P, R]]:
    """Register a plain function as a graphflow function (usable as a step, job or handler).

    Used bare (``@gf.function``) or with options (``@gf.function(name=..., retries=2)``). The
    options are the defaults of every step that runs it; ``wf.do(...)`` options override them.
    A sync function runs in a worker thread; ``thread=False`` runs it on the event loop instead,
    saving the thread hop (tens of microseconds) but holding up every other run of the process
    while it runs: only for quick code that neither blocks nor waits.
    ``concurrency`` (a number, or ``gf.Concurrency(N, key=...)`` on the step's input) and
    ``rate_limit`` (``"100/1min"``: attempts started per sliding window, retries included) hold
    across every worker that shares the store; a step held back waits as ``queued``.

    Raises:
        RegistrationError: the name is taken by another callable.
        LimitError: ``concurrency`` or ``rate_limit`` is invalid.
    """
    # Models defined in the decorating function's body are only reachable through its locals.
    localns = dict(sys._getframe(1).f_locals)

    def register(target: Callable[P, R]) -> Function[P, R]:
        if isinstance(target, Function):
            target = target.fn
        fn_name = name or target.__name__
        where = f"@gf.function {fn_name!r}"
        options = StepOptions.build(
            retries=retries,
            retry_delay=retry_delay,
            backoff=backoff,
            timeout=timeout,
            where=where,
        )
        registered = Function(
            target,
            name=fn_name,
            options=options,
            localns=localns,
            concurrency=concurrency_option(concurrency, where=where),
            rate_limit=rate_limit_option(rate_limit, where=where),
            thread=thread,
        )
        (registry or DEFAULT_REGISTRY).add_function(registered)
        return registered

    return register if fn is None else register(fn)
