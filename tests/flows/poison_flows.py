"""Workflows whose steps end their own process, and a worker to run them in a subprocess.

Usage: python -m tests.flows.poison_flows STORE_URL RUN_ID MAX_RECOVERIES [WORKFLOW]
Starts WORKFLOW as RUN_ID (if given), waits for the run, and prints its state and error type as
JSON, unless a step ended the process first.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio

import graphflow as gf


@gf.function
def exit_hard() -> None:
    os._exit(1)  # no cleanup at all: the owner stays registered, under a dead pid


@gf.function
def exit_in_thread() -> None:
    sys.exit(3)


@gf.function
async def exit_async() -> None:
    raise SystemExit(3)


@gf.function
async def interrupt_own_process() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the worker shuts down gracefully
    await anyio.sleep(30)


@gf.workflow
async def interrupts_itself(wf: gf.Workflow, data: None) -> str:
    await wf.do("interrupt", interrupt_own_process)
    return "unreachable"


@gf.workflow
async def dies_hard(wf: gf.Workflow, data: None) -> str:
    await wf.do("exit", exit_hard)
    return "unreachable"


@gf.workflow
async def exits_in_steps(wf: gf.Workflow, data: None) -> list[str]:
    outcomes = []
    for name, step in (("thread", exit_in_thread), ("async", exit_async)):
        try:
            await wf.do(name, step)
        except gf.StepFailed as exc:
            outcomes.append(f"{name}: {exc.error.type}")
    return outcomes


async def main(url: str, run_id: str, max_recoveries: int, workflow: str | None) -> None:
    async with gf.Engine(url, poll_interval=0.05, max_recoveries=max_recoveries) as engine:
        if workflow is not None:
            await engine.start(workflow, run_id=run_id)
        status = await engine.wait(run_id, timeout=60)
    error = None if status.error is None else status.error.type
    print(json.dumps({"state": status.state, "error": error, "output": status.output}))


if __name__ == "__main__":
    # A shell's background job inherits SIGINT ignored: the Ctrl-C step must reach the worker.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workflow = sys.argv[4] if len(sys.argv) > 4 else None
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), workflow)
