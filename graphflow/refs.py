"""Refs: placeholders for earlier nodes' outputs in a graph node's input.

``ref("create_profile", "email")`` stands for a value that exists only when the graph runs. Refs are
opaque: computing with one (``f"Hi {ref(...)}"``, ``ref(...) + 1``, ``if ref(...):``) raises
``RefUsageError`` at definition time. A plain path (``"email"``, ``"user.address.city"``,
``"items[0].id"``) gives one value; a JSONPath with ``*``, ``..``, a slice or a filter gives a list.
Paths are compiled once, with jsonpath-ng, when the ref is made.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

from ._types import JSON
from .errors import GraphDefinitionError, GraphflowError

if TYPE_CHECKING:
    from jsonpath_ng.jsonpath import JSONPath

__all__ = (
    "ERROR",
    "INPUT",
    "ITEM",
    "SKIPPED",
    "Lookup",
    "Ref",
    "RefResolutionError",
    "RefUsageError",
    "Scope",
    "iter_refs",
    "ref",
    "resolve_refs",
)

INPUT: Final = "$input"
"""The node id that refers to the workflow's input."""
ITEM: Final = "$item"
"""The node id that refers to the current item of a ``for_each`` node."""
ERROR: Final = "$error"
"""The node id that refers to the error payload an ``on_error`` handler node receives."""
_SPECIAL = (INPUT, ITEM, ERROR)


class _Marker(enum.Enum):
    MISSING = "missing"
    SKIPPED = "skipped"


_MISSING: Final = _Marker.MISSING
SKIPPED: Final = _Marker.SKIPPED
"""What a lookup returns for a node that was skipped: refs to it resolve to their default."""

Lookup = Callable[[str], JSON]
"""Gives a node's stored JSON output by node id, ``SKIPPED``, or the ``$input``/``$item``/``$error``
value."""

_USED_IN = "a ref is a placeholder filled in only when the graph runs, but it was used in "
_COMPUTE_FIX = (
    "pass the ref as a whole value, e.g. {'to': ref('create_profile', 'email')}, and do the"
    " formatting or arithmetic inside the node's function"
)


class RefUsageError(GraphDefinitionError, TypeError):
    """A ref was computed with, or made with a bad node id or path, at definition time."""

    ref: str

    def __init__(self, *, ref: str, problem: str, fix: str) -> None:
        GraphflowError.__init__(
            self,
            f"invalid use of {ref}: {problem}. Fix: {fix}",
            ref=ref,
            problem=problem,
            fix=fix,
            graph=None,  # a ref made in a mapping is checked before its graph exists
            node=None,
        )


class RefResolutionError(GraphflowError, LookupError):
    """A ref could not be resolved at run time (its path is missing from the node's output)."""

    node: str
    path: str | None
    problem: str
    consumer: str | None

    def __init__(
        self, *, node: str, path: str | None, problem: str, consumer: str | None = None
    ) -> None:
        where = f" for the input of node {consumer!r}" if consumer is not None else ""
        super().__init__(
            f"cannot resolve ref({node!r}, {path!r}){where}: {problem}. Fix: check the path"
            " against the node's stored output, or give ref(..., default=...) for a value that"
            " may be absent",
            node=node,
            path=path,
            problem=problem,
            consumer=consumer,
        )


@dataclass(frozen=True, slots=True)
class _Path:
    """A compiled path: ``steps`` (keys and indices) for a plain path, else ``None``."""

    text: str
    steps: tuple[str | int, ...] | None
    expr: JSONPath


@functools.cache
def _compile(text: str) -> _Path:
    from jsonpath_ng.ext.parser import parse  # imported when a graph compiles its first path

    expr = parse(text)
    return _Path(text=text, steps=_plain_steps(expr), expr=expr)


def _plain_steps(expr: JSONPath) -> tuple[str | int, ...] | None:
    from jsonpath_ng.jsonpath import Child, Fields, Index, Root

    # Exact type checks: jsonpath-ng's extensions subclass these with other meanings.
    if type(expr) is Root:
        return ()
    if type(expr) is Fields and len(expr.fields) == 1 and expr.fields[0] != "*":
        return (expr.fields[0],)
    if type(expr) is Index and len(expr.indices) == 1:
        return (expr.indices[0],)
    if type(expr) is Child and type(expr.right) is not Root:
        left, right = _plain_steps(expr.left), _plain_steps(expr.right)
        if left is not None and right is not None:
            return left + right
    return None


