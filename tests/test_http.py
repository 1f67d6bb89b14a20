"""HTTP wiring: every route and error code through Starlette's TestClient, and once for real."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import graphflow as gf
from graphflow.http import (
    create_app,
    workflow_cancel,
    workflow_resume,
    workflow_run,
    workflow_start,
    workflow_status,
)

with warnings.catch_warnings():
    # Starlette >= 1.x suggests httpx2 for its TestClient; httpx is what the extra installs.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

REGISTRY = gf.Registry()


class Greeting(BaseModel):
    name: str


class Approval(BaseModel):
    approved: bool


@gf.function(registry=REGISTRY)
def greet(name: str) -> str:
    return f"Hello, {name}!"


@gf.function(registry=REGISTRY)
async def wait_a_while(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


@gf.function(registry=REGISTRY)
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@gf.workflow(registry=REGISTRY)
async def hello(wf: gf.Workflow, data: Greeting) -> dict[str, str]:
    return {"greeting": await wf.do("Greet", greet, {"name": data.name})}


@gf.workflow(registry=REGISTRY)
async def echo(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
    return {"echo": data}


@gf.workflow(registry=REGISTRY)
async def slow(wf: gf.Workflow, data: dict[str, Any]) -> float:
    # by name: Workflow.do's overloads do not accept an async Function object returning float
    return float(await wf.do("Wait", "wait_a_while", {"seconds": data.get("seconds", 3.0)}))


@gf.workflow(registry=REGISTRY)
async def fails(wf: gf.Workflow, data: dict[str, Any]) -> None:
    await wf.do("Explode", explode, {"reason": "kaboom"})


@gf.workflow(registry=REGISTRY)
async def approval(wf: gf.Workflow, data: Greeting) -> dict[str, Any]:
    greeting = await wf.do("Greet", greet, {"name": data.name})
    decision = await wf.suspend("Manager approval", schema=Approval)
    return {"greeting": greeting, "approved": decision.approved}


@pytest.fixture
def engine(sqlite_url: str) -> gf.Engine:
    return gf.Engine(sqlite_url, registry=REGISTRY, poll_interval=0.05)


@pytest.fixture
def client(engine: gf.Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as test_client:
        yield test_client


def wait_state(client: TestClient, run_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if body["state"] in states:
            return body
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {states}")


def start(client: TestClient, workflow: str, data: Any = None, **params: str) -> str:
    response = client.post(f"/workflows/{workflow}/start", json=data, params=params)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


# --- start / run / status -------------------------------------------------------------------------


def test_start_answers_202_with_an_unguessable_run_id(client: TestClient) -> None:
    response = client.post("/workflows/hello/start", json={"name": "Ada"})
    assert response.status_code == 202
    assert set(response.json()) == {"run_id"}
    run_id = response.json()["run_id"]
    assert len(run_id) >= 32
    body = wait_state(client, run_id, {"completed"})
    assert body["output"] == {"greeting": "Hello, Ada!"}


def test_status_answers_the_run_status_with_steps(client: TestClient) -> None:
    run_id = start(client, "hello", {"name": "Ada"})
    body = wait_state(client, run_id, {"completed"})
    assert body["run_id"] == run_id
    assert body["workflow"] == "hello"
    assert body["input"] == {"name": "Ada"}
    assert [(s["name"], s["state"], s["function"]) for s in body["steps"]] == [
        ("Greet", "completed", "greet")
    ]


def test_run_answers_200_with_the_terminal_status(client: TestClient) -> None:
    response = client.post("/workflows/hello/run", json={"name": "Bob"})
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "completed"
    assert body["output"] == {"greeting": "Hello, Bob!"}


def test_run_answers_200_for_a_failed_run_with_its_error(client: TestClient) -> None:
    response = client.post("/workflows/fails/run")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed"
    assert body["error"]["type"] == "StepFailed"
    assert "kaboom" in body["error"]["message"]


def test_run_answers_202_when_its_timeout_passes_first(client: TestClient) -> None:
    response = client.post("/workflows/slow/run", params={"timeout": "0.1"}, json={"seconds": 1})
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert wait_state(client, run_id, {"completed"})["output"] == 1


def test_run_refuses_a_bad_timeout_with_422(client: TestClient) -> None:
    response = client.post("/workflows/hello/run", params={"timeout": "soon"}, json={"name": "A"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "timeout"]


def test_empty_body_is_an_empty_object(client: TestClient) -> None:
    response = client.post("/workflows/echo/run", content=b"")
    assert response.status_code == 200
    assert response.json()["output"] == {"echo": {}}


def test_start_with_run_id_is_idempotent(client: TestClient) -> None:
    first = start(client, "echo", {"a": 1}, run_id="order-42")
    again = start(client, "echo", {"a": 1}, run_id="order-42")
    assert first == again == "order-42"


def test_start_with_a_taken_run_id_and_other_input_is_409(client: TestClient) -> None:
    start(client, "echo", {"a": 1}, run_id="order-43")
    response = client.post("/workflows/echo/start", json={"a": 2}, params={"run_id": "order-43"})
    assert response.status_code == 409
    assert "order-43" in response.json()["detail"]


# --- errors -------------------------------------------------------------------------------------


def test_unknown_workflow_is_404(client: TestClient) -> None:
    for route in ("start", "run"):
        response = client.post(f"/workflows/nope/{route}", json={})
        assert response.status_code == 404
        assert "unknown workflow 'nope'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/runs/missing"),
        ("GET", "/runs/missing/graph"),
        ("GET", "/runs/missing/events"),
        ("POST", "/runs/missing/resume"),
        ("POST", "/runs/missing/cancel"),
    ],
)
def test_unknown_run_is_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


def test_invalid_input_is_422_with_pydantic_errors(client: TestClient) -> None:
    response = client.post("/workflows/hello/start", json={"nam": "Ada"})
    assert response.status_code == 422
    body = response.json()
    assert "name" in body["detail"]
    assert body["errors"][0]["loc"] == ["name"]
    assert body["errors"][0]["type"] == "missing"


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/workflows/hello/start", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


def test_body_over_the_limit_is_413(engine: gf.Engine) -> None:
    with TestClient(create_app(engine, max_body=64)) as client:
        response = client.post("/workflows/echo/start", json={"text": "x" * 100})
        assert response.status_code == 413
        assert "64 bytes" in response.json()["detail"]
        assert client.post("/workflows/echo/start", json={"text": "short"}).status_code == 202


def test_body_over_the_limit_without_content_length_is_413(engine: gf.Engine) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        yield b"x" * 100
        yield b'"}'

    with TestClient(create_app(engine, max_body=64)) as client:
        response = client.post("/workflows/echo/start", content=chunks())
        assert response.status_code == 413


# --- auth ---------------------------------------------------------------------------------------


def token_auth(request: Request) -> Response | None:
    token = request.headers.get("authorization")
    if token is None:
        return JSONResponse({"detail": "log in"}, status_code=401)
    if token != "Bearer good":
        return JSONResponse({"detail": "forbidden"}, status_code=403)
    return None


def test_auth_hook_refuses_with_401_and_403_and_allows(engine: gf.Engine) -> None:
    with TestClient(create_app(engine, auth=token_auth)) as client:
        assert client.post("/workflows/echo/start", json={}).status_code == 401
        denied = client.post(
            "/workflows/echo/start", json={}, headers={"authorization": "Bearer bad"}
        )
        assert denied.status_code == 403
        assert client.get("/runs/x", headers={"authorization": "Bearer bad"}).status_code == 403
        allowed = client.post(
            "/workflows/echo/start", json={}, headers={"authorization": "Bearer good"}
        )
        assert allowed.status_code == 202


def test_async_auth_hook_is_awaited(engine: gf.Engine) -> None:
    async def deny(request: Request) -> Response | None:
        await anyio.sleep(0)
        return JSONResponse({"detail": "no"}, status_code=403)

    with TestClient(create_app(engine, auth=deny)) as client:
        assert client.get("/runs/anything").status_code == 403


# --- resume / cancel ----------------------------------------------------------------------------


def test_run_answers_200_once_suspended(client: TestClient) -> None:
    response = client.post("/workflows/approval/run", json={"name": "Ada"})
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "suspended"
    assert body["suspend_reason"] == "Manager approval"


def test_resume_answers_202_and_the_run_completes(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    response = client.post(f"/runs/{run_id}/resume", json={"approved": True})
    assert response.status_code == 202
    assert response.json() == {"run_id": run_id}
    body = wait_state(client, run_id, {"completed"})
    assert body["output"] == {"greeting": "Hello, Ada!", "approved": True}


def test_resume_with_invalid_data_is_422_and_the_run_stays_suspended(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    response = client.post(f"/runs/{run_id}/resume", json={"approved": "maybe"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["approved"]
    assert client.get(f"/runs/{run_id}").json()["state"] == "suspended"


def test_resume_of_a_run_that_is_not_suspended_is_409(client: TestClient) -> None:
    run_id = start(client, "echo", {})
    wait_state(client, run_id, {"completed"})
    response = client.post(f"/runs/{run_id}/resume", json={})
    assert response.status_code == 409
    assert "suspended" in response.json()["detail"]


def test_cancel_answers_202_then_409_once_finished(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    response = client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"run_id": run_id}
    assert wait_state(client, run_id, {"cancelled"})["state"] == "cancelled"
    assert client.post(f"/runs/{run_id}/cancel").status_code == 409


# --- graph and events ---------------------------------------------------------------------------


def test_graph_answers_dot_by_default_and_mermaid(client: TestClient) -> None:
    run_id = start(client, "hello", {"name": "Ada"})
    wait_state(client, run_id, {"completed"})
    dot = client.get(f"/runs/{run_id}/graph")
    assert dot.status_code == 200
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.lstrip().startswith("digraph")
    assert "Greet" in dot.text
    mermaid = client.get(f"/runs/{run_id}/graph", params={"format": "mermaid"})
    assert mermaid.status_code == 200
    assert "Greet" in mermaid.text


def test_graph_svg_without_graphviz_is_501(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_id = start(client, "hello", {"name": "Ada"})
    wait_state(client, run_id, {"completed"})
    monkeypatch.setenv("PATH", str(tmp_path))
    response = client.get(f"/runs/{run_id}/graph", params={"format": "svg"})
    assert response.status_code == 501
    assert "Graphviz" in response.json()["detail"]


def test_graph_with_an_unknown_format_is_422(client: TestClient) -> None:
    run_id = start(client, "echo", {})
    response = client.get(f"/runs/{run_id}/graph", params={"format": "png"})
    assert response.status_code == 422
    assert "dot, mermaid, svg" in response.json()["detail"]


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_events_stream_step_and_run_changes_until_the_run_ends(client: TestClient) -> None:
    run_id = start(client, "slow", {"seconds": 0.5})
    response = client.get(f"/runs/{run_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "run"
    assert events[-1][1]["state"] == "completed"
    assert events[-1][1]["output"] == 0.5
    step_states = [data["state"] for kind, data in events if kind == "step"]
    assert step_states[-1] == "completed"
    assert all(data["run_id"] == run_id for _, data in events)


# --- endpoint factories ---------------------------------------------------------------------------


def test_endpoint_factories_mount_in_an_app_that_owns_the_engine(engine: gf.Engine) -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with engine:
            yield

    app = Starlette(
        routes=[
            Route("/greet", workflow_start(engine, "hello"), methods=["POST"]),
            Route("/greet/now", workflow_run(engine, "hello"), methods=["POST"]),
            Route("/status/{run_id}", workflow_status(engine)),
            Route("/resume/{run_id}", workflow_resume(engine), methods=["POST"]),
            Route("/cancel/{run_id}", workflow_cancel(engine), methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    with TestClient(app) as client:
        run_id = client.post("/greet", json={"name": "Eve"}).json()["run_id"]
        assert client.post("/greet/now", json={"name": "Eve"}).json()["state"] == "completed"
        assert client.post("/greet", json={}).status_code == 422
        deadline = time.monotonic() + 30
        while client.get(f"/status/{run_id}").json()["state"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post(f"/cancel/{run_id}").status_code == 409
        assert client.post(f"/resume/{run_id}", json={}).status_code == 409


def test_endpoints_answer_503_while_the_engine_is_closed(engine: gf.Engine) -> None:
    app = Starlette(routes=[Route("/start", workflow_start(engine, "echo"), methods=["POST"])])
    with TestClient(app) as client:
        response = client.post("/start", json={})
    assert response.status_code == 503
    assert "not open" in response.json()["detail"]


def test_create_app_leaves_an_already_open_engine_open(engine: gf.Engine) -> None:
    async def main() -> bool:
        async with engine:
            app = create_app(engine)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.post("/workflows/echo/run", json={"x": 1})
                assert response.json()["output"] == {"echo": {"x": 1}}
            return engine.is_open

    assert anyio.run(main) is True


# --- for real: graphflow serve in a subprocess ----------------------------------------------------

SERVE_FLOWS = """
import anyio
import graphflow as gf


