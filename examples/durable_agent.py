"""A durable AI agent: a pydantic-ai support agent whose model turns and tool calls are steps.

The agent handles a refund ticket: it looks the order up (a tool), asks to refund it (a tool that
needs a human's approval: the run suspends with the tool call as its payload), then answers. Every
model request and tool call is recorded, so a crash or a restart replays them from the store: the
model is not billed again and the refund is not issued twice.

The model here is scripted (pydantic-ai's ``FunctionModel``), so the demo runs offline; put
``"openai:gpt-5"`` or any other model in its place for the real thing.

    pip install 'graphflow[ai]'
    python examples/durable_agent.py
"""

from __future__ import annotations

import os

import anyio
from pydantic import BaseModel
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

ORDERS = {"o-17": {"item": "espresso machine", "amount_cents": 34900, "status": "delivered"}}


class Ticket(BaseModel):
    ticket_id: str
    order_id: str
    message: str


# --- the model: a script standing in for an LLM -----------------------------------------------


def _last_tool_result(messages: list[ModelMessage]) -> object:
    request = messages[-1]
    assert isinstance(request, ModelRequest)
    return next(part.content for part in request.parts if isinstance(part, ToolReturnPart))


def support_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Turn 1: look the order up; turn 2: refund it; turn 3: answer the customer."""
    turn = 1 + sum(isinstance(message, ModelResponse) for message in messages)
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "o-17"})])
    if turn == 2:
        order = _last_tool_result(messages)
        assert isinstance(order, dict)
        args = {"order_id": "o-17", "amount_cents": order["amount_cents"]}
        return ModelResponse(parts=[ToolCallPart("issue_refund", args)])
    return ModelResponse(parts=[TextPart(f"Sorry about that! {_last_tool_result(messages)}")])


support = Agent(
    FunctionModel(support_model),
    name="support",
    instructions="You handle refund requests for a coffee-gear shop.",
    capabilities=[GraphflowDurability()],
)


@support.tool_plain
def lookup_order(order_id: str) -> dict[str, object]:
    """The order's item, amount and delivery status."""
    return ORDERS[order_id]


@support.tool_plain(requires_approval=True)
def issue_refund(order_id: str, amount_cents: int) -> str:
    """Refund the order (a human approves every refund first)."""
    return f"Refunded ${amount_cents / 100:.2f} for order {order_id}."


# --- the workflow -----------------------------------------------------------------------------


@gf.function
def send_reply(ticket_id: str, text: str) -> dict[str, str]:
    """Post the answer on the ticket (simulated)."""
    return {"ticket_id": ticket_id, "reply": text}


@gf.workflow
async def handle_ticket(wf: gf.Workflow, ticket: Ticket) -> dict[str, str]:
    """Let the agent work the ticket (each of its steps durable), then reply."""
    result = await support.run(f"Ticket about order {ticket.order_id}: {ticket.message}")
    return await wf.do(
        "Send reply", send_reply, {"ticket_id": ticket.ticket_id, "text": result.output}
    )


async def demo() -> None:
    store = os.environ.get("GRAPHFLOW_STORE", "sqlite:///graphflow.db")
    ticket = {"ticket_id": "t-1", "order_id": "o-17", "message": "It arrived broken."}
    async with gf.Engine(store) as engine:
        run_id = await engine.start("handle_ticket", ticket, run_id="ticket-t-1")
        status = await engine.status(run_id)
        while status.state not in ("suspended", "completed", "failed"):
            await anyio.sleep(0.05)
            status = await engine.status(run_id)
        if status.state == "suspended":
            pending = status.steps[-1]
            print(f"{run_id}: suspended ({status.suspend_reason}) for {pending.input}")
            print("approving the refund")
            await engine.resume(run_id, {"approved": True})
        status = await engine.wait(run_id, timeout=30)
    print(f"{run_id}: {status.state}: {status.output}")
    for step in status.steps:
        print(f"  step {step.name!r} ({step.kind}) {step.state}")


if __name__ == "__main__":
    anyio.run(demo)
