"""What a new user trips over, told clearly: sync helpers in a loop, typos, bad graph input."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import graphflow as gf


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


async def test_gf_run_inside_an_event_loop_says_to_await_engine_run(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def in_loop(wf: gf.Workflow, data: None) -> int:
        return 1

    with pytest.raises(gf.EventLoopError, match=r"await engine\.run\(") as caught:
        gf.run("in_loop", store="memory://", registry=registry)
    assert isinstance(caught.value, RuntimeError)
    assert "running event loop" in str(caught.value)


def test_gf_run_outside_a_loop_still_runs(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def outside(wf: gf.Workflow, data: None) -> int:
        return 7

    assert gf.run("outside", store="memory://", registry=registry) == 7


async def test_do_with_a_misspelt_function_name_suggests_the_registered_one(
    registry: gf.Registry,
) -> None:
    @gf.function(registry=registry)
    def send_email(to: str) -> str:
        return to

    @gf.workflow(registry=registry)
    async def typo(wf: gf.Workflow, data: None) -> str:
        result: str = await wf.do("Send", "send_emial", {"to": "a@b.c"})
        return result

    async with engine("memory://", registry) as e:
        with pytest.raises(gf.RunFailed, match=r"unknown function 'send_emial' \(did you mean"):
            await e.run("typo")
    with pytest.raises(gf.UnknownFunctionError, match=r"did you mean 'send_email'\?"):
        registry.get_function("send_mail")


class Order(BaseModel):
    order_id: str
    amount: int


async def test_graph_input_is_validated_at_start_and_nothing_is_written(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    def charge(order: Order) -> int:
        return order.amount

    @gf.function(registry=registry)
    def audit(order_id: str) -> str:
        return order_id

    gf.workflow_graph(
        name="checkout",
        nodes={"charge": charge, "audit": audit},
        config={},
        registry=registry,
    )
    async with engine(store_url, registry) as e:
        with pytest.raises(gf.InputValidationError) as refused:
            await e.start("checkout", {"order_id": "o1", "amount": "lots"})
        assert "workflow 'checkout'" in str(refused.value)
        assert "entry node 'charge'" in str(refused.value)
        assert "amount: Input should be a valid integer" in str(refused.value)
        assert await e.list_runs() == []
        assert await e.run("checkout", {"order_id": "o1", "amount": 3}) == {
            "charge": 3,
            "audit": "o1",
        }
