"""Messages and events from outside: ``graphflow send``/``event`` and the HTTP routes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner, Result

import graphflow as gf
from graphflow import cli
from graphflow.http import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FLOWS = """
from pydantic import BaseModel

import graphflow as gf


class Order(BaseModel):
    order_id: str
    amount: int


@gf.workflow
async def cli_orders(wf: gf.Workflow, data: dict) -> dict:
    await wf.set_event("stage", "waiting")
    order = await wf.receive("orders", schema=Order)
    await wf.set_event("stage", "received")
    return order.model_dump()
"""

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(cli.app, list(args))


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "gf_msg_cli_flows.py"
    path.write_text(FLOWS)
    return str(path)


def test_send_and_event_from_the_command_line(flows: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    waiting = invoke("run", flows, "cli_orders", "--run-id", "o1", "--no-wait", "--store", store)
    assert waiting.exit_code == 2, waiting.output
    assert "graphflow send o1 orders --data" in waiting.stderr  # the hint names the topic
    assert invoke("event", "o1", "stage", "--store", store).stdout.strip() == '"waiting"'

    refused = invoke("send", "o1", "orders", "--data", '{"order_id": "x"}', "--store", store)
    assert refused.exit_code == 1
    assert "invalid message on topic 'orders'" in refused.stderr
    assert "amount: Field required" in refused.stderr
    sent = invoke("send", "o1", "orders", "-d", '{"order_id": "x", "amount": 2}', "--store", store)
    assert sent.exit_code == 0, sent.output

    done = invoke("run", flows, "cli_orders", "--run-id", "o1", "--store", store)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.splitlines()[-1]) == {"order_id": "x", "amount": 2}
    assert invoke("event", "o1", "stage", "--store", store).stdout.strip() == '"received"'
    late = invoke("send", "o1", "orders", "--data", "{}", "--store", store)
    assert late.exit_code == 1
    assert "cannot message run 'o1': it is 'completed'" in late.stderr
    missing = invoke("event", "o1", "nope", "--store", store)
    assert missing.exit_code == 1
    assert "run 'o1' has not set event 'nope'" in missing.stderr


# --- HTTP -----------------------------------------------------------------------------------------

REGISTRY = gf.Registry()


class Order(BaseModel):
    order_id: str
    amount: int


@gf.workflow(registry=REGISTRY)
async def http_orders(wf: gf.Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await wf.set_event("stage", "waiting")
    order = await wf.receive("orders", schema=Order)
    return order.model_dump()


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    engine = gf.Engine(sqlite_url, registry=REGISTRY, poll_interval=0.05)
    with TestClient(create_app(engine)) as test_client:
        yield test_client


def wait_state(client: TestClient, run_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/runs/{run_id}").json()
        if body["state"] == state:
            return body
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {state}")


def test_messages_and_events_over_http(client: TestClient) -> None:
    run_id = client.post("/workflows/http_orders/start", json={}).json()["run_id"]
    wait_state(client, run_id, "suspended")
    event = client.get(f"/runs/{run_id}/events/stage")
    assert event.json() == {"run_id": run_id, "key": "stage", "value": "waiting"}
    unset = client.get(f"/runs/{run_id}/events/other", params={"timeout": "0.05"})
    assert unset.json()["value"] is None

    bad = client.post(f"/runs/{run_id}/messages/orders", json={"order_id": "h1", "amount": "x"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["amount"]
    sent = client.post(f"/runs/{run_id}/messages/orders", json={"order_id": "h1", "amount": 5})
    assert sent.status_code == 202
    assert sent.json() == {"run_id": run_id}
    body = wait_state(client, run_id, "completed")
    assert body["output"] == {"order_id": "h1", "amount": 5}

    finished = client.post(f"/runs/{run_id}/messages/orders", json={})
    assert finished.status_code == 409
    assert "a finished run receives nothing" in finished.json()["detail"]
    assert client.post("/runs/nope/messages/orders", json={}).status_code == 404


# --- the README's example, as written -------------------------------------------------------------

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.slow
def test_readme_messages_example_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text().split("### Messages and events", 1)[1].split("\n### ", 1)[0]
    (script,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (tmp_path / "checkout.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "checkout.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["awaiting payment", "{'paid': 30}"]
