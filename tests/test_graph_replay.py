"""Graph runs resumed by another engine: no completed node re-runs; a changed graph is refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio

import graphflow as gf
from tests.graph_helpers import engine, states


class Gate:
    """Holds a node until opened, so a test can close its engine with the run mid-way."""

    def __init__(self) -> None:
        self.opened = False
        self.reached = anyio.Event()
        self.until: Callable[[], bool] | None = None
        """If set, the held node finishes once this is true, instead of never."""

    async def pass_through(self) -> None:
        if self.opened:
            return
        self.reached.set()
        until = self.until
        if until is None:
            await anyio.sleep_forever()
            return
        while not until():
            await anyio.sleep(0.001)


async def interrupt(url: str, registry: gf.Registry, workflow: str, gate: Gate) -> str:
    """Start ``workflow`` as run ``r1``, close the engine once the gate is reached."""
    e = engine(url, registry)
    async with e:
        await e.start(workflow, None, run_id="r1")
        with anyio.fail_after(10):
            await gate.reached.wait()
        await e.aclose(grace=0)  # the held node is cut off; the run stays for the next engine
    gate.opened = True
    return "r1"


def gated_graph(registry: gf.Registry, gate: Gate, calls: Counter[str], *, extra: bool) -> None:
    """a -> [b, hold]; hold -> c. ``extra`` adds a node, changing the graph's hash."""

    @gf.function(name="work", registry=registry)
    async def work(node: str) -> str:
        calls[node] += 1
        return node

    @gf.function(name="held", registry=registry)
    async def held(node: str) -> str:
        calls[node] += 1
        await gate.pass_through()
        return node

    nodes: dict[str, str | gf.Function[..., Any]] = {"a": work, "b": work, "hold": held, "c": work}
    config: dict[str, dict[str, Any]] = {
        "a": {"next": ["b", "hold"], "input": {"node": "a"}},
        "b": {"input": {"node": "b"}},
        "hold": {"next": "c", "input": {"node": "hold"}},
        "c": {"input": {"node": "c"}},
    }
    if extra:
        nodes["d"] = work
        config["c"]["next"] = "d"
    gf.workflow_graph(name="gated", nodes=nodes, config=config, registry=registry)


async def test_a_resumed_graph_run_reruns_no_completed_node_and_keeps_step_order(
    sqlite_url: str, registry: gf.Registry
) -> None:
    gate, calls = Gate(), Counter[str]()
    gated_graph(registry, gate, calls, extra=False)
    run_id = await interrupt(sqlite_url, registry, "gated", gate)
    async with engine(sqlite_url, registry) as e:
        status = await e.wait(run_id, timeout=30)
    assert status.state == "completed"
    assert status.output == {"b": "b", "c": "c"}
    assert calls == Counter({"a": 1, "b": 1, "hold": 2, "c": 1})
    assert [step.name for step in status.steps] == ["a", "b", "hold", "c"]


async def test_resuming_a_run_under_a_changed_graph_fails_it_with_non_determinism(
    sqlite_url: str, registry: gf.Registry
) -> None:
    gate, calls = Gate(), Counter[str]()
    gated_graph(registry, gate, calls, extra=False)
    run_id = await interrupt(sqlite_url, registry, "gated", gate)
    changed = gf.Registry()
    gated_graph(changed, gate, calls, extra=True)
    async with engine(sqlite_url, changed) as e:
        status = await e.wait(run_id, timeout=30)
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.type == "NonDeterminismError"
    assert "'gated'" in status.error.message
    assert states(status) == [("a", "completed"), ("b", "completed")]
    assert calls == Counter({"a": 1, "b": 1, "hold": 1})


async def test_a_run_resumed_while_an_on_error_node_ran_still_fails_with_the_node_error(
    sqlite_url: str, registry: gf.Registry
) -> None:
    gate = Gate()

    @gf.function(registry=registry)
    async def charge() -> str:
        raise ValueError("declined")

    @gf.function(registry=registry)
    async def refund(error: dict[str, str]) -> str:
        await gate.pass_through()
        return f"refunded after {error['message']}"

    @gf.function(registry=registry)
    async def audit() -> str:
        return "audited"

    gf.workflow_graph(
        name="refunding",
        nodes={"charge": charge, "refund": refund, "audit": audit},
        config={"charge": {"on_error": "refund"}},
        registry=registry,
    )
    run_id = await interrupt(sqlite_url, registry, "refunding", gate)
    async with engine(sqlite_url, registry) as e:
        status = await e.wait(run_id, timeout=30)
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.type == "StepFailed"
    assert "ValueError: declined" in status.error.message
    assert dict(states(status)) == {
        "charge": "failed",
        "audit": "completed",
        "refund": "completed",
    }
    assert next(s for s in status.steps if s.name == "refund").output == "refunded after declined"


async def test_closing_the_engine_as_a_node_finishes_leaves_the_run_to_the_next_engine(
    sqlite_url: str, registry: gf.Registry
) -> None:
    gate, calls = Gate(), Counter[str]()
    gated_graph(registry, gate, calls, extra=False)
    e = engine(sqlite_url, registry)
    # "hold" finishes once the engine closes, in its grace period: "c" may not be issued then.
    gate.until = lambda: not e.is_open
    async with e:
        await e.start("gated", None, run_id="r1")
        with anyio.fail_after(10):
            await gate.reached.wait()
    gate.opened = True
    async with engine(sqlite_url, registry) as e:
        status = await e.wait("r1", timeout=30)
    assert status.state == "completed"
    assert status.output == {"b": "b", "c": "c"}
    assert calls == Counter({"a": 1, "b": 1, "hold": 1, "c": 1})


async def test_cancelling_a_graph_run_cancels_its_running_node(
    sqlite_url: str, registry: gf.Registry
) -> None:
    gate, calls = Gate(), Counter[str]()
    gated_graph(registry, gate, calls, extra=False)
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("gated")
        with anyio.fail_after(10):
            await gate.reached.wait()
        await e.cancel(run_id)
        status = await e.status(run_id)
    assert status.state == "cancelled"
    assert dict(states(status)) == {"a": "completed", "b": "completed", "hold": "cancelled"}
