"""The examples: each demo runs as its README command, and each use case behaves as it claims."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

import graphflow as gf
from graphflow._targets import load_target

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def example(name: str) -> ModuleType:
    return load_target(str(EXAMPLES / f"{name}.py"))


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'examples.db'}?durability=normal"


def engine(store: str) -> gf.Engine:
    return gf.Engine(store, poll_interval=0.05)


async def settle(e: gf.Engine, run_id: str) -> gf.RunStatus:
    with anyio.fail_after(30):
        async for status in e.watch(run_id, steps=False):
            if status.state in ("completed", "failed", "cancelled", "suspended"):
                return status
    raise AssertionError("watch ends with a terminal status")


def run_demo(
    script: str, cwd: Path, store: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"GRAPHFLOW_STORE": store} | (extra_env or {})
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def graphflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "graphflow", *args],
        cwd=cwd,
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- payments -------------------------------------------------------------------------------------


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "amount_cents": 4_200,
        "card": "tok_visa",
        "sku": "book",
    } | changes


async def test_payment_is_charged_once_through_retries_and_replays(store: str) -> None:
    payments = example("payments")
    async with engine(store) as e:
        run_id = await e.start("process_payment", order("t-flaky", card="tok_flaky"))
        status = await e.wait(run_id, timeout=30)
    assert status.output["status"] == "paid"
    (charge_step, ship_step) = status.steps
    assert charge_step.name == "Charge card"
    assert charge_step.attempts == 3
    assert [e.message for e in charge_step.attempt_errors] == [
        "connection reset while reading the response"
    ] * 2
    assert payments.PROVIDER.charges_for("t-flaky") == [
        {"charge_id": status.output["charge_id"], "order_id": "t-flaky", "amount_cents": 4_200}
    ]
    assert ship_step.output == {"shipment_id": "sh_t-flaky", "sku": "book"}


async def test_declined_card_is_not_retried(store: str) -> None:
    async with engine(store) as e:
        output = await e.run("process_payment", order("t-declined", card="tok_declined"))
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert output["status"] == "declined"
    assert output["detail"] == "card declined: insufficient funds"
    assert status.steps[0].attempts == 1


async def test_failed_shipment_is_refunded_by_the_compensation(store: str) -> None:
    payments = example("payments")
    async with engine(store) as e:
        run_id = await e.start("process_payment", order("t-lamp", sku="vintage-lamp"))
        status = await e.wait(run_id, timeout=30)
    assert status.output["status"] == "refunded"
    assert status.output["detail"] == "'vintage-lamp' is out of stock"
    steps = {s.name: s for s in status.steps}
    assert steps["Ship order"].state == "failed"
    refund = steps["Ship order:on_error"].output
    assert refund["charge_id"] == status.output["charge_id"]
    assert refund["amount_cents"] == 4_200
    assert refund in payments.PROVIDER.refunds.values()


async def test_large_payment_waits_for_review_and_refuses_bad_decisions(store: str) -> None:
    payments = example("payments")
    async with engine(store) as e:
        run_id = await e.start("process_payment", order("t-big", amount_cents=250_000))
        status = await settle(e, run_id)
        assert status.state == "suspended"
        assert status.suspend_reason == "Manual review of order t-big"
        with pytest.raises(gf.InputValidationError, match="approved"):
            await e.resume(run_id, {"reviewer": "kim"})
        assert (await e.status(run_id)).state == "suspended"
        await e.resume(run_id, {"approved": True, "reviewer": "kim"})
        status = await e.wait(run_id, timeout=30)
    assert status.output["status"] == "paid"
    assert len(payments.PROVIDER.charges_for("t-big")) == 1


async def test_rejected_review_charges_nothing(store: str) -> None:
    payments = example("payments")
    async with engine(store) as e:
        run_id = await e.start("process_payment", order("t-no", amount_cents=500_000))
        assert (await settle(e, run_id)).state == "suspended"
        await e.resume(run_id, {"approved": False, "reviewer": "kim", "note": "stolen card"})
        status = await e.wait(run_id, timeout=30)
    assert status.output["status"] == "rejected"
    assert status.output["detail"] == "rejected by kim: stolen card"
    assert payments.PROVIDER.charges_for("t-no") == []


@pytest.mark.slow
def test_payments_demo_runs(tmp_path: Path, store: str) -> None:
    result = run_demo("payments.py", tmp_path, store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "payment-o-103: suspended (Manual review of order o-103); approving it" in lines
    assert sum("'status': 'paid'" in line for line in lines) == 2
    assert any("'status': 'refunded'" in line for line in lines)
    assert any("'status': 'declined'" in line for line in lines)
    again = run_demo("payments.py", tmp_path, store)  # same run ids: nothing runs twice
    assert again.returncode == 0, again.stderr
    assert "approving it" not in again.stdout


# --- content pipeline -----------------------------------------------------------------------------


async def test_clean_feed_is_rendered_in_parallel_and_published(store: str) -> None:
    example("content_pipeline")
    async with engine(store) as e:
        run_id = await e.start("content_pipeline", {"feed": "tech"})
        status = await e.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == {
        "publish": {
            "urls": [
                "https://blog.example.com/durable-workflows-in-python",
                "https://blog.example.com/sqlite-is-enough",
                "https://blog.example.com/graphs-from-plain-functions",
            ]
        }
    }
    states = {s.name: s.state for s in status.steps}
    assert states["moderate"] == "completed"
    assert states["publish"] == "completed"
    assert states["reject"] == "skipped"


async def test_feed_with_banned_words_is_rejected(store: str) -> None:
    example("content_pipeline")
    async with engine(store) as e:
        output = await e.run("content_pipeline", {"feed": "spam"}, timeout=30)
    assert output == {"reject": {"flagged": ["s2"], "notified": "editors+spam@example.com"}}


async def test_unknown_feed_fails_the_run_at_once(store: str) -> None:
    example("content_pipeline")
    async with engine(store) as e:
        with pytest.raises(gf.RunFailed, match="unknown feed 'nope'"):
            await e.run("content_pipeline", {"feed": "nope"}, timeout=30)


@pytest.mark.slow
def test_content_pipeline_demo_and_dot(tmp_path: Path, store: str) -> None:
    result = run_demo("content_pipeline.py", tmp_path, store)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("tech: {'publish'")
    assert result.stdout.splitlines()[1].startswith("spam: {'reject'")
    dot = graphflow("dot", str(EXAMPLES / "content_pipeline.py"), "content_pipeline", cwd=tmp_path)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.lstrip().startswith("digraph")
    for node in ("fetch", "render", "moderate", "publish", "reject", "approved", "rejected"):
        assert node in dot.stdout


# --- data migration -------------------------------------------------------------------------------


def migration_log(database: Path, run_id: str | None = None) -> list[tuple[int, int]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT batch, pid FROM migration_log WHERE ? IS NULL OR run_id = ? ORDER BY batch",
            (run_id, run_id),
        ).fetchall()


def readme_duplicate_check(database: Path, run_id: str) -> list[tuple[int, int]]:
    """The exactly-once check of examples/README.md, as written there."""
    readme = (EXAMPLES / "README.md").read_text()
    query = readme.split('sqlite3 migration_demo.db "', 1)[1].split('"', 1)[0]
    with sqlite3.connect(database) as conn:
        return conn.execute(" ".join(query.split()).replace("'m2'", f"'{run_id}'")).fetchall()


async def test_migration_copies_every_row_normalised_in_batches(store: str, tmp_path: Path) -> None:
    migration = example("data_migration")
    database = tmp_path / "legacy.db"
    migration.create_demo_database(database, rows=1_000)
    data = {"database": str(database), "batch_size": 100, "parallel": 3}
    async with engine(store) as e:
        run_id = await e.start("migrate_table", data)
        status = await e.wait(run_id, timeout=60)
    assert status.output == {"rows": 1_000, "batches": 10, "copied": 1_000, "verified": True}
    names = [s.name for s in status.steps]
    assert names == ["Plan batches", *(f"Copy batch {i}" for i in range(10)), "Verify"]
    assert [batch for batch, _ in migration_log(database)] == list(range(10))
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT * FROM customers WHERE id = 1").fetchone()
        emails = conn.execute("SELECT count(*) FROM customers WHERE email LIKE '% %'").fetchone()
    assert row[3] == "user1@example.com"
    assert row[1] == row[1].title()
    assert emails == (0,)


@pytest.mark.slow
def test_migration_resumes_after_a_crash_without_repeating_batches(
    store: str, tmp_path: Path
) -> None:
    migration = example("data_migration")
    database = tmp_path / "legacy.db"
    migration.create_demo_database(database, rows=2_000)
    data = json.dumps({"database": str(database), "batch_size": 100, "parallel": 2})
    args = ["run", str(EXAMPLES / "data_migration.py"), "migrate_table", "--input", data]
    args += ["--store", store]
    # As the README goes: an earlier run migrated the same table completely.
    earlier = graphflow(*args, "--run-id", "m1", cwd=tmp_path)
    assert earlier.returncode == 0, earlier.stderr
    args += ["--run-id", "m2"]

    crashed = graphflow(*args, cwd=tmp_path, env={"MIGRATION_CRASH_AT_BATCH": "11"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    before = migration_log(database, "m2")
    # Waves of two: 0-9 were done; 10 ran beside 11 and may have committed; 11 died uncommitted.
    assert [batch for batch, _ in before] in (list(range(10)), list(range(11)))

    resumed = graphflow(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report == {"rows": 2_000, "batches": 20, "copied": 2_000, "verified": True}
    after = migration_log(database, "m2")
    assert [batch for batch, _ in after] == list(range(20))  # every batch committed exactly once
    assert after[: len(before)] == before
    assert readme_duplicate_check(database, "m2") == []
    assert len(migration_log(database)) == 40  # m1's batches are in the log too
    assert "step 'Copy batch 19': completed" in resumed.stderr


@pytest.mark.slow
def test_migration_demo_runs(tmp_path: Path, store: str) -> None:
    result = run_demo("data_migration.py", tmp_path, store)
    assert result.returncode == 0, result.stderr
    assert "{'rows': 5000, 'batches': 20, 'copied': 5000, 'verified': True}" in result.stdout
    assert (tmp_path / "migration_demo.db").exists()


# --- service --------------------------------------------------------------------------------------


@pytest.fixture
def service(store: str) -> Iterator[Any]:
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    module = example("service")
    with TestClient(module.build_app(engine(store), token="s3cret")) as client:
        yield client


def wait_state(client: Any, run_id: str, state: str) -> dict[str, Any]:
    headers = {"authorization": "Bearer s3cret"}
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = client.get(f"/graphflow/runs/{run_id}", headers=headers).json()
        if body["state"] == state:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_service_signup_runs_durably(service: Any) -> None:
    response = service.post("/signup", json={"email": "ada@example.com", "plan": "team"})
    assert response.status_code == 202
    body = response.json()
    assert body["run_id"] == "signup-ada@example.com"
    assert body["status"] == "/graphflow/runs/signup-ada@example.com"
    status = wait_state(service, body["run_id"], "completed")
    assert status["output"]["plan"] == "team"
    assert status["output"]["welcome_sent"] is True
    again = service.post("/signup", json={"email": "ada@example.com", "plan": "team"})
    assert again.json()["run_id"] == body["run_id"]


def test_service_enterprise_signup_waits_for_sales(service: Any) -> None:
    run_id = service.post("/signup", json={"email": "bob@corp.com", "plan": "enterprise"}).json()
    run_id = run_id["run_id"]
    wait_state(service, run_id, "suspended")
    headers = {"authorization": "Bearer s3cret"}
    decision = {"approved": True, "account_manager": "eve@example.com"}
    resumed = service.post(f"/graphflow/runs/{run_id}/resume", json=decision, headers=headers)
    assert resumed.status_code == 202
    status = wait_state(service, run_id, "completed")
    assert status["output"]["account_manager"] == "eve@example.com"


def test_service_validates_signups_and_guards_graphflow_routes(service: Any) -> None:
    assert service.post("/signup", json={"email": "not-an-email"}).status_code == 422
    assert service.get("/graphflow/runs/x").status_code == 401
    assert (
        service.get("/graphflow/runs/x", headers={"authorization": "Bearer no"}).status_code == 403
    )
    found = service.get("/graphflow/runs/x", headers={"authorization": "Bearer s3cret"})
    assert found.status_code == 404
    assert service.get("/health").json() == {"ok": True}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_service_runs_under_uvicorn(tmp_path: Path, store: str) -> None:
    port = free_port()
    env = os.environ | {"GRAPHFLOW_STORE": store, "PORT": str(port)}
    env.pop("SERVICE_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "service.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/health").json() == {"ok": True}:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline
                assert server.poll() is None
                time.sleep(0.1)
            started = http.post("/signup", json={"email": "uvi@example.com"})
            assert started.status_code == 202
            status_url = started.json()["status"]
            while http.get(status_url).json()["state"] != "completed":
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), output


# --- onboarding (the lead example) ----------------------------------------------------------------


@pytest.mark.slow
def test_onboarding_demo_runs(tmp_path: Path, store: str) -> None:
    result = run_demo("onboarding.py", tmp_path, store)
    assert result.returncode == 0, result.stderr
    assert "onboard_user:" in result.stderr
    assert "user_onboarding:" in result.stderr


# --- durable agent --------------------------------------------------------------------------------


def test_durable_agent_demo_suspends_for_the_refund_then_answers(
    tmp_path: Path, store: str
) -> None:
    result = run_demo("durable_agent.py", tmp_path, store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ticket-t-1: suspended (support__approve:issue_refund) for")
    assert "'amount_cents': 34900" in lines[0]
    assert "Refunded $349.00 for order o-17." in lines[2]
    assert "  step 'support__model.request#3' (inline) completed" in lines
    again = run_demo("durable_agent.py", tmp_path, store)  # the same run: replayed, not redone
    assert again.returncode == 0, again.stderr
    assert "approving the refund" not in again.stdout
    assert again.stdout.splitlines()[0] == lines[2]
