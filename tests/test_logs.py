"""Log records on the "graphflow" logger: run state changes and failed attempts, with their context."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import graphflow as gf
from tests.flows.traced_flows import REGISTRY, SECRET


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logs.db'}?durability=normal"


def extra(record: logging.LogRecord, key: str) -> Any:
    return record.__dict__.get(key)


def graphflow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "graphflow"]


def states(records: list[logging.LogRecord], run_id: str) -> list[str]:
    return [
        extra(r, "state") for r in records if extra(r, "run_id") == run_id and extra(r, "state")
    ]


async def test_a_record_per_run_state_change_with_run_context(
    caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.INFO, logger="graphflow")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("approval", {"text": SECRET})
        async for status in engine.watch(run_id):
            if status.state == "suspended":
                break
        await engine.resume(run_id, {"approved": True})
        await engine.wait(run_id)
    records = graphflow_records(caplog)
    assert states(records, run_id) == ["running", "suspended", "running", "running", "completed"]
    for record in records:
        assert extra(record, "run_id") == run_id
        assert extra(record, "workflow") == "approval"
        assert extra(record, "step") is None
        assert record.levelno == logging.INFO
    messages = [r.getMessage() for r in records]
    assert messages[0] == f"run {run_id} of workflow 'approval': running (started)"
    assert messages[1] == f"run {run_id} of workflow 'approval': suspended (waiting on 'Approve')"
    assert messages[2] == f"run {run_id} of workflow 'approval': running (resumed at 'Approve')"


async def test_failed_attempts_are_warnings_and_a_failed_run_an_error(
    caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.INFO, logger="graphflow")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        flaky_run = await engine.start("traced", {"text": "hi"})
        await engine.wait(flaky_run)
        failed_run = await engine.start("failing", {"text": "abc"})
        await engine.wait(failed_run)
    records = graphflow_records(caplog)
    flaky = [r for r in records if extra(r, "run_id") == flaky_run and r.levelno == logging.WARNING]
    assert len(flaky) == 1
    assert (extra(flaky[0], "step"), extra(flaky[0], "attempt"), extra(flaky[0], "workflow")) == (
        "Flaky",
        1,
        "traced",
    )
    assert flaky[0].getMessage() == (
        f"step 'Flaky' of run {flaky_run} (workflow 'traced') failed on attempt 1:"
        " ConnectionError: first attempt fails"
    )
    failed = [
        r for r in records if extra(r, "run_id") == failed_run and r.levelno >= logging.WARNING
    ]
    assert [(r.levelname, extra(r, "step")) for r in failed] == [
        ("WARNING", "Broken"),
        ("ERROR", None),
    ]
    assert "failed on attempt 1, its last" in failed[0].getMessage()
    assert extra(failed[1], "state") == "failed"
    assert "StepFailed" in failed[1].getMessage()


async def test_cancel_of_a_parked_run_is_recorded(
    caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.INFO, logger="graphflow")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("approval", {"text": "hi"})
        async for status in engine.watch(run_id):
            if status.state == "suspended":
                break
        await engine.cancel(run_id)
    assert states(graphflow_records(caplog), run_id)[-1] == "cancelled"


async def test_payloads_never_reach_info_records(
    caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="graphflow")
    async with gf.Engine(url, registry=REGISTRY) as engine:
        run_id = await engine.start("approval", {"text": SECRET})
        async for status in engine.watch(run_id):
            if status.state == "suspended":
                break
        await engine.resume(run_id, {"approved": True})
        assert SECRET in str((await engine.wait(run_id)).output)
    for record in graphflow_records(caplog):
        if record.levelno <= logging.INFO:
            assert SECRET not in record.getMessage()
            assert SECRET not in str(vars(record))
