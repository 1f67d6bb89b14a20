"""Resume forms built from a suspend's JSON Schema, and the submitted form turned back into JSON.

Each top-level property of an object schema becomes a control: a checkbox for a boolean, a select
for an enum, a text box for a string or a number, a JSON text area for anything nested. Values are
converted only as far as their type is clear (``"42"`` to ``42`` for an integer); what cannot be
converted is passed on as typed so that the suspend's own validation names the problem, exactly as
the HTTP API would. A schema the page cannot map gets one JSON text area.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

from .._types import JSON

__all__ = ("Field", "FormError", "fields_of", "form_data", "render_form")

Control = Literal["text", "integer", "number", "checkbox", "select", "json"]

RAW_FIELD = "__json__"
"""The name of the single JSON text area used when the schema has no mappable properties."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One control of a resume form."""

    name: str
    label: str
    control: Control
    required: bool
    options: tuple[str, ...] = ()
    """For a select: the JSON text of each allowed value."""
    default: str = ""
    """The control's initial text (``"true"`` checks a checkbox)."""
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FormError:
    """A validation error to show: under its field, or above the form when ``field`` is None."""

    field: str | None
    message: str


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` and unwrap ``Optional[X]`` (``anyOf`` with null) and ``allOf``."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _resolve(target, root) if isinstance(target, Mapping) else {}
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            real = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            if len(real) == 1:
                return {**_resolve(real[0], root), **{k: v for k, v in schema.items() if k != key}}
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        return {**_resolve(all_of[0], root), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _control(prop: Mapping[str, Any]) -> tuple[Control, tuple[str, ...]]:
    if "enum" in prop and isinstance(prop["enum"], list):
        return "select", tuple(json.dumps(value) for value in prop["enum"])
    if "const" in prop:
        return "select", (json.dumps(prop["const"]),)
    kind = prop.get("type")
    if kind == "boolean":
        return "checkbox", ()
    if kind == "integer":
        return "integer", ()
    if kind == "number":
        return "number", ()
    if kind == "string":
        return "text", ()
    return "json", ()


def _default_text(prop: Mapping[str, Any], control: Control) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    if control == "checkbox":
        return "true" if value is True else ""
    if control == "select" or control == "json":
        return json.dumps(value)
    return "" if value is None else str(value)


def fields_of(schema: JSON) -> list[Field] | None:
    """The form's controls, or ``None`` when the schema needs a single JSON text area."""
    if not isinstance(schema, Mapping):
        return None
    root = _resolve(schema, schema)
    properties = root.get("properties")
    if root.get("type") != "object" or not isinstance(properties, Mapping) or not properties:
        return None
    required = set(root.get("required") or ())
    found = []
    for name, raw in properties.items():
        prop = _resolve(raw, schema) if isinstance(raw, Mapping) else {}
        control, options = _control(prop)
        found.append(
            Field(
                name=str(name),
                label=str(prop.get("title") or name),
                control=control,
                required=name in required,
                options=options,
                default=_default_text(prop, control),
                description=str(prop.get("description") or ""),
            )
        )
    return found


def _number(text: str, control: Control) -> JSON:
    try:
        return int(text) if control == "integer" else float(text)
    except ValueError:
        if control == "number":
            try:
                return int(text)
            except ValueError:
                pass
        return text  # left for the suspend's validation to name


def _value(field: Field, text: str | None) -> tuple[bool, JSON]:
    """``(present, value)`` of one control; raises ``ValueError`` for unreadable JSON."""
    if field.control == "checkbox":
        return True, text is not None
    text = (text or "").strip() if field.control != "text" else (text or "")
    if not text and (field.control != "text" or not field.required):
        return False, None
    if field.control in ("integer", "number"):
        return True, _number(text, field.control)
    if field.control in ("select", "json"):
        return True, json.loads(text)
    return True, text


def form_data(
    fields: Sequence[Field] | None, submitted: Mapping[str, str]
) -> tuple[JSON, list[FormError]]:
    """The resume data a submitted form means, or the fields whose text is not readable."""
    if fields is None:
        text = submitted.get(RAW_FIELD, "").strip()
        try:
            return (json.loads(text) if text else {}), []
        except ValueError as exc:
            return None, [FormError(field=RAW_FIELD, message=f"not valid JSON: {exc}")]
    data: dict[str, JSON] = {}
    errors = []
    for field in fields:
        try:
            present, value = _value(field, submitted.get(field.name))
        except ValueError as exc:
            errors.append(FormError(field=field.name, message=f"not valid JSON: {exc}"))
            continue
        if present:
            data[field.name] = value
    return data, errors


def validation_errors(errors: Sequence[Mapping[str, Any]], names: set[str]) -> list[FormError]:
    """Pydantic- or jsonschema-style errors (``loc``, ``msg``) placed under the fields they name."""
    placed = []
    for error in errors:
        loc = [str(part) for part in error.get("loc") or () if part != "body"]
        message = str(error.get("msg", error))
        if loc and loc[0] in names:
            inner = ".".join(loc[1:])
            placed.append(
                FormError(field=loc[0], message=f"{inner}: {message}" if inner else message)
            )
        else:
            where = ".".join(loc)
            placed.append(
                FormError(field=None, message=f"{where}: {message}" if where else message)
            )
    return placed


def _control_html(field: Field, prefix: str, text: str, invalid: bool) -> str:
    ident = escape(f"{prefix}-{field.name}")
    common = f'id="{ident}" name="{escape(field.name)}"' + (
        ' aria-invalid="true"' if invalid else ""
    )
    if field.control == "checkbox":
        checked = " checked" if text == "true" else ""
        return f'<input type="checkbox" {common} value="true"{checked}>'
    if field.control == "select":
        blank = "" if field.required and field.default else '<option value="">(none)</option>'
        options = "".join(
            f'<option value="{escape(option)}"{" selected" if option == text else ""}>'
            f"{escape(_option_label(option))}</option>"
            for option in field.options
        )
        return f"<select {common}>{blank}{options}</select>"
    if field.control == "json":
        return f'<textarea {common} rows="3" spellcheck="false">{escape(text)}</textarea>'
    mode = {"integer": ' inputmode="numeric"', "number": ' inputmode="decimal"'}.get(
        field.control, ""
    )
    return f'<input type="text" {common}{mode} value="{escape(text)}" autocomplete="off">'


def _option_label(option: str) -> str:
    value = json.loads(option)
    return value if isinstance(value, str) else option


def _messages_html(messages: Sequence[str]) -> str:
    return "".join(f'<p class="error">{escape(message)}</p>' for message in messages)


def _errors_html(messages: Sequence[str]) -> str:
    if not messages:
        return ""
    items = "".join(f"<li>{escape(message)}</li>" for message in messages)
    return f'<ul class="errors" role="alert">{items}</ul>'


def render_form(
    *,
    action: str,
    reason: str,
    schema: JSON,
    prefix: str,
    values: Mapping[str, str] | None = None,
    errors: Sequence[FormError] = (),
) -> str:
    """A resume form for the suspend ``reason``, refilled with ``values`` and showing ``errors``."""
    fields = fields_of(schema)
    by_field: dict[str | None, list[str]] = {}
    for error in errors:
        by_field.setdefault(error.field, []).append(error.message)
    parts = [
        f'<form class="resume-form" method="post" action="{escape(action)}" novalidate'
        f' data-reason="{escape(reason)}">',
        f"<h3>Resume <q>{escape(reason)}</q></h3>",
        f'<input type="hidden" name="reason" value="{escape(reason)}">',
        _errors_html(by_field.pop(None, [])),
    ]
    if fields is None:
        text = values.get(RAW_FIELD, "{}") if values is not None else "{}"
        fields = [Field(name=RAW_FIELD, label="Resume data (JSON)", control="json", required=True)]
        values = {RAW_FIELD: text}
    for field in fields:
        text = field.default if values is None else values.get(field.name, "")
        if values is not None and field.control == "checkbox":
            text = "true" if field.name in values else ""
        messages = by_field.get(field.name, [])
        mark = ' <span class="required" title="required">*</span>' if field.required else ""
        hint = f'<p class="hint">{escape(field.description)}</p>' if field.description else ""
        parts.append(
            f'<div class="field{" invalid" if messages else ""}">'
            f'<label for="{escape(f"{prefix}-{field.name}")}">{escape(field.label)}{mark}</label>'
            f"{_control_html(field, prefix, text, bool(messages))}{hint}"
            f"{_messages_html(messages)}</div>"
        )
    parts.append('<button type="submit">Resume</button></form>')
    return "".join(parts)
