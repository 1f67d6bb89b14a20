"""The ``Store`` contract as a pytest suite that any store implementation can run against itself.

Subclass ``StoreContract`` in a test module and give it a ``new_store`` fixture: a callable that
returns a new, unopened ``Store`` on the test's own database (fresh for each test; each call a new
handle on that same database). Every contract test then runs against your store:

```python
import pytest
from graphflow.testing.store_contract import StoreContract


class TestMyStore(StoreContract):
    @pytest.fixture
    def new_store(self, tmp_path):
        return lambda: MyStore(tmp_path / "state")
```

graphflow's own stores (memory, SQLite, PostgreSQL, MariaDB) pass this suite in its own tests, so
it is the contract the engine relies on, not a copy of it. The tests are async and run on anyio
(its pytest plugin comes with anyio).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from .._types import RunState, StepState
from ..errors import LeaseLostError
from ..store.base import (
    AttemptRecord,
    ClaimQuery,
    Fence,
    JobRecord,
    OwnerRecord,
    PruneQuery,
    RunRecord,
    StepRecord,
    Store,
    receive_input,
)
from ._flow_contract import FlowControlContract

__all__ = ("StoreContract", "StoreFactory")

StoreFactory = Callable[[], Store]
"""Returns a new, unopened handle on the test's database."""

_FENCE = Fence(run_id="r1", owner_id="o1", epoch=1)


def _run(run_id: str = "r1", *, owner: str | None = "o1", state: RunState = "running") -> RunRecord:
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


def _step(name: str, seq: int, state: StepState = "completed", run_id: str = "r1") -> StepRecord:
    return StepRecord(
        run_id=run_id,
        name=name,
        seq=seq,
        kind="rpc",
        function="f",
        state=state,
        attempts=1,
        output="1",
        parents=("a",) if seq else (),
    )


def _finished(
    run_id: str,
    finished_at: float,
    *,
    state: RunState = "completed",
    parent: str | None = None,
    workflow: str = "w",
) -> RunRecord:
    """A run that ended at ``finished_at`` (or, unfinished, is still in ``state``)."""
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        state=state,
        input="{}",
        parent_run_id=parent,
        created_at=finished_at - 1,
        updated_at=finished_at,
        finished_at=finished_at if state in ("completed", "failed", "cancelled") else None,
    )


def _receive(name: str, seq: int, topic: str, state: StepState = "completed") -> StepRecord:
    """A receive step on ``topic`` (``suspended`` while it waits; ``completed`` to take one)."""
    return StepRecord(
        run_id="r1",
        name=name,
        seq=seq,
        kind="receive",
        function=None,
        state=state,
        attempts=1,
        input=receive_input(topic),
    )


def _job(job_id: str = "j1") -> JobRecord:
    return JobRecord(
        job_id=job_id,
        run_id="r1",
        step_name="s",
        function="f",
        input="{}",
        attempt=1,
        created_at=1.0,
    )


