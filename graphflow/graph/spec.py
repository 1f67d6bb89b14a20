"""``workflow_graph()``: declare a workflow as a graph of registered functions.

The user's ``nodes``/``config`` are checked and normalised here into ``NodeSpec``s, then compiled
(``graph.compile``) into a ``networkx.DiGraph`` and a frozen ``Plan``. Every mistake is a
``GraphDefinitionError`` naming the graph, the node and the fix, raised when the module defining
the graph is imported rather than when a run reaches the node.
"""

from __future__ import annotations

import difflib
import functools
import gc
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

from ..cron import Cron
from ..durations import Duration, to_seconds
from ..errors import (
    DefinitionError,
    DurationError,
    GraphDefinitionError,
    GraphDurationError,
    InputValidationError,
)
from ..functions import DEFAULT_REGISTRY, Function, Registry, StepOptions, WorkflowDefinition
from ..limits import Concurrency, concurrency_option
from ..refs import Ref, RefUsageError, ref
from .compile import NodeSpec, compile_graph, declared_graph

if TYPE_CHECKING:
    from networkx import DiGraph

    from .._types import JSON
    from .plan import BranchFn, Mode, Plan

__all__ = ("CONFIG_KEYS", "GraphWorkflow", "workflow_graph")

CONFIG_KEYS = frozenset(
    {"next", "input", "branch", "for_each", "mode", "on_error", "loop"}
    | {"retries", "retry_delay", "backoff", "timeout"}
)
"""The options a node's ``config`` entry may hold."""

_STEP_OPTIONS = frozenset({"retries", "retry_delay", "backoff", "timeout"})
_NO_OPTIONS = StepOptions()

_TEMPLATE_FIX = (
    "build it from JSON values (dict with str keys, list, str, number, bool, None) and"
    " ref(...) placeholders"
)

Template = Mapping[str, Any] | Ref | Callable[[Callable[..., Ref]], Any]
"""What ``input=``/``output=`` accept: a mapping, a ref, or a callable ``ref -> mapping``."""


@dataclass(eq=False, kw_only=True)
class GraphWorkflow(WorkflowDefinition):
    """A registered graph workflow: its declared graph (``nx``) and its execution ``plan``."""

    kind: ClassVar[Literal["graph"]] = "graph"
    plan: Plan
    entry_functions: tuple[tuple[str, Function[..., Any]], ...] = ()
    """The entry nodes that receive the workflow input as is, with their functions: ``start``
    validates the input for each, as an imperative workflow's input is validated."""

    @functools.cached_property
    def nx(self) -> DiGraph[str]:
        """The declared graph, built from the plan on first use (running needs none).

        Node attrs ``function``, ``handler``, ``for_each``, ``mode``, ``on_error``; edge attrs
        ``kind`` (``"next"``, ``"on_error"``, ``"loop"``), ``branch`` (label) and ``keys``.
        """
        return declared_graph(self.plan, self.description)

    def validate_input(self, data: JSON, *, run_id: str | None = None) -> Any:
        """Validate the input for the graph and for every entry node it feeds as is.

        Raises:
            InputValidationError: an entry node's function refuses the input (named with the
                node); nothing is started.
        """
        validated = super().validate_input(data, run_id=run_id)
        for node_id, fn in self.entry_functions:
            try:
                fn.validate_input(data)
            except InputValidationError as exc:
                raise InputValidationError(
                    what=f"workflow input for entry node {node_id!r} (function {fn.name!r})",
                    errors=exc.errors,
                    workflow=self.name,
                    run_id=run_id,
                ) from None
        return validated

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the input: what every entry node fed the input as is accepts."""
        schemas = [fn.io.input_schema() for _, fn in self.entry_functions]
        schemas = [schema for schema in schemas if schema]
        if not schemas:
            return super().input_schema()
        return schemas[0] if len(schemas) == 1 else {"allOf": schemas}

    @functools.cached_property
    def hash(self) -> str:
        """The stable sha256 of the graph's structure (stored with each run), once computed."""
        with _cyclic_gc_paused():  # as while compiling: its allocations set off full collections
            return self.plan.digest()

    @property
    def graph_hash(self) -> str:
        """The same as ``hash``: what every workflow kind stores with its runs."""
        return self.hash

    @property
    def declared_graph(self) -> DiGraph[str]:
        """The declared graph, ``nx``."""
        return self.nx

    @property
    def output(self) -> JSON | None:
        """The compiled ``output=`` template, or ``None`` (completed sink nodes' outputs)."""
        return self.plan.output


