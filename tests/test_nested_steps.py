"""Steps issued inside a step's body: named under it, and not expected again when it replays.

A replay returns a completed step's recorded result without running its body, so the steps that
body issued are not issued again. Named ``outer/inner``, the replay knows whose they are.
"""

from __future__ import annotations

from typing import Any

import anyio

import graphflow as gf
from graphflow.testing import VirtualClock
from tests.test_waiting import until_state


async def close_mid_step(engine: gf.Engine, blocked: anyio.Event) -> None:
    """Close ``engine`` at once when its step is ``blocked``: the step never finishes there."""
    with anyio.fail_after(10):
        await blocked.wait()
    await engine.aclose(grace=0)


async def test_a_body_s_steps_are_named_under_its_step_and_the_run_replays_without_them(
    sqlite_url: str, registry: gf.Registry
) -> None:
    bodies: list[str] = []

    @gf.workflow(registry=registry)
    async def nested(wf: gf.Workflow, data: None) -> dict[str, Any]:
        async def outer() -> str:
            bodies.append("outer")
            inner = await wf.do("inner", lambda: "from inside")
            await wf.sleep("short", 0)
            return f"outer saw {inner}"

        seen = await wf.do("outer", outer)
        await wf.sleep("nap", "1h")  # parks: the run is replayed when it wakes
        return {"seen": seen, "after": await wf.do("after", lambda: "after the nap")}

    clock = VirtualClock()
    async with (
        gf.Engine(sqlite_url, registry=registry, clock=clock) as engine,
        clock.running(),
    ):
        run_id = await engine.start("nested")
        status = await engine.wait(run_id, timeout=30)
    assert status.state == "completed", status.error
    assert status.output == {"seen": "outer saw from inside", "after": "after the nap"}
    assert bodies == ["outer"]  # replayed, not run again
    assert [step.name for step in status.steps] == [
        "outer",
        "outer/inner",
        "outer/short",
        "nap",
        "after",
    ]


