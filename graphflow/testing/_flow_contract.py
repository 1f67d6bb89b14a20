"""The clauses of the ``Store`` contract for flow control and schedules (part of ``StoreContract``).

Slots and rate windows for limited functions, run limits at start and claim, priority, dedup keys,
schedules fired by compare-and-set, and the live steps an owner publishes with its leases.
"""

from __future__ import annotations

import dataclasses
import time

from ..store.base import ClaimQuery, Fence, RunLimit, RunRecord, ScheduleRecord, SlotRequest, Store

__all__ = ("FlowControlContract",)


def _run(
    run_id: str,
    *,
    owner: str | None = None,
    key: str | None = None,
    priority: int = 0,
    dedup_key: str | None = None,
) -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id=run_id,
        workflow="w",
        state="running" if owner else "pending",
        input="{}",
        created_at=now,
        updated_at=now,
        owner_id=owner,
        lease_epoch=1 if owner else 0,
        lease_expires_at=now + 60 if owner else None,
        priority=priority,
        concurrency_key=key,
        dedup_key=dedup_key,
    )


def _slot(
    holder: str,
    *,
    owner: str = "o1",
    scope: str = "fn:f",
    limit: int | None = 2,
    rate: tuple[int, float] | None = None,
    now: float | None = None,
    lease: float = 60.0,
) -> SlotRequest:
    return SlotRequest(
        scope=scope,
        holder=holder,
        owner_id=owner,
        limit=limit,
        rate_scope="rate:f",
        rate=rate,
        now=time.time() if now is None else now,
        lease=lease,
    )


async def _end(store: Store, run_id: str) -> None:
    fence = Fence(run_id=run_id, owner_id="o1", epoch=1)
    await store.end_run(fence, state="completed", output=None, error=None, at=time.time())


class FlowControlContract:
    """Flow control and schedules: tests that ``StoreContract`` runs with the others."""

    async def test_slots_hold_the_limit_and_free_on_release(self, store: Store) -> None:
        """At most ``limit`` holders per scope; a holder asking again keeps its own slot."""
        assert await store.acquire_slot(_slot("a")) is None
        assert await store.acquire_slot(_slot("b", owner="o2")) is None
        assert await store.acquire_slot(_slot("c")) == 0.0  # wait for a release
        assert await store.acquire_slot(_slot("a")) is None
        await store.release_slot("fn:f", "b")
        assert await store.acquire_slot(_slot("c")) is None
        assert await store.acquire_slot(_slot("d", scope="fn:f:other-key")) is None

    async def test_slots_of_a_removed_or_expired_owner_are_free(self, store: Store) -> None:
        """A slot counts only under a live lease, and goes with its owner."""
        assert await store.acquire_slot(_slot("a", owner="gone", lease=-1.0)) is None
        assert await store.acquire_slot(_slot("b", owner="leaving")) is None
        assert await store.acquire_slot(_slot("c", limit=1)) == 0.0
        await store.remove_owner("leaving")
        assert await store.acquire_slot(_slot("c", limit=1)) is None

    async def test_rate_window_counts_starts_and_says_when_it_has_room(self, store: Store) -> None:
        """At most ``count`` starts per sliding window; a refusal says when the window has room."""

        def rated(holder: str, now: float) -> SlotRequest:
            return _slot(holder, limit=None, rate=(2, 10.0), now=now)

        assert await store.acquire_slot(rated("a", 100.0)) is None
        assert await store.acquire_slot(rated("b", 101.0)) is None
        assert await store.acquire_slot(rated("c", 102.0)) == 110.0
        assert await store.acquire_slot(rated("c", 110.0)) is None

    async def test_run_limit_queues_starts_and_claims_into_free_slots(self, store: Store) -> None:
        """Past the limit (per key) a run starts ``queued``; claims fill free slots by priority."""
        held = RunLimit(limit=1, owned=True)
        first, _ = await store.create_run(_run("r1", owner="o1"), held)
        second, _ = await store.create_run(_run("r2", owner="o1"), held)
        keyed, _ = await store.create_run(_run("r3", owner="o1", key="k"), held)
        assert (first.state, second.state, keyed.state) == ("running", "queued", "running")
        assert second.owner_id is None
        await store.create_run(_run("r4", priority=5), RunLimit(limit=1, owned=False))
        query = ClaimQuery(owner_id="o2", workflows=["w"], limits={"w": 1})
        assert await store.claim_runs(query, time.time()) == []  # r1 holds the unkeyed slot
        await _end(store, "r1")
        (claimed,) = await store.claim_runs(query, time.time())
        assert (claimed.run_id, claimed.owner_id) == ("r4", "o2")

    async def test_dedup_key_finds_the_unfinished_run(self, store: Store) -> None:
        """A start with a dedup key returns the workflow's unfinished run that has it."""
        _, created = await store.create_run(_run("r1", owner="o1", dedup_key="k"))
        again, again_created = await store.create_run(_run("r2", dedup_key="k"))
        assert created and not again_created and again.run_id == "r1"
        await _end(store, "r1")
        later, created = await store.create_run(_run("r3", dedup_key="k"))
        assert created and later.run_id == "r3"

    async def test_schedules_are_saved_listed_fired_once_and_removed(self, store: Store) -> None:
        """A replaced schedule keeps its last tick; a tick fires once (compare-and-set)."""
        schedule = ScheduleRecord(
            name="nightly", workflow="w", cron="0 3 * * *", timezone="UTC", catch_up="latest",
            last_tick=100.0, created_at=100.0, updated_at=100.0,
        )  # fmt: skip
        assert (await store.save_schedule(schedule)).cron == "0 3 * * *"
        replaced = dataclasses.replace(schedule, cron="0 4 * * *", last_tick=999.0)
        assert (await store.save_schedule(replaced)).last_tick == 100.0
        static = dataclasses.replace(schedule, cron="0 5 * * *", static=True)
        assert (await store.save_schedule(static)).cron == "0 4 * * *"  # never over a dynamic one
        tick = _run("nightly@t1")
        assert await store.fire_schedule("nightly", last_tick=100.0, through=200.0, runs=[tick])
        assert not await store.fire_schedule("nightly", last_tick=100.0, through=200.0, runs=[tick])
        (listed,) = await store.list_schedules()
        assert listed.last_tick == 200.0
        assert (await store.get_run("nightly@t1")) is not None
        assert await store.remove_schedule("nightly")
        assert not await store.remove_schedule("nightly")
        assert await store.list_schedules() == []

    async def test_lease_renewal_publishes_live_steps(self, store: Store) -> None:
        """``renew_leases`` stores what it is given as the runs' live steps (``None`` clears)."""
        await store.create_run(_run("r1", owner="o1"))
        assert await store.renew_leases("o1", 30, {"r1": "[live]"}) == {"r1": False}
        run = await store.get_run("r1")
        assert run is not None and run.live_steps == "[live]"
        await store.renew_leases("o1", 30, {"r1": None})
        run = await store.get_run("r1")
        assert run is not None and run.live_steps is None
