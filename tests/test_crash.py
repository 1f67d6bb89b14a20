"""Crash recovery with real processes killed by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import graphflow as gf
from tests.flows import crash_flows  # noqa: F401  (same names as the subprocesses register)

ROOT = Path(__file__).resolve().parents[1]


def run_flow(
    url: str, workflow: str, run_id: str, data: object, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "GF_CRASH_LOG": str(tmp / "log.txt"),
        "GF_CRASH_MARKER": str(tmp / "killed"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.flows.run_flow", url, workflow, run_id, json.dumps(data)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def executions(tmp: Path) -> Counter[str]:
    return Counter((tmp / "log.txt").read_text().splitlines())


async def completed_steps(url: str, run_id: str) -> set[str]:
    async with gf.Engine(url, worker=False) as client:
        status = await client.status(run_id)
    assert status.state == "running"
    return {s.name for s in status.steps if s.state == "completed"}


async def test_killed_sequence_resumes_and_reruns_only_the_step_in_flight(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    data = {"steps": 20, "kill_at": 10}
    killed = run_flow(url, "crash_sequence", "seq-1", data, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert await completed_steps(url, "seq-1") == {f"add {i}" for i in range(1, 10)}

    recovered = run_flow(url, "-", "seq-1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == {"total": 210, "steps": 20}
    counts = executions(tmp_path)
    assert counts == Counter({f"step {i}": 2 if i == 10 else 1 for i in range(1, 21)})


async def test_killed_fan_out_reruns_no_completed_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fan.db'}"
    data = {"width": 200, "kill_after": 100}
    killed = run_flow(url, "crash_fan", "fan-1", data, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done_before = await completed_steps(url, "fan-1")
    assert 0 < len(done_before) < 200

    recovered = run_flow(url, "-", "fan-1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == sum(i * 2 for i in range(200))
    counts = executions(tmp_path)
    assert set(counts) == {f"item {i}" for i in range(200)}
    assert all(counts[name] == 1 for name in done_before)
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("fan-1")
    assert status.state == "completed"
    assert all(s.state == "completed" for s in status.steps) and len(status.steps) == 200
