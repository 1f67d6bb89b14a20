"""Run a workflow of ``tests.flows.crash_flows`` or ``graph_flows`` to completion in this process.

Usage: python -m tests.flows.run_flow STORE_URL WORKFLOW RUN_ID JSON_INPUT
Prints the output JSON. Without WORKFLOW (``-``), only recovers: opens the engine and waits RUN_ID.
"""

from __future__ import annotations

import json
import sys

import anyio

import graphflow as gf
from tests.flows import crash_flows, graph_flows, message_flows  # noqa: F401  (registers them)


async def main(url: str, workflow: str, run_id: str, data: str) -> None:
    async with gf.Engine(url, poll_interval=0.05) as engine:
        if workflow != "-":
            await engine.start(workflow, json.loads(data), run_id=run_id)
        status = await engine.wait(run_id, timeout=60)
    print(json.dumps(status.output))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
