"""A workflow deployed in two versions: v2 patches the receipt step with ``wf.patched``.

Usage: python -m tests.flows.patch_flows STORE_URL VERSION ACTION RUN_ID
VERSION ``1`` (email receipts) or ``2`` (SMS receipts for runs that reach the patch under v2).
ACTION ``start``: start RUN_ID and exit once it is suspended. ``resume``: resume it, wait for it
to finish and print its output JSON. Every executed step appends its name to ``$GF_PATCH_LOG``.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

import graphflow as gf

VERSION = sys.argv[2] if __name__ == "__main__" else os.environ.get("GF_PATCH_VERSION", "2")


def _log(line: str) -> str:
    with open(os.environ["GF_PATCH_LOG"], "a") as log:
        log.write(line + "\n")
    return line


@gf.function
def charge(order: str) -> str:
    return _log(f"charge {order}")


@gf.function
def email_receipt(order: str) -> str:
    return _log(f"email {order}")


@gf.function
def sms_receipt(order: str) -> str:
    return _log(f"sms {order}")


if VERSION == "1":

    @gf.workflow
    async def checkout(wf: gf.Workflow, data: dict[str, str]) -> dict[str, object]:
        await wf.do("Charge", charge, {"order": data["order"]})
        await wf.do("Email receipt", email_receipt, {"order": data["order"]})
        await wf.suspend("Confirm delivery")
        return {"receipt": "email"}

else:

    @gf.workflow
    async def checkout(wf: gf.Workflow, data: dict[str, str]) -> dict[str, object]:
        await wf.do("Charge", charge, {"order": data["order"]})
        if wf.patched("sms-receipt"):
            await wf.do("SMS receipt", sms_receipt, {"order": data["order"]})
        else:
            await wf.do("Email receipt", email_receipt, {"order": data["order"]})
        await wf.suspend("Confirm delivery")
        # Asked again after the recorded steps: the run keeps its first answer.
        return {"receipt": "sms" if wf.patched("sms-receipt") else "email"}


async def main(url: str, action: str, run_id: str) -> None:
    async with gf.Engine(url, poll_interval=0.05) as engine:
        if action == "start":
            await engine.start("checkout", {"order": run_id}, run_id=run_id)
            with anyio.fail_after(30):
                while (await engine.status(run_id)).state != "suspended":
                    await anyio.sleep(0.01)
            return
        await engine.resume(run_id, {})
        status = await engine.wait(run_id, timeout=30)
    print(json.dumps(status.output))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[3], sys.argv[4])
