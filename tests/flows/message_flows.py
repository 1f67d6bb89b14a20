"""A workflow that receives messages and kills its own process once, for the crash test.

Each handled message appends a line to ``$GF_CRASH_LOG``; after handling the message numbered
``kill_after`` the process kills itself, once (while ``$GF_CRASH_MARKER`` does not exist).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import graphflow as gf


@gf.function
def msg_handle(item: int, kill_after: int) -> int:
    with open(os.environ["GF_CRASH_LOG"], "a") as log:
        log.write(f"item {item}\n")
    marker = Path(os.environ["GF_CRASH_MARKER"])
    if item == kill_after and not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return item


@gf.workflow
async def msg_collector(wf: gf.Workflow, data: dict[str, int]) -> list[int]:
    got = []
    for i in range(data["count"]):
        message = await wf.receive("items")
        got.append(
            await wf.do(
                f"handle {i}",
                msg_handle,
                {"item": message["item"], "kill_after": data["kill_after"]},
            )
        )
    return got
