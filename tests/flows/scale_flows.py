"""Workflows and a worker process for the scale-out tests (database servers, several processes).

Usage: python -m tests.flows.scale_flows worker STORE_URL   (runs until SIGTERM/SIGINT)
       python -m tests.flows.scale_flows start STORE_URL RUN_ID COUNT   (COUNT concurrent starts)
Every step execution appends ``run_id step pid`` to ``$GF_SCALE_LOG``.
"""

from __future__ import annotations

import os
import signal
import sys

import anyio

import graphflow as gf


def _log(run_id: str, step: str) -> None:
    with open(os.environ["GF_SCALE_LOG"], "a") as log:
        log.write(f"{run_id} {step} {os.getpid()}\n")


@gf.function
async def scale_step(total: int, i: int, pause: float) -> int:
    step = gf.current_step()
    _log(step.run_id, step.step_name)
    await anyio.sleep(pause)
    return total + i


@gf.function
async def scale_pid() -> int:
    step = gf.current_step()
    _log(step.run_id, step.step_name)
    return os.getpid()


@gf.workflow
async def scale_run(wf: gf.Workflow, data: dict[str, float]) -> int:
    total = 0
    for i in range(1, int(data["steps"]) + 1):
        total = await wf.do(
            f"step {i}", scale_step, {"total": total, "i": i, "pause": data["pause"]}
        )
    return total


@gf.workflow
async def scale_pids(wf: gf.Workflow, data: dict[str, float]) -> list[int]:
    first = await wf.do("first", scale_pid)
    await wf.do("slow", scale_step, {"total": 0, "i": 0, "pause": data["pause"]})
    return [first, await wf.do("last", scale_pid)]


@gf.workflow
async def scale_wait(wf: gf.Workflow, data: dict[str, str]) -> str:
    await wf.do("before", scale_pid)
    if data["mode"] == "sleep":
        await wf.sleep("nap", "2s")
    else:
        await wf.suspend("approve")
    await wf.do("after", scale_pid)
    return data["mode"]


async def worker(url: str) -> None:
    async with gf.Engine(url, lease="2s", poll_interval=0.1, max_runs=4) as engine:
        print("ready", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        await engine.aclose()


async def start(url: str, run_id: str, count: str) -> None:
    async with gf.Engine(url, worker=False) as client:
        ids: list[str] = []

        async def one() -> None:
            ids.append(await client.start("scale_wait", {"mode": "suspend"}, run_id=run_id))

        async with anyio.create_task_group() as tg:
            for _ in range(int(count)):
                tg.start_soon(one)
    print(" ".join(ids))


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        anyio.run(worker, sys.argv[2])
    else:
        anyio.run(start, sys.argv[2], sys.argv[3], sys.argv[4])
