"""Graph runs that fail through the public API: on_error, retries, timeouts, job limits, refs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio

import graphflow as gf
from tests.graph_helpers import echo_function, engine, failed_run, states

# --- failures -------------------------------------------------------------------------------


async def test_on_error_node_receives_the_error_and_the_run_fails(
    sqlite_url: str, registry: gf.Registry
) -> None:
    received: dict[str, Any] = {}

    @gf.function(registry=registry)
    async def charge(amount: int) -> int:
        raise ValueError(f"card declined for {amount}")

    @gf.function(registry=registry)
    async def refund(error: dict[str, str]) -> str:
        received["refund"] = error
        return "refunded"

    @gf.function(registry=registry)
    async def alert(message: str, failed_input: dict[str, int]) -> str:
        received["alert"] = message
        received["failed_input"] = failed_input
        return "alerted"

    echo_function(registry, "echo")
    gf.workflow_graph(
        name="payment",
        nodes={"charge": charge, "ship": "echo", "refund": refund, "alert": alert},
        config={
            "charge": {"next": "ship", "on_error": ["refund", "alert"], "input": {"amount": 5}},
            "alert": {
                "input": {
                    "message": gf.ref("$error", "error.message"),
                    "failed_input": gf.ref("$error", "input"),
                }
            },
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "payment")
    assert received == {
        "refund": {"type": "ValueError", "message": "card declined for 5"},
        "alert": "card declined for 5",
        "failed_input": {"amount": 5},
    }
    assert status.error is not None
    assert status.error.type == "StepFailed"
    assert "'charge'" in status.error.message
    assert "ValueError: card declined for 5" in status.error.message
    assert sorted(states(status)) == [
        ("alert", "completed"),
        ("charge", "failed"),
        ("refund", "completed"),
    ]


async def test_per_node_retries_record_every_attempt(
    sqlite_url: str, registry: gf.Registry
) -> None:
    calls = Counter[str]()

    @gf.function(registry=registry, retries=0)
    async def flaky(name: str) -> str:
        calls[name] += 1
        if calls[name] < 3:
            raise ConnectionError(f"attempt {calls[name]}")
        return "ok"

    gf.workflow_graph(
        name="retrying",
        nodes={"flaky": flaky},
        config={
            "flaky": {"retries": 2, "retry_delay": "1ms", "backoff": 2, "input": {"name": "f"}}
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        output = await e.run("retrying")
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert output == {"flaky": "ok"}
    (step,) = status.steps
    assert (step.state, step.attempts) == ("completed", 3)
    assert [str(error) for error in step.attempt_errors] == [
        "ConnectionError: attempt 1",
        "ConnectionError: attempt 2",
    ]


async def test_a_node_timeout_fails_the_node(sqlite_url: str, registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    async def hang() -> str:
        await anyio.sleep_forever()
        return "never"

    gf.workflow_graph(
        name="hanging",
        nodes={"hang": hang},
        config={"hang": {"timeout": "50ms"}},
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "hanging")
    (step,) = status.steps
    assert (step.state, step.attempts) == ("failed", 1)
    assert step.error is not None and step.error.type == "StepTimeout"
    assert "timed out" in step.error.message


async def test_parallel_nodes_execute_within_the_engines_job_limit(
    sqlite_url: str, registry: gf.Registry
) -> None:
    active = {"now": 0, "most": 0}

    @gf.function(registry=registry)
    async def busy(i: int) -> int:
        active["now"] += 1
        active["most"] = max(active["most"], active["now"])
        await anyio.sleep(0.001)
        active["now"] -= 1
        return i

    width = 12
    gf.workflow_graph(
        name="bounded",
        nodes={f"n{i}": busy for i in range(width)},
        config={f"n{i}": {"input": {"i": i}} for i in range(width)},
        registry=registry,
    )
    async with engine(sqlite_url, registry, max_jobs=3) as e:
        output = await e.run("bounded")
    assert output == {f"n{i}": i for i in range(width)}
    assert active["most"] == 3


async def test_a_missing_ref_path_fails_the_node_without_retry(
    sqlite_url: str, registry: gf.Registry
) -> None:
    calls = Counter[str]()

    @gf.function(registry=registry)
    async def profile() -> dict[str, Any]:
        return {"user": {"email": "a@b.c"}}

    @gf.function(registry=registry)
    async def send(to: str) -> str:
        calls["send"] += 1
        return to

    gf.workflow_graph(
        name="missing_path",
        nodes={"profile": profile, "send": send},
        config={
            "profile": {"next": "send"},
            "send": {"retries": 5, "input": {"to": gf.ref("profile", "user.address.city")}},
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "missing_path")
    assert calls["send"] == 0
    step = status.steps[-1]
    assert (step.name, step.state, step.attempts) == ("send", "failed", 1)
    assert step.error is not None and step.error.type == "RefResolutionError"
    assert "ref('profile', 'user.address.city')" in step.error.message
    assert "has no key 'address'" in step.error.message
    assert status.error is not None and "'send'" in status.error.message


async def test_a_failing_item_fails_the_for_each_node_and_runs_its_on_error(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def check(n: int) -> int:
        await anyio.sleep(0.001 * (n % 3))
        if n == 2:
            raise ValueError("two is not allowed")
        return n

    @gf.function(registry=registry)
    async def report(error: dict[str, str], step: str) -> str:
        return f"{step}: {error['message']}"

    gf.workflow_graph(
        name="checks",
        nodes={"check": check, "report": report},
        config={
            "check": {
                "for_each": gf.ref("$input", "$.numbers[*]"),
                "input": {"n": gf.ref("$item")},
                "on_error": "report",
            }
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "checks", {"numbers": [0, 1, 2, 3]})
    assert status.error is not None
    assert status.error.type == "StepFailed"
    assert "'check[2]'" in status.error.message
    by_name = {step.name: step for step in status.steps}
    assert by_name["check[2]"].state == "failed"
    assert by_name["check"].state == "failed"
    assert by_name["check"].error is not None
    assert str(by_name["check"].error) == "ValueError: two is not allowed"
    assert by_name["report"].output == "check: two is not allowed"


async def test_a_branch_callable_on_a_for_each_node_that_returns_no_key_fails_the_run(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def square(n: int) -> int:
        return n * n

    echo_function(registry, "echo")
    gf.workflow_graph(
        name="squares",
        nodes={"square": square, "big": "echo", "small": "echo"},
        config={
            "square": {
                "for_each": gf.ref("$input"),
                "input": {"n": gf.ref("$item")},
                "next": {"big": "big", "small": "small"},
                "branch": lambda output: "huge" if sum(output) > 10 else "small",
            }
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "squares", [1, 2, 3])
    assert status.error is not None
    assert status.error.type == "BranchError"
    assert "unknown branch key 'huge'" in status.error.message
    assert "['big', 'small']" in status.error.message
    assert dict(states(status))["square"] == "failed"