@pytest.mark.anyio
class StoreContract(FlowControlContract):
    """What the engine relies on from a ``Store``: one test per clause, in the engine's words.

    Subclasses provide the ``new_store`` fixture.
    """

    @pytest.fixture
    def new_store(self) -> StoreFactory:
        """A callable returning a new, unopened store on this test's (fresh) database."""
        pytest.fail("define a new_store fixture in your StoreContract subclass")

    @pytest.fixture
    async def store(self, new_store: StoreFactory) -> AsyncIterator[Store]:
        """An open store on this test's database."""
        opened = new_store()
        await opened.open()
        try:
            yield opened
        finally:
            await opened.aclose()

    # --- runs -----------------------------------------------------------------------------------

    async def test_create_run_is_idempotent(self, store: Store) -> None:
        """A second create of the same run id returns the stored run, unchanged."""
        stored, created = await store.create_run(_run())
        assert created and stored.run_id == "r1"
        again, created = await store.create_run(dataclasses.replace(_run(), input='{"b": 2}'))
        assert not created and again.input == '{"a": 1}'
        assert await store.get_run("missing") is None

    async def test_ids_and_names_compare_exactly(self, store: Store) -> None:
        """Ids and step names differing in case or trailing space are different keys."""
        for run_id in ("order-1", "Order-1", "order-1 "):
            assert (await store.create_run(_run(run_id, owner=None, state="pending")))[1]
        assert (await store.get_run("Order-1")) is not None
        await store.create_run(_run())
        await store.record_step(_FENCE, _step("a", 0))
        await store.record_step(_FENCE, _step("A", 1))
        assert [step.name for step in await store.load_steps("r1")] == ["a", "A"]

    async def test_payloads_and_timestamps_round_trip_exactly(self, store: Store) -> None:
        """Megabytes of JSON text (any Unicode) and double-precision times come back as stored."""
        big = json.dumps({"text": "héllo ✓ 🚀 " * 100_000})  # about 1.5 MB
        run = dataclasses.replace(_run(), input=big, created_at=1796018119.1694322)
        await store.create_run(run)
        await store.record_step(_FENCE, dataclasses.replace(_step("a", 0), output=big))
        stored, steps, _ = await store.load_run("r1")
        assert stored is not None and stored.input == big
        assert stored.created_at == 1796018119.1694322
        assert steps[0].output == big

    async def test_list_runs_newest_first_and_filtered(self, store: Store) -> None:
        """``list_runs`` orders by creation, newest first, and filters by each field given."""
        states: list[RunState] = ["pending", "completed", "pending"]
        for i, state in enumerate(states):
            run = dataclasses.replace(
                _run(f"r{i}", owner=None, state=state), created_at=float(i), updated_at=float(i)
            )
            await store.create_run(run)
        assert [r.run_id for r in await store.list_runs()] == ["r2", "r1", "r0"]
        assert [r.run_id for r in await store.list_runs(state="pending", limit=1)] == ["r2"]
        assert await store.list_runs(workflow="other") == []

    async def test_list_runs_pages_after_a_cursor_newest_first(self, store: Store) -> None:
        """``before=(created_at, run_id)`` lists the runs after that one; ``run_id`` breaks ties."""
        base = time.time()
        for i, run_id in enumerate(["a", "c", "b", "d"]):
            created_at = base + (1 if i else 0)  # c, b and d share one created_at
            run = _run(run_id, owner=None, state="pending")
            await store.create_run(dataclasses.replace(run, created_at=created_at))
        listed = await store.list_runs()
        assert [r.run_id for r in listed] == ["d", "c", "b", "a"]
        page = await store.list_runs(limit=2, before=(listed[1].created_at, listed[1].run_id))
        assert [r.run_id for r in page] == ["b", "a"]
        assert await store.list_runs(before=(base - 1, "z")) == []

    async def test_a_shared_store_shows_its_runs_to_another_handle(
        self, store: Store, new_store: StoreFactory
    ) -> None:
        """What one handle writes, another handle on a shared store's database reads."""
        await store.create_run(_run(owner=None, state="pending"))
        other = new_store()
        await other.open()
        try:
            seen = await other.get_run("r1")
        finally:
            await other.aclose()
        assert (seen is not None) is store.shared

    # --- steps and fencing ----------------------------------------------------------------------

    async def test_steps_load_in_issue_order_in_one_query(self, store: Store) -> None:
        """Steps come back by ``seq``; recording a step again replaces it."""
        await store.create_run(_run())
        await store.record_step(_FENCE, _step("b", 1))
        await store.record_step(_FENCE, _step("a", 0))
        await store.record_step(_FENCE, _step("b", 1, state="failed"))
        steps = await store.load_steps("r1")
        assert [(s.name, s.state, s.parents) for s in steps] == [
            ("a", "completed", ()),
            ("b", "failed", ("a",)),
        ]

    async def test_failed_attempts_load_with_their_run(self, store: Store) -> None:
        """A failed attempt is stored with its step, once however often it is recorded."""
        await store.create_run(_run())
        failed = AttemptRecord(
            run_id="r1", step_name="a", attempt=1, error="boom", started_at=1.0, finished_at=2.0
        )
        await store.record_step(_FENCE, _step("a", 0, state="running"), failed)
        await store.record_step(_FENCE, _step("a", 0, state="running"), failed)
        _, steps, attempts = await store.load_run("r1")
        assert [s.state for s in steps] == ["running"]
        assert attempts == [failed]

    async def test_writes_are_fenced_by_the_lease_epoch(self, store: Store) -> None:
        """An owner whose epoch is stale writes nothing: ``LeaseLostError``."""
        await store.create_run(_run(owner="o1"))
        stale = Fence(run_id="r1", owner_id="o1", epoch=0)
        with pytest.raises(LeaseLostError, match="'r1'"):
            await store.record_step(stale, _step("a", 0))
        with pytest.raises(LeaseLostError):
            await store.end_run(stale, state="completed", output="1", error=None, at=1.0)
        assert await store.load_steps("r1") == []
        await store.end_run(_FENCE, state="completed", output="1", error=None, at=2.0)
        run = await store.get_run("r1")
        assert run is not None and run.state == "completed" and run.owner_id is None

    # --- claims, leases and owners --------------------------------------------------------------

    async def test_claim_takes_new_abandoned_and_due_runs_once(self, store: Store) -> None:
        """New runs and runs of dead owners are claimed once, with a new epoch."""
        await store.register_owner(OwnerRecord(owner_id="o2", host="h", pid=1, started_at=0.0))
        await store.create_run(_run("new", owner=None, state="pending"))
        await store.create_run(_run("dead", owner="gone"))
        await store.create_run(_run("alive", owner="o3"))
        query = ClaimQuery(owner_id="o2", workflows=["w"], dead_owners=["gone"])
        claimed = await store.claim_runs(query, time.time())
        assert sorted(r.run_id for r in claimed) == ["dead", "new"]
        dead = next(r for r in claimed if r.run_id == "dead")
        assert dead.recoveries == 1 and dead.lease_epoch == 2 and dead.owner_id == "o2"
        assert await store.claim_runs(query, time.time()) == []
        assert set(await store.renew_leases("o2", 30)) == {"dead", "new"}

    async def test_concurrent_claims_take_each_run_once(
        self, store: Store, new_store: StoreFactory
    ) -> None:
        """Two claimers at once (two handles where the store is shared) never share a run."""
        for i in range(20):
            await store.create_run(_run(f"r{i:02}", owner=None, state="pending"))
        other = new_store() if store.shared else store
        if other is not store:
            await other.open()
        taken: dict[str, list[str]] = {"o1": [], "o2": []}

        async def claim_all(claimer: Store, owner_id: str) -> None:
            query = ClaimQuery(owner_id=owner_id, workflows=["w"], limit=3)
            while claimed := await claimer.claim_runs(query, time.time()):
                taken[owner_id] += [run.run_id for run in claimed]

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim_all, store, "o1")
                tg.start_soon(claim_all, other, "o2")
        finally:
            if other is not store:
                await other.aclose()
        everything = taken["o1"] + taken["o2"]
        assert sorted(everything) == [f"r{i:02}" for i in range(20)]

    async def test_the_lease_clock_counts_seconds_since_the_epoch(self, store: Store) -> None:
        """``now()`` is on the scale of ``time.time()`` (the database's clock or the host's)."""
        assert abs(await store.now() - time.time()) < 300

    async def test_released_runs_keep_their_state_and_are_claimable(self, store: Store) -> None:
        """``release_run`` frees a run without changing its state."""
        await store.create_run(_run())
        await store.release_run(_FENCE)
        run = await store.get_run("r1")
        assert run is not None and run.state == "running" and run.owner_id is None
        (claimed,) = await store.claim_runs(ClaimQuery(owner_id="o2", workflows=["w"]), 1.0)
        assert claimed.owner_id == "o2" and claimed.lease_epoch == 2

    async def test_owners_serve_functions_and_release_runs_when_removed(self, store: Store) -> None:
        """Registered owners are found by host; removing one frees the runs it held."""
        owner = OwnerRecord(owner_id="o1", host="h1", pid=7, started_at=1.0, functions=("f", "g"))
        await store.register_owner(owner)
        assert [o.owner_id for o in await store.owners_on_host("h1")] == ["o1"]
        assert await store.owners_on_host("h2") == []
        assert {"f", "g"} <= await store.served_functions(30)
        await store.create_run(_run())
        await store.remove_owner("o1")
        run = await store.get_run("r1")
        assert run is not None and run.owner_id is None
        assert await store.owners_on_host("h1") == []

    # --- sleeping, suspending, cancelling -------------------------------------------------------

    async def test_parked_runs_wake_when_due(self, store: Store) -> None:
        """A sleeping run is claimable from its ``wake_at`` on, not before."""
        await store.create_run(_run())
        await store.park_run(_FENCE, state="sleeping", at=1.0, wake_at=100.0)
        assert await store.next_wake_at(["w"]) == 100.0
        query = ClaimQuery(owner_id="o2", workflows=["w"])
        assert await store.claim_runs(query, 99.0) == []
        (woken,) = await store.claim_runs(query, 100.0)
        assert woken.state == "running" and woken.wake_at is None

    async def test_resume_completes_a_suspended_step_once(self, store: Store) -> None:
        """A resume completes the step and frees the run; a second resume changes nothing."""
        await store.create_run(_run())
        await store.record_step(_FENCE, _step("approve", 0, state="suspended"))
        await store.park_run(_FENCE, state="suspended", at=1.0)
        assert await store.resume_step("r1", "approve", '{"ok": true}', 2.0)
        assert not await store.resume_step("r1", "approve", '{"ok": false}', 3.0)
        run = await store.get_run("r1")
        assert run is not None and run.state == "running" and run.owner_id is None
        (step,) = await store.load_steps("r1")
        assert step.state == "completed" and step.output == '{"ok": true}'

    async def test_a_resume_before_parking_is_not_lost(self, store: Store) -> None:
        """Parking on a suspend that was resumed meanwhile leaves the run runnable."""
        await store.create_run(_run())
        await store.record_step(_FENCE, _step("approve", 0, state="suspended"))
        assert await store.resume_step("r1", "approve", '{"ok": true}', 2.0)
        await store.park_run(_FENCE, state="suspended", at=3.0, resumable=["approve"])
        run = await store.get_run("r1")
        assert run is not None and run.state == "running" and run.owner_id is None

    async def test_cancel_unheld_held_and_ended_runs(self, store: Store) -> None:
        """Unheld runs are cancelled at once, held ones flagged for their owner."""
        await store.create_run(_run("free", owner=None, state="pending"))
        await store.create_run(_run("held", owner="o9"))
        assert await store.cancel_run("free", 1.0) == "cancelled"
        assert await store.cancel_run("free", 1.0) == "ended:cancelled"
        assert await store.cancel_run("held", 1.0) == "requested"
        assert await store.renew_leases("o9", 30) == {"held": True}
        assert await store.cancel_run("missing", 1.0) == "missing"

    # --- jobs -----------------------------------------------------------------------------------

    async def test_jobs_are_claimed_once_and_fenced(self, store: Store) -> None:
        """A job is enqueued once, claimed by one owner, finished only by that owner."""
        await store.enqueue_job(_job())
        await store.enqueue_job(_job())
        (claimed,) = await store.claim_jobs("o1", ["f"], 10, 30)
        assert claimed.state == "running" and claimed.owner_id == "o1"
        assert await store.claim_jobs("o2", ["f"], 10, 30) == []
        stale = dataclasses.replace(claimed, owner_id="o2")
        assert not await store.finish_job(stale, output="1", error=None, retryable=True, at=2.0)
        assert await store.finish_job(claimed, output="1", error=None, retryable=True, at=2.0)
        done = await store.get_job("j1")
        assert done is not None and done.state == "completed" and done.output == "1"

    async def test_a_job_whose_lease_expired_is_taken_over(self, store: Store) -> None:
        """Another owner takes a job whose lease ran out; the first one can no longer finish it."""
        await store.enqueue_job(_job())
        (first,) = await store.claim_jobs("o1", ["f"], 10, -1.0)  # expired at once
        (second,) = await store.claim_jobs("o2", ["f"], 10, 30)
        assert second.owner_id == "o2"
        assert not await store.finish_job(first, output="1", error=None, retryable=True, at=2.0)
        assert await store.finish_job(second, output=None, error="e", retryable=False, at=3.0)
        done = await store.get_job("j1")
        assert done is not None and done.state == "failed" and not done.retryable

    async def test_a_cancel_refuses_the_owners_next_step_write_without_notifications(
        self, store: Store
    ) -> None:
        """Without notifications, a requested cancel refuses the owner's next step write.

        So the owner stops there (a write that records the cancel itself passes).
        """
        await store.create_run(_run())
        assert await store.cancel_run("r1", 1.0) == "requested"
        if store.notifies:
            await store.record_step(_FENCE, _step("a", 0))  # the owner hears of it by NOTIFY
            return
        with pytest.raises(LeaseLostError):
            await store.record_step(_FENCE, _step("a", 0))
        await store.record_step(_FENCE, _step("a", 0, state="cancelled"))
        (step,) = await store.load_steps("r1")
        assert step.state == "cancelled"

    # --- messages, events and declared graphs ---------------------------------------------------

    async def test_messages_are_received_once_in_the_order_sent(self, store: Store) -> None:
        """Each message is taken by one receive, oldest first per topic, with its completion."""
        await store.create_run(_run())
        for data, topic in [('"a"', "t"), ('"c"', "u"), ('"b"', "t")]:
            assert await store.send_message("r1", topic, data, 1.0) == "sent"
        assert await store.has_message("r1", "t")
        got = [await store.take_message(_FENCE, _receive(f"t{i}", i, "t"), "t") for i in range(3)]
        assert got == ['"a"', '"b"', None]
        assert not await store.has_message("r1", "t")
        assert await store.take_message(_FENCE, _receive("u0", 3, "u"), "u") == '"c"'
        steps = await store.load_steps("r1")
        assert [(s.name, s.state, s.output) for s in steps] == [
            ("t0", "completed", '"a"'),
            ("t1", "completed", '"b"'),
            ("u0", "completed", '"c"'),
        ]

    async def test_a_message_is_taken_only_under_the_run_lease(self, store: Store) -> None:
        """A stale owner takes nothing: the message stays for the run's real owner."""
        await store.create_run(_run())
        await store.send_message("r1", "t", "1", 1.0)
        stale = Fence(run_id="r1", owner_id="o1", epoch=0)
        with pytest.raises(LeaseLostError):
            await store.take_message(stale, _receive("t0", 0, "t"), "t")
        assert await store.load_steps("r1") == []
        assert await store.take_message(_FENCE, _receive("t0", 0, "t"), "t") == "1"

    async def test_sending_to_a_missing_or_ended_run_stores_nothing(self, store: Store) -> None:
        """``send_message`` says why it stored nothing."""
        assert await store.send_message("missing", "t", "1", 1.0) == "missing"
        await store.create_run(_run())
        await store.end_run(_FENCE, state="completed", output="1", error=None, at=1.0)
        assert await store.send_message("r1", "t", "1", 1.0) == "ended:completed"
        assert not await store.has_message("r1", "t")

    async def test_a_message_wakes_a_run_parked_on_a_receive_of_its_topic(
        self, store: Store
    ) -> None:
        """A parked run becomes runnable when a message arrives for a receive it waits on."""
        await store.create_run(_run())
        await store.record_step(_FENCE, _receive("wait", 0, "t", "suspended"))
        await store.park_run(_FENCE, state="suspended", at=1.0, suspend_reason="wait",
                             receiving=["t"])  # fmt: skip
        await store.send_message("r1", "other", "1", 2.0)
        run = await store.get_run("r1")
        assert run is not None and run.state == "suspended"
        await store.send_message("r1", "t", "2", 3.0)
        run = await store.get_run("r1")
        assert run is not None and run.state == "running" and run.owner_id is None

    async def test_parking_with_a_message_waiting_leaves_the_run_runnable(
        self, store: Store
    ) -> None:
        """A message sent before the run parks on its receive is not lost to the race."""
        await store.create_run(_run())
        await store.send_message("r1", "t", "1", 1.0)
        await store.record_step(_FENCE, _receive("wait", 0, "t", "suspended"))
        await store.park_run(_FENCE, state="suspended", at=2.0, receiving=["t"])
        run = await store.get_run("r1")
        assert run is not None and run.state == "running" and run.owner_id is None

    async def test_events_keep_the_latest_value_under_the_run_lease(self, store: Store) -> None:
        """``set_event`` publishes with its step (latest wins); a stale owner publishes nothing."""
        await store.create_run(_run())
        assert await store.get_event("r1", "progress") is None
        for seq, value in enumerate(["10", "50"]):
            step = dataclasses.replace(
                _step(f"set {seq}", seq), kind="event", function=None, output=value,
                finished_at=1.0,
            )  # fmt: skip
            await store.set_event(_FENCE, step, "progress", value)
        assert await store.get_event("r1", "progress") == "50"
        stale = Fence(run_id="r1", owner_id="o1", epoch=0)
        with pytest.raises(LeaseLostError):
            await store.set_event(stale, _step("set 9", 9), "progress", "99")
        assert await store.get_event("r1", "progress") == "50"
        assert [s.name for s in await store.load_steps("r1")] == ["set 0", "set 1"]

    async def test_declared_graphs_are_kept_once_by_hash(self, store: Store) -> None:
        """The first structure saved under a hash stays."""
        assert await store.get_graph("h1") is None
        await store.save_graph("h1", '{"nodes": []}', 1.0)
        await store.save_graph("h1", '{"nodes": ["other"]}', 2.0)
        assert await store.get_graph("h1") == '{"nodes": []}'

    # --- notifications --------------------------------------------------------------------------

    async def test_a_notifying_store_tells_listeners_of_new_runs(self, store: Store) -> None:
        """With ``notifies``, a listener hears of new runs; without, ``listen`` returns at once."""
        received: list[str] = []
        if not store.notifies:
            with anyio.fail_after(10):
                await store.listen(received.append)
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
                    await store.create_run(_run(f"n{i}", owner=None, state="pending"))
                    with anyio.move_on_after(0.2):
                        await notified.wait()
                tg.cancel_scope.cancel()
        assert received[0].startswith("run:n")

    # --- repair and retention -------------------------------------------------------------------

    async def test_histories_load_a_page_of_runs_with_their_steps(self, store: Store) -> None:
        """``load_histories`` pages runs in the given states by run id, each with its steps."""
        await store.create_run(_run())
        await store.record_step(_FENCE, _step("a", 0))
        await store.record_step(_FENCE, _step("b", 1))
        await store.create_run(_run("r2", owner=None, state="pending"))
        await store.create_run(_finished("r3", 5.0))
        page = await store.load_histories(states=["running", "pending"], limit=1)
        assert [(run.run_id, [s.name for s in steps]) for run, steps in page] == [
            ("r1", ["a", "b"])
        ]
        page = await store.load_histories(states=["running", "pending"], after="r1")
        assert [(run.run_id, steps) for run, steps in page] == [("r2", [])]
        assert await store.load_histories(states=["running"], workflow="other") == []

    async def test_a_fork_copies_the_named_steps_into_a_new_run(self, store: Store) -> None:
        """``fork_run`` stores the new run with copies of the named steps and their attempts."""
        await store.create_run(_run())
        failed = AttemptRecord(
            run_id="r1", step_name="b", attempt=1, error="boom", started_at=1.0, finished_at=2.0
        )
        await store.record_step(_FENCE, _step("a", 0))
        await store.record_step(_FENCE, _step("b", 1, state="running"), failed)
        await store.record_step(_FENCE, _step("b", 1))
        await store.record_step(_FENCE, _step("c", 2))
        fork = dataclasses.replace(
            _run("f1", owner=None, state="pending"), forked_from="r1", input="{}"
        )
        await store.fork_run(fork, "r1", ["a", "b"])
        run, steps, attempts = await store.load_run("f1")
        assert run is not None and run.forked_from == "r1" and run.state == "pending"
        assert [(s.run_id, s.name, s.seq, s.output) for s in steps] == [
            ("f1", "a", 0, "1"),
            ("f1", "b", 1, "1"),
        ]
        assert [(a.run_id, a.step_name) for a in attempts] == [("f1", "b")]
        assert [s.name for s in await store.load_steps("r1")] == ["a", "b", "c"]

    async def test_prune_deletes_old_finished_runs_in_batches(self, store: Store) -> None:
        """Batches follow ``(finished_at, run_id)``; only the asked states and workflow go."""
        for i in range(5):
            await store.create_run(_finished(f"old{i}", 10.0 + i))
        await store.create_run(_finished("young", 100.0))
        await store.create_run(_finished("failed", 11.0, state="failed"))
        await store.create_run(_finished("other", 11.0, workflow="v"))
        await store.create_run(_run("live", owner=None, state="pending"))
        query = PruneQuery(finished_before=50.0, states=["completed"], workflow="w", limit=2)
        dry = await store.prune_runs(dataclasses.replace(query, dry_run=True))
        # Two runs looked at (old0, then "failed"): one matches, none deleted.
        assert dry.run_ids == ("old0",) and dry.deleted == 0 and dry.last == (11.0, "failed")
        assert await store.get_run("old0") is not None
        deleted: list[str] = []
        after = None
        while (batch := await store.prune_runs(dataclasses.replace(query, after=after))).last:
            assert batch.deleted == len(batch.run_ids)
            deleted += batch.run_ids
            after = batch.last
        assert deleted == [f"old{i}" for i in range(5)]
        left = {run.run_id for run in await store.list_runs(limit=100)}
        assert left == {"young", "failed", "other", "live"}
        assert await store.oldest_finished_at("w") == 11.0
        assert await store.oldest_finished_at("nothing") is None

    async def test_prune_takes_children_and_keeps_unfinished_families(self, store: Store) -> None:
        """A run goes with its children; never one with an unfinished parent or descendant."""
        await store.create_run(_finished("p1", 10.0))
        await store.create_run(_finished("p1-c", 9.0, parent="p1"))
        await store.create_run(_finished("p1-c-c", 8.0, parent="p1-c"))
        await store.create_run(_finished("p2", 10.0))
        await store.create_run(_finished("p2-c", 9.0, parent="p2"))
        await store.create_run(_finished("p2-c-c", 9.0, parent="p2-c", state="running"))
        await store.create_run(_finished("p3", 10.0, state="suspended"))
        await store.create_run(_finished("p3-c", 9.0, parent="p3"))
        batch = await store.prune_runs(PruneQuery(finished_before=50.0, states=["completed"]))
        assert sorted(batch.run_ids) == ["p1", "p1-c", "p1-c-c"] and batch.deleted == 3
        left = {run.run_id for run in await store.list_runs(limit=100)}
        assert left == {"p2", "p2-c", "p2-c-c", "p3", "p3-c"}