def _refuse(operation: str, fix: str = _COMPUTE_FIX) -> Callable[..., NoReturn]:
    def refuse(self: Ref, *args: object) -> NoReturn:
        raise RefUsageError(ref=repr(self), problem=f"{_USED_IN}{operation}", fix=fix)

    return refuse


class Ref:
    """An opaque placeholder for (part of) a node's output; make it with ``ref()``."""

    __slots__ = ("_default_json", "_key", "_path", "default", "node_id", "path")

    node_id: str
    path: str | None
    default: JSON
    _path: _Path | None
    _default_json: str | None
    _key: tuple[str, str | None, str | None]

    def __init__(self, node_id: str, path: str | None = None, default: JSON = _MISSING) -> None:
        shown = f"ref({node_id!r}, {path!r})"
        _check_node_id(node_id, shown)
        compiled = None if path is None else _compile_path(path, shown)
        default_json = None if default is _MISSING else _dump_default(default, shown)
        for name, value in (
            ("node_id", node_id), ("path", path), ("default", default), ("_path", compiled),
            ("_default_json", default_json), ("_key", (node_id, path, default_json)),
        ):  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def has_default(self) -> bool:
        """Whether ``default=`` was given."""
        return self._default_json is not None

    @property
    def many(self) -> bool:
        """Whether the path is a JSONPath query that always gives a list."""
        return self._path is not None and self._path.steps is None

    def canonical(self) -> JSON:
        """A JSON form of this ref for hashing (stable across processes)."""
        return {"\x00ref": [self.node_id, self.path, self._default_json]}

    def resolve(self, lookup: Lookup, *, consumer: str | None = None) -> JSON:
        """Resolve against ``lookup``: a skipped node gives ``default`` (``None`` if not given).

        Raises:
            RefResolutionError: the plain path is missing from the output and there is no default.
        """
        value = lookup(self.node_id)
        if value is SKIPPED:
            return None if self._default_json is None else json.loads(self._default_json)
        if self._path is None:
            return value
        if self._path.steps is None:
            return [match.value for match in self._path.expr.find(value)]
        found, result = _walk(value, self._path.steps)
        if found:
            return result
        if self._default_json is not None:
            return json.loads(self._default_json)
        raise RefResolutionError(
            node=self.node_id, path=self.path, problem=str(result), consumer=consumer
        )

    def __repr__(self) -> str:
        args = [repr(self.node_id)]
        if self.path is not None:
            args.append(repr(self.path))
        if self._default_json is not None:
            args.append(f"default={self.default!r}")
        return f"ref({', '.join(args)})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ref):
            return self._key == other._key
        raise RefUsageError(ref=repr(self), problem=f"{_USED_IN}a comparison", fix=_COMPUTE_FIX)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._key)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Ref is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Ref is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Ref], tuple[str, str | None, JSON]]:
        return (Ref, (self.node_id, self.path, self.default))

    __str__ = __format__ = _refuse("string formatting")
    __bool__ = _refuse("a truth test (if/and/or/not)")
    __iter__ = __len__ = __contains__ = _refuse("iteration")
    __getitem__ = _refuse(
        "indexing", "reach into an output with a path: ref('fetch', 'items[0].id')"
    )
    __lt__ = __le__ = __gt__ = __ge__ = _refuse("a comparison")
    __int__ = __float__ = __complex__ = __index__ = __round__ = _refuse("a number conversion")
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse("arithmetic")
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _refuse("arithmetic")
    __mod__ = __rmod__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _refuse("arithmetic")
    __neg__ = __pos__ = __abs__ = __invert__ = _refuse("arithmetic")
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _refuse("a bitwise operation")
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = _refuse("a bitwise operation")


def _check_node_id(node_id: object, shown: str) -> None:
    if not isinstance(node_id, str) or not node_id:
        raise RefUsageError(
            ref=shown,
            problem="the node id is not a non-empty string",
            fix="name the node, e.g. ref('create_profile')",
        )
    if node_id.startswith("$") and node_id not in _SPECIAL:
        raise RefUsageError(
            ref=shown,
            problem=f"unknown special node {node_id!r}",
            fix=f"use one of {', '.join(_SPECIAL)} or a node id",
        )


def _compile_path(path: object, shown: str) -> _Path:
    if not isinstance(path, str) or not path.strip():
        raise RefUsageError(
            ref=shown,
            problem="the path is not a non-empty string",
            fix="use path=None for the whole output, or e.g. 'user.email'",
        )
    from jsonpath_ng.exceptions import JSONPathError

    try:
        return _compile(path)
    except JSONPathError as exc:
        raise RefUsageError(
            ref=shown,
            problem=f"the path does not parse ({exc})",
            fix="use a plain path such as 'user.email' or 'items[0].id', or a JSONPath such as"
            " '$.items[*].id'",
        ) from exc


