"""A Starlette service with graphflow embedded: the app's lifespan owns the engine.

``POST /signup`` is the service's own endpoint: it validates the request, starts a durable signup
run (idempotent per email address) and answers at once. graphflow's routes are mounted under
``/graphflow`` (status, events, graph, resume, cancel, and starting any workflow), behind a bearer
token when ``SERVICE_TOKEN`` is set. The same works inside FastAPI: ``app.mount("/graphflow",
create_app(engine))`` plus ``async with engine:`` in its lifespan.

Run it:

    python examples/service.py          # http://127.0.0.1:8000, state in sqlite:///graphflow.db

Then:

    curl -X POST localhost:8000/signup -d '{"email": "ada@example.com", "plan": "team"}'
    curl localhost:8000/graphflow/runs/signup-ada@example.com
    curl -N localhost:8000/graphflow/runs/signup-ada@example.com/events
    curl -X POST localhost:8000/signup -d '{"email": "bob@corp.com", "plan": "enterprise"}'
    curl -X POST localhost:8000/graphflow/runs/signup-bob@corp.com/resume \
        -d '{"approved": true, "account_manager": "eve@example.com"}'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import graphflow as gf
from graphflow.http import Auth, create_app


class SignupRequest(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    plan: Literal["free", "team", "enterprise"] = "free"


class Account(BaseModel):
    account_id: str
    email: str
    plan: str


class SalesApproval(BaseModel):
    approved: bool
    account_manager: str | None = None


class SignupResult(BaseModel):
    account_id: str
    plan: str
    welcome_sent: bool
    account_manager: str | None = None


@gf.function
def create_account(email: str, plan: str) -> Account:
    account_id = "acct_" + hashlib.sha256(email.encode()).hexdigest()[:10]
    return Account(account_id=account_id, email=email, plan=plan)


@gf.function(retries=3, retry_delay="500ms", backoff=2.0)
async def send_welcome_email(email: str, account_id: str) -> bool:
    await anyio.sleep(0.01)  # an email API call in a real service
    return True


@gf.workflow(description="Create an account, welcome the user; enterprise plans need sales")
async def signup(wf: gf.Workflow, data: SignupRequest) -> SignupResult:
    account = await wf.do("Create account", create_account, data.model_dump())
    manager = None
    if data.plan == "enterprise":
        approval = await wf.suspend("Sales approval", schema=SalesApproval, timeout="7d")
        if not approval.approved:
            account = account.model_copy(update={"plan": "team"})
        manager = approval.account_manager
    sent = await wf.do(
        "Send welcome email",
        send_welcome_email,
        {"email": data.email, "account_id": account.account_id},
    )
    return SignupResult(
        account_id=account.account_id, plan=account.plan, welcome_sent=sent, account_manager=manager
    )


def bearer_auth(token: str | None) -> Auth | None:
    """An ``auth`` hook for ``create_app``: require ``Authorization: Bearer <token>``."""
    if token is None:
        return None

    def check(request: Request) -> Response | None:
        given = request.headers.get("authorization")
        if given is None:
            return JSONResponse({"detail": "missing bearer token"}, status_code=401)
        if given != f"Bearer {token}":
            return JSONResponse({"detail": "invalid bearer token"}, status_code=403)
        return None

    return check


def build_app(engine: gf.Engine | None = None, token: str | None = None) -> Starlette:
    """The service: its own routes, plus graphflow's under ``/graphflow``."""
    engine = engine if engine is not None else gf.Engine()

    async def post_signup(request: Request) -> Response:
        try:
            body = SignupRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            return JSONResponse({"detail": "invalid signup", "errors": errors}, status_code=422)
        # One signup per email: the run id makes retries of this request harmless.
        run_id = await engine.start("signup", body.model_dump(), run_id=f"signup-{body.email}")
        links = {
            "status": f"/graphflow/runs/{run_id}",
            "events": f"/graphflow/runs/{run_id}/events",
        }
        return JSONResponse({"run_id": run_id, **links}, status_code=202)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": engine.is_open})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Mounted apps' lifespans do not run: the service opens the engine for both.
        async with engine:
            yield

    return Starlette(
        routes=[
            Route("/signup", post_signup, methods=["POST"]),
            Route("/health", health),
            Mount("/graphflow", app=create_app(engine, auth=bearer_auth(token))),
        ],
        lifespan=lifespan,
    )


app = build_app(token=os.environ.get("SERVICE_TOKEN"))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