def workflow_graph(
    *,
    name: str,
    description: str | None = None,
    nodes: Mapping[str, str | Function[..., Any]],
    config: Mapping[str, Mapping[str, Any]] | None = None,
    output: Template | None = None,
    retention: Duration | None = None,
    schedule: str | None = None,
    concurrency: int | Concurrency | None = None,
    registry: Registry | None = None,
) -> GraphWorkflow:
    """Declare, validate and register a graph workflow.

    ``nodes`` maps node ids to registered functions (names or ``@gf.function`` objects);
    ``config[node_id]`` holds ``next``, ``input``, ``branch``, ``for_each``, ``mode``,
    ``on_error``, ``loop``, ``retries``, ``retry_delay``, ``backoff`` and ``timeout`` (see DESIGN
    §1; ``loop={"max_iterations": N}`` lets the node's ``next`` go back to an ancestor). With
    ``retention`` (``"7d"``), worker engines delete its runs that long after they finished.
    ``schedule`` and ``concurrency`` work as in ``@gf.workflow``.

    Raises:
        ScheduleError: ``schedule`` is not a valid cron expression.
        LimitError: ``concurrency`` is invalid.
        GraphDefinitionError: the graph is invalid (the message names the node and the fix).
        DurationError: a ``retry_delay``, ``timeout`` or ``retention`` is not a duration.
        RegistrationError: the name is taken by another workflow or function.
    """
    registry = registry if registry is not None else DEFAULT_REGISTRY
    keep = None if retention is None else to_seconds(retention)
    _check_graph(name, nodes, config or {})
    with _cyclic_gc_paused():
        specs = [
            _node_spec(name, node_id, target, (config or {}).get(node_id, {}), registry)
            for node_id, target in nodes.items()
        ]
        template = None if output is None else _template(name, None, "output", output)
        plan = compile_graph(name=name, specs=specs, output=template)
    caller = sys._getframe(1)
    module = caller.f_globals.get("__name__", "__main__")
    definition = GraphWorkflow(
        name=name,
        description=description,
        identity=f"{module}:graph:{name}",
        defined_at=f"{caller.f_code.co_filename}:{caller.f_lineno}",
        schedule=None if schedule is None else Cron.parse(schedule, schedule=name),
        concurrency=concurrency_option(concurrency, where=f"workflow_graph {name!r}"),
        plan=plan,
        entry_functions=tuple(
            (node_id, registry.get_function(plan.nodes[node_id].function))
            for node_id in plan.entries
            if plan.nodes[node_id].input is None
            and plan.nodes[node_id].for_each is None
            and not plan.nodes[node_id].handles
        ),
        retention=keep,
    )
    registry.add_workflow(definition)
    return definition


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a graph compiles.

    Compiling allocates a dozen objects per node that all stay alive (the graph, the plan), so
    the collector finds no garbage, but on a large graph it runs full collections that rescan the
    whole heap: about half the compile time of a 10,000-node graph. Nothing is lost by pausing
    it; its counters carry on, and it resumes (if it was on) when the graph is compiled.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fail(graph: str, node: str | None, problem: str, fix: str) -> NoReturn:
    raise GraphDefinitionError(graph=graph, node=node, problem=problem, fix=fix)


