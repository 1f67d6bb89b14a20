"""Retention: pruning finished runs in short batches, on demand and in the background.

Each batch is one short transaction; batches are sized to take about ``_BATCH_SECONDS`` and
separated by a pause, so that a writer waiting for the database (a running workflow's step, or
another process on SQLite) never waits for more than one batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from .._types import TERMINAL
from ..errors import StoreError
from ..functions import Registry
from ..store.base import PruneQuery, Store
from .clock import Clock

__all__ = ("RETENTION_INTERVAL", "prune", "retention_loop")

RETENTION_INTERVAL = 60.0
"""Seconds (engine clock) between two background passes over workflows with ``retention``."""

_BATCH_SECONDS = 0.001
"""The time one batch aims to hold the database's write lock."""

_PAUSE = 0.002
"""The least wall-clock pause between batches; it grows to ``_IDLE_SHARE`` times the batch."""

_IDLE_SHARE = 4
"""Between batches the database is left to others at least this many times as long: SQLite
writers in other processes retry a busy lock after sleeps of a few ms, so a pause shorter than
those would starve them."""

_MIN_BATCH, _MAX_BATCH = 5, 500


async def prune(
    store: Store,
    *,
    finished_before: float,
    states: Sequence[str],
    workflow: str | None = None,
    dry_run: bool = False,
) -> int:
    """Delete (or count) the matching finished runs, their descendants included, in batches."""
    limit = 50
    counted: set[str] = set()
    deleted = 0
    after: tuple[float, str] | None = None
    while True:
        query = PruneQuery(
            finished_before=finished_before,
            states=tuple(states),
            workflow=workflow,
            limit=limit,
            after=after,
            dry_run=dry_run,
        )
        started = time.perf_counter()
        batch = await store.prune_runs(query)
        took = time.perf_counter() - started
        if batch.last is None:
            return len(counted) if dry_run else deleted
        if dry_run:
            counted.update(batch.run_ids)  # a child counted with its parent is one run
        deleted += batch.deleted
        after = batch.last
        if took > _BATCH_SECONDS:
            limit = max(_MIN_BATCH, limit // 2)
        elif took < _BATCH_SECONDS / 2:
            limit = min(_MAX_BATCH, limit * 2)
        await anyio.sleep(max(_PAUSE, _IDLE_SHARE * took))


async def retention_loop(store: Store, registry: Registry, clock: Clock) -> None:
    """Forever: prune the finished runs of every workflow declared with ``retention``.

    Sleeps on the engine clock until the oldest finished run of such a workflow expires (at
    least ``RETENTION_INTERVAL``), so a virtual clock skipping days wakes it only when needed.
    """
    while True:
        kept = {
            name: definition.retention
            for name in registry.workflow_names
            if (definition := registry.find_workflow(name)) is not None
            and definition.retention is not None
        }
        if not kept:
            await anyio.sleep(RETENTION_INTERVAL)  # wall clock: look again for new workflows
            continue
        expiries = [
            await _prune_expired(store, clock, name, seconds) for name, seconds in kept.items()
        ]
        await clock.sleep_until(max(clock.time() + RETENTION_INTERVAL, min(expiries)))


async def _prune_expired(store: Store, clock: Clock, workflow: str, seconds: float) -> float:
    """Prune ``workflow``'s expired runs; return when its next run expires (engine clock)."""
    try:
        await prune(
            store,
            finished_before=clock.time() - seconds,
            states=sorted(TERMINAL),
            workflow=workflow,
        )
        oldest = await store.oldest_finished_at(workflow)
    except StoreError:
        return clock.time() + RETENTION_INTERVAL  # the store is unreachable: try again soon
    # A run finishing from now on expires no earlier than now + retention.
    return (clock.time() if oldest is None else oldest) + seconds