async def test_an_event_set_after_a_replayed_body_set_one_is_published(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def progress(wf: gf.Workflow, data: None) -> str:
        async def work() -> str:
            await wf.set_event("stage", "working")
            return "done"

        await wf.do("work", work)
        await wf.sleep("nap", "1h")
        await wf.set_event("stage", "finished")  # its own number, not the body's record
        return "ok"

    clock = VirtualClock()
    async with gf.Engine("memory://", registry=registry, clock=clock) as engine, clock.running():
        run_id = await engine.start("progress")
        status = await engine.wait(run_id, timeout=30)
        stage = await engine.get_event(run_id, "stage")
    assert status.state == "completed", status.error
    assert stage == "finished"
    events = [step.name for step in status.steps if step.kind == "event"]
    assert events == ["work/event:stage", "event:stage"]


async def test_graphflow_check_finds_a_parked_run_with_steps_inside_a_step_unchanged(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def approval(wf: gf.Workflow, data: None) -> str:
        async def prepare() -> str:
            return str(await wf.do("draft", lambda: "a draft"))

        await wf.do("prepare", prepare)
        await wf.suspend("approve")
        return "approved"

    async with gf.Engine(sqlite_url, registry=registry, poll_interval=0.05) as engine:
        run_id = await engine.start("approval")
        await until_state(engine, run_id, "suspended")
        (result,) = await engine.check()
    assert result.ok, result


async def test_a_retried_step_issues_its_body_s_steps_again(registry: gf.Registry) -> None:
    attempts: list[int] = []

    @gf.workflow(registry=registry)
    async def flaky(wf: gf.Workflow, data: None) -> str:
        async def outer() -> str:
            fetched = await wf.do("fetch", lambda: "fetched")
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                raise RuntimeError("transient")
            return str(fetched)

        return await wf.do("outer", outer, retries=2, retry_delay=0)

    async with gf.Engine("memory://", registry=registry) as engine:
        status = await engine.wait(await engine.start("flaky"), timeout=30)
    assert (status.state, status.output, attempts) == ("completed", "fetched", [1, 2])
    assert [(step.name, step.attempts) for step in status.steps] == [
        ("outer", 2),
        ("outer/fetch", 1),
    ]


async def test_a_body_run_again_after_a_lost_engine_may_issue_other_steps(
    sqlite_url: str, registry: gf.Registry
) -> None:
    """Like a model's stream: the body that runs again publishes other events, and those win."""
    bodies: list[int] = []
    blocked = anyio.Event()

    @gf.workflow(registry=registry)
    async def stream(wf: gf.Workflow, data: None) -> str:
        async def request() -> str:
            bodies.append(len(bodies) + 1)
            words = ["a", "b", "c"] if len(bodies) == 1 else ["x"]
            text = ""
            for word in words:
                text += word
                await wf.set_event("answer", text)
            if len(bodies) == 1:
                blocked.set()
                await anyio.sleep(60)  # the engine is closed under it: never finishes
            return text

        text = await wf.do("request", request)
        return f"{text} {wf.patched('p')}"  # nothing recorded past here: the new code's path

    first = gf.Engine(sqlite_url, registry=registry, poll_interval=0.05)
    async with first:
        run_id = await first.start("stream")
        await close_mid_step(first, blocked)
    async with gf.Engine(sqlite_url, registry=registry, poll_interval=0.05) as second:
        status = await second.wait(run_id, timeout=30)
        answer = await second.get_event(run_id, "answer")
    assert (status.state, status.output, answer, bodies) == ("completed", "x True", "x", [1, 2])


async def test_a_retried_body_s_steps_after_a_lost_engine_are_its_last_attempt_s(
    sqlite_url: str, registry: gf.Registry
) -> None:
    """Each attempt's steps start afresh; a new execution replays the last attempt's records."""
    seen: list[str] = []
    blocked = anyio.Event()

    @gf.workflow(registry=registry)
    async def inbox(wf: gf.Workflow, data: None) -> str:
        async def handle() -> str:
            message = str(await wf.receive("mail"))
            seen.append(message)
            if len(seen) == 1:
                raise RuntimeError("refused the first message")
            if len(seen) == 2:
                blocked.set()
                await anyio.sleep(60)  # the engine is closed under it
            return message

        return await wf.do("handle", handle, retries=2, retry_delay=0)

    first = gf.Engine(sqlite_url, registry=registry, poll_interval=0.05)
    async with first:
        run_id = await first.start("inbox")
        for message in ("m1", "m2", "m3"):
            await first.send(run_id, "mail", message)
        await close_mid_step(first, blocked)
    async with gf.Engine(sqlite_url, registry=registry, poll_interval=0.05) as second:
        status = await second.wait(run_id, timeout=30)
    assert (status.state, status.output, seen) == ("completed", "m2", ["m1", "m2", "m2"])
    assert [(step.name, step.output) for step in status.steps] == [
        ("handle", "m2"),
        ("handle/receive:mail", "m2"),
    ]


async def test_a_wait_beside_a_short_sleep_parks_once_the_sleep_ends(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def both(wf: gf.Workflow, data: None) -> Any:
        received: list[Any] = []

        async def receive() -> None:
            received.append(await wf.receive("go"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            tg.start_soon(wf.sleep, "short", 0.2)  # held in memory: the run works meanwhile
        return received[0]

    async with gf.Engine("memory://", registry=registry, poll_interval=0.05) as engine:
        run_id = await engine.start("both")
        await until_state(engine, run_id, "suspended")
        assert engine.stats().held_runs == 0
        await engine.send(run_id, "go", 42)
        assert (await engine.wait(run_id, timeout=30)).output == 42


async def test_patched_is_true_past_a_replayed_step_whose_body_issued_steps(
    registry: gf.Registry,
) -> None:
    deployed: list[str] = []

    @gf.workflow(registry=registry)
    async def patched(wf: gf.Workflow, data: None) -> str:
        async def outer() -> str:
            return str(await wf.do("inner", lambda: "inner"))

        await wf.do("outer", outer)
        await wf.sleep("nap", "1h")
        if deployed:  # the new code path, deployed while the run slept
            return "new path" if wf.patched("p") else "old path"
        return "first deploy"

    clock = VirtualClock()
    async with gf.Engine("memory://", registry=registry, clock=clock) as engine:
        run_id = await engine.start("patched")
        await until_state(engine, run_id, "sleeping")
        deployed.append("v2")
        async with clock.running():
            status = await engine.wait(run_id, timeout=30)
    assert (status.state, status.output) == ("completed", "new path")


async def test_a_child_run_started_by_a_step_runs_outside_its_parent_s_step(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def child(wf: gf.Workflow, data: None) -> dict[str, Any]:
        try:
            seen: str | None = gf.current_step().step_name
        except gf.OutsideStepError:
            seen = None
        inside = await wf.do("own step", lambda: gf.current_step().step_name)
        return {"body sees": seen, "its step sees": inside}

    @gf.workflow(registry=registry)
    async def parent(wf: gf.Workflow, data: None) -> Any:
        return await wf.do("spawn", child)

    async with gf.Engine("memory://", registry=registry, poll_interval=0.05) as engine:
        output = await engine.run("parent", timeout=30)
        (child_run,) = await engine.list_runs(workflow="child")
        steps = (await engine.status(child_run.run_id)).steps
    assert output == {"body sees": None, "its step sees": "own step"}
    assert [step.name for step in steps] == ["own step"]
