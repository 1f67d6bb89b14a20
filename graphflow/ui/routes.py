"""The web page's Starlette routes: runs list, run page, live updates, resume, cancel, fork.

``graphflow.http.create_app(engine, ui=True)`` mounts them behind the same guard as the API
(``auth``, engine open). Forms post back here and answer a redirect (303) on success or the page
again with the problem shown (409, 422); a post from another site is refused (403).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from importlib import resources
from typing import TypeAlias
from urllib.parse import parse_qsl, urlsplit

import anyio

from .._types import RUN_STATES
from ..engine import Engine
from ..errors import (
    GraphflowError,
    InputValidationError,
    InvalidStateError,
    RunNotFoundError,
    StepNotFoundError,
    UnknownWorkflowError,
)
from ..graph.render import STATE_COLOURS
from ..runtime.status import RunStatus
from .forms import fields_of, form_data, validation_errors
from .pages import (
    FormState,
    Section,
    Suspend,
    not_found_page,
    run_page,
    run_sections,
    run_url,
    runs_page,
)

try:
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import BaseRoute, Route
    from starlette.types import Receive, Scope, Send
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "graphflow's web page needs Starlette: install it with pip install 'graphflow[http]'"
    ) from _exc

__all__ = ("Guard", "Handler", "ui_routes")

Handler: TypeAlias = Callable[[Request], Awaitable[Response]]
Guard: TypeAlias = Callable[[Handler], Handler]
"""Wraps every handler: ``auth``, and a 503 while the engine is closed (``create_app``'s guard)."""

PAGE_SIZE = 50
_KEEPALIVE = 15.0
_DONE_NOTICES = {
    "resumed": "Resumed: the run continues.",
    "cancelled": "Cancelled: nothing of this run runs any more.",
    "forked": "Forked: this new run copied the steps before the one you chose and runs the rest.",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_STATIC_TYPES = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code, headers=_HEADERS)


def _same_site(request: Request) -> bool:
    """Whether a form post comes from this site (browsers always send ``Origin`` on a post)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def _form(request: Request, max_body: int) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_body:
            raise _TooLarge
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class _TooLarge(Exception):
    """A form body over ``max_body`` bytes."""


# --- reading a run for the page -------------------------------------------------------------------


async def _suspends(engine: Engine, run_id: str) -> list[Suspend]:
    """The suspends the run waits on, with their stored JSON Schemas."""
    waiting = []
    for step in await engine.store.load_steps(run_id):
        if step.kind == "suspend" and step.state == "suspended":
            detail = json.loads(step.detail or "{}")
            waiting.append(Suspend(reason=step.name, schema=detail.get("schema")))
    return waiting


class _View:
    """Renders one run's page and sections for one engine and URL root."""

    def __init__(self, engine: Engine, root: str) -> None:
        self.engine = engine
        self.root = root

    async def sections(
        self, status: RunStatus, form_state: FormState | None = None
    ) -> dict[str, Section]:
        graph = await self.engine.run_graph(status.run_id)
        suspends = await _suspends(self.engine, status.run_id)
        return run_sections(
            status,
            graph,
            suspends,
            root=self.root,
            form_state=form_state,
        )

    async def page(
        self,
        run_id: str,
        *,
        status_code: int = 200,
        notice: str | None = None,
        form_state: FormState | None = None,
    ) -> Response:
        try:
            status = await self.engine.status(run_id)
            sections = await self.sections(status, form_state)
        except RunNotFoundError:
            return _html(not_found_page(run_id, root=self.root), 404)
        return _html(run_page(status, sections, root=self.root, notice=notice), status_code)


# --- live updates ---------------------------------------------------------------------------------


class _Updates(Response):
    """Server-sent ``update`` events, each with the run page's sections that changed."""

    def __init__(self, view: _View, run_id: str) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.view = view
        self.run_id = run_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lock = anyio.Lock()

        async def send_body(body: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": body, "more_body": True})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def keep_alive() -> None:  # proxies drop connections that stay silent
            while True:
                await anyio.sleep(_KEEPALIVE)
                await send_body(b": keep-alive\n\n")

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as tg:
            tg.start_soon(until_disconnect)
            tg.start_soon(keep_alive)
            try:
                await self._stream(send_body)
            except (GraphflowError, OSError):
                pass  # the engine closed (the server stops) or the run is gone: end the stream
            tg.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send_body: Callable[[bytes], Awaitable[None]]) -> None:
        sent: dict[str, str] = {}
        async with aclosing(self.view.engine.watch(self.run_id)) as changes:
            async for status in changes:
                sections = await self.view.sections(status)
                changed = {
                    name: {"key": section.key, "html": section.html}
                    for name, section in sections.items()
                    if sent.get(name) != section.key
                }
                sent.update({name: section.key for name, section in sections.items()})
                payload = {"state": status.state, "done": status.done, "sections": changed}
                await send_body(f"event: update\ndata: {json.dumps(payload)}\n\n".encode())


# --- handlers -------------------------------------------------------------------------------------


def _runs_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        query = request.query_params
        workflow = query.get("workflow", "").strip()
        state = query.get("state", "")
        state = state if state in RUN_STATES else ""
        cursor = query.get("cursor") or None
        try:
            runs = await engine.list_runs(
                workflow=workflow or None, state=state or None, limit=PAGE_SIZE, cursor=cursor
            )
        except InputValidationError:  # a hand-made cursor: show the first page instead
            cursor = None
            runs = await engine.list_runs(
                workflow=workflow or None, state=state or None, limit=PAGE_SIZE
            )
        filters = {key: value for key, value in (("workflow", workflow), ("state", state)) if value}
        newest = filters if cursor is not None else None
        older = None if runs.next_cursor is None else {**filters, "cursor": runs.next_cursor}
        text = runs_page(
            runs,
            root=_root(request),
            workflow=workflow,
            state=state,
            workflows=engine.registry.workflow_names,
            newest=newest,
            older=older,
        )
        return _html(text)

    return handle


def _run_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        done = request.query_params.get("done", "")
        view = _View(engine, _root(request))
        return await view.page(request.path_params["run_id"], notice=_DONE_NOTICES.get(done))

    return handle


def _events_handler(engine: Engine) -> Handler:
    async def handle(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        view = _View(engine, _root(request))
        try:
            await engine.status(run_id)
        except RunNotFoundError:
            return _html(not_found_page(run_id, root=view.root), 404)
        return _Updates(view, run_id)

    return handle


def _posting(engine: Engine, max_body: int, act: _Action) -> Handler:
    """A form-post handler: same-site check, the body read, then ``act``."""

    async def handle(request: Request) -> Response:
        view = _View(engine, _root(request))
        run_id = request.path_params["run_id"]
        if not _same_site(request):
            return _html("<h1>Refused</h1><p>This form was posted from another site.</p>", 403)
        try:
            form = await _form(request, max_body)
        except _TooLarge:
            return await view.page(run_id, status_code=413, notice="The form is too large.")
        try:
            return await act(view, run_id, form)
        except RunNotFoundError:
            return _html(not_found_page(run_id, root=view.root), 404)
        except InvalidStateError as exc:
            return await view.page(run_id, status_code=409, notice=str(exc))

    return handle


_Action: TypeAlias = Callable[["_View", str, dict[str, str]], Awaitable[Response]]


def _redirect(view: _View, run_id: str, done: str) -> Response:
    return RedirectResponse(f"{run_url(view.root, run_id)}?done={done}", status_code=303)


async def _resume(view: _View, run_id: str, form: dict[str, str]) -> Response:
    reason = form.get("reason", "")
    suspend = next((s for s in await _suspends(view.engine, run_id) if s.reason == reason), None)
    if suspend is None:
        notice = f"This run does not wait on {reason!r} any more."
        return await view.page(run_id, status_code=409, notice=notice)
    fields = fields_of(suspend.schema)
    data, errors = form_data(fields, form)
    if not errors:
        try:
            await view.engine.resume(run_id, data, reason=reason)
        except InputValidationError as exc:
            names = {field.name for field in fields or ()}
            errors = validation_errors(exc.errors, names)
        else:
            return _redirect(view, run_id, "resumed")
    state = FormState(reason=reason, values=form, errors=errors)
    notice = "The resume data is not valid: see the errors below."
    return await view.page(run_id, status_code=422, notice=notice, form_state=state)


async def _cancel(view: _View, run_id: str, form: dict[str, str]) -> Response:
    await view.engine.cancel(run_id)
    return _redirect(view, run_id, "cancelled")


async def _fork(view: _View, run_id: str, form: dict[str, str]) -> Response:
    try:
        forked = await view.engine.fork(run_id, from_step=form.get("from_step", ""))
    except (StepNotFoundError, UnknownWorkflowError) as exc:
        return await view.page(run_id, status_code=422, notice=str(exc))
    return _redirect(view, forked, "forked")


def _stylesheet() -> str:
    """The page's CSS: the static sheet plus a rule per state, from the renderers' colours."""
    base = resources.files(__package__).joinpath("static/ui.css").read_text("utf-8")
    rules = [
        f".state-{state}{{background:{c.fill};border-color:{c.border};color:{c.font}}}"
        for state, c in STATE_COLOURS.items()
    ]
    return base + "\n" + "\n".join(rules) + "\n"


def _static_handler() -> Handler:
    files = {
        "ui.css": _stylesheet(),
        "ui.js": resources.files(__package__).joinpath("static/ui.js").read_text("utf-8"),
    }

    async def handle(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return _html("<h1>Not found</h1>", 404)
        return Response(
            files[name],
            media_type=_STATIC_TYPES[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return handle


def ui_routes(engine: Engine, guard: Guard, *, max_body: int) -> list[BaseRoute]:
    """The page's routes under ``/ui``, each wrapped in ``guard``."""
    post = ["POST"]
    routes: list[BaseRoute] = [
        Route("/ui", guard(_runs_handler(engine)), methods=["GET"]),
        Route("/ui/static/{name}", guard(_static_handler()), methods=["GET"]),
        Route("/ui/runs/{run_id}", guard(_run_handler(engine)), methods=["GET"]),
        Route("/ui/runs/{run_id}/events", guard(_events_handler(engine)), methods=["GET"]),
        Route("/ui/runs/{run_id}/resume", guard(_posting(engine, max_body, _resume)), methods=post),
        Route("/ui/runs/{run_id}/cancel", guard(_posting(engine, max_body, _cancel)), methods=post),
        Route("/ui/runs/{run_id}/fork", guard(_posting(engine, max_body, _fork)), methods=post),
    ]
    return routes