def _dump_default(default: JSON, shown: str) -> str:
    try:
        return json.dumps(default, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RefUsageError(
            ref=shown,
            problem=f"the default {default!r} is not JSON",
            fix="give a JSON value (dict, list, str, number, bool or None) as default=",
        ) from exc


def _walk(value: JSON, steps: tuple[str | int, ...]) -> tuple[bool, JSON]:
    """Follow ``steps``; on a miss return ``(False, why)``."""
    at = "output"
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, Mapping):
                return False, f"{at} is {_kind(value)}, not an object with key {step!r}"
            if step not in value:
                keys = ", ".join(repr(key) for key in sorted(map(str, value))[:10])
                return False, f"{at} has no key {step!r} (its keys: {keys or 'none'})"
            value, at = value[step], f"{at}[{step!r}]"
        else:
            if not isinstance(value, list | tuple):
                return False, f"{at} is {_kind(value)}, not a list to index with [{step}]"
            if not -len(value) <= step < len(value):
                return False, f"{at} has {len(value)} items, no index [{step}]"
            value, at = value[step], f"{at}[{step}]"
    return True, value


def _kind(value: JSON) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def ref(node_id: str, path: str | None = None, default: JSON = _MISSING) -> Ref:
    """A placeholder for the output of ``node_id`` (or a part of it, by ``path``).

    ``node_id`` may be ``"$input"`` (the workflow input), ``"$item"`` (the current item of a
    ``for_each`` node) or ``"$error"`` (the error payload of an ``on_error`` handler). A ref to a
    skipped node resolves to ``default`` (``None`` if not given); so does a plain path missing from
    a completed node's output when ``default`` is given.

    Raises:
        RefUsageError: the node id or path is invalid, or ``default`` is not JSON.
    """
    return Ref(node_id, path, default)


def iter_refs(template: JSON) -> Iterator[Ref]:
    """Every ref in a nested mapping/list template, depth first."""
    if isinstance(template, Ref):
        yield template
    elif isinstance(template, Mapping):
        for value in template.values():
            yield from iter_refs(value)
    elif isinstance(template, list | tuple):
        for value in template:
            yield from iter_refs(value)


def resolve_refs(template: JSON, lookup: Lookup, *, consumer: str | None = None) -> JSON:
    """A copy of ``template`` with every ref replaced by its value (tuples become lists).

    ``consumer`` is the node whose input this is, named in errors.

    Raises:
        RefResolutionError: a ref cannot be resolved.
    """
    if isinstance(template, Ref):
        return template.resolve(lookup, consumer=consumer)
    if isinstance(template, Mapping):
        return {
            key: resolve_refs(value, lookup, consumer=consumer) for key, value in template.items()
        }
    if isinstance(template, list | tuple):
        return [resolve_refs(value, lookup, consumer=consumer) for value in template]
    return template


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """A ready-made ``Lookup`` over one graph run's values.

    ``outputs`` maps node ids to stored JSON outputs, or to ``SKIPPED``; it may be a live dict
    that grows as nodes resolve.
    """

    outputs: Mapping[str, JSON]
    workflow_input: JSON = None
    item: JSON = _MISSING
    error: JSON = _MISSING
    feedback: frozenset[str] = frozenset()
    """Loop-body nodes that refs may read before their first pass: they give their default."""

    def __call__(self, node_id: str) -> JSON:
        """The value refs to ``node_id`` resolve against.

        Raises:
            RefResolutionError: the node has no value yet (or no item/error is in scope).
        """
        if node_id == INPUT:
            return self.workflow_input
        if node_id == ITEM:
            value = self.item
        elif node_id == ERROR:
            value = self.error
        else:
            value = self.outputs.get(node_id, _MISSING)
            if value is _MISSING and node_id in self.feedback:
                return SKIPPED
        if value is _MISSING:
            raise RefResolutionError(
                node=node_id, path=None, problem="it has no value yet in this run"
            )
        return value

    def with_item(self, item: JSON) -> Scope:
        """This scope with ``$item`` bound (one ``for_each`` iteration)."""
        return dataclasses.replace(self, item=item)

    def with_error(self, error: JSON) -> Scope:
        """This scope with ``$error`` bound (an ``on_error`` handler node)."""
        return dataclasses.replace(self, error=error)
