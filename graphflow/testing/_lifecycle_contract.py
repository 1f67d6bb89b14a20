"""The clauses of the ``Store`` contract for messages, events, graphs, repair and retention.

Part of ``StoreContract``: messages taken once under the run lease, events, declared graphs kept by
hash, histories paged for ``check``, forks, and pruning in batches that keep unfinished families.
"""

from __future__ import annotations

import dataclasses

import pytest

from ..errors import LeaseLostError
from ..store.base import AttemptRecord, Fence, PruneQuery, Store
from ._records import _FENCE, _finished, _receive, _run, _step

__all__ = ("LifecycleContract",)


class LifecycleContract:
    """Messages, events, declared graphs, histories, forks and pruning."""

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
