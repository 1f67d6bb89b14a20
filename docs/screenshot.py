"""Make docs/run-page.png, the README's picture of the run page.

Run it from the repository root (needs the dev extras and Debian's chromium):
    python docs/screenshot.py
It serves one workflow with `create_app(engine, ui=True)`, runs it until it waits for approval and
photographs its page in headless Chromium.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx
import uvicorn
from playwright.sync_api import sync_playwright
from pydantic import BaseModel, Field

import graphflow as gf
from graphflow.http import create_app

registry = gf.Registry()


class Approval(BaseModel):
    approved: bool
    reviewer: str = Field(description="Who signs the order off")
    note: str | None = None


@gf.function(registry=registry)
async def fetch_order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "items": 3, "total": 129.5, "customer": "ada@example.com"}


@gf.function(registry=registry)
async def check_stock(order_id: str) -> dict[str, bool]:
    await anyio.sleep(0.2)
    return {"in_stock": True}


@gf.function(registry=registry)
def charge_card(order_id: str, amount: float) -> dict[str, str]:
    if gf.current_step().attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return {"charge_id": "ch_3Pq9", "status": "captured"}


@gf.function(registry=registry)
async def book_courier(order_id: str) -> dict[str, str]:
    return {"courier": "DHL", "pickup": "tomorrow 09:00"}


@gf.workflow(registry=registry)
async def fulfil_order(wf: gf.Workflow, data: dict[str, str]) -> dict[str, object]:
    order = await wf.do("Fetch order", fetch_order, {"order_id": data["order_id"]})
    async with anyio.create_task_group() as tg:
        tg.start_soon(wf.do, "Check stock", check_stock, {"order_id": data["order_id"]})
        tg.start_soon(
            lambda: wf.do(
                "Charge card", charge_card, {"order_id": data["order_id"], "amount": 129.5},
                retries=2, retry_delay="100ms",
            )
        )
        tg.start_soon(wf.do, "Book courier", book_courier, {"order_id": data["order_id"]})
    approval = await wf.suspend("Manager approval", schema=Approval)
    return {"order": order, "approved": approval.approved}


def main() -> None:
    out = Path(__file__).with_name("run-page.png")
    with tempfile.TemporaryDirectory() as tmp:
        engine = gf.Engine(f"sqlite:///{tmp}/shot.db", registry=registry, poll_interval=0.05)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(engine, ui=True), port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run)
        thread.start()
        try:
            while not server.started:
                time.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            httpx.post(f"{base}/workflows/fulfil_order/start", json={"order_id": "A-1042"},
                       params={"run_id": "order-A-1042"})
            while httpx.get(f"{base}/runs/order-A-1042").json()["state"] != "suspended":
                time.sleep(0.05)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--headless", "--no-sandbox", "--disable-gpu"],
                )
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(f"{base}/ui/runs/order-A-1042")
                page.locator('#steps tr[data-step="Charge card"] details').first.click()
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
