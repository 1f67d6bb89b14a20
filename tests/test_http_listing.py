"""HTTP listing (``GET /runs`` paged by cursor, ``GET /workflows``), JSON errors, serve options."""

from __future__ import annotations

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

import httpx
import pytest
from pydantic import BaseModel
from starlette.exceptions import StarletteDeprecationWarning

import graphflow as gf
from graphflow.http import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

REGISTRY = gf.Registry()


class Order(BaseModel):
    order_id: str
    amount: int


@gf.function(registry=REGISTRY)
def list_charge(order: Order) -> int:
    return order.amount


@gf.workflow(registry=REGISTRY, description="Echo the input.")
async def list_echo(wf: gf.Workflow, data: Order) -> dict[str, Any]:
    return data.model_dump()


@gf.workflow(registry=REGISTRY)
async def list_other(wf: gf.Workflow, data: dict[str, Any]) -> int:
    return 1


gf.workflow_graph(name="list_graph", nodes={"charge": list_charge}, registry=REGISTRY)


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    engine = gf.Engine(sqlite_url, registry=REGISTRY, poll_interval=0.05)
    with TestClient(create_app(engine)) as test_client:
        yield test_client


def run(client: TestClient, workflow: str, data: Any) -> str:
    response = client.post(f"/workflows/{workflow}/run", json=data)
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def test_runs_are_listed_newest_first_and_paged_by_a_stable_cursor(client: TestClient) -> None:
    made = [run(client, "list_echo", {"order_id": f"o{i}", "amount": i}) for i in range(5)]
    first = client.get("/runs", params={"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert [r["run_id"] for r in body["runs"]] == made[::-1][:2]
    assert "steps" not in body["runs"][0]
    assert body["runs"][0]["workflow"] == "list_echo"

    late = run(client, "list_echo", {"order_id": "late", "amount": 9})  # does not shift the pages
    seen = [r["run_id"] for r in body["runs"]]
    cursor = body["next_cursor"]
    while cursor is not None:
        page = client.get("/runs", params={"limit": 2, "cursor": cursor}).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
    assert seen == made[::-1]
    assert client.get("/runs", params={"limit": 1}).json()["runs"][0]["run_id"] == late


def test_runs_are_filtered_by_workflow_and_state(client: TestClient) -> None:
    echo = run(client, "list_echo", {"order_id": "a", "amount": 1})
    other = run(client, "list_other", {})
    by_workflow = client.get("/runs", params={"workflow": "list_other"}).json()
    assert [r["run_id"] for r in by_workflow["runs"]] == [other]
    assert by_workflow["next_cursor"] is None
    completed = client.get("/runs", params={"state": "completed"}).json()["runs"]
    assert {r["run_id"] for r in completed} == {echo, other}
    assert client.get("/runs", params={"state": "failed"}).json() == {
        "runs": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"state": "done"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_listing_parameters_are_422_naming_them(
    client: TestClient, params: dict[str, str], name: str
) -> None:
    response = client.get("/runs", params=params)
    assert response.status_code == 422
    assert name in response.json()["detail"]
    assert name in response.json()["errors"][0]["loc"]


def test_workflows_are_listed_with_kind_and_input_schema(client: TestClient) -> None:
    response = client.get("/workflows")
    assert response.status_code == 200
    found = {w["name"]: w for w in response.json()}
    assert set(found) == {"list_echo", "list_other", "list_graph"}
    echo = found["list_echo"]
    assert (echo["kind"], echo["description"]) == ("imperative", "Echo the input.")
    assert echo["input_schema"]["required"] == ["order_id", "amount"]
    assert echo["input_schema"]["properties"]["amount"]["type"] == "integer"
    assert found["list_other"]["input_schema"]["type"] == "object"
    graph = found["list_graph"]
    assert graph["kind"] == "graph"
    assert graph["input_schema"]["required"] == ["order_id", "amount"]


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "'/nowhere'" in missing.json()["detail"]
    wrong = client.get("/workflows/list_echo/start")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["detail"] == (
        "method GET is not allowed on '/workflows/list_echo/start': use POST"
    )


# --- graphflow serve --auth and --max-body, for real ----------------------------------------------

SERVE_FLOWS = """
import graphflow as gf


@gf.workflow
async def serve_echo(wf: gf.Workflow, data: dict) -> dict:
    return data
"""

AUTH = """
from starlette.responses import JSONResponse


def check(request):
    if request.headers.get("authorization") != "Bearer s3cret":
        return JSONResponse({"detail": "who are you?"}, status_code=401)
    return None
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_takes_an_auth_hook_and_a_body_limit(tmp_path: Path) -> None:
    (tmp_path / "serve_flows.py").write_text(SERVE_FLOWS)
    (tmp_path / "serve_auth.py").write_text(AUTH)
    port = free_port()
    command = [sys.executable, "-m", "graphflow", "serve", "serve_flows.py", "--port", str(port)]
    command += ["--auth", "serve_auth:check", "--max-body", "100", "--no-ui"]
    server = subprocess.Popen(
        [*command, "--store", f"sqlite:///{tmp_path / 'serve.db'}"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    refused = http.get("/workflows")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "graphflow serve did not come up"
                    assert server.poll() is None, "graphflow serve exited early"
                    time.sleep(0.1)
            assert refused.status_code == 401
            assert refused.json() == {"detail": "who are you?"}
            headers = {"authorization": "Bearer s3cret"}
            assert [w["name"] for w in http.get("/workflows", headers=headers).json()] == [
                "serve_echo"
            ]
            small = http.post("/workflows/serve_echo/run", json={"x": 1}, headers=headers)
            assert small.json()["output"] == {"x": 1}
            large = http.post("/workflows/serve_echo/run", json={"x": "y" * 200}, headers=headers)
            assert large.status_code == 413
            assert "larger than 100 bytes" in large.json()["detail"]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), output


def test_serve_refuses_an_auth_hook_that_is_not_module_colon_name(tmp_path: Path) -> None:
    (tmp_path / "serve_flows.py").write_text(SERVE_FLOWS)
    result = subprocess.run(
        [sys.executable, "-m", "graphflow", "serve", "serve_flows.py", "--auth", "nocolon"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--auth 'nocolon' is not MODULE:HOOK" in result.stderr
