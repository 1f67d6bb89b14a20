"""Graph runs killed by SIGKILL mid-way and finished by a second process."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import graphflow as gf
from tests.flows import graph_flows
from tests.test_crash import executions, run_flow


async def node_states(url: str, run_id: str) -> dict[str, str]:
    async with gf.Engine(url, worker=False) as client:
        status = await client.status(run_id)
    assert status.state == "running"
    return {step.name: step.state for step in status.steps}


async def test_killed_graph_fan_out_reruns_no_completed_node(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'graph.db'}"
    width = graph_flows.FAN_WIDTH
    killed = run_flow(url, "graph_crash_fan", "fan-1", {"width": width, "kill_at": 7}, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = await node_states(url, "fan-1")
    done_before = {name for name, state in before.items() if state == "completed"}
    assert "start" in done_before
    assert "total" not in before
    assert "w7" not in done_before
    assert len(done_before) > 1

    recovered = run_flow(url, "-", "fan-1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == {
        "total": sum(1000 + i for i in range(width))
    }
    counts = executions(tmp_path)
    assert set(counts) == {"node start", "node total"} | {f"node w{i}" for i in range(width)}
    assert all(counts[f"node {name}"] == 1 for name in done_before)
    assert counts["node w7"] == 1  # killed before it logged, then run by the second process
    assert counts["node total"] == 1
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("fan-1")
    assert status.state == "completed"
    assert len(status.steps) == width + 2
    assert all(step.state == "completed" for step in status.steps)


async def test_killed_sequential_for_each_resumes_at_the_item_in_flight(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'each.db'}"
    killed = run_flow(url, "graph_crash_each", "each-1", {"count": 6, "kill_at": 3}, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert await node_states(url, "each-1") == {
        "items": "completed",
        "square[0]": "completed",
        "square[1]": "completed",
        "square[2]": "completed",
    }

    recovered = run_flow(url, "-", "each-1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == {"square": [0, 1, 4, 9, 16, 25]}
    assert executions(tmp_path) == Counter(
        {
            "node items": 1,
            "item 0": 1,
            "item 1": 1,
            "item 2": 1,
            "item 3": 2,
            "item 4": 1,
            "item 5": 1,
        }
    )
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("each-1")
    assert [step.name for step in status.steps] == [
        "items",
        *(f"square[{i}]" for i in range(6)),
        "square",
    ]
