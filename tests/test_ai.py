"""Durable pydantic-ai agents: model requests and tool calls are steps, replayed after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import graphflow as gf
from graphflow.ai import GraphflowDurability
from graphflow.testing import VirtualClock
from tests.flows import ai_flows

ROOT = Path(__file__).resolve().parents[1]

WEATHER_STEPS = [
    "weather__model.request",
    "weather__function_toolset__<agent>.call_tool:temperature",
    "weather__model.request#2",
]


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "log.txt"
    monkeypatch.setenv("GF_CRASH_LOG", str(path))
    monkeypatch.delenv("GF_CRASH_MARKER", raising=False)
    return path


def calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().splitlines()) if log.exists() else Counter()


async def test_agent_in_a_workflow_records_model_requests_and_tool_calls_as_steps(
    log: Path, tmp_path: Path
) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'ai.db'}") as engine:
        run_id = await engine.start("ai_forecast", {"question": "Weather in Paris?"})
        status = await engine.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == "Paris is at 21 degrees"
    assert [step.name for step in status.steps] == WEATHER_STEPS
    assert {step.kind for step in status.steps} == {"inline"}
    assert status.steps[1].output == {"result": 21, "kind": "tool_return"}
    assert calls(log) == Counter(
        {"weather model 1": 1, "temperature Paris": 1, "weather model 2": 1}
    )


async def test_agent_outside_a_workflow_runs_as_usual(log: Path) -> None:
    result = await ai_flows.weather.run("Weather in Paris?")
    assert result.output == "Paris is at 21 degrees"
    assert calls(log) == Counter(
        {"weather model 1": 1, "temperature Paris": 1, "weather model 2": 1}
    )


async def test_agent_in_a_graph_node_prefixes_its_steps_with_the_node(
    log: Path, tmp_path: Path
) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'ai.db'}") as engine:
        output = await engine.run("ai_graph", {"question": "Weather?"}, timeout=30)
        status = (await engine.list_runs(workflow="ai_graph"))[0]
        status = await engine.status(status.run_id)
    assert output == {"ask": "Paris is at 21 degrees"}
    assert [step.name for step in status.steps] == [f"ask/{name}" for name in WEATHER_STEPS] + [
        "ask"
    ]


async def test_a_second_agent_run_continues_the_numbering(log: Path, tmp_path: Path) -> None:
    async with gf.Engine(f"sqlite:///{tmp_path / 'ai.db'}") as engine:
        run_id = await engine.start("ai_twice", {"question": "?"})
        status = await engine.wait(run_id, timeout=30)
    assert status.output == ["Paris is at 21 degrees"] * 2
    assert [step.name for step in status.steps] == [
        *WEATHER_STEPS,
        "weather__model.request#3",
        "weather__function_toolset__<agent>.call_tool:temperature#2",
        "weather__model.request#4",
    ]


def _run_ai_flow(
    url: str, workflow: str, run_id: str, data: object, tmp: Path, *, kill: bool
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"GF_CRASH_LOG": str(tmp / "log.txt"), "PYTHONPATH": str(ROOT)}
    if kill:
        env["GF_CRASH_MARKER"] = str(tmp / "killed")
    command = [sys.executable, "-m", "tests.flows.run_ai_flow", url, workflow, run_id]
    return subprocess.run(
        [*command, json.dumps(data)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_killed_during_the_second_model_request_replays_the_first_and_the_tool(
    log: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ai.db'}"
    data = {"question": "Weather in Paris?"}
    killed = _run_ai_flow(url, "ai_forecast", "agent-1", data, tmp_path, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    async with gf.Engine(url, worker=False) as client:
        before = await client.status("agent-1")
    assert before.state == "running"
    assert [(s.name, s.state) for s in before.steps] == [
        (WEATHER_STEPS[0], "completed"),
        (WEATHER_STEPS[1], "completed"),
    ]

    recovered = _run_ai_flow(url, "-", "agent-1", None, tmp_path, kill=False)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == "Paris is at 21 degrees"
    assert calls(log) == Counter(
        {"weather model 1": 1, "temperature Paris": 1, "weather model 2": 2}
    )
    async with gf.Engine(url, worker=False) as client:
        after = await client.status("agent-1")
    assert [(s.name, s.state) for s in after.steps] == [
        (name, "completed") for name in WEATHER_STEPS
    ]


async def _suspended(engine: gf.Engine, run_id: str) -> gf.RunStatus:
    with anyio.fail_after(30):
        while (status := await engine.status(run_id)).state != "suspended":
            await anyio.sleep(0.02)
    return status


async def test_tool_needing_approval_suspends_and_runs_once_resumed_in_another_engine(
    log: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ai.db'}"
    async with gf.Engine(url) as engine:
        run_id = await engine.start("ai_mail", {"request": "Mail Ada"})
        status = await _suspended(engine, run_id)
    assert status.suspend_reason == "mailer__approve:send_email"
    pending = status.steps[-1]
    assert (pending.name, pending.kind) == ("mailer__approve:send_email", "suspend")
    assert pending.input == {
        "tool_name": "send_email",
        "args": {"to": "ada@example.com"},
        "tool_call_id": "call-7",
    }
    assert calls(log) == Counter({"mailer model 1": 1})

    async with gf.Engine(url) as other:
        with pytest.raises(gf.InputValidationError):
            await other.resume(run_id, {"approve": "yes"})
        await other.resume(run_id, {"approved": True})
        status = await other.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == "outcome: sent to ada@example.com"
    assert [step.name for step in status.steps] == [
        "mailer__model.request",
        "mailer__approve:send_email",
        "mailer__function_toolset__<agent>.call_tool:send_email",
        "mailer__model.request#2",
    ]
    assert calls(log) == Counter(
        {"mailer model 1": 1, "send_email ada@example.com": 1, "mailer model 2": 1}
    )


async def test_denied_tool_call_never_runs_and_the_model_gets_the_message(
    log: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ai.db'}"
    async with gf.Engine(url) as engine:
        run_id = await engine.start("ai_mail", {"request": "Mail Ada"})
        await _suspended(engine, run_id)
        await engine.resume(run_id, {"approved": False, "message": "not today"})
        status = await engine.wait(run_id, timeout=30)
    assert status.output == "outcome: not today"
    assert calls(log) == Counter({"mailer model 1": 1, "mailer model 2": 1})


async def test_stream_events_published_with_set_event_survive_the_run_s_replay(
    registry: gf.Registry,
) -> None:
    requests: list[int] = []

    async def words(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        requests.append(len(messages))
        for word in ["Hello", " there", " friend"]:
            yield word

    async def publish(
        ctx: RunContext[gf.Workflow], events: AsyncIterable[AgentStreamEvent]
    ) -> None:
        text = ""
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                text += event.part.content
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                text += event.delta.content_delta
                await ctx.deps.set_event("answer", text)

    talker = Agent(
        FunctionModel(stream_function=words),
        name="talker",
        deps_type=gf.Workflow,
        capabilities=[GraphflowDurability(event_stream_handler=publish)],
    )

    @gf.workflow(registry=registry)
    async def chat(wf: gf.Workflow, data: None) -> str:
        result = await talker.run("hi", deps=wf)
        await wf.sleep("nap", "1h")  # parks: the run replays the model request when it wakes
        await wf.set_event("answer", f"{result.output}!")
        return result.output

    clock = VirtualClock()
    async with gf.Engine("memory://", registry=registry, clock=clock) as engine, clock.running():
        run_id = await engine.start("chat")
        status = await engine.wait(run_id, timeout=30)
        answer = await engine.get_event(run_id, "answer")
    assert status.state == "completed", status.error
    assert (status.output, answer, requests) == ("Hello there friend", "Hello there friend!", [1])
    request = "talker__model.request_stream"
    assert [step.name for step in status.steps] == [
        request,
        f"{request}/event:answer",
        f"{request}/event:answer#2",
        "nap",
        "event:answer",
    ]
