"""Durable pydantic-ai agents for the tests: offline models (FunctionModel) that log every call.

Every model request and tool call appends a line to ``$GF_CRASH_LOG``. With ``$GF_CRASH_MARKER``
set, the second model request of ``weather`` kills its process once (SIGKILL), mid-request.
"""

from __future__ import annotations

import os

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import graphflow as gf
from graphflow.ai import GraphflowDurability
from tests.flows.crash_flows import _die_once, _log


def _turn(messages: list[ModelMessage]) -> int:
    return 1 + sum(isinstance(message, ModelResponse) for message in messages)


def _tool_result(messages: list[ModelMessage]) -> str:
    last = messages[-1]
    assert isinstance(last, ModelRequest)
    returns = [part for part in last.parts if isinstance(part, ToolReturnPart)]
    return str(returns[0].content)


async def weather_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _turn(messages)
    _log(f"weather model {turn}")
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("temperature", {"city": "Paris"}, "call-1")])
    if os.environ.get("GF_CRASH_MARKER"):
        _die_once()
    return ModelResponse(parts=[TextPart(f"Paris is at {_tool_result(messages)} degrees")])


weather = Agent(FunctionModel(weather_model), name="weather", capabilities=[GraphflowDurability()])


@weather.tool_plain
def temperature(city: str) -> int:
    """The temperature in ``city``."""
    _log(f"temperature {city}")
    return 21


@gf.workflow(name="ai_forecast")
async def ai_forecast(wf: gf.Workflow, data: dict[str, str]) -> str:
    result = await weather.run(data["question"])
    return result.output


@gf.workflow(name="ai_twice")
async def ai_twice(wf: gf.Workflow, data: dict[str, str]) -> list[str]:
    first = await weather.run(data["question"])
    second = await weather.run(data["question"])
    return [first.output, second.output]


async def mailer_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _turn(messages)
    _log(f"mailer model {turn}")
    if turn == 1:
        call = ToolCallPart("send_email", {"to": "ada@example.com"}, "call-7")
        return ModelResponse(parts=[call])
    return ModelResponse(parts=[TextPart(f"outcome: {_tool_result(messages)}")])


mailer = Agent(FunctionModel(mailer_model), name="mailer", capabilities=[GraphflowDurability()])


@mailer.tool_plain(requires_approval=True)
def send_email(to: str) -> str:
    """Send the email (only once approved)."""
    _log(f"send_email {to}")
    return f"sent to {to}"


@gf.workflow(name="ai_mail")
async def ai_mail(wf: gf.Workflow, data: dict[str, str]) -> str:
    result = await mailer.run(data["request"])
    return result.output


@gf.function(name="ai_ask_node")
async def ai_ask_node(question: str) -> str:
    result = await weather.run(question)
    return result.output


ai_graph = gf.workflow_graph(
    name="ai_graph",
    nodes={"ask": "ai_ask_node"},
    config={},
)