def _near(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_graph(name: object, nodes: object, config: object) -> None:
    if not isinstance(name, str) or not name:
        _fail(str(name), None, "its name is not a non-empty string", "pass name='my_graph'")
    if not isinstance(nodes, Mapping) or not nodes:
        _fail(name, None, "it has no nodes", "pass nodes={'node_id': 'function_name', ...}")
    if not isinstance(config, Mapping):
        _fail(name, None, "config is not a mapping", "pass config={'node_id': {...}, ...}")
    for node_id in nodes:
        if not isinstance(node_id, str) or not node_id or node_id.startswith("$"):
            _fail(
                name,
                str(node_id),
                "its id is not a non-empty string free of a leading '$'",
                "rename it; ids starting with '$' are reserved for $input, $item and $error",
            )
        if any(char in node_id for char in ":[]"):
            _fail(
                name,
                node_id,
                "its id contains ':', '[' or ']'",
                "rename it; these are reserved for step names such as 'node[3]'",
            )
    for node_id in config:
        if node_id not in nodes:
            _fail(
                name,
                str(node_id),
                "config is given for a node not declared in nodes",
                f"declare it in nodes= or fix the id{_near(str(node_id), list(nodes))}",
            )


def _node_spec(
    graph: str, node_id: str, target: object, options: object, registry: Registry
) -> NodeSpec:
    if not isinstance(options, Mapping):
        _fail(graph, node_id, "its config is not a mapping", "pass e.g. {'next': 'other_node'}")
    for key in options:
        if key not in CONFIG_KEYS:
            _fail(
                graph,
                node_id,
                f"unknown config option {key!r}",
                f"use one of {sorted(CONFIG_KEYS)}{_near(str(key), sorted(CONFIG_KEYS))}",
            )
    next_ = _next(graph, node_id, options.get("next"))
    raw_input = options.get("input")
    for_each = _for_each(graph, node_id, options.get("for_each"))
    return NodeSpec(
        node_id=node_id,
        function=_function_name(graph, node_id, target, registry),
        next=next_,
        input=None if raw_input is None else _template(graph, node_id, "input", raw_input),
        branch=_branch(graph, node_id, options.get("branch"), next_),
        for_each=for_each,
        mode=_mode(graph, node_id, options.get("mode"), for_each),
        on_error=_id_list(graph, node_id, "on_error", options.get("on_error")),
        options=_options(graph, node_id, options),
        loop=_loop(graph, node_id, options.get("loop")),
    )


def _loop(graph: str, node_id: str, value: object) -> int | None:
    """``loop={"max_iterations": N}``: how many passes the node's back edge allows."""
    if value is None:
        return None
    limit = value.get("max_iterations") if isinstance(value, Mapping) else None
    if (
        not isinstance(value, Mapping)
        or set(value) != {"max_iterations"}
        or not isinstance(limit, int)
        or isinstance(limit, bool)
        or limit < 1
    ):
        _fail(
            graph,
            node_id,
            f"loop must be {{'max_iterations': N}} with an integer N >= 1, got {value!r}",
            "pass e.g. loop={'max_iterations': 3} (at most 3 passes through the loop)",
        )
    return limit


def _branch(
    graph: str, node_id: str, value: object, next_: Mapping[str | None, object]
) -> BranchFn | None:
    if value is None:
        return None
    if not callable(value) or isinstance(value, Ref):
        _fail(
            graph,
            node_id,
            f"branch must be a callable output -> key, got {value!r}",
            "pass e.g. branch=lambda output: 'pro' if output['plan'] == 'pro' else 'basic'",
        )
    if not next_ or None in next_:
        _fail(
            graph,
            node_id,
            "it has branch= but its next is not a dict of branch keys",
            "give next={'key': 'node_id', ...} or remove branch=",
        )
    return value


def _function_name(graph: str, node_id: str, target: object, registry: Registry) -> str:
    if isinstance(target, Function):
        if registry.find_function(target.name) is None:
            _fail(
                graph,
                node_id,
                f"function {target.name!r} is not in this graph's registry",
                "register it in the same registry (@gf.function(registry=...)) or pass"
                " registry= to workflow_graph",
            )
        return target.name
    if not isinstance(target, str):
        what = "a plain callable" if callable(target) else f"{target!r}"
        _fail(
            graph,
            node_id,
            f"its function is {what}, not a registered function",
            "decorate the function with @gf.function and pass it or its name",
        )
    if registry.find_function(target) is None:
        hint = _near(target, registry.function_names)
        if registry.find_workflow(target) is not None:
            hint = f" ({target!r} is a workflow; graph nodes run functions)"
        _fail(
            graph,
            node_id,
            f"unknown function {target!r}{hint}",
            "decorate it with @gf.function and import its module before workflow_graph()",
        )
    return target


def _id_list(graph: str, node_id: str, option: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) and i for i in ids):
        _fail(
            graph,
            node_id,
            f"its {option} must be a node id or a list of node ids, got {value!r}",
            f"pass e.g. {option}='other_node' or {option}=['a', 'b']",
        )
    return tuple(dict.fromkeys(ids))


