"""A claim reads the first ready runs through indexes: never every run of its workflows.

Claims run on the event loop on SQLite, at every poll and whenever a slot frees. Once their
candidates came from scanning every run of the served workflows, finished ones included, and
sorting them: 3 ms a claim with 20,000 finished runs in the store, growing with every run.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from graphflow.store.base import ClaimQuery, RunRecord
from graphflow.store.sql import SqlStore


def _run(run_id: str, state: str, created_at: float) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow="w",
        state=state,  # type: ignore[arg-type]
        input="{}",
        created_at=created_at,
        updated_at=created_at,
    )


@pytest.mark.parametrize("limited", [False, True], ids=["free", "concurrency-limited"])
async def test_a_claim_reads_ready_runs_through_indexes_not_every_run(
    tmp_path: Path, limited: bool
) -> None:
    path = tmp_path / "claims.db"
    store = SqlStore(f"sqlite:///{path}")
    await store.open()
    try:
        base = time.time() - 1_000
        for i in range(50):
            finished = dataclasses.replace(
                _run(f"done{i}", "completed", base + i), finished_at=base
            )
            await store.create_run(finished)
        await store.create_run(_run("new", "pending", base + 100))
        statements: list[str] = []
        writer: sqlite3.Connection = store._db._writer  # to see the claim's own SQL
        writer.set_trace_callback(statements.append)
        query = ClaimQuery(owner_id="o", workflows=["w"], limits={"w": 1} if limited else {})
        (claimed,) = await store.claim_runs(query, time.time())
        writer.set_trace_callback(None)
    finally:
        await store.aclose()
    assert claimed.run_id == "new"
    # The statement that picks the candidates: the claim itself, or the limited claim's look.
    start = "SELECT RUN_ID, CONCURRENCY_KEY" if limited else "UPDATE GF_RUNS"
    (candidates,) = [s for s in statements if s.lstrip().upper().startswith(start)]
    with sqlite3.connect(path) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {candidates}")]
    reads = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    assert any("gf_runs_ready (state=?)" in step for step in reads), plan
    # Every read of gf_runs is a search by state (or the update's by run id): no full scan, and
    # no scan of every run of the workflow.
    runs = [step for step in reads if "gf_runs" in step and "subquery" not in step]
    assert all(
        step.startswith("SEARCH") and ("state=" in step or "(run_id=?)" in step) for step in runs
    ), plan


async def test_a_job_claim_reads_each_functions_queue_in_order(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SqlStore(f"sqlite:///{path}")
    await store.open()
    try:
        statements: list[str] = []
        writer: sqlite3.Connection = store._db._writer  # to see the claim's own SQL
        writer.set_trace_callback(statements.append)
        assert await store.claim_jobs("o", ["f", "g"], 1, 30) == []
        writer.set_trace_callback(None)
    finally:
        await store.aclose()
    (claim,) = [s for s in statements if s.lstrip().upper().startswith("UPDATE GF_JOBS")]
    with sqlite3.connect(path) as conn:
        plan = list(conn.execute(f"EXPLAIN QUERY PLAN {claim}"))
    details = {row[0]: row[3] for row in plan}
    children: dict[int, list[str]] = {}
    for node, parent, _, detail in plan:
        children.setdefault(parent, []).append(detail)
    parts = [node for node, detail in details.items() if detail.startswith("CO-ROUTINE part_")]
    # Each function's queue is its own part, read in created_at order through gf_jobs_claim:
    # the first rows, not a sort of every queued job however long the queue.
    queues = [
        part
        for part in parts
        if any("gf_jobs_claim (state=? AND function=?)" in c for c in children.get(part, []))
        and not any("TEMP B-TREE" in c for c in children.get(part, []))
    ]
    assert len(queues) >= 2, plan
