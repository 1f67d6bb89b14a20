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
from typing import Any

import anyio
import pytest

from .._types import RunState, StepState
from ..errors import LeaseLostError
from ..store.base import AttemptRecord, ClaimQuery, Fence, OwnerRecord, RunRecord, Store
from ._flow_contract import FlowControlContract
from ._lifecycle_contract import LifecycleContract
from ._records import _FENCE, _job, _run, _step

__all__ = ("StoreContract", "StoreFactory")

StoreFactory = Callable[[], Store]
"""Returns a new, unopened handle on the test's database."""


@pytest.mark.anyio
class StoreContract(FlowControlContract, LifecycleContract):
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

    async def test_a_step_is_found_by_name_and_waiting_steps_alone(self, store: Store) -> None:
        """``get_step`` reads one step; ``waiting_steps`` the suspended ones, in issue order."""
        await store.create_run(_run())
        states: list[StepState] = ["completed", "suspended", "running", "suspended"]
        for i, state in enumerate(states):
            await store.record_step(_FENCE, dataclasses.replace(_step(f"s{i}", i), state=state))
        found = await store.get_step("r1", "s2")
        assert found is not None and (found.name, found.state, found.seq) == ("s2", "running", 2)
        assert await store.get_step("r1", "S2") is None
        assert [s.name for s in await store.waiting_steps("r1")] == ["s1", "s3"]
        assert await store.waiting_steps("r2") == []

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

    async def test_claims_go_by_priority_then_age_across_new_abandoned_and_due_runs(
        self, store: Store
    ) -> None:
        """One claim order for every claimable run; finished and held runs are never taken."""
        await store.register_owner(OwnerRecord(owner_id="o2", host="h", pid=1, started_at=0.0))
        base = time.time() - 100

        def run(run_id: str, age: int, **changes: Any) -> RunRecord:
            record = _run(run_id, owner=None, state="pending")
            return dataclasses.replace(record, created_at=base + age, **changes)

        for record in (
            run("finished", 0, state="completed", finished_at=base),
            run("held", 0, state="running", owner_id="o3", lease_epoch=1,
                lease_expires_at=base + 999),
            run("old_new", 1),
            run("dead_owner", 2, state="running", owner_id="gone", lease_epoch=1,
                lease_expires_at=base + 999),
            run("due_sleeper", 3, state="sleeping", wake_at=base),
            run("young_new", 4),
            run("urgent_new", 5, priority=5),
            run("later_sleeper", 0, state="sleeping", wake_at=base + 999),
        ):  # fmt: skip
            await store.create_run(record)
        query = ClaimQuery(owner_id="o2", workflows=["w"], dead_owners=["gone"], limit=1)
        order = []
        while claimed := await store.claim_runs(query, base + 50):
            order += [r.run_id for r in claimed]
        assert order == ["urgent_new", "old_new", "dead_owner", "due_sleeper", "young_new"]

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

    async def test_an_owner_is_found_with_its_last_heartbeat(self, store: Store) -> None:
        """``get_owner`` returns a registration, its heartbeat stamped by the lease clock."""
        owner = OwnerRecord(owner_id="o1", host="h1", pid=7, started_at=1.0, functions=("f",))
        await store.register_owner(owner)
        found = await store.get_owner("o1")
        assert found is not None
        assert (found.host, found.pid, found.started_at, found.functions) == ("h1", 7, 1.0, ("f",))
        assert abs(found.heartbeat_at - await store.now()) < 300
        assert await store.get_owner("o2") is None

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