def _next(graph: str, node_id: str, value: object) -> dict[str | None, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        targets = _id_list(graph, node_id, "next", value)
        return {None: targets} if targets else {}
    if not value:
        _fail(
            graph,
            node_id,
            "its next is an empty dict of branch keys",
            "map each branch key to node ids, e.g. next={'pro': 'review'}",
        )
    keyed: dict[str | None, tuple[str, ...]] = {}
    for key, targets in value.items():
        if not isinstance(key, str) or not key:
            _fail(
                graph,
                node_id,
                f"its next has branch key {key!r}, not a non-empty string",
                "use string keys, e.g. next={'pro': 'review', 'basic': []}",
            )
        keyed[key] = _id_list(graph, node_id, f"next[{key!r}]", [] if targets is None else targets)
    return keyed


def _for_each(graph: str, node_id: str, value: object) -> Ref | None:
    if value is None:
        return None
    made = (
        _call_with_ref(graph, node_id, "for_each", value) if not isinstance(value, Ref) else value
    )
    if not isinstance(made, Ref):
        _fail(
            graph,
            node_id,
            f"for_each must be a ref to a list, got {value!r}",
            "pass e.g. for_each=ref('fetch_users', 'users')",
        )
    return made


def _mode(graph: str, node_id: str, value: object, for_each: Ref | None) -> Mode:
    if value is None:
        return "parallel"
    if for_each is None:
        _fail(
            graph, node_id, "it has mode= but no for_each", "add for_each=ref(...) or remove mode"
        )
    if value == "parallel" or value == "sequential":
        return value
    _fail(
        graph,
        node_id,
        f"mode must be 'parallel' or 'sequential', got {value!r}",
        "pass mode='parallel' or mode='sequential'",
    )


def _options(graph: str, node_id: str, options: Mapping[Any, Any]) -> StepOptions:
    if _STEP_OPTIONS.isdisjoint(options):
        return _NO_OPTIONS
    for option in ("retry_delay", "timeout"):
        value = options.get(option)
        try:
            if value is not None:
                to_seconds(value)
        except DurationError as exc:
            raise GraphDurationError(
                graph=graph, node=node_id, option=option, text=exc.text
            ) from exc
    try:
        return StepOptions.build(
            retries=options.get("retries"),
            retry_delay=options.get("retry_delay"),
            backoff=options.get("backoff"),
            timeout=options.get("timeout"),
            where="bad step option",
        )
    except DefinitionError as exc:
        raise GraphDefinitionError(
            graph=graph,
            node=node_id,
            problem=exc.message,
            fix="give retries as an integer >= 0, backoff as a number >= 1, and retry_delay and"
            " timeout as durations such as '1s' or '5min'",
        ) from exc


def _call_with_ref(graph: str, node_id: str | None, option: str, value: object) -> object:
    if not callable(value):
        return value
    try:
        return value(ref)
    except RefUsageError as exc:
        raise GraphDefinitionError(
            graph=graph,
            node=node_id,
            problem=f"in its {option} callable, {exc.ref}: {exc.problem}",
            fix=exc.fix,
        ) from exc
    except Exception as exc:
        raise GraphDefinitionError(
            graph=graph,
            node=node_id,
            problem=f"calling its {option} callable raised {type(exc).__name__}: {exc}",
            fix=f"the {option} callable is called once with ref and must only return"
            " ref(...) placeholders and JSON values",
        ) from exc


def _template(graph: str, node_id: str | None, option: str, value: object) -> JSON:
    made = _call_with_ref(graph, node_id, option, value)
    if not isinstance(made, Mapping | Ref):
        _fail(
            graph,
            node_id,
            f"its {option} is {type(made).__name__}, not a mapping",
            f"pass {option}={{'key': ref(...)}} or {option}=lambda ref: {{...}}",
        )
    return _copy(graph, node_id, option, made, option)


def _copy(graph: str, node_id: str | None, option: str, value: object, at: str) -> JSON:
    """A deep copy of a template (tuples become lists), checked to be JSON plus refs."""
    if isinstance(value, Ref) or value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, Mapping):
        copied: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(
                    graph,
                    node_id,
                    f"its {option} has non-string key {key!r} at {at}",
                    _TEMPLATE_FIX,
                )
            copied[key] = _copy(graph, node_id, option, item, f"{at}[{key!r}]")
        return copied
    if isinstance(value, list | tuple):
        return [_copy(graph, node_id, option, item, f"{at}[{i}]") for i, item in enumerate(value)]
    _fail(graph, node_id, f"its {option} has {value!r} at {at}, which is not JSON", _TEMPLATE_FIX)
