"""Validating data sent to a waiting run (resume data, messages) against a stored JSON Schema.

The schema travels with the waiting record, so a client engine without the workflow's code (an
HTTP front end, the CLI) refuses invalid data before anything is written. Every process validates
alike: first against the JSON Schema (what every process has), then, where this process knows the
schema's pydantic type, with pydantic too (it may refuse more, never less). Errors have one shape
and one wording wherever they are found: pydantic's (``loc``, ``msg``, ``type``, ``input``), with
JSON Schema's findings phrased as pydantic phrases them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic
from pydantic import TypeAdapter

from .._types import JSON
from ..errors import InputValidationError
from ..store.base import RunRecord, StepRecord, receive_input

__all__ = (
    "SCHEMA_ADAPTERS",
    "check_data",
    "check_message",
    "check_resume_data",
    "remember_schema",
)

SCHEMA_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
"""Schemas this process has seen, by their JSON Schema text: validated by pydantic too."""

_TYPES: dict[str, tuple[str, str]] = {
    "string": ("string_type", "a valid string"),
    "integer": ("int_type", "a valid integer"),
    "number": ("float_type", "a valid number"),
    "boolean": ("bool_type", "a valid boolean"),
    "object": ("dict_type", "a valid dictionary or object"),
    "array": ("list_type", "a valid list"),
    "null": ("none_required", "None"),
}
"""JSON Schema types as pydantic's error type and wording name them."""


def remember_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON Schema of ``adapter``, remembered so a check here validates with pydantic too."""
    schema = adapter.json_schema()
    SCHEMA_ADAPTERS[json.dumps(schema, sort_keys=True)] = adapter
    return schema


def _schema_errors(schema: dict[str, Any], data: JSON) -> list[dict[str, Any]]:
    import jsonschema  # imported here: only a check against a stored schema needs it

    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [_as_pydantic(error) for error in validator.iter_errors(data)]
    return sorted(errors, key=lambda error: [str(part) for part in error["loc"]])


def _as_pydantic(error: Any) -> dict[str, Any]:
    """A jsonschema ``ValidationError`` as a pydantic error dict, in pydantic's words."""
    loc = tuple(error.absolute_path)
    kind = str(error.validator)
    if kind == "required":
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        return {"type": "missing", "loc": (*loc, missing), "msg": "Field required", "input": None}
    if kind == "type":
        expected = error.validator_value
        names = [str(name) for name in (expected if isinstance(expected, list) else [expected])]
        known = [_TYPES.get(name, (f"{name}_type", name)) for name in names]
        return {
            "type": known[0][0],
            "loc": loc,
            "msg": "Input should be " + " or ".join(words for _, words in known),
            "input": error.instance,
        }
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        listed = " or ".join(repr(option) for option in options)
        return {
            "type": kind,
            "loc": loc,
            "msg": f"Input should be {listed}",
            "input": error.instance,
        }
    return {"type": kind, "loc": loc, "msg": error.message, "input": error.instance}


def check_data(
    schema: dict[str, Any] | None,
    data: JSON,
    *,
    what: str,
    run: RunRecord,
) -> None:
    """Raise ``InputValidationError`` (naming ``what``) if ``data`` fails ``schema``."""
    if schema is None:
        return
    errors = _schema_errors(schema, data)
    adapter = SCHEMA_ADAPTERS.get(json.dumps(schema, sort_keys=True))
    if not errors and adapter is not None:
        try:
            adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            errors = [
                {
                    "type": error["type"],
                    "loc": tuple(error["loc"]),
                    "msg": error["msg"],
                    "input": error.get("input"),
                }
                for error in exc.errors(include_url=False)
            ]
    if errors:
        raise InputValidationError(
            what=what, errors=errors, workflow=run.workflow, run_id=run.run_id
        )


def check_resume_data(run: RunRecord, step: StepRecord, data: JSON) -> None:
    """Raise ``InputValidationError`` if ``data`` fails the suspend's schema."""
    schema = json.loads(step.detail or "{}").get("schema")
    check_data(schema, data, what=f"resume data for suspend {step.name!r}", run=run)


def check_message(run: RunRecord, steps: Sequence[StepRecord], topic: str, data: JSON) -> None:
    """Raise ``InputValidationError`` if a receive of ``topic`` waits and its schema refuses it.

    Several waiting on one topic: the first issued (the one that takes the oldest message).
    """
    waiting = receive_input(topic)
    for step in steps:
        if step.kind == "receive" and step.state == "suspended" and step.input == waiting:
            schema = json.loads(step.detail or "{}").get("schema")
            check_data(schema, data, what=f"message on topic {topic!r}", run=run)
            return
