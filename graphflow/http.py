"""HTTP wiring: Starlette endpoints for starting, inspecting, resuming and cancelling runs.

```python
import graphflow as gf
from graphflow.http import create_app

engine = gf.Engine(store="sqlite:///graphflow.db")
app = create_app(engine)               # its lifespan opens and closes the engine
```

Routes of ``create_app``:

| route | answer |
|---|---|
| ``POST /workflows/{name}/start`` | 202 ``{"run_id": ...}`` |
| ``POST /workflows/{name}/run?timeout=30`` | 200 ``RunStatus`` when terminal or suspended |
| ``GET /workflows`` | 200 ``[{"name", "kind", "description", "input_schema"}]`` |
| ``GET /runs?workflow=&state=&limit=&cursor=`` | 200 ``{"runs": [...], "next_cursor": ...}`` |
| ``GET /runs/{run_id}`` | 200 ``RunStatus`` |
| ``GET /runs/{run_id}/graph?format=dot|mermaid|svg`` | the run graph as text (or SVG) |
| ``GET /runs/{run_id}/events`` | server-sent events of step and run changes until the run ends |
| ``POST /runs/{run_id}/resume?reason=...`` | 202 ``{"run_id": ...}`` |
| ``POST /runs/{run_id}/cancel`` | 202 ``{"run_id": ...}`` |
| ``POST /runs/{run_id}/messages/{topic}`` | 202 ``{"run_id": ...}`` (the body: the message) |
| ``GET /runs/{run_id}/events/{key}?timeout=0`` | 200 ``{"run_id", "key", "value"}`` |
| ``GET /ui``, ``GET /ui/runs/{run_id}`` | the web page, with ``create_app(engine, ui=True)`` |

The request body is the workflow input (or the resume data) as JSON; an empty body means ``{}``.
``run`` answers 202 ``{"run_id": ...}`` when the timeout passes first. ``start`` and ``run`` take an
optional ``?run_id=`` that makes them idempotent. Every error answers JSON ``{"detail": message}``:
404 unknown workflow, run or route, 405 method not allowed, 409 run id conflict or invalid state,
413 body over ``max_body`` bytes, 422 invalid input or query (with ``"errors"``: pydantic's list),
500 server error, 503 engine not open.
Each endpoint factory also works inside FastAPI (``app.add_route(path, endpoint, methods=[...])``)
and never opens the engine itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from ._http_base import (
    DEFAULT_MAX_BODY,
    ERROR_HANDLERS,
    Auth,
    Endpoint,
    Handler,
    detail,
    graph_format,
    guard,
    int_param,
    path_param,
    query_refusal,
    read_json,
    run_id_param,
    timeout_param,
)
from ._types import JSON, RUN_STATES, SETTLED
from .engine import Engine
from .errors import GraphflowError
from .graph.render import to_dot, to_mermaid, to_svg
from .runtime.status import RunStatus
from .ui.routes import ui_routes

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import BaseRoute, Route
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "graphflow.http needs Starlette: install it with pip install 'graphflow[http]'"
    ) from _exc

__all__ = (
    "DEFAULT_MAX_BODY",
    "Auth",
    "Endpoint",
    "create_app",
    "run_events",
    "run_graph",
    "schedules",
    "workflow_cancel",
    "workflow_resume",
    "workflow_run",
    "workflow_start",
    "workflow_status",
    "workflows_list",
    "runs_list",
    "run_message",
    "run_event",
)

_KEEPALIVE = 15.0
_MEDIA_TYPES: dict[str, str] = {
    "dot": "text/vnd.graphviz; charset=utf-8",
    "mermaid": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
}


# --- handlers -------------------------------------------------------------------------------------


def _status_json(status: RunStatus, code: int = 200) -> JSONResponse:
    return JSONResponse(status.model_dump(mode="json"), status_code=code)


def _accepted(run_id: str) -> JSONResponse:
    return JSONResponse({"run_id": run_id}, status_code=202)


def _workflow_name(name: str | None, request: Request) -> str:
    return name if name is not None else path_param(request, "name")


def _start_handler(engine: Engine, name: str | None, max_body: int) -> Handler:
    async def handle(request: Request) -> Response:
        data = await read_json(request, max_body)
        run_id = run_id_param(request)
        started = await engine.start(_workflow_name(name, request), data, run_id=run_id)
        return _accepted(started)

    return handle


async def _settle(engine: Engine, run_id: str, wait_for: float) -> RunStatus | None:
    """The run's status once it is terminal or suspended, or ``None`` after ``wait_for`` seconds."""
    with anyio.move_on_after(wait_for):
        async with aclosing(engine.watch(run_id, steps=False)) as statuses:
            async for status in statuses:
                if status.state in SETTLED:
                    return status
    return None


