"""Workflows that kill their own process mid-run, for crash-recovery tests.

Every step execution appends a line to ``$GF_CRASH_LOG``; the kill happens only while
``$GF_CRASH_MARKER`` does not exist (the first execution), so the recovering process runs clean.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from pydantic import BaseModel

import graphflow as gf


class Total(BaseModel):
    total: int
    steps: int


def _log(line: str) -> None:
    with open(os.environ["GF_CRASH_LOG"], "a") as log:
        log.write(line + "\n")


def _die_once() -> None:
    marker = Path(os.environ["GF_CRASH_MARKER"])
    if not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)


@gf.function
async def crash_add(total: int, i: int, kill_at: int) -> int:
    _log(f"step {i}")
    if i == kill_at:
        _die_once()
    return total + i


@gf.workflow
async def crash_sequence(wf: gf.Workflow, data: dict[str, int]) -> Total:
    total = 0
    for i in range(1, data["steps"] + 1):
        total = await wf.do(
            f"add {i}", crash_add, {"total": total, "i": i, "kill_at": data["kill_at"]}
        )
    return Total(total=total, steps=data["steps"])


@gf.function
async def crash_fan_item(i: int, kill_after: int) -> int:
    await asyncio.sleep(0.001 * (i % 7))
    _log(f"item {i}")
    with open(os.environ["GF_CRASH_LOG"]) as log:
        executed = sum(1 for _ in log)
    if executed >= kill_after:
        _die_once()
    return i * 2


@gf.workflow
async def crash_fan(wf: gf.Workflow, data: dict[str, int]) -> int:
    results = await asyncio.gather(
        *(
            wf.do(f"item {i}", crash_fan_item, {"i": i, "kill_after": data["kill_after"]})
            for i in range(data["width"])
        )
    )
    return sum(results)


@gf.function
async def crash_slow_step(seconds: float) -> str:
    _log("slow started")
    await asyncio.sleep(seconds)  # long enough for a heartbeat to publish the step
    _die_once()
    return "done"


@gf.workflow
async def crash_stuck(wf: gf.Workflow, data: dict[str, float]) -> str:
    return await wf.do("slow", crash_slow_step, {"seconds": data["seconds"]})
