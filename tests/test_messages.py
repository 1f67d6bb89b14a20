"""Messages to running workflows (``wf.receive`` / ``engine.send``) and events (``set_event``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

import graphflow as gf
from graphflow.testing import VirtualClock
from tests.flows import message_flows  # noqa: F401  (the names the subprocess registers)
from tests.flows.old_schemas import make_version

ROOT = Path(__file__).resolve().parents[1]


class Order(BaseModel):
    order_id: str
    amount: int


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


@asynccontextmanager
async def client_for(url: str, e: gf.Engine) -> AsyncIterator[gf.Engine]:
    """A client engine without the workflow code (``memory://`` is private: the engine itself)."""
    if url.startswith("memory"):
        yield e
        return
    async with engine(url, gf.Registry(), worker=False) as client:
        yield client


async def until_state(e: gf.Engine, run_id: str, state: str) -> gf.RunStatus:
    async for status in e.watch(run_id):
        if status.state == state:
            return status
    raise AssertionError(f"run {run_id} ended {status.state}, never {state}")


async def test_messages_are_received_once_each_in_the_order_sent(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def inbox(wf: gf.Workflow, data: None) -> list[Any]:
        return [await wf.receive("letters") for _ in range(4)]

    async with engine(store_url, registry) as e:
        run_id = await e.start("inbox")
        await e.send(run_id, "letters", "a")  # before or while the run waits: kept either way
        await e.send(run_id, "letters", {"b": 2})
        await e.send(run_id, "other topic", "not for inbox")
        await until_state(e, run_id, "suspended")
        await e.send(run_id, "letters", "c")
        await e.send(run_id, "letters", [4])
        status = await e.wait(run_id, timeout=30)
    assert status.output == ["a", {"b": 2}, "c", [4]]
    receives = [s for s in status.steps if s.kind == "receive"]
    assert [s.name for s in receives] == ["receive:letters"] + [
        f"receive:letters#{i}" for i in (2, 3, 4)
    ]
    assert all(s.state == "completed" and s.input == {"topic": "letters"} for s in receives)


async def test_a_run_waiting_on_receive_parks_and_a_client_wakes_it(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def waiter(wf: gf.Workflow, data: None) -> Any:
        return await wf.receive("go")

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("waiter")
        status = await until_state(e, run_id, "suspended")
        assert status.suspend_reason == "receive:go"
        assert e.stats().held_runs == 0  # parked: no coroutine, no memory
        with pytest.raises(gf.InvalidStateError, match="'receive:go', which waits for a message"):
            await e.resume(run_id, {})
        async with engine(sqlite_url, gf.Registry(), worker=False) as client:
            await client.send(run_id, "go", {"ok": True})
        assert (await e.wait(run_id, timeout=30)).output == {"ok": True}


async def test_receive_returns_none_after_its_timeout_and_replay_agrees(
    registry: gf.Registry,
) -> None:
    calls: list[Any] = []

    @gf.workflow(registry=registry)
    async def patient(wf: gf.Workflow, data: None) -> Any:
        got = await wf.receive("reply", timeout="2d")
        calls.append(got)
        await wf.sleep("then rest", "1d")
        return {"got": got}

    clock = VirtualClock()
    async with engine("memory://", registry, clock=clock) as e, clock.running():
        output = await e.run("patient", timeout=30)
        (run,) = await e.list_runs()
        status = await e.status(run.run_id)
    assert output == {"got": None}
    assert calls == [None, None]  # first pass, then the replay after the parked sleep
    receive = status.steps[0]
    assert (receive.name, receive.state, receive.output) == ("receive:reply", "completed", None)


@pytest.mark.parametrize("wait", ["receive", "suspend"])
async def test_a_wait_parks_though_messages_on_other_topics_arrive_as_it_decides(
    registry: gf.Registry, wait: str
) -> None:
    """A message on another topic wakes the wait, which looks again: it must still park.

    Regression: a wake landing while the wait checked that the run stayed idle made it wait for a
    next change that never came, holding the run in memory, ``running`` for good.
    """

    @gf.workflow(registry=registry)
    async def waiter(wf: gf.Workflow, data: None) -> Any:
        return await (wf.receive("go") if wait == "receive" else wf.suspend("go"))

    async with engine("memory://", registry) as e:
        for noise in range(24):  # the last noise lands at a different point of the wait each time
            run_id = await e.start("waiter")
            for number in range(noise):
                await e.send(run_id, "noise", number)
                await anyio.lowlevel.checkpoint()
            with anyio.fail_after(10):
                await until_state(e, run_id, "suspended")
            assert e.stats().held_runs == 0
            if wait == "receive":
                await e.send(run_id, "go", noise)
            else:
                await e.resume(run_id, noise)
            assert (await e.wait(run_id, timeout=30)).output == noise


async def test_a_message_arriving_before_the_timeout_is_received(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def quick(wf: gf.Workflow, data: None) -> Any:
        return await wf.receive("reply", timeout=60)

    async with engine("memory://", registry) as e:
        run_id = await e.start("quick")
        await until_state(e, run_id, "suspended")
        await e.send(run_id, "reply", 42)
        assert (await e.wait(run_id, timeout=30)).output == 42


async def test_send_refuses_data_that_the_waiting_receive_schema_refuses(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def orders(wf: gf.Workflow, data: None) -> dict[str, Any]:
        order = await wf.receive("orders", schema=Order)
        assert isinstance(order, Order)
        return {"id": order.order_id, "amount": order.amount}

    async with engine(store_url, registry) as e:
        run_id = await e.start("orders")
        await until_state(e, run_id, "suspended")
        async with client_for(store_url, e) as client:
            with pytest.raises(gf.InputValidationError) as refused:
                await client.send(run_id, "orders", {"order_id": "o1", "amount": "lots"})
        assert "message on topic 'orders'" in str(refused.value)
        assert refused.value.errors[0]["loc"] == ("amount",)
        assert (await e.status(run_id)).state == "suspended"
        await e.send(run_id, "orders", {"order_id": "o1", "amount": 3})
        assert (await e.wait(run_id, timeout=30)).output == {"id": "o1", "amount": 3}


async def test_a_message_sent_before_the_receive_that_fails_its_schema_fails_the_receive(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def strict(wf: gf.Workflow, data: None) -> str:
        await wf.sleep("let the message in first", 0.2)
        try:
            await wf.receive("orders", schema=Order)
        except gf.InputValidationError as exc:
            return str(exc)
        return "accepted"

    async with engine("memory://", registry) as e:
        run_id = await e.start("strict")
        await e.send(run_id, "orders", {"order_id": 7})
        message = (await e.wait(run_id, timeout=30)).output
    assert "invalid message on topic 'orders'" in message
    assert "step 'receive:orders'" in message


async def test_messages_to_a_finished_or_unknown_run_are_refused_clearly(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def done(wf: gf.Workflow, data: None) -> int:
        return 1

    async with engine("memory://", registry) as e:
        run_id = await e.start("done")
        await e.wait(run_id, timeout=30)
        with pytest.raises(gf.InvalidStateError) as refused:
            await e.send(run_id, "anything", 1)
        assert str(refused.value) == (
            f"cannot message run {run_id!r}: it is 'completed'; message needs a run that is"
            " pending, running, sleeping or suspended (a finished run receives nothing)"
        )
        with pytest.raises(gf.RunNotFoundError):
            await e.send("no-such-run", "anything", 1)


async def test_concurrent_receives_on_one_topic_each_take_one_message(
    registry: gf.Registry,
) -> None:
    @gf.workflow(registry=registry)
    async def pair(wf: gf.Workflow, data: None) -> list[Any]:
        results: list[Any] = [None, None]

        async def take(index: int) -> None:
            results[index] = await wf.receive("jobs")

        async with anyio.create_task_group() as tg:
            tg.start_soon(take, 0)
            tg.start_soon(take, 1)
        return sorted(results)

    async with engine("memory://", registry) as e:
        run_id = await e.start("pair")
        await e.send(run_id, "jobs", 1)
        await e.send(run_id, "jobs", 2)
        assert (await e.wait(run_id, timeout=30)).output == [1, 2]


def run_flow(url: str, workflow: str, run_id: str, data: object, tmp: Path) -> Any:
    env = os.environ | {
        "GF_CRASH_LOG": str(tmp / "log.txt"),
        "GF_CRASH_MARKER": str(tmp / "killed"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.flows.run_flow", url, workflow, run_id, json.dumps(data)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_each_message_is_received_exactly_once_across_a_crash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'messages.db'}"
    async with gf.Engine(url, worker=False) as client:
        await client.start("msg_collector", {"count": 6, "kill_after": 3}, run_id="m1")
        for item in range(6):
            await client.send("m1", "items", {"item": item})
    killed = run_flow(url, "-", "m1", None, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("m1")
    taken = [s.output for s in status.steps if s.kind == "receive"]
    assert taken == [{"item": i} for i in range(4)]  # the one in flight was taken, durably

    recovered = run_flow(url, "-", "m1", None, tmp_path)
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout.strip().splitlines()[-1]) == list(range(6))
    async with gf.Engine(url, worker=False) as client:
        status = await client.status("m1")
    taken = [s.output for s in status.steps if s.kind == "receive"]
    assert taken == [{"item": i} for i in range(6)]
    handled = Counter((tmp_path / "log.txt").read_text().splitlines())
    assert handled == Counter({f"item {i}": 2 if i == 3 else 1 for i in range(6)})


# --- events ---------------------------------------------------------------------------------------


async def test_events_publish_the_latest_value_to_clients(
    store_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def progress(wf: gf.Workflow, data: None) -> str:
        await wf.set_event("progress", {"done": 1, "of": 3})
        await wf.set_event("progress", {"done": 3, "of": 3})
        await wf.receive("finish")
        return "ok"

    async with engine(store_url, registry) as e:
        run_id = await e.start("progress")
        await until_state(e, run_id, "suspended")
        async with client_for(store_url, e) as client:
            assert await client.get_event(run_id, "progress") == {"done": 3, "of": 3}
            assert await client.get_event(run_id, "missing", timeout=0.1) is None
        await e.send(run_id, "finish")
        status = await e.wait(run_id, timeout=30)
        assert await e.get_event(run_id, "missing") is None  # ended: nothing more will come
    events = [(s.name, s.kind, s.output) for s in status.steps if s.kind == "event"]
    assert events == [
        ("event:progress", "event", {"done": 1, "of": 3}),
        ("event:progress#2", "event", {"done": 3, "of": 3}),
    ]


async def test_get_event_waits_for_the_key_to_appear(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def later(wf: gf.Workflow, data: None) -> None:
        await wf.receive("go")
        await wf.set_event("answer", 42)
        await wf.receive("stop")

    async with engine("memory://", registry) as e:
        run_id = await e.start("later")
        async with anyio.create_task_group() as tg:
            got: list[Any] = []

            async def reader() -> None:
                got.append(await e.get_event(run_id, "answer", timeout=30))

            tg.start_soon(reader)
            await until_state(e, run_id, "suspended")
            assert got == []
            await e.send(run_id, "go")
        assert got == [42]
        await e.send(run_id, "stop")
        await e.wait(run_id, timeout=30)


async def test_a_replayed_run_does_not_publish_an_older_value_again(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def stages(wf: gf.Workflow, data: None) -> None:
        await wf.set_event("stage", "one")
        await wf.sleep("pause", "3s")  # parks: the run is replayed from the top after it
        await wf.set_event("stage", "two")

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("stages")
        await e.wait(run_id, timeout=30)
        assert await e.get_event(run_id, "stage") == "two"
        status = await e.status(run_id)
    assert [s.name for s in status.steps] == ["event:stage", "pause", "event:stage#2"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
async def test_a_version_3_database_gets_the_message_tables_when_opened(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def migrated(wf: gf.Workflow, data: None) -> Any:
        await wf.set_event("stage", "up")
        return await wf.receive("go")

    path = tmp_path / "v3.db"
    fixture = {"postgres": "pg_url", "mariadb": "mysql_url"}.get(backend)
    url = f"sqlite:///{path}" if fixture is None else request.getfixturevalue(fixture)
    async with gf.Engine(url, worker=False):
        pass
    make_version(3, url, path if fixture is None else None)
    async with engine(url, registry) as e:
        run_id = await e.start("migrated")
        await e.send(run_id, "go", "went")
        assert (await e.wait(run_id, timeout=30)).output == "went"
        assert await e.get_event(run_id, "stage") == "up"


async def test_check_replays_a_run_waiting_on_a_receive_without_taking_a_message(
    sqlite_url: str, registry: gf.Registry
) -> None:
    @gf.workflow(registry=registry)
    async def checked(wf: gf.Workflow, data: None) -> Any:
        await wf.set_event("stage", "waiting")
        return await wf.receive("go")

    async with engine(sqlite_url, registry) as e:
        run_id = await e.start("checked")
        await until_state(e, run_id, "suspended")
        async with engine(sqlite_url, registry, worker=False) as client:
            await client.send(run_id, "go", 1)  # waits in the store: a dry replay leaves it
            (result,) = await client.check()
        assert result.ok and result.run_id == run_id
        assert (await e.wait(run_id, timeout=30)).output == 1