def _run_handler(engine: Engine, name: str | None, max_body: int) -> Handler:
    async def handle(request: Request) -> Response:
        data = await read_json(request, max_body)
        run_id = run_id_param(request)
        timeout = timeout_param(request)
        started = await engine.start(_workflow_name(name, request), data, run_id=run_id)
        status = await _settle(engine, started, timeout)
        return _accepted(started) if status is None else _status_json(status)

    return handle


def _runs_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        query = request.query_params
        state = query.get("state") or None
        if state is not None and state not in RUN_STATES:
            raise query_refusal("state", state, f"one of {', '.join(RUN_STATES)}")
        runs = await engine.list_runs(
            workflow=query.get("workflow") or None,
            state=state,
            limit=int_param(request, "limit", 100, low=1, high=1000),
            cursor=query.get("cursor") or None,
        )
        listed = [run.model_dump(mode="json", exclude={"steps"}) for run in runs]
        return JSONResponse({"runs": listed, "next_cursor": runs.next_cursor})

    return handle


def _workflows_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        registry = engine.registry
        found = [registry.get_workflow(name) for name in sorted(registry.workflow_names)]
        return JSONResponse(
            [
                {
                    "name": definition.name,
                    "kind": definition.kind,
                    "description": definition.description,
                    "input_schema": definition.input_schema(),
                }
                for definition in found
            ]
        )

    return handle


def _status_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        return _status_json(await engine.status(path_param(request, "run_id")))

    return handle


def _schedules_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        found = await engine.list_schedules()
        return JSONResponse([info.model_dump(mode="json") for info in found])

    return handle


def _resume_handler(engine: Engine, max_body: int) -> Handler:
    async def handle(request: Request) -> Response:
        run_id = path_param(request, "run_id")
        data = await read_json(request, max_body)
        await engine.resume(run_id, data, reason=request.query_params.get("reason"))
        return _accepted(run_id)

    return handle


def _message_handler(engine: Engine, max_body: int) -> Handler:
    async def handle(request: Request) -> Response:
        run_id = path_param(request, "run_id")
        data = await read_json(request, max_body, empty=None)
        await engine.send(run_id, path_param(request, "topic"), data)
        return _accepted(run_id)

    return handle


def _event_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        run_id, key = path_param(request, "run_id"), path_param(request, "key")
        wait = timeout_param(request, default=0.0)
        value = await engine.get_event(run_id, key, timeout=wait)
        return JSONResponse({"run_id": run_id, "key": key, "value": value})

    return handle


def _cancel_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        run_id = path_param(request, "run_id")
        await engine.cancel(run_id)
        return _accepted(run_id)

    return handle


def _graph_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        fmt = graph_format(request)
        graph = await engine.run_graph(path_param(request, "run_id"))
        if fmt == "dot":
            text = to_dot(graph)
        elif fmt == "mermaid":
            text = to_mermaid(graph)
        else:
            try:
                text = await anyio.to_thread.run_sync(to_svg, graph)
            except GraphflowError as exc:
                return detail(501, f"cannot render SVG on this server: {exc}")
        return Response(text, media_type=_MEDIA_TYPES[fmt])

    return handle


def _sse(event_id: int, event: str, payload: JSON) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(payload)}\n\n"


