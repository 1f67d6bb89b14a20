"""What the database servers' stores share: a deadlock between processes costs a retry, not a write."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import anyio

from graphflow.store._sql_db import SqlDatabase
from graphflow.store._tx import Tx
from graphflow.store.dialects import dialect_for


async def test_a_deadlock_victim_runs_again_and_both_writes_commit(server_url: str) -> None:
    def create(tx: Tx) -> None:
        tx.execute("CREATE TABLE probe (k VARCHAR(10) PRIMARY KEY, v INTEGER NOT NULL)")
        tx.execute("INSERT INTO probe (k, v) VALUES ('a', 0), ('b', 0)")

    first, second = (SqlDatabase(server_url, dialect_for(server_url)) for _ in range(2))
    await first.open(create)
    await second.open(lambda tx: None)
    both_hold_their_first_row = threading.Barrier(2, timeout=20)
    runs: Counter[str] = Counter()

    def crosswise(name: str, mine: str, theirs: str) -> Callable[[Tx], str]:
        def op(tx: Tx) -> str:
            runs[name] += 1
            tx.execute("UPDATE probe SET v = v + 1 WHERE k = :k", {"k": mine})
            if runs[name] == 1:
                both_hold_their_first_row.wait()  # now each wants the other's row: a deadlock
            tx.execute("UPDATE probe SET v = v + 10 WHERE k = :k", {"k": theirs})
            return name

        return op

    results: list[str] = []

    async def write(db: SqlDatabase, name: str, mine: str, theirs: str) -> None:
        results.append(await db.write(crosswise(name, mine, theirs)))

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(write, first, "first", "a", "b")
                tg.start_soon(write, second, "second", "b", "a")
        values = await first.read(lambda tx: tx.query("SELECT k, v FROM probe ORDER BY k"))
    finally:
        await first.aclose()
        await second.aclose()
    assert sorted(results) == ["first", "second"]
    winner, victim = sorted(runs.values())
    assert winner == 1 and victim >= 2  # the victim ran again, after the winner committed
    assert [tuple(row) for row in values] == [("a", 11), ("b", 11)]
