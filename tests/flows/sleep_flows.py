"""A workflow that sleeps 3 s between two logged steps, and a runner that leaves mid-sleep.

Usage: python -m tests.flows.sleep_flows STORE_URL RUN_ID MODE
MODE ``exit``: start the run, close the engine gracefully after 1 s. ``kill``: SIGKILL itself
after 1 s. ``finish``: open an engine, wait for RUN_ID, print its output JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import anyio

import graphflow as gf


def _log(line: str) -> None:
    with open(os.environ["GF_SLEEP_LOG"], "a") as log:
        log.write(line + "\n")


@gf.workflow
async def nap(wf: gf.Workflow, data: None) -> dict[str, float]:
    await wf.do("before", lambda: _log("before"))
    await wf.sleep("nap", "3s")

    def after() -> float:
        _log("after")
        return time.time()

    return {"woke_at": await wf.do("after", after)}


async def main(url: str, run_id: str, mode: str) -> None:
    async with gf.Engine(url, poll_interval=0.05) as engine:
        if mode == "finish":
            status = await engine.wait(run_id, timeout=30)
            print(json.dumps(status.output))
            return
        await engine.start("nap", None, run_id=run_id)
        await anyio.sleep(1)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
