"""Validating resume data against the JSON Schema a suspend stored.

The schema travels with the suspend record, so a client engine without the workflow's code (an
HTTP front end, the CLI) refuses invalid data before anything is written.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from .._types import JSON
from ..errors import InputValidationError
from ..store.base import RunRecord, StepRecord

__all__ = ("check_resume_data",)


def check_resume_data(run: RunRecord, step: StepRecord, data: JSON) -> None:
    """Raise ``InputValidationError`` if ``data`` fails the suspend's schema."""
    detail = json.loads(step.detail or "{}")
    schema = detail.get("schema")
    if schema is None:
        return
    validator = jsonschema.Draft202012Validator(schema)
    errors: list[dict[str, Any]] = [
        {"loc": list(error.absolute_path), "msg": error.message, "type": str(error.validator)}
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    if errors:
        raise InputValidationError(
            what=f"resume data for suspend {step.name!r}",
            errors=errors,
            workflow=run.workflow,
            run_id=run.run_id,
        )
