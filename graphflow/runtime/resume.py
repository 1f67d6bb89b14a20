"""Validating resume data against the JSON Schema a suspend stored.

The schema travels with the suspend record, so a client engine without the workflow's code (an
HTTP front end, the CLI) refuses invalid data before anything is written.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pydantic
from pydantic import TypeAdapter

from .._types import JSON
from ..errors import InputValidationError
from ..store.base import RunRecord, StepRecord

__all__ = ("SCHEMA_ADAPTERS", "check_resume_data", "remember_schema")

SCHEMA_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
"""Suspend schemas this process has seen, by their JSON Schema text: exact validation."""


def remember_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON Schema of ``adapter``, remembered so a resume here validates with pydantic."""
    schema = adapter.json_schema()
    SCHEMA_ADAPTERS[json.dumps(schema, sort_keys=True)] = adapter
    return schema


def check_resume_data(run: RunRecord, step: StepRecord, data: JSON) -> None:
    """Raise ``InputValidationError`` if ``data`` fails the suspend's schema."""
    detail = json.loads(step.detail or "{}")
    schema = detail.get("schema")
    if schema is None:
        return
    adapter = SCHEMA_ADAPTERS.get(json.dumps(schema, sort_keys=True))
    if adapter is not None:
        # This process knows the schema's type: validate exactly as the workflow will.
        try:
            adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            errors = [dict(error) for error in exc.errors(include_url=False)]
        else:
            return
    else:
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = [
            {"loc": tuple(error.absolute_path), "msg": error.message, "type": str(error.validator)}
            for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        ]
    if errors:
        raise InputValidationError(
            what=f"resume data for suspend {step.name!r}",
            errors=errors,
            workflow=run.workflow,
            run_id=run.run_id,
        )
