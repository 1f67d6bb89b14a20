"""The group committer: concurrent writes share one batch; cancelled callers' writes still land."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from graphflow.store._commit import GroupCommitter


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def run(self, ops: Sequence[str]) -> list[tuple[bool, Any]]:
        self.batches.append(list(ops))
        return [
            (False, ValueError(op)) if op.startswith("bad") else (True, op.upper()) for op in ops
        ]


@pytest.mark.parametrize("inline", [True, False])
async def test_concurrent_writes_share_a_batch_and_get_their_own_results(inline: bool) -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.run, inline=inline)
    results: dict[str, object] = {}

    async def write(op: str) -> None:
        try:
            results[op] = await committer.submit(op)
        except ValueError as exc:
            results[op] = f"error {exc}"

    async with anyio.create_task_group() as tg:
        for op in ("a", "b", "bad", "c"):
            tg.start_soon(write, op)
    assert results == {"a": "A", "b": "B", "bad": "error bad", "c": "C"}
    assert sum(len(batch) for batch in recorder.batches) == 4
    assert len(recorder.batches) <= 2


@pytest.mark.parametrize("inline", [True, False])
async def test_a_cancelled_callers_write_is_still_committed(inline: bool) -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.run, inline=inline)

    async def write(op: str) -> None:
        await committer.submit(op)

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "first")
        tg.start_soon(write, "second")
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert await committer.submit("after") == "AFTER"
    committed = [op for batch in recorder.batches for op in batch]
    assert committed.count("first") == 1 and committed.count("second") == 1


async def test_sequential_writes_each_commit_alone() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.run, inline=True)
    for op in ("a", "b", "c"):
        assert await committer.submit(op) == op.upper()
    assert recorder.batches == [["a"], ["b"], ["c"]]
