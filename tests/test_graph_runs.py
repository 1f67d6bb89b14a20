"""Graph runs through the public API: fan-out, refs, branches and for_each.

Failures (on_error, retries, timeouts, bad refs) are in ``test_graph_failures.py``; replay and
recovery in ``test_graph_replay.py``; status order and run graphs in ``test_run_graph.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import graphflow as gf
from tests.graph_helpers import Profile, echo_function, engine, failed_run, states

# --- the seed graph, outputs ----------------------------------------------------------------


async def test_onboarding_graph_fans_out_with_refs_and_outputs_its_sinks(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def create_user_profile(email: str, user_id: str) -> Profile:
        return Profile(user_id=user_id, email=email, plan="pro")

    @gf.function(registry=registry)
    def send_email(to: str, subject: str) -> dict[str, str]:
        return {"to": to, "subject": subject, "status": "sent"}

    @gf.function(registry=registry)
    def create_default_todos(user_id: str, plan: str) -> list[str]:
        gf.branch(plan)  # a sync function in a worker thread selects the branch too
        return [f"{user_id}: complete your profile"]

    @gf.function(registry=registry)
    async def review_account(user_id: str) -> dict[str, bool]:
        return {"reviewed": user_id == "u1"}

    gf.workflow_graph(
        name="user_onboarding",
        description="Onboard a new user",
        nodes={
            "create_profile": "create_user_profile",
            "send_welcome": "send_email",
            "setup_defaults": "create_default_todos",
            "review": "review_account",
        },
        config={
            "create_profile": {"next": ["send_welcome", "setup_defaults"]},
            "send_welcome": {
                "input": lambda ref: {"to": ref("create_profile", "email"), "subject": "Welcome!"}
            },
            "setup_defaults": {
                "next": {"pro": "review"},
                "retries": 2,
                "input": lambda ref: {
                    "user_id": ref("create_profile", "user_id"),
                    "plan": ref("create_profile", "plan"),
                },
            },
            "review": {"input": {"user_id": gf.ref("$input", "user_id")}},
        },
        registry=registry,
    )
    async with engine(store_url, registry) as e:
        output = await e.run("user_onboarding", {"email": "ada@example.com", "user_id": "u1"})
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert output == {
        "send_welcome": {"to": "ada@example.com", "subject": "Welcome!", "status": "sent"},
        "review": {"reviewed": True},
    }
    assert status.state == "completed"
    assert status.output == output
    by_name = {step.name: step for step in status.steps}
    assert set(by_name) == {"create_profile", "send_welcome", "setup_defaults", "review"}
    assert all(step.kind == "node" and step.state == "completed" for step in status.steps)
    assert by_name["setup_defaults"].function == "create_default_todos"
    assert by_name["setup_defaults"].output == ["u1: complete your profile"]
    # Listed in the order resolved: send_welcome (a sync function in a worker thread) may finish
    # before or after setup_defaults and review, but review always after setup_defaults.
    order = [step.name for step in status.steps]
    assert order[0] == "create_profile"
    assert order.index("setup_defaults") < order.index("review")


async def test_ready_nodes_run_concurrently(sqlite_url: str, registry: gf.Registry) -> None:
    arrived = {"left": anyio.Event(), "right": anyio.Event()}

    @gf.function(registry=registry)
    async def meet(me: str, other: str) -> str:
        arrived[me].set()
        with anyio.fail_after(10):  # a guard against a hang, not a timing assertion
            await arrived[other].wait()
        return me

    gf.workflow_graph(
        name="meeting",
        nodes={"left": meet, "right": meet},
        config={
            "left": {"input": {"me": "left", "other": "right"}},
            "right": {"input": {"me": "right", "other": "left"}},
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        assert await e.run("meeting") == {"left": "left", "right": "right"}


async def test_output_callable_shapes_the_run_output(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def fetch(user_id: str) -> dict[str, Any]:
        return {"user": {"id": user_id, "tags": ["a", "b"]}, "items": [{"id": 1}, {"id": 2}]}

    gf.workflow_graph(
        name="shaped",
        nodes={"fetch": fetch},
        output=lambda ref: {
            "id": ref("fetch", "user.id"),
            "first_tag": ref("fetch", "user.tags[0]"),
            "ids": ref("fetch", "$.items[*].id"),
            "missing": ref("fetch", "user.nickname", default="none"),
            "input": ref("$input"),
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        output = await e.run("shaped", {"user_id": "u7"})
    assert output == {
        "id": "u7",
        "first_tag": "a",
        "ids": [1, 2],
        "missing": "none",
        "input": {"user_id": "u7"},
    }


async def test_default_input_is_the_single_parents_output(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def first(n: int) -> dict[str, int]:
        return {"n": n + 1}

    @gf.function(registry=registry)
    async def second(n: int) -> int:
        return n * 10

    gf.workflow_graph(
        name="chain",
        nodes={"first": first, "second": second},
        config={"first": {"next": "second"}},
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        assert await e.run("chain", {"n": 1}) == {"second": 20}


# --- branches -------------------------------------------------------------------------------


def branching_graph(registry: gf.Registry, name: str, **classify_config: Any) -> None:
    """classify -> {pro: upgrade -> notify, basic: welcome -> tutorial -> notify}; notify joins."""
    echo_function(registry, "echo")
    gf.workflow_graph(
        name=name,
        nodes={
            "classify": "classify",
            "upgrade": "echo",
            "welcome": "echo",
            "tutorial": "echo",
            "notify": "echo",
        },
        config={
            "classify": {"next": {"pro": "upgrade", "basic": "welcome"}, **classify_config},
            "upgrade": {"next": "notify", "input": {"step": "upgrade"}},
            "welcome": {"next": "tutorial", "input": {"step": "welcome"}},
            "tutorial": {"next": "notify", "input": {"step": "tutorial"}},
            "notify": {
                "input": lambda ref: {
                    "upgraded": ref("upgrade", "step", default="no"),
                    "tutorial": ref("tutorial", "step", default="skipped"),
                    "whole": ref("welcome"),
                }
            },
        },
        registry=registry,
    )


async def test_branch_selected_in_the_function_skips_the_other_path_until_the_join(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def classify(plan: str) -> str:
        gf.branch(plan)
        return plan

    branching_graph(registry, "branchy")
    async with engine(sqlite_url, registry) as e:
        output = await e.run("branchy", {"plan": "pro"})
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert output == {"notify": {"upgraded": "upgrade", "tutorial": "skipped", "whole": None}}
    assert sorted(states(status)) == [
        ("classify", "completed"),
        ("notify", "completed"),
        ("tutorial", "skipped"),
        ("upgrade", "completed"),
        ("welcome", "skipped"),
    ]
    skipped = next(step for step in status.steps if step.name == "tutorial")
    assert skipped.kind == "node" and skipped.function == "echo" and skipped.output is None


async def test_branch_callable_in_config_selects_the_edge_from_the_output(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def classify(plan: str) -> dict[str, str]:
        return {"plan": plan}

    branching_graph(registry, "branchy", branch=lambda output: output["plan"])
    async with engine(sqlite_url, registry) as e:
        output = await e.run("branchy", {"plan": "basic"})
    assert output == {
        "notify": {"upgraded": "no", "tutorial": "tutorial", "whole": {"step": "welcome"}}
    }


async def test_join_default_input_gives_skipped_parents_as_none(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def pick(key: str) -> str:
        gf.branch(key)
        return key

    @gf.function(registry=registry)
    async def constant() -> str:
        return "ran"

    @gf.function(registry=registry)
    async def join(a: str | None, b: str | None) -> dict[str, Any]:
        return {"a": a, "b": b}

    gf.workflow_graph(
        name="join_default",
        nodes={"pick": pick, "a": constant, "b": constant, "join": join},
        config={
            "pick": {"next": {"a": "a", "b": "b"}},
            "a": {"next": "join"},
            "b": {"next": "join"},
        },
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        assert await e.run("join_default", {"key": "b"}) == {"join": {"a": None, "b": "ran"}}


async def test_a_node_whose_every_incoming_edge_was_not_taken_is_skipped_with_its_subtree(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def pick(key: str) -> str:
        gf.branch(key)
        return key

    echo_function(registry, "echo")
    gf.workflow_graph(
        name="subtree",
        nodes={"pick": pick, "x": "echo", "y": "echo", "y2": "echo", "y3": "echo"},
        config={
            "pick": {"next": {"x": "x", "y": "y"}},
            "x": {"input": {"node": "x"}},
            "y": {"next": "y2", "input": {"node": "y"}},
            "y2": {"next": "y3"},
        },
        output=lambda ref: {"x": ref("x"), "y3": ref("y3", default="skipped")},
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("subtree", {"key": "x"})
        status = await e.wait(run_id)
    assert status.output == {"x": {"node": "x"}, "y3": "skipped"}
    assert sorted(states(status)) == [
        ("pick", "completed"),
        ("x", "completed"),
        ("y", "skipped"),
        ("y2", "skipped"),
        ("y3", "skipped"),
    ]


async def test_every_skip_is_recorded_when_parallel_branches_resolve_together(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def pick(i: int) -> int:
        await anyio.sleep(0.001 * (i % 3))
        gf.branch("stop")  # a key with no targets: each completion only skips
        return i

    echo_function(registry, "echo")
    width = 30
    nodes: dict[str, str | gf.Function[..., Any]] = {}
    config: dict[str, dict[str, Any]] = {}
    for i in range(width):
        nodes[f"p{i}"] = pick
        nodes[f"go{i}"] = "echo"
        config[f"p{i}"] = {"next": {"go": f"go{i}", "stop": []}, "input": {"i": i}}
    gf.workflow_graph(name="wide", nodes=nodes, config=config, registry=registry)
    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("wide")
        status = await e.wait(run_id)
    assert status.state == "completed"
    assert status.output == {}
    assert sorted(states(status)) == sorted(
        [(f"p{i}", "completed") for i in range(width)]
        + [(f"go{i}", "skipped") for i in range(width)]
    )


@pytest.mark.parametrize(
    ("selected", "problem"), [(None, "selected no branch key"), ("gold", "unknown branch key")]
)
async def test_branch_error_fails_the_run_naming_the_keys(
    sqlite_url: str, registry: gf.Registry, selected: str | None, problem: str
) -> None:
    @gf.function(registry=registry)
    async def classify(plan: str | None) -> str | None:
        if plan is not None:
            gf.branch(plan)
        return plan

    branching_graph(registry, "branchy", retries=3)
    async with engine(sqlite_url, registry) as e:
        status = await failed_run(e, "branchy", {"plan": selected})
        with pytest.raises(gf.RunFailed, match="BranchError"):
            await e.run("branchy", {"plan": selected})
    assert status.error is not None
    assert status.error.type == "BranchError"
    assert problem in status.error.message
    assert "['basic', 'pro']" in status.error.message
    assert "'classify'" in status.error.message
    assert states(status) == [("classify", "failed")]
    assert status.steps[0].attempts == 1  # a wrong key is not retried


# --- for_each -------------------------------------------------------------------------------


def for_each_graph(registry: gf.Registry, name: str, mode: str, log: list[str]) -> None:
    @gf.function(registry=registry)
    async def list_users(count: int) -> dict[str, Any]:
        return {"users": [{"name": f"user{i}", "delay": (count - i) % 4} for i in range(count)]}

    @gf.function(name=f"greet_{mode}", registry=registry)
    async def greet(name: str, delay: int, greeting: str) -> str:
        log.append(f"start {name}")
        await anyio.sleep(0.002 * delay)
        log.append(f"end {name}")
        return f"{greeting}, {name}"

    gf.workflow_graph(
        name=name,
        nodes={"list_users": list_users, "greet": greet},
        config={
            "list_users": {"next": "greet"},
            "greet": {
                "for_each": gf.ref("list_users", "users"),
                "mode": mode,
                "input": lambda ref: {
                    "name": ref("$item", "name"),
                    "delay": ref("$item", "delay"),
                    "greeting": ref("$input", "greeting"),
                },
            },
        },
        registry=registry,
    )


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
async def test_for_each_outputs_the_ordered_list_of_item_results(
    sqlite_url: str, registry: gf.Registry, mode: str
) -> None:
    log: list[str] = []
    for_each_graph(registry, "greet_all", mode, log)
    async with engine(sqlite_url, registry) as e:
        output = await e.run("greet_all", {"count": 6, "greeting": "Hi"})
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert output == {"greet": [f"Hi, user{i}" for i in range(6)]}
    by_name = {step.name: step for step in status.steps}
    assert set(by_name) == {"list_users", "greet"} | {f"greet[{i}]" for i in range(6)}
    assert by_name["greet"].state == "completed"
    assert by_name["greet"].output == [f"Hi, user{i}" for i in range(6)]
    assert by_name["greet[2]"].output == "Hi, user2"
    assert all(step.function in ("list_users", f"greet_{mode}") for step in status.steps)


async def test_sequential_for_each_runs_one_item_after_another(
    sqlite_url: str, registry: gf.Registry
) -> None:
    log: list[str] = []
    for_each_graph(registry, "greet_all", "sequential", log)
    async with engine(sqlite_url, registry) as e:
        await e.run("greet_all", {"count": 4, "greeting": "Hi"})
    assert log == [f"{edge} user{i}" for i in range(4) for edge in ("start", "end")]


async def test_parallel_for_each_runs_items_at_once(sqlite_url: str, registry: gf.Registry) -> None:
    log: list[str] = []
    for_each_graph(registry, "greet_all", "parallel", log)
    async with engine(sqlite_url, registry) as e:
        await e.run("greet_all", {"count": 4, "greeting": "Hi"})
    assert log[:4] == [f"start user{i}" for i in range(4)]


async def test_for_each_without_input_receives_each_item(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def numbers(count: int) -> dict[str, Any]:
        return {"values": [{"n": n} for n in range(count)]}

    @gf.function(registry=registry)
    async def double(n: int) -> int:
        return n * 2

    gf.workflow_graph(
        name="doubles",
        nodes={"numbers": numbers, "double": double},
        config={"numbers": {"next": "double"}, "double": {"for_each": gf.ref("numbers", "values")}},
        registry=registry,
    )
    async with engine(sqlite_url, registry) as e:
        assert await e.run("doubles", {"count": 3}) == {"double": [0, 2, 4]}
        run_id = await e.start("doubles", {"count": 0})
        status = await e.wait(run_id)
    assert status.output == {"double": []}
    assert states(status) == [("numbers", "completed"), ("double", "completed")]
