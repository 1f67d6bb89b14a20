"""The web page through Starlette's TestClient: lists, run pages, forms, live events, auth, escaping."""

from __future__ import annotations

import html
import json
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

import graphflow as gf
from graphflow.http import create_app
from graphflow.runtime.steps import child_run_id
from tests.flows.ui_flows import REGISTRY, gate, open_all_gates

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def engine(sqlite_url: str) -> gf.Engine:
    return gf.Engine(sqlite_url, registry=REGISTRY, poll_interval=0.05)


@pytest.fixture
def client(engine: gf.Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, ui=True)) as test_client:
        try:
            yield test_client
        finally:
            open_all_gates()  # let gated steps end before the engine closes


def start(client: TestClient, workflow: str, data: Any = None, **params: str) -> str:
    response = client.post(f"/workflows/{workflow}/start", json=data, params=params)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def wait_state(client: TestClient, run_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/runs/{quote(run_id, safe='')}").json()
        if body["state"] in states:
            return body
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {states}")


# --- the runs list --------------------------------------------------------------------------------


def test_ui_is_not_served_unless_asked(engine: gf.Engine) -> None:
    with TestClient(create_app(engine)) as plain:
        assert plain.get("/ui").status_code == 404


def test_runs_list_shows_runs_newest_first(client: TestClient) -> None:
    first = start(client, "approval", {"name": "Ada"}, run_id="run-first")
    second = start(client, "gated", {"gate": "list"}, run_id="run-second")
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.index(second) < page.text.index(first)
    assert 'data-run-id="run-second"' in page.text


def test_runs_list_filters_by_workflow_and_state(client: TestClient) -> None:
    start(client, "approval", {"name": "Ada"}, run_id="approval-1")
    start(client, "gated", {"gate": "filter"}, run_id="gated-1")
    wait_state(client, "approval-1", {"suspended"})
    by_workflow = client.get("/ui", params={"workflow": "gated"}).text
    assert "gated-1" in by_workflow and "approval-1" not in by_workflow
    by_state = client.get("/ui", params={"state": "suspended"}).text
    assert "approval-1" in by_state and "gated-1" not in by_state
    assert '<option value="suspended" selected>' in by_state


def test_runs_list_pages_through_older_runs(client: TestClient) -> None:
    for number in range(53):
        start(client, "hostile_run", {}, run_id=f"paged-{number:02d}")
    first = client.get("/ui", params={"workflow": "hostile_run"}).text
    assert first.count("data-run-id=") == 50
    assert 'rel="next"' in first and 'rel="first"' not in first
    older = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert older is not None
    second = client.get(html.unescape(older.group(1))).text
    assert second.count("data-run-id=") == 3
    assert "paged-00" in second and "paged-00" not in first
    assert 'rel="first" href="/ui?workflow=hostile_run"' in second and 'rel="next"' not in second


def test_a_bad_cursor_shows_the_first_page(client: TestClient) -> None:
    start(client, "hostile_run", {}, run_id="cursor-run")
    page = client.get("/ui", params={"cursor": "not-a-cursor"})
    assert page.status_code == 200
    assert "cursor-run" in page.text


def test_runs_list_says_when_nothing_matches(client: TestClient) -> None:
    page = client.get("/ui", params={"workflow": "nothing-like-this"})
    assert page.status_code == 200
    assert "No runs match." in page.text


# --- the run page ---------------------------------------------------------------------------------


def test_unknown_run_is_a_404_page(client: TestClient) -> None:
    page = client.get("/ui/runs/no-such-run")
    assert page.status_code == 404
    assert "Run not found" in page.text and "no-such-run" in page.text
    assert client.get("/ui/runs/no-such-run/events").status_code == 404


def test_run_page_draws_the_graph_and_the_steps(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    page = client.get(f"/ui/runs/{run_id}").text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="run-graph"' in page
    assert 'data-step="Greet" data-state="completed"' in page
    assert 'data-step="Manager approval" data-state="suspended"' in page
    assert '<tr data-step="Greet" data-state="completed">' in page
    assert "&quot;HELLO ADA&quot;" in page  # the output, folded
    assert f'data-events="/ui/runs/{run_id}/events"' in page


def test_graph_run_page_shows_declared_nodes_and_skipped_ones(client: TestClient) -> None:
    run_id = start(client, "branching", {"text": "go"})
    wait_state(client, run_id, {"completed"})
    page = client.get(f"/ui/runs/{run_id}").text
    assert 'data-step="quiet" data-state="skipped"' in page
    assert 'data-step="loud" data-state="completed"' in page
    assert ">loud</text>" in page  # the branch key on its edge
    assert "data-events" not in page  # a finished run is not followed live


def test_a_child_step_links_to_the_child_run_and_back(client: TestClient) -> None:
    run_id = start(client, "parent_run", {"gate": "child-link"})
    gate("child-link").set()
    wait_state(client, run_id, {"completed"})
    page = client.get(f"/ui/runs/{run_id}").text
    child_id = child_run_id(run_id, "Run child")
    assert f'<a href="/ui/runs/{child_id}" title="the child run">gated</a>' in page
    child = client.get(f"/ui/runs/{child_id}").text
    assert f'<a href="/ui/runs/{run_id}"><code>{run_id}</code></a>' in child


def test_a_loop_draws_its_back_edge_dashed(client: TestClient) -> None:
    run_id = start(client, "looping", {"text": "go"})
    assert wait_state(client, run_id, {"completed", "failed"})["state"] == "completed"
    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert 'data-step="publish" data-state="completed"' in page.text
    assert 'stroke-dasharray="5 4"' in page.text  # the back edge review -> draft
    assert '<tr data-step="review#2" data-state="completed">' in page.text


def test_step_names_and_outputs_are_escaped(client: TestClient) -> None:
    run_id = start(client, "hostile_run", {})
    wait_state(client, run_id, {"completed"})
    page = client.get(f"/ui/runs/{run_id}").text
    assert "<script>window" not in page
    assert "<img" not in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    assert page.count("<script") == 1  # the page's own ui.js
    assert (
        "script-src 'self'" in client.get(f"/ui/runs/{run_id}").headers["content-security-policy"]
    )


def test_a_graph_too_big_to_draw_shows_its_text_instead(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphflow.ui.svg

    monkeypatch.setattr(graphflow.ui.svg, "MAX_NODES", 1)
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert "is not drawn here" in page.text and "flowchart" in page.text


def test_run_ids_with_odd_characters_are_quoted_in_links(client: TestClient) -> None:
    run_id = start(client, "hostile_run", {}, run_id='odd id?"<b>#1')
    wait_state(client, run_id, {"completed"})
    listing = client.get("/ui").text
    assert 'href="/ui/runs/odd%20id%3F%22%3Cb%3E%231"' in listing
    assert "odd id?&quot;&lt;b&gt;#1" in listing
    assert client.get("/ui/runs/odd%20id%3F%22%3Cb%3E%231").status_code == 200


# --- resume, cancel -------------------------------------------------------------------------------


def test_resume_form_is_built_from_the_suspend_schema(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    page = client.get(f"/ui/runs/{run_id}").text
    assert f'action="/ui/runs/{run_id}/resume"' in page
    assert 'type="checkbox" id="resume0-approved" name="approved"' in page
    assert 'id="resume0-reviewer" name="reviewer"' in page
    assert 'name="count" inputmode="numeric" value="1"' in page  # the default, prefilled
    assert "Who decided" in page


def test_resume_with_invalid_data_shows_the_errors_and_keeps_the_run(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    answer = client.post(
        f"/ui/runs/{run_id}/resume",
        data={"reason": "Manager approval", "reviewer": "Bo", "count": "many"},
    )
    assert answer.status_code == 422
    assert 'class="field invalid"' in answer.text
    assert "valid integer" in answer.text
    assert 'value="many"' in answer.text  # what was typed stays
    assert client.get(f"/runs/{run_id}").json()["state"] == "suspended"


def test_resume_with_valid_data_redirects_and_the_run_goes_on(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    answer = client.post(
        f"/ui/runs/{run_id}/resume",
        data={"reason": "Manager approval", "approved": "true", "reviewer": "Bo", "count": "2"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/runs/{run_id}?done=resumed"
    body = wait_state(client, run_id, {"completed"})
    assert body["output"] == {"greeting": "HELLO ADA", "approved": True, "by": "Bo"}
    assert "Resumed" in client.get(answer.headers["location"]).text


def test_resume_of_a_suspend_no_longer_waiting_is_409(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "Ada"})
    wait_state(client, run_id, {"suspended"})
    client.post(f"/runs/{run_id}/resume", json={"approved": False, "reviewer": "X"})
    wait_state(client, run_id, {"completed"})
    answer = client.post(f"/ui/runs/{run_id}/resume", data={"reason": "Manager approval"})
    assert answer.status_code == 409
    assert "does not wait on" in answer.text


def test_cancel_button_cancels_the_run(client: TestClient) -> None:
    run_id = start(client, "gated", {"gate": "cancel-button"})
    wait_state(client, run_id, {"running"})
    assert 'name="cancel"' in client.get(f"/ui/runs/{run_id}").text
    answer = client.post(f"/ui/runs/{run_id}/cancel", follow_redirects=False)
    assert answer.status_code == 303
    assert wait_state(client, run_id, {"cancelled"})["state"] == "cancelled"
    page = client.get(f"/ui/runs/{run_id}").text
    assert 'name="cancel"' not in page
    again = client.post(f"/ui/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert "cannot cancel" in again.text


def test_fork_button_forks_the_run_from_the_chosen_step(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "kim"})
    wait_state(client, run_id, {"suspended"})
    page = client.get(f"/ui/runs/{run_id}").text
    assert 'name="fork"' in page
    assert '<option value="Greet">Greet</option>' in page
    answer = client.post(
        f"/ui/runs/{run_id}/fork", data={"from_step": "Manager approval"}, follow_redirects=False
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.endswith("?done=forked")
    forked_id = location.split("/ui/runs/", 1)[1].split("?", 1)[0]
    assert forked_id != run_id
    forked = wait_state(client, forked_id, {"suspended"})
    assert forked["forked_from"] == run_id
    greet = next(step for step in forked["steps"] if step["name"] == "Greet")
    assert greet["output"] == "HELLO KIM"  # copied, not run again
    assert "Forked:" in client.get(location).text


def test_fork_from_an_unknown_step_says_which_steps_exist(client: TestClient) -> None:
    run_id = start(client, "approval", {"name": "lee"})
    wait_state(client, run_id, {"suspended"})
    answer = client.post(f"/ui/runs/{run_id}/fork", data={"from_step": "No such step"})
    assert answer.status_code == 422
    assert "Greet" in html.unescape(answer.text)


def test_a_form_posted_from_another_site_is_refused(client: TestClient) -> None:
    run_id = start(client, "gated", {"gate": "cross-site"})
    answer = client.post(f"/ui/runs/{run_id}/cancel", headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert wait_state(client, run_id, {"running"})["state"] == "running"


# --- live updates ---------------------------------------------------------------------------------


def read_updates(client: TestClient, run_id: str, until_done: bool = True) -> list[dict[str, Any]]:
    updates = []
    with client.stream("GET", f"/ui/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "update":
                updates.append(json.loads(line.removeprefix("data: ")))
                if updates[-1]["done"] or not until_done:
                    break
    return updates


def test_events_send_the_sections_that_change_until_the_run_ends(client: TestClient) -> None:
    run_id = start(client, "gated", {"gate": "events"})
    wait_state(client, run_id, {"running"})
    gate("events").set()
    updates = read_updates(client, run_id)
    assert set(updates[0]["sections"]) == {"summary", "graph", "steps", "actions"}
    assert updates[-1]["state"] == "completed"
    # A section is sent only when it changes: the step's completion may come an update before the
    # run's, so check the graph a client shows after the last update, not the last update's own.
    graphs = [
        update["sections"]["graph"]["html"] for update in updates if "graph" in update["sections"]
    ]
    assert 'data-step="After gate" data-state="completed"' in graphs[-1]
    for later in updates[1:]:
        assert later["sections"], "an update without a changed section"


def test_events_of_a_finished_run_send_one_update(client: TestClient) -> None:
    run_id = start(client, "hostile_run", {})
    wait_state(client, run_id, {"completed"})
    updates = read_updates(client, run_id)
    assert len(updates) == 1 and updates[0]["done"]


# --- auth -----------------------------------------------------------------------------------------


def test_auth_guards_the_page_like_the_api(engine: gf.Engine) -> None:
    def auth(request: Request) -> Response | None:
        if request.headers.get("authorization") == "Bearer ok":
            return None
        return PlainTextResponse("who are you?", status_code=401)

    with TestClient(create_app(engine, auth=auth, ui=True)) as guarded:
        for path in ("/ui", "/ui/runs/x", "/ui/runs/x/events", "/ui/static/ui.js"):
            assert guarded.get(path).status_code == 401, path
        assert guarded.post("/ui/runs/x/cancel").status_code == 401
        allowed = guarded.get("/ui", headers={"authorization": "Bearer ok"})
        assert allowed.status_code == 200


def test_static_files_are_served_and_others_are_404(client: TestClient) -> None:
    css = client.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".state-completed{" in css.text
    assert "EventSource" in client.get("/ui/static/ui.js").text
    assert client.get("/ui/static/../../etc/passwd").status_code == 404
    assert client.get("/ui/static/other.js").status_code == 404