@gf.function
async def serve_tick(i: int) -> int:
    await anyio.sleep(0.05)
    return i


@gf.workflow
async def serve_count(wf: gf.Workflow, data: dict) -> int:
    total = 0
    for i in range(data["n"]):
        total += await wf.do(f"Tick {i}", serve_tick, {"i": i})
    return total
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_graphflow_serve_for_real(tmp_path: Path) -> None:
    (tmp_path / "serve_flows.py").write_text(SERVE_FLOWS)
    port = free_port()
    store = f"sqlite:///{tmp_path / 'serve.db'}"
    command = [sys.executable, "-m", "graphflow", "serve", "serve_flows.py", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--store", store],
        cwd=tmp_path,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/runs/probe").status_code == 404:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "graphflow serve did not come up"
                assert server.poll() is None, "graphflow serve exited early"
                time.sleep(0.1)

            started = http.post("/workflows/serve_count/start", json={"n": 5})
            assert started.status_code == 202
            run_id = started.json()["run_id"]

            events: list[tuple[str, dict[str, Any]]] = []
            with http.stream("GET", f"/runs/{run_id}/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line.removeprefix("data: "))))
            assert events[-1][0] == "run"
            assert events[-1][1]["state"] == "completed"
            completed = {d["name"] for k, d in events if k == "step" and d["state"] == "completed"}
            assert completed == {f"Tick {i}" for i in range(5)}

            status = http.get(f"/runs/{run_id}").json()
            assert status["state"] == "completed"
            assert status["output"] == 10
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn re-raises the signal it caught once shutdown is complete
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