class _EventStream(StreamingResponse):
    """Server-sent events of a run until it ends: ``step`` and ``run`` events per change.

    A keep-alive comment follows ``_KEEPALIVE`` quiet seconds. ``engine.watch`` runs in a task of
    its own feeding a stream, so waiting for the next status can time out (for the keep-alive)
    without cancelling the watch.
    """

    def __init__(self, engine: Engine, run_id: str) -> None:
        self._engine = engine
        self._run_id = run_id
        self._send, self._receive = anyio.create_memory_object_stream[RunStatus](1)
        super().__init__(
            self._events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            try:
                await super().__call__(scope, receive, send)
            finally:
                tg.cancel_scope.cancel()

    async def _watch(self) -> None:
        async with self._send:
            try:
                async for status in self._engine.watch(self._run_id):
                    await self._send.send(status)
            except GraphflowError:
                return  # the engine closed (server shutting down) or the run is gone

    async def _events(self) -> AsyncIterator[str]:
        steps_seen: dict[str, tuple[str, int]] = {}
        run_seen: tuple[str, Any, Any] | None = None
        event_id = 0
        async with self._receive:
            while True:
                status: RunStatus | None = None
                with anyio.move_on_after(_KEEPALIVE):
                    try:
                        status = await self._receive.receive()
                    except anyio.EndOfStream:
                        return
                if status is None:
                    yield ": keep-alive\n\n"
                    continue
                for step in status.steps:
                    key = (step.state, step.attempts)
                    if steps_seen.get(step.name) != key:
                        steps_seen[step.name] = key
                        event_id += 1
                        payload = {"run_id": status.run_id, **step.model_dump(mode="json")}
                        yield _sse(event_id, "step", payload)
                run_key = (status.state, status.wake_at, status.suspend_reason)
                if run_key != run_seen:
                    run_seen = run_key
                    event_id += 1
                    yield _sse(event_id, "run", status.model_dump(mode="json", exclude={"steps"}))


def _events_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        run_id = path_param(request, "run_id")
        await engine.status(run_id)  # an unknown run answers 404 before the stream starts
        return _EventStream(engine, run_id)

    return handle


# --- public endpoint factories --------------------------------------------------------------------


def workflow_start(
    engine: Engine, name: str, *, auth: Auth | None = None, max_body: int = DEFAULT_MAX_BODY
) -> Endpoint:
    """An endpoint that starts a run of workflow ``name`` with the JSON body as input.

    Answers 202 ``{"run_id": ...}``; 422 for invalid input, 404 for an unknown workflow, 409 when
    ``?run_id=`` exists with another input.
    """
    return guard(engine, _start_handler(engine, name, max_body), auth)


def workflow_run(
    engine: Engine, name: str, *, auth: Auth | None = None, max_body: int = DEFAULT_MAX_BODY
) -> Endpoint:
    """An endpoint that starts a run of ``name`` and answers once it is terminal or suspended.

    Answers 200 with the ``RunStatus`` (a failed run too: look at ``state``), or 202
    ``{"run_id": ...}`` when ``?timeout=`` seconds (default 30) pass first.
    """
    return guard(engine, _run_handler(engine, name, max_body), auth)


def workflow_status(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint answering the ``RunStatus`` of path parameter ``run_id`` (404 if unknown)."""
    return guard(engine, _status_handler(engine), auth)


def workflow_resume(
    engine: Engine, *, auth: Auth | None = None, max_body: int = DEFAULT_MAX_BODY
) -> Endpoint:
    """An endpoint resuming the suspended run ``run_id`` with the JSON body (``?reason=`` optional).

    Answers 202 ``{"run_id": ...}``; 409 when the run is not suspended, 422 when the suspend's
    schema refuses the data (the run stays suspended).
    """
    return guard(engine, _resume_handler(engine, max_body), auth)


def workflow_cancel(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint cancelling run ``run_id``: 202 ``{"run_id": ...}``, 409 if already finished."""
    return guard(engine, _cancel_handler(engine), auth)


def run_graph(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint answering the run graph of ``run_id`` as DOT, Mermaid or SVG (``?format=``).

    SVG needs the Graphviz ``dot`` binary on the server; without it the answer is 501.
    """
    return guard(engine, _graph_handler(engine), auth)


def schedules(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint answering every schedule as a JSON list of ``ScheduleInfo``."""
    return guard(engine, _schedules_handler(engine), auth)


def run_events(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint streaming server-sent events for run ``run_id`` until it ends.

    Each event's data is JSON: ``event: step`` carries a ``StepStatus`` (plus ``run_id``) whenever a
    step's state or attempt count changes; ``event: run`` carries the ``RunStatus`` without steps
    whenever the run's state changes. The stream closes after the terminal ``run`` event.
    """
    return guard(engine, _events_handler(engine), auth)


def run_message(
    engine: Engine, *, auth: Auth | None = None, max_body: int = DEFAULT_MAX_BODY
) -> Endpoint:
    """An endpoint sending the JSON body to run ``run_id`` on ``topic`` (``engine.send``).

    Answers 202 ``{"run_id": ...}``; 404 unknown run, 409 finished run, 422 when the waiting
    receive's schema refuses the data. An empty body sends ``null``.
    """
    return guard(engine, _message_handler(engine, max_body), auth)


def run_event(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint answering ``{"run_id", "key", "value"}``: run ``run_id``'s event ``key``.

    ``?timeout=`` seconds (default 0) waits for the key to be set; unset, ``value`` is ``null``.
    """
    return guard(engine, _event_handler(engine), auth)


def runs_list(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint listing runs newest first: ``{"runs": [RunStatus...], "next_cursor": ...}``.

    Query: ``workflow``, ``state``, ``limit`` (1 to 1000, default 100) and ``cursor`` (the
    ``next_cursor`` of the previous page; ``null`` on the last page). Runs come without steps.
    """
    return guard(engine, _runs_handler(engine), auth)


def workflows_list(engine: Engine, *, auth: Auth | None = None) -> Endpoint:
    """An endpoint listing the registered workflows: name, kind, description, input JSON Schema."""
    return guard(engine, _workflows_handler(engine), auth)


def create_app(
    engine: Engine,
    auth: Auth | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    *,
    ui: bool = False,
) -> Starlette:
    """A Starlette app with every graphflow route, owning the engine's lifecycle.

    Its lifespan opens ``engine`` unless it is already open (then the opener closes it). Mounted
    inside another app, the outer app's lifespan must open the engine, since Starlette does not run
    the lifespans of mounted apps.

    Args:
        engine: the engine the routes drive (a worker, or a client with ``worker=False``).
        auth: called with every request; return ``None`` to allow it or a ``Response`` to refuse.
        max_body: the largest accepted request body in bytes; larger ones answer 413.
        ui: also serve the web page under ``/ui`` (runs list and live run pages), behind the
            same ``auth``.
    """

    def guarded(handler: Handler) -> Endpoint:
        return guard(engine, handler, auth)

    post, get = ["POST"], ["GET"]
    routes: list[BaseRoute] = [
        Route(
            "/workflows/{name}/start", guarded(_start_handler(engine, None, max_body)), methods=post
        ),
        Route("/workflows/{name}/run", guarded(_run_handler(engine, None, max_body)), methods=post),
        Route("/workflows", guarded(_workflows_handler(engine)), methods=get),
        Route("/runs", guarded(_runs_handler(engine)), methods=get),
        Route("/runs/{run_id}", guarded(_status_handler(engine)), methods=get),
        Route("/runs/{run_id}/graph", guarded(_graph_handler(engine)), methods=get),
        Route("/runs/{run_id}/events", guarded(_events_handler(engine)), methods=get),
        Route("/runs/{run_id}/resume", guarded(_resume_handler(engine, max_body)), methods=post),
        Route("/runs/{run_id}/cancel", guarded(_cancel_handler(engine)), methods=post),
        Route(
            "/runs/{run_id}/messages/{topic}",
            guarded(_message_handler(engine, max_body)),
            methods=post,
        ),
        Route("/runs/{run_id}/events/{key}", guarded(_event_handler(engine)), methods=get),
        Route("/schedules", guarded(_schedules_handler(engine)), methods=get),
    ]
    if ui:
        routes += ui_routes(engine, guarded, max_body=max_body)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if engine.is_open:
            yield
            return
        async with engine:
            yield

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=ERROR_HANDLERS)
