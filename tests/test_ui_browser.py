"""The web page in a real headless Chromium (Debian's, driven by Playwright) against real uvicorn.

Nothing is downloaded: Playwright drives ``/usr/bin/chromium`` (``.ci/run`` installs it). The
server is uvicorn in a thread of this process, so the tests can open the gates their steps wait on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

import graphflow as gf
from graphflow.http import create_app
from tests.flows.ui_flows import REGISTRY, XSS, gate, open_all_gates

# Assertions wait as long as actions do (Playwright's own default for them is 5 s, short on a
# loaded 2-core machine that runs the server, the runs and Chromium at once).
expect.set_options(timeout=20_000)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server with the page, on a free port, for the whole module."""
    store = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.db'}?durability=normal"
    engine = gf.Engine(store, registry=REGISTRY, poll_interval=0.05)
    port = free_port()
    config = uvicorn.Config(
        create_app(engine, ui=True),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        open_all_gates()
        server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


def start(base_url: str, workflow: str, data: Any, run_id: str) -> str:
    answer = httpx.post(
        f"{base_url}/workflows/{workflow}/start", json=data, params={"run_id": run_id}
    )
    assert answer.status_code == 202, answer.text
    return run_id


def api_state(base_url: str, run_id: str) -> str:
    state: str = httpx.get(f"{base_url}/runs/{run_id}").json()["state"]
    return state


def wait_api_state(base_url: str, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while api_state(base_url, run_id) != state:
        assert time.monotonic() < deadline, f"run {run_id} never became {state}"
        time.sleep(0.05)


def graph_node(page: Page, step: str) -> Any:
    return page.locator(f'#graph g.node[data-step="{step}"]')


def step_row(page: Page, step: str) -> Any:
    return page.locator(f'#steps tr[data-step="{step}"]')


def test_open_the_list_then_a_run(page: Page, base_url: str) -> None:
    start(base_url, "approval", {"name": "Ada"}, "list-approval")
    start(base_url, "gated", {"gate": "list"}, "list-gated")
    wait_api_state(base_url, "list-approval", "suspended")
    page.goto(f"{base_url}/ui")
    expect(page.locator('tr[data-run-id="list-gated"]')).to_be_visible()
    page.fill('input[name="workflow"]', "approval")
    page.click("form.filters button")
    expect(page.locator('tr[data-run-id="list-approval"]')).to_be_visible()
    expect(page.locator('tr[data-run-id="list-gated"]')).to_have_count(0)
    page.click('tr[data-run-id="list-approval"] a')
    expect(page).to_have_url(f"{base_url}/ui/runs/list-approval")
    expect(page.locator("h1 .workflow")).to_have_text("approval")
    expect(graph_node(page, "Greet")).to_have_attribute("data-state", "completed")
    expect(step_row(page, "Manager approval")).to_have_attribute("data-state", "suspended")
    gate("list").set()


def test_a_step_turns_from_running_to_completed_without_reloading(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    run_id = start(base_url, "gated", {"gate": "live"}, "live-run")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    expect(graph_node(page, "Wait for gate")).to_have_attribute("data-state", "running")
    expect(step_row(page, "Wait for gate")).to_have_attribute("data-state", "running")
    page.screenshot(path=str(tmp_path / "run-page-running.png"), full_page=True)
    page.evaluate("window.__sameDocument = true")

    gate("live").set()

    expect(graph_node(page, "Wait for gate")).to_have_attribute("data-state", "completed")
    expect(graph_node(page, "After gate")).to_have_attribute("data-state", "completed")
    expect(page.locator("h1 .badge")).to_have_text("completed")
    expect(page.locator("body")).to_have_attribute("data-live", "done")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    assert (tmp_path / "run-page.png").stat().st_size > 10_000


def test_resume_form_refuses_bad_data_then_resumes(page: Page, base_url: str) -> None:
    run_id = start(base_url, "approval", {"name": "Bo"}, "resume-run")
    wait_api_state(base_url, run_id, "suspended")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    form = page.locator("form.resume-form")
    expect(form).to_be_visible()

    form.locator('input[name="reviewer"]').fill("Cy")
    form.locator('input[name="count"]').fill("lots")
    form.locator('button[type="submit"]').click()
    expect(page.locator(".notice")).to_contain_text("not valid")
    invalid = page.locator("form.resume-form .field.invalid")
    expect(invalid).to_have_count(1)
    expect(invalid.locator(".error")).to_contain_text("valid integer")
    expect(page.locator('form.resume-form input[name="count"]')).to_have_value("lots")
    assert api_state(base_url, run_id) == "suspended"

    page.locator('form.resume-form input[name="count"]').fill("3")
    page.locator('form.resume-form input[name="approved"]').check()
    page.locator('form.resume-form button[type="submit"]').click()
    expect(page.locator(".notice")).to_contain_text("Resumed")
    expect(page.locator("h1 .badge")).to_have_text("completed")
    expect(page.locator("form.resume-form")).to_have_count(0)
    output = httpx.get(f"{base_url}/runs/{run_id}").json()["output"]
    assert output == {"greeting": "HELLO BO", "approved": True, "by": "Cy"}


def test_cancel_button_cancels_a_running_run(page: Page, base_url: str) -> None:
    run_id = start(base_url, "gated", {"gate": "cancel"}, "cancel-run")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    expect(graph_node(page, "Wait for gate")).to_have_attribute("data-state", "running")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click('button[name="cancel"]')
    expect(page.locator(".notice")).to_contain_text("Cancelled")
    expect(page.locator("h1 .badge")).to_have_text("cancelled")
    expect(page.locator('button[name="cancel"]')).to_have_count(0)
    assert api_state(base_url, run_id) == "cancelled"


def test_declining_the_confirmation_keeps_the_run(page: Page, base_url: str) -> None:
    run_id = start(base_url, "gated", {"gate": "keep"}, "keep-run")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.click('button[name="cancel"]')
    expect(graph_node(page, "Wait for gate")).to_have_attribute("data-state", "running")
    assert api_state(base_url, run_id) == "running"
    gate("keep").set()
    expect(page.locator("h1 .badge")).to_have_text("completed")


def test_fork_button_opens_the_new_run(page: Page, base_url: str) -> None:
    run_id = start(base_url, "approval", {"name": "Fork"}, "fork-me")
    wait_api_state(base_url, run_id, "suspended")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    page.select_option('select[name="from_step"]', "Manager approval")
    page.click('button[name="fork"]')
    expect(page.locator(".notice")).to_contain_text("Forked")
    expect(page).not_to_have_url(f"{base_url}/ui/runs/{run_id}")
    expect(step_row(page, "Greet")).to_have_attribute("data-state", "completed")
    expect(step_row(page, "Manager approval")).to_have_attribute("data-state", "suspended")


def test_an_xss_payload_in_an_output_renders_as_text(page: Page, base_url: str) -> None:
    run_id = start(base_url, "hostile_run", {}, "xss-run")
    wait_api_state(base_url, run_id, "completed")
    page.goto(f"{base_url}/ui/runs/{run_id}")
    row = page.locator("#steps tbody tr")
    expect(row.locator("td.name")).to_have_text(XSS)
    row.locator("details.fold summary").click()
    expect(row.locator("details.fold pre")).to_contain_text("<script>window.__xss = 1</script>")
    expect(page.locator("#graph g.node text").first).to_contain_text("<script>")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#steps img, #graph img, #summary img").count() == 0


def test_an_unknown_run_is_a_404_page(page: Page, base_url: str) -> None:
    answer = page.goto(f"{base_url}/ui/runs/nobody-has-this-id")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Run not found")
    expect(page.locator("main code")).to_have_text("nobody-has-this-id")
