"""Workflows under limits and a worker process, for the flow-control tests across processes.

Usage: python -m tests.flows.limit_flows worker STORE_URL   (runs until SIGTERM/SIGINT)
Every execution of ``limited_call`` appends ``start|end TIME PID`` to ``$GF_LIMIT_LOG``; with
``hang`` and no ``$GF_LIMIT_LOG.hung`` marker yet, it creates the marker and hangs (to be killed).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio

import graphflow as gf


def _log(event: str) -> None:
    with open(os.environ["GF_LIMIT_LOG"], "a") as log:
        log.write(f"{event} {time.time():.6f} {os.getpid()}\n")


@gf.function(concurrency=2)
async def limited_call(i: int, pause: float, hang: bool = False) -> int:
    marker = Path(os.environ["GF_LIMIT_LOG"] + ".hung")
    _log("start")
    if hang and not marker.exists():
        marker.touch()
        await anyio.sleep(3600)
    await anyio.sleep(pause)
    _log("end")
    return i


@gf.workflow
async def limited_flow(wf: gf.Workflow, data: dict[str, float]) -> int:
    return await wf.do("call", limited_call, {"i": int(data["i"]), "pause": data["pause"]})


@gf.workflow(concurrency=1)
async def single_flow(wf: gf.Workflow, data: dict[str, float]) -> int:
    return await wf.do(
        "call", limited_call, {"i": int(data["i"]), "pause": 0.01, "hang": bool(data["hang"])}
    )


def peak_concurrency(log: Path) -> int:
    """The most ``limited_call`` executions in flight at once, from the log's start/end lines."""
    events = []
    for line in log.read_text().splitlines():
        kind, at, _ = line.split()
        events.append((float(at), 0 if kind == "end" else 1))
    active = peak = 0
    for _, starts in sorted(events):
        active += 1 if starts else -1
        peak = max(peak, active)
    return peak


async def _worker(url: str) -> None:
    async with gf.Engine(url, max_runs=3, lease="3s", poll_interval=0.05) as engine:
        print("ready", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        await engine.aclose()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        anyio.run(_worker, sys.argv[2])
