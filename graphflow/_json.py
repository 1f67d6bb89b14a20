"""What JSON cannot hold: finding the values that would be stored wrongly or fail later.

pydantic writes NaN and ±Infinity as ``null`` (a silent change of the value), refuses lone
surrogates and bytes that are not UTF-8 with a raw serialisation error, and its JSON parser stops
at ``MAX_DEPTH`` levels of nesting, so a deeper value is stored and then fails when read back. The
engine refuses such values where they enter: a run's input at ``start`` (``InputValidationError``),
a step's result or a workflow's output (a non-retryable failure).

The check costs a few byte searches per serialised value; the value itself is walked only when
its JSON could hide a problem (a ``null``, ``NaN``, ``Infinity``) or when serialising it failed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

import pydantic
from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError

__all__ = (
    "ANY_ADAPTER",
    "MAX_DEPTH",
    "JsonProblem",
    "dump_any",
    "dump_json",
    "find_problem",
    "load_any",
    "may_hide_problem",
    "too_deep",
)

MAX_DEPTH: Final = 200
"""Levels of nested arrays and objects that pydantic's JSON parser reads back (it stops past
200)."""

_SHOWN: Final = 4
"""Leading path elements shown for a value nested too deep (its whole path is 200 long)."""

_HIDING: Final = (b"null", b"NaN", b"Infinity")
"""What a non-finite float becomes in JSON (``null`` by default, else the constant itself)."""


@dataclass(frozen=True, slots=True)
class JsonProblem:
    """A value JSON cannot hold, and where it is."""

    loc: tuple[str | int, ...]
    kind: str
    """pydantic-style error type: ``finite_number``, ``json_depth``, ``string_unicode``..."""
    problem: str

    @property
    def path(self) -> str:
        """The JSONPath of the value (``$.items[0].price``)."""
        return "$" + "".join(f"[{p}]" if isinstance(p, int) else _member(p) for p in self.loc)

    @property
    def message(self) -> str:
        """The problem, at its path, and what to do instead."""
        where = "under" if self.kind == "json_depth" else "at"
        return f"{self.problem} {where} {self.path}: {_FIXES[self.kind]}"

    def error(self) -> dict[str, Any]:
        """The problem in pydantic's error shape (``InputValidationError.errors``)."""
        return {"type": self.kind, "loc": self.loc, "msg": f"{self.problem}: {_FIXES[self.kind]}"}


_FIXES: Final = {
    "finite_number": "JSON has no NaN or Infinity (send null, a number or a string instead)",
    "json_depth": f"JSON values may nest at most {MAX_DEPTH} levels of arrays and objects",
    "string_unicode": "strings must be valid Unicode (no lone surrogates)",
    "bytes_invalid_encoding": "bytes are stored as UTF-8 text (send base64 text instead)",
}


def _member(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{key!r}]"


def may_hide_problem(raw: bytes, value: Any) -> bool:
    """Whether ``raw``, serialised from ``value``, may stand for a non-finite float.

    A few byte searches (spelled out, not a loop over ``_HIDING``: this runs once per step
    result); a plain ``None`` is the one ``null`` that needs no look.
    """
    if raw == b"null":
        return value is not None
    return b"null" in raw or b"NaN" in raw or b"Infinity" in raw


def too_deep(raw: bytes) -> bool:
    """Whether ``raw`` may nest deeper than ``MAX_DEPTH`` (cheap: counts brackets)."""
    return len(raw) > 2 * MAX_DEPTH and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def find_problem(value: Any, *, strings: bool = False) -> JsonProblem | None:
    """The first value under ``value`` that JSON cannot hold (depth first), or ``None``.

    Non-finite floats and nesting past ``MAX_DEPTH``; with ``strings``, also lone surrogates and
    bytes that are not UTF-8 (what makes serialising fail). Walks pydantic models and dataclasses
    by their fields; iterative, so any depth is safe.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        problem = _scalar_problem(item, loc, strings)
        if problem is not None:
            return problem
        children = _children(item)
        if children is None:
            continue
        if len(loc) >= MAX_DEPTH:
            return JsonProblem(
                loc[:_SHOWN], "json_depth", f"nesting deeper than {MAX_DEPTH} levels"
            )
        stack.extend((child, (*loc, key)) for key, child in reversed(children))
    return None


def _scalar_problem(item: Any, loc: tuple[str | int, ...], strings: bool) -> JsonProblem | None:
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        return JsonProblem(loc, "finite_number", f"{item!r} (not a finite number)")
    if not strings:
        return None
    if isinstance(item, str):
        try:
            item.encode()
        except UnicodeEncodeError:
            return JsonProblem(loc, "string_unicode", "a string with a lone surrogate")
    elif isinstance(item, bytes):
        try:
            item.decode()
        except UnicodeDecodeError:
            return JsonProblem(loc, "bytes_invalid_encoding", "bytes that are not UTF-8")
    return None


def _children(item: Any) -> list[tuple[str | int, Any]] | None:
    """The members of a container (as JSON keys or indexes); ``None`` for a scalar."""
    if isinstance(item, dict):
        return [(str(key), child) for key, child in item.items()]
    if isinstance(item, list | tuple | set | frozenset):
        return list(enumerate(item))
    if isinstance(item, pydantic.BaseModel):
        fields = dict(item.__dict__)
        fields.update(item.__pydantic_extra__ or {})
        return list(fields.items())
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [(f.name, getattr(item, f.name)) for f in dataclasses.fields(item)]
    return None


ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)
"""Validates and serialises values of no declared type."""


def dump_any(value: Any) -> bytes:
    """Serialise a value of no declared type to JSON bytes (the one codec for "any" values).

    Raises:
        PydanticSerializationError: ``value`` is not JSON, or holds what JSON cannot (NaN,
            ±Infinity), named by its path.
    """
    return dump_json(ANY_ADAPTER, value)


def dump_json(adapter: TypeAdapter[Any], value: Any) -> bytes:
    """``adapter.dump_json(value)``, refusing what JSON cannot hold instead of changing it.

    pydantic writes NaN and ±Infinity as ``null`` (whatever a model's ``allow_inf_nan``): they
    are refused here. A value that cannot be serialised (a lone surrogate, bytes that are not
    UTF-8, nesting too deep) is refused with the path of the culprit, which pydantic's own error
    does not say.

    Raises:
        PydanticSerializationError: naming the path of the bad value.
    """
    try:
        raw = adapter.dump_json(value)
    except PydanticSerializationError as exc:
        problem = find_problem(value, strings=True)
        if problem is None:
            raise
        raise PydanticSerializationError(problem.message) from exc
    if may_hide_problem(raw, value):
        problem = find_problem(value)
        if problem is not None:
            raise PydanticSerializationError(problem.message)
    return raw


def load_any(raw: str | bytes) -> Any:
    """Parse JSON of no declared type (the inverse of ``dump_any``)."""
    return ANY_ADAPTER.validate_json(raw)
