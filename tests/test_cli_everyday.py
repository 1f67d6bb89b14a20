"""The command line on runs that wait or fail: suspends, ``--no-wait``, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from graphflow import cli

FLOWS = """
from pathlib import Path

import graphflow as gf


@gf.function(retries=1)
def ev_flaky(path: str) -> str:
    marker = Path(path)
    if not marker.exists():
        marker.touch()
        raise ValueError("first attempt fails\\non two lines")
    return "fine"


@gf.function(retries=1)
def ev_broken(reason: str) -> None:
    raise RuntimeError(f"{reason}\\nand a second line")


@gf.workflow
async def ev_approval(wf: gf.Workflow, data: dict) -> dict:
    decision = await wf.suspend("Manager approval")
    return {"decision": decision}


@gf.workflow
async def ev_retried(wf: gf.Workflow, data: dict) -> str:
    return await wf.do("Flaky", ev_flaky, {"path": data["path"]})


@gf.workflow
async def ev_broken_flow(wf: gf.Workflow, data: dict) -> None:
    await wf.do("Break", ev_broken, {"reason": "kaboom"})
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli_everyday")
    (directory / "gf_ev_flows.py").write_text(FLOWS)
    return directory


@pytest.fixture
def flows(flows_dir: Path) -> str:
    return str(flows_dir / "gf_ev_flows.py")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}?durability=normal"


def invoke(*args: str) -> Result:
    return runner.invoke(cli.app, list(args))


def state_of(run_id: str, store: str) -> str:
    result = invoke("status", run_id, "--json", "--store", store)
    assert result.exit_code == 0, result.output
    state: str = json.loads(result.stdout)["state"]
    return state


def read_until(process: subprocess.Popen[str], text: str) -> list[str]:
    """Lines of the process's stderr up to the first containing ``text``."""
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        assert line, f"stderr closed before {text!r}: {lines}"
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in {lines}")


# --- a run that suspends --------------------------------------------------------------------------


def test_no_wait_exits_2_with_the_run_id_when_the_run_suspends(flows: str, store: str) -> None:
    result = invoke("run", flows, "ev_approval", "--no-wait", "--store", store)
    assert result.exit_code == cli.EXIT_SUSPENDED == 2
    run_id = result.stdout.strip()
    assert state_of(run_id, store) == "suspended"
    assert "is suspended at 'Manager approval'" in result.stderr
    assert f"graphflow resume {run_id}" in result.stderr


@pytest.mark.slow
def test_run_says_it_waits_and_finishes_when_resumed_from_elsewhere(
    flows_dir: Path, store: str
) -> None:
    command = [sys.executable, "-m", "graphflow", "run", "gf_ev_flows.py", "ev_approval"]
    process = subprocess.Popen(
        [*command, "--run-id", "wait-1", "--store", store],
        cwd=flows_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = read_until(process, "waiting for run wait-1 to be resumed")
        assert "Ctrl-C stops waiting and keeps the run" in lines[-1]
        resumed = invoke("resume", "wait-1", "--data", '{"ok": true}', "--store", store)
        assert resumed.exit_code == 0, resumed.output
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert json.loads(stdout.splitlines()[-1]) == {"decision": {"ok": True}}


@pytest.mark.slow
def test_ctrl_c_while_suspended_keeps_the_run_and_exits_2(flows_dir: Path, store: str) -> None:
    command = [sys.executable, "-m", "graphflow", "run", "gf_ev_flows.py", "ev_approval"]
    process = subprocess.Popen(
        [*command, "--run-id", "wait-2", "--store", store],
        cwd=flows_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(process, "waiting for run wait-2 to be resumed")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 2, stderr
    assert stdout.strip() == "wait-2"
    assert "error:" not in stderr
    assert state_of("wait-2", store) == "suspended"


# --- errors on one line ---------------------------------------------------------------------------


def test_status_shows_why_a_retried_step_failed_on_one_line(
    flows: str, store: str, tmp_path: Path
) -> None:
    data = json.dumps({"path": str(tmp_path / "marker")})
    ran = invoke("run", flows, "ev_retried", "-i", data, "--run-id", "r1", "--store", store)
    assert ran.exit_code == 0, ran.output
    shown = invoke("status", "r1", "--store", store)
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if line.startswith("Flaky"))
    assert "completed" in row
    assert "last error: ValueError: first attempt fails on two lines" in row
    assert "Traceback" not in shown.stdout


def test_failed_step_error_is_one_line_and_tracebacks_need_debug(flows: str, store: str) -> None:
    ran = invoke("run", flows, "ev_broken_flow", "--run-id", "b1", "--store", store)
    assert ran.exit_code == 1
    lines = ran.stderr.splitlines()
    assert (
        "step 'Break': running (attempt 2) - last error: RuntimeError: kaboom and a second line"
        in lines
    )
    failed = next(line for line in lines if line.startswith("step 'Break': failed"))
    assert failed.endswith("- RuntimeError: kaboom and a second line")
    # The run's failure is told once, by the error line (not again by the progress).
    assert lines[-2] == "run b1: failed"
    assert lines[-1].startswith("error: run 'b1' of workflow 'ev_broken_flow' ended failed")

    shown = invoke("status", "b1", "--store", store)
    assert "RuntimeError: kaboom and a second line" in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr
    debug = invoke("status", "b1", "--store", store, "--debug")
    assert "stored traceback of step 'Break':" in debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr


def test_flags_show_no_value_placeholder_in_help() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    debug_line = next(line for line in result.stdout.splitlines() if "--debug" in line)
    assert debug_line.split() == ["--debug", "Show", "tracebacks", "on", "errors."]
