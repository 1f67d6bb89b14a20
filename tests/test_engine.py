"""The durable core through the public API: start/run/wait/status, replay, errors, retries."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphflow as gf


class Profile(BaseModel):
    email: str
    user_id: str


class OnboardInput(BaseModel):
    email: str
    user_id: str


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


async def test_run_returns_output_and_status_lists_steps_in_order(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry)
    async def create_user_profile(email: str, user_id: str) -> Profile:
        return Profile(email=email, user_id=user_id)

    @gf.function(registry=registry)
    def send_email(to: str, body: str) -> dict[str, str]:
        return {"to": to, "body": body}

    @gf.workflow(registry=registry)
    async def onboard_user(wf: gf.Workflow, data: OnboardInput) -> dict[str, Any]:
        user = await wf.do("Create profile", "create_user_profile", data.model_dump())
        assert isinstance(user, Profile)
        message = await wf.do("Generate welcome", lambda: f"Welcome, {user.email}!")
        sent = await wf.do("Send email", send_email, {"to": user.email, "body": message})
        return {"success": True, "sent": sent}

    async with engine(store_url, registry) as e:
        output = await e.run("onboard_user", {"email": "a@b.c", "user_id": "u1"})
        assert output == {"success": True, "sent": {"to": "a@b.c", "body": "Welcome, a@b.c!"}}
        (listed,) = await e.list_runs()
        status = await e.status(listed.run_id)
    assert status.state == "completed"
    assert status.input == {"email": "a@b.c", "user_id": "u1"}
    assert [(s.name, s.kind, s.function, s.state, s.attempts) for s in status.steps] == [
        ("Create profile", "rpc", "create_user_profile", "completed", 1),
        ("Generate welcome", "inline", None, "completed", 1),
        ("Send email", "rpc", "send_email", "completed", 1),
    ]
    assert status.steps[0].output == {"email": "a@b.c", "user_id": "u1"}
    assert status.steps[1].parents == ["Create profile"]
    assert status.finished_at is not None and status.started_at is not None


async def test_fan_out_with_gather_and_task_groups(store_url: str, registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    async def square(x: int) -> int:
        await anyio.sleep(0.001)
        return x * x

    @gf.workflow(registry=registry)
    async def fan(wf: gf.Workflow, data: dict[str, int]) -> dict[str, Any]:
        first = await wf.do("start", lambda: 1)
        gathered = await asyncio.gather(*(wf.do(f"sq {i}", square, {"x": i}) for i in range(20)))
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            results[i] = await wf.do(f"tg {i}", square, {"x": i})

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(one, i)
        last = await wf.do("end", lambda: first)
        return {"gathered": gathered, "tg": [results[i] for i in range(5)], "last": last}

    async with engine(store_url, registry) as e:
        run_id = await e.start("fan", {})
        status = await e.wait(run_id, timeout=30)
    assert status.output == {
        "gathered": [i * i for i in range(20)],
        "tg": [0, 1, 4, 9, 16],
        "last": 1,
    }
    names = [s.name for s in status.steps]
    assert names[:21] == ["start"] + [f"sq {i}" for i in range(20)]
    by_name = {s.name: s for s in status.steps}
    assert by_name["sq 7"].parents == ["start"]
    assert set(by_name["tg 0"].parents) == {f"sq {i}" for i in range(20)}
    assert set(by_name["end"].parents) == {f"tg {i}" for i in range(5)}


async def test_start_with_run_id_is_idempotent_and_conflicts_on_other_input(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def echo(wf: gf.Workflow, data: dict[str, int]) -> dict[str, int]:
        assert (wf.run_id, wf.workflow_name) == ("order-1", "echo")
        return data

    async with engine(sqlite_url, registry) as e:
        first = await e.start("echo", {"a": 1}, run_id="order-1")
        again = await e.start("echo", {"a": 1}, run_id="order-1")
        assert first == again == "order-1"
        with pytest.raises(gf.RunConflictError, match="'order-1'.*different input"):
            await e.start("echo", {"a": 2}, run_id="order-1")
        assert len(await e.list_runs()) == 1
        assert (await e.wait("order-1", timeout=10)).output == {"a": 1}


async def test_generated_run_ids_are_unique_and_unguessable(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def noop(wf: gf.Workflow, data: None) -> None:
        return None

    async with engine(sqlite_url, registry) as e:
        ids = {await e.start("noop") for _ in range(20)}
    assert len(ids) == 20
    assert all(len(run_id) >= 32 for run_id in ids)


async def test_unknown_workflow_and_invalid_input_write_nothing(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def typed(wf: gf.Workflow, data: OnboardInput) -> str:
        return data.email

    async with engine(sqlite_url, registry) as e:
        with pytest.raises(gf.UnknownWorkflowError, match="'nope'"):
            await e.start("nope", {})
        with pytest.raises(gf.InputValidationError, match="user_id") as caught:
            await e.start("typed", {"email": "a@b.c"})
        assert caught.value.errors[0]["loc"] == ("user_id",)
        with pytest.raises(gf.RunNotFoundError):
            await e.status("missing")
        assert await e.list_runs() == []


async def test_unknown_function_fails_the_run_naming_it(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def calls_missing(wf: gf.Workflow, data: None) -> None:
        await wf.do("Call", "no_such_function", {})

    async with engine(sqlite_url, registry) as e:
        with pytest.raises(gf.RunFailed) as caught:
            await e.run("calls_missing")
    error = caught.value.error
    assert error is not None and error.type == "UnknownFunctionError"
    assert "'no_such_function'" in error.message and "step 'Call'" in error.message


async def test_duplicate_step_name_fails_the_run_even_if_caught(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def dup(wf: gf.Workflow, data: None) -> str:
        await wf.do("Same", lambda: 1)
        try:
            await wf.do("Same", lambda: 2)
        except gf.DuplicateStepError:
            pass
        return "swallowed"

    async with engine(sqlite_url, registry) as e:
        with pytest.raises(gf.RunFailed) as caught:
            await e.run("dup")
    assert caught.value.error is not None
    assert caught.value.error.type == "DuplicateStepError"
    assert "'Same'" in caught.value.error.message


async def test_non_serialisable_result_fails_the_step_without_retry(
    sqlite_url: str, registry: gf.Registry
) -> None:
    calls = Counter[str]()

    def bad() -> object:
        calls["bad"] += 1
        return object()

    @gf.workflow(registry=registry)
    async def unserialisable(wf: gf.Workflow, data: None) -> None:
        await wf.do("Make object", bad, retries=3)

    async with engine(sqlite_url, registry) as e:
        with pytest.raises(gf.RunFailed) as caught:
            run_id = await e.start("unserialisable")
            await e.run("unserialisable")
        status = await e.status(run_id)
    assert calls["bad"] == 2  # once per run, never retried
    assert caught.value.error is not None
    assert "not JSON-serialisable" in caught.value.error.message
    assert "'Make object'" in caught.value.error.message
    assert status.steps[0].attempts == 1 and status.steps[0].state == "failed"


async def test_current_step_gives_a_stable_idempotency_key(
    sqlite_url: str, registry: gf.Registry
) -> None:
    seen: list[tuple[str, str, int, str]] = []

    @gf.function(registry=registry)
    def charge(amount: int) -> str:
        step = gf.current_step()
        seen.append((step.run_id, step.step_name, step.attempt, step.idempotency_key))
        if step.attempt < 3:
            raise ConnectionError("provider down")
        return step.idempotency_key

    @gf.workflow(registry=registry)
    async def pay(wf: gf.Workflow, data: None) -> str:
        return await wf.do("Charge", charge, {"amount": 5}, retries=3)

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("pay")
        status = await e.wait(run_id, timeout=10)
    assert [s[2] for s in seen] == [1, 2, 3]
    assert {s[3] for s in seen} == {status.output}
    assert {(s[0], s[1]) for s in seen} == {(run_id, "Charge")}
    with pytest.raises(gf.GraphflowError, match="outside a running step"):
        gf.current_step()


async def test_sync_functions_run_in_a_thread_unless_declared_thread_false(
    sqlite_url: str, registry: gf.Registry
) -> None:
    import threading

    loop_thread = threading.get_ident()

    @gf.function(registry=registry)
    def in_thread(x: int) -> dict[str, Any]:
        step = gf.current_step()
        return {"on_loop": threading.get_ident() == loop_thread, "step": step.step_name, "x": x}

    @gf.function(registry=registry, thread=False)
    def on_loop(x: int) -> dict[str, Any]:
        step = gf.current_step()
        return {"on_loop": threading.get_ident() == loop_thread, "step": step.step_name, "x": x}

    @gf.workflow(registry=registry)
    async def both(wf: gf.Workflow, data: None) -> list[Any]:
        return [await wf.do("A", in_thread, {"x": 1}), await wf.do("B", on_loop, {"x": 2})]

    async with engine(sqlite_url, registry) as e:
        output = await e.run("both")
    assert output == [
        {"on_loop": False, "step": "A", "x": 1},
        {"on_loop": True, "step": "B", "x": 2},
    ]


async def test_retries_record_every_attempt(sqlite_url: str, registry: gf.Registry) -> None:
    failures = Counter[str]()

    @gf.function(registry=registry)
    async def flaky(key: str) -> str:
        failures[key] += 1
        if failures[key] <= 2:
            raise RuntimeError(f"transient {failures[key]}")
        return "ok"

    @gf.workflow(registry=registry)
    async def retrying(wf: gf.Workflow, data: None) -> str:
        return await wf.do("Flaky", flaky, {"key": "a"}, retries=3, retry_delay="10ms", backoff=2)

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("retrying")
        status = await e.wait(run_id, timeout=10)
    assert status.output == "ok"
    (step,) = status.steps
    assert step.attempts == 3 and step.state == "completed"
    assert [str(err) for err in step.attempt_errors] == [
        "RuntimeError: transient 1",
        "RuntimeError: transient 2",
    ]


async def test_exhausted_retries_fail_the_run_with_the_error(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.function(registry=registry, retries=1)
    async def always_fails() -> None:
        raise ValueError("card declined")

    @gf.workflow(registry=registry)
    async def doomed(wf: gf.Workflow, data: None) -> None:
        await wf.do("Charge", always_fails)

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("doomed")
        status = await e.wait(run_id, timeout=10)
    assert status.state == "failed"
    assert status.error is not None and status.error.type == "StepFailed"
    assert (
        "'Charge'" in status.error.message and "ValueError: card declined" in status.error.message
    )
    assert status.steps[0].attempts == 2 and status.steps[0].state == "failed"
    assert status.steps[0].error is not None and status.steps[0].error.message == "card declined"


async def test_step_failed_can_be_caught_by_the_workflow(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def catches(wf: gf.Workflow, data: None) -> str:
        def boom() -> None:
            raise gf.NonRetryableError("permanent")

        try:
            await wf.do("Boom", boom, retries=5)
        except gf.StepFailed as failure:
            assert failure.step == "Boom"
            assert failure.error.type == "NonRetryableError"
            return str(failure.error)
        return "unreachable"

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("catches")
        status = await e.wait(run_id, timeout=10)
    assert status.output == "NonRetryableError: permanent"
    assert status.steps[0].attempts == 1


async def test_timeout_fails_a_hanging_step(sqlite_url: str, registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    async def hangs() -> None:
        await anyio.sleep(60)

    @gf.workflow(registry=registry)
    async def hanging(wf: gf.Workflow, data: None) -> None:
        await wf.do("Hang", hangs, timeout="50ms", retries=1)

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("hanging")
        status = await e.wait(run_id, timeout=10)
    assert status.state == "failed"
    step = status.steps[0]
    assert step.attempts == 2
    assert step.error is not None and step.error.type == "StepTimeout"
    assert "timed out after 0.05s" in step.error.message


async def test_sync_run_helper(tmp_path: Path, registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def hello(wf: gf.Workflow, data: dict[str, str]) -> str:
        return await wf.do("Greet", lambda: f"Hello, {data['name']}!")

    url = f"sqlite:///{tmp_path / 'sync.db'}"
    output = await anyio.to_thread.run_sync(
        lambda: gf.run("hello", {"name": "Ada"}, store=url, registry=registry)
    )
    assert output == "Hello, Ada!"


async def test_client_engine_starts_runs_that_a_worker_executes(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def remote(wf: gf.Workflow, data: dict[str, int]) -> int:
        return await wf.do("Double", lambda: data["n"] * 2)

    async with engine(sqlite_url, registry, worker=False) as client:
        run_id = await client.start("remote", {"n": 21})
        await anyio.sleep(0.1)
        assert (await client.status(run_id)).state == "pending"
        async with engine(sqlite_url, registry):
            status = await client.wait(run_id, timeout=10)
    assert status.output == 42


async def test_list_runs_filters_newest_first(sqlite_url: str, registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def a(wf: gf.Workflow, data: int) -> int:
        return data

    @gf.workflow(registry=registry)
    async def b(wf: gf.Workflow, data: int) -> int:
        raise ValueError("no")

    async with engine(sqlite_url, registry) as e:
        for i in range(3):
            await e.wait(await e.start("a", i))
        await e.wait(await e.start("b", 0))
        runs = await e.list_runs(workflow="a")
        assert [r.input for r in runs] == [2, 1, 0]
        failed = await e.list_runs(state="failed")
        assert [r.workflow for r in failed] == ["b"]
        assert len(await e.list_runs(limit=2)) == 2
        assert all(r.steps == [] for r in runs)


async def test_runs_started_at_once_hold_at_most_max_runs(
    sqlite_url: str, registry: gf.Registry
) -> None:
    release = asyncio.Event()
    most_held = 0

    @gf.function(registry=registry)
    async def hold_until_released(i: int) -> int:
        nonlocal most_held
        most_held = max(most_held, e.stats().held_runs)
        await release.wait()
        return i

    @gf.workflow(registry=registry)
    async def held(wf: gf.Workflow, data: int) -> int:
        result: int = await wf.do("hold", hold_until_released, {"i": data})
        return result

    async with engine(sqlite_url, registry, max_runs=2) as e:
        run_ids = await asyncio.gather(*(e.start("held", i) for i in range(10)))
        held_after_starts = e.stats().held_runs
        release.set()
        statuses = await asyncio.gather(*(e.wait(run_id) for run_id in run_ids))
    assert held_after_starts <= 2
    assert most_held <= 2
    assert [s.output for s in statuses] == list(range(10))
