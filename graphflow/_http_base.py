"""The plumbing under ``graphflow.http``: the guard, JSON errors, bodies and query parameters.

Every endpoint goes through ``guard`` (auth, engine open, graphflow errors as HTTP answers), and
every error answers JSON ``{"detail": message}`` (plus ``"errors"`` on a 422): those of the
handlers, and Starlette's own 404, 405 and 500 through ``ERROR_HANDLERS``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._types import JSON
from .errors import (
    GraphflowError,
    InputValidationError,
    InvalidStateError,
    NotFoundError,
    RunConflictError,
)

try:
    from pydantic_core import to_jsonable_python
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "graphflow.http needs Starlette: install it with pip install 'graphflow[http]'"
    ) from _exc

if TYPE_CHECKING:
    from .engine import Engine

__all__ = (
    "DEFAULT_MAX_BODY",
    "ERROR_HANDLERS",
    "Auth",
    "Endpoint",
    "GraphFormat",
    "Handler",
    "Refusal",
    "detail",
    "graph_format",
    "guard",
    "int_param",
    "path_param",
    "query_refusal",
    "read_json",
    "run_id_param",
    "timeout_param",
)

Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]
"""A Starlette request/response endpoint."""

Handler: TypeAlias = Callable[[Request], Awaitable[Response]]
"""An endpoint before ``guard`` wraps it."""

Auth: TypeAlias = Callable[[Request], Response | Awaitable[Response | None] | None]
"""A hook called with every request: ``None`` allows it, a ``Response`` (401, 403...) refuses it."""

GraphFormat = Literal["dot", "mermaid", "svg"]

DEFAULT_MAX_BODY = 1_000_000
"""The default limit on request bodies, in bytes (larger bodies answer 413)."""

DEFAULT_RUN_TIMEOUT = 30.0
"""Seconds ``POST /workflows/{name}/run`` waits for the run unless ``?timeout=`` says otherwise."""


_EMPTY: Any = object()


class Refusal(Exception):
    """Carries an error response out of a handler."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def detail(status_code: int, message: str, errors: list[Any] | None = None) -> JSONResponse:
    """An error answer: ``{"detail": message}`` (and ``"errors"``)."""
    body: dict[str, Any] = {"detail": message}
    if errors is not None:
        body["errors"] = to_jsonable_python(errors, fallback=str)
    return JSONResponse(body, status_code=status_code)


def _error_response(exc: GraphflowError) -> Response | None:
    """The HTTP answer for a graphflow error, or ``None`` for a server error (500)."""
    if isinstance(exc, InputValidationError):
        errors: list[Any] = getattr(exc, "errors", [])
        return detail(422, str(exc), errors)
    if isinstance(exc, NotFoundError):
        return detail(404, str(exc))
    if isinstance(exc, RunConflictError | InvalidStateError):
        return detail(409, str(exc))
    return None


# --- Starlette's own errors, as JSON --------------------------------------------------------------


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.url.path!r}: see graphflow.http for the routes"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed on {request.url.path!r}: use {allowed}"
    else:
        message = exc.detail
    response = detail(exc.status_code, message)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    return detail(500, f"internal server error: {type(exc).__name__} (see the server's log)")


ERROR_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: _http_exception,
    500: _server_error,
}
"""``Starlette(exception_handlers=...)``: 404, 405 and 500 answer JSON like every other error."""


# --- request parsing ------------------------------------------------------------------------------


async def read_json(request: Request, max_body: int, *, empty: JSON = _EMPTY) -> JSON:
    """The request body as JSON (``empty``, default ``{}``, when there is none).

    Refuses bodies over ``max_body`` bytes (413) and bodies that are not JSON (422).
    """
    too_large = detail(
        413,
        f"request body is larger than {max_body} bytes: send less data, or raise create_app's"
        " max_body (graphflow serve --max-body)",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        raise Refusal(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_body:
            raise Refusal(too_large)
    if not body.strip():
        return {} if empty is _EMPTY else empty
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise Refusal(
            detail(
                422,
                f"request body is not valid JSON: {exc}. Send a JSON document"
                " (Content-Type: application/json)",
                [{"loc": ["body"], "msg": str(exc), "type": "json_invalid"}],
            )
        ) from exc


def query_refusal(name: str, value: str, expected: str) -> Refusal:
    """A 422 for query parameter ``name``."""
    return Refusal(
        detail(
            422,
            f"invalid query parameter {name}={value!r}: expected {expected}",
            [{"loc": ["query", name], "msg": f"expected {expected}", "type": "value_error"}],
        )
    )


def timeout_param(request: Request, default: float = DEFAULT_RUN_TIMEOUT) -> float:
    """``?timeout=`` seconds (``default`` when absent), at most a day."""
    raw = request.query_params.get("timeout")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise query_refusal("timeout", raw, "a number of seconds between 0 and 86400")
    return value


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """Integer query parameter ``name`` between ``low`` and ``high``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise query_refusal(name, raw, f"an integer from {low} to {high}")
    return int(raw)


def run_id_param(request: Request) -> str | None:
    """``?run_id=``: makes ``start`` and ``run`` idempotent."""
    raw = request.query_params.get("run_id")
    if raw is not None and not raw.strip():
        raise query_refusal("run_id", raw, "a non-empty run id")
    return raw


def graph_format(request: Request) -> GraphFormat:
    """``?format=`` of a run graph (default ``dot``)."""
    raw = request.query_params.get("format", "dot")
    if raw == "dot":
        return "dot"
    if raw == "mermaid":
        return "mermaid"
    if raw == "svg":
        return "svg"
    raise query_refusal("format", raw, "one of dot, mermaid, svg")


def path_param(request: Request, key: str) -> str:
    """A path parameter as text."""
    return str(request.path_params[key])


# --- the guard every endpoint goes through --------------------------------------------------------


def guard(engine: Engine, handler: Handler, auth: Auth | None) -> Endpoint:
    """Apply ``auth``, check the engine is open and turn graphflow errors into HTTP answers."""

    async def endpoint(request: Request) -> Response:
        if auth is not None:
            refused = auth(request)
            if inspect.isawaitable(refused):
                refused = await refused
            if refused is not None:
                return refused
        if not engine.is_open:
            return detail(
                503,
                "the graphflow engine is not open: serve create_app(engine) (its lifespan opens"
                " it) or open it in your app's lifespan with `async with engine:`",
            )
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response
        except GraphflowError as exc:
            response = _error_response(exc)
            if response is None:
                raise
            return response

    return endpoint
