"""The Store contract, run against memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import anyio
import pytest

import graphflow as gf
from graphflow._types import RunState, StepState
from graphflow.store import open_store
from graphflow.store.base import (
    ClaimQuery,
    Fence,
    JobRecord,
    OwnerRecord,
    RunRecord,
    StepRecord,
    Store,
)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


def a_run(
    run_id: str = "r1", *, owner: str | None = "o1", state: RunState = "running"
) -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id=run_id,
        workflow="w",
        state=state,
        input='{"a": 1}',
        created_at=now,
        updated_at=now,
        owner_id=owner,
        lease_epoch=1 if owner else 0,
        lease_expires_at=now + 60 if owner else None,
    )


def a_step(name: str, seq: int, state: StepState = "completed") -> StepRecord:
    return StepRecord(
        run_id="r1", name=name, seq=seq, kind="rpc", function="f", state=state,
        attempts=1, output="1", parents=("a",) if seq else (),
    )  # fmt: skip


FENCE = Fence(run_id="r1", owner_id="o1", epoch=1)


async def test_create_run_is_idempotent(store: Store) -> None:
    stored, created = await store.create_run(a_run())
    assert created and stored.run_id == "r1"
    again, created = await store.create_run(a_run())
    assert not created and again.input == '{"a": 1}'
    assert await store.get_run("missing") is None


async def test_steps_load_in_issue_order_in_one_query(store: Store) -> None:
    await store.create_run(a_run())
    await store.record_step(FENCE, a_step("b", 1))
    await store.record_step(FENCE, a_step("a", 0))
    await store.record_step(FENCE, a_step("b", 1, state="failed"))
    steps = await store.load_steps("r1")
    assert [(s.name, s.state, s.parents) for s in steps] == [
        ("a", "completed", ()),
        ("b", "failed", ("a",)),
    ]


async def test_writes_are_fenced_by_the_lease_epoch(store: Store) -> None:
    await store.create_run(a_run(owner="o1"))
    stale = Fence(run_id="r1", owner_id="o1", epoch=0)
    with pytest.raises(gf.LeaseLostError, match="'r1'"):
        await store.record_step(stale, a_step("a", 0))
    with pytest.raises(gf.LeaseLostError):
        await store.end_run(stale, state="completed", output="1", error=None, at=1.0)
    assert await store.load_steps("r1") == []
    await store.end_run(FENCE, state="completed", output="1", error=None, at=2.0)
    run = await store.get_run("r1")
    assert run is not None and run.state == "completed" and run.owner_id is None


async def test_claim_takes_new_abandoned_and_due_runs_once(store: Store) -> None:
    await store.register_owner(OwnerRecord(owner_id="o2", host="h", pid=1, started_at=0.0))
    await store.create_run(a_run("new", owner=None, state="pending"))
    await store.create_run(a_run("dead", owner="gone"))
    await store.create_run(a_run("alive", owner="o3"))
    query = ClaimQuery(owner_id="o2", workflows=["w"], dead_owners=["gone"])
    claimed = await store.claim_runs(query, time.time())
    assert sorted(r.run_id for r in claimed) == ["dead", "new"]
    dead = next(r for r in claimed if r.run_id == "dead")
    assert dead.recoveries == 1 and dead.lease_epoch == 2 and dead.owner_id == "o2"
    assert await store.claim_runs(query, time.time()) == []
    assert set(await store.renew_leases("o2", 30)) == {"dead", "new"}


async def test_parked_runs_wake_when_due(store: Store) -> None:
    await store.create_run(a_run())
    await store.park_run(FENCE, state="sleeping", at=1.0, wake_at=100.0)
    assert await store.next_wake_at(["w"]) == 100.0
    query = ClaimQuery(owner_id="o2", workflows=["w"])
    assert await store.claim_runs(query, 99.0) == []
    (woken,) = await store.claim_runs(query, 100.0)
    assert woken.state == "running" and woken.wake_at is None


async def test_resume_completes_a_suspended_step_once(store: Store) -> None:
    await store.create_run(a_run())
    await store.record_step(FENCE, a_step("approve", 0, state="suspended"))
    await store.park_run(FENCE, state="suspended", at=1.0)
    assert await store.resume_step("r1", "approve", '{"ok": true}', 2.0)
    assert not await store.resume_step("r1", "approve", '{"ok": false}', 3.0)
    run = await store.get_run("r1")
    assert run is not None and run.state == "running" and run.owner_id is None
    (step,) = await store.load_steps("r1")
    assert step.state == "completed" and step.output == '{"ok": true}'


async def test_cancel_unheld_held_and_ended_runs(store: Store) -> None:
    await store.create_run(a_run("free", owner=None, state="pending"))
    await store.create_run(a_run("held", owner="o9"))
    assert await store.cancel_run("free", 1.0) == "cancelled"
    assert await store.cancel_run("free", 1.0) == "ended:cancelled"
    assert await store.cancel_run("held", 1.0) == "requested"
    assert await store.renew_leases("o9", 30) == {"held": True}
    assert await store.cancel_run("missing", 1.0) == "missing"


async def test_jobs_are_claimed_once_and_fenced(store: Store) -> None:
    job = JobRecord(
        job_id="j1", run_id="r1", step_name="s", function="f", input="{}", attempt=1,
        created_at=1.0,
    )  # fmt: skip
    await store.enqueue_job(job)
    await store.enqueue_job(job)
    (claimed,) = await store.claim_jobs("o1", ["f"], 10, 30)
    assert claimed.state == "running" and claimed.owner_id == "o1"
    assert await store.claim_jobs("o2", ["f"], 10, 30) == []
    stale = dataclasses.replace(claimed, owner_id="o2")
    assert not await store.finish_job(stale, output="1", error=None, retryable=True, at=2.0)
    assert await store.finish_job(claimed, output="1", error=None, retryable=True, at=2.0)
    done = await store.get_job("j1")
    assert done is not None and done.state == "completed" and done.output == "1"


async def test_list_runs_pages_after_a_cursor_newest_first(store: Store) -> None:
    base = time.time()
    for i, run_id in enumerate(["a", "c", "b", "d"]):
        created_at = base + (1 if i else 0)  # c, b and d share one created_at: run_id breaks ties
        run = dataclasses.replace(a_run(run_id, owner=None, state="pending"), created_at=created_at)
        await store.create_run(run)
    listed = await store.list_runs()
    assert [r.run_id for r in listed] == ["d", "c", "b", "a"]
    page = await store.list_runs(limit=2, before=(listed[1].created_at, listed[1].run_id))
    assert [r.run_id for r in page] == ["b", "a"]
    assert await store.list_runs(before=(base - 1, "z")) == []


# --- capabilities: what the engine asks a store instead of reading its URL ------------------------

BUILT_IN_CAPABILITIES = {
    "memory": {"notifies": False, "shared": False},
    "sqlite": {"notifies": False, "shared": True},
    "postgresql": {"notifies": True, "shared": True},
    "mariadb": {"notifies": False, "shared": True},
}


async def test_built_in_stores_declare_their_capabilities(store: Store, store_url: str) -> None:
    expected = BUILT_IN_CAPABILITIES[store_url.split(":", 1)[0]]
    assert {"notifies": store.notifies, "shared": store.shared} == expected


async def test_a_shared_store_shows_its_runs_to_another_store_on_its_url(
    store: Store, store_url: str
) -> None:
    await store.create_run(a_run(owner=None, state="pending"))
    other = open_store(store_url)
    await other.open()
    try:
        seen = await other.get_run("r1")
    finally:
        await other.aclose()
    assert (seen is not None) is store.shared


async def test_a_notifying_store_tells_listeners_of_new_runs(store: Store) -> None:
    received: list[str] = []
    if not store.notifies:
        with anyio.fail_after(10):
            await store.listen(received.append)  # nothing to listen to: returns at once
        assert received == []
        return
    notified = anyio.Event()

    def on_notify(payload: str) -> None:
        received.append(payload)
        notified.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.listen, on_notify)
            i = 0
            while not notified.is_set():  # the listener connects in its own time: keep writing
                i += 1
                await store.create_run(a_run(f"n{i}", owner=None, state="pending"))
                with anyio.move_on_after(0.2):
                    await notified.wait()
            tg.cancel_scope.cancel()
    assert received[0].startswith("run:n")
