"""The command line: in-process through typer's CliRunner, and as real ``python -m graphflow``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

import graphflow as gf
from graphflow import cli
from graphflow._targets import TargetError, load_target

FLOWS = """
from pathlib import Path

import anyio
from pydantic import BaseModel

import graphflow as gf


class Greeting(BaseModel):
    name: str


class Approval(BaseModel):
    approved: bool


@gf.function
def cli_greet(name: str) -> str:
    return f"Hello, {name}!"


@gf.function
def cli_explode(reason: str) -> None:
    raise RuntimeError(reason)


@gf.function
async def cli_wait_for(path: str) -> str:
    Path(path + ".waiting").touch()
    while not Path(path).exists():
        await anyio.sleep(0.02)
    return "done"


@gf.workflow
async def cli_hello(wf: gf.Workflow, data: Greeting) -> dict:
    return {"greeting": await wf.do("Greet", cli_greet, {"name": data.name})}


@gf.workflow
async def cli_fails(wf: gf.Workflow, data: dict) -> None:
    await wf.do("Explode", cli_explode, {"reason": data.get("reason", "kaboom")})


@gf.workflow
async def cli_slow(wf: gf.Workflow, data: dict) -> str:
    return await wf.do("Wait for file", cli_wait_for, {"path": data["path"]})


@gf.workflow
async def cli_approval(wf: gf.Workflow, data: Greeting) -> dict:
    greeting = await wf.do("Greet", cli_greet, {"name": data.name})
    decision = await wf.suspend("Manager approval", schema=Approval)
    return {"greeting": greeting, "approved": decision.approved}
"""

GRAPHS = """
import graphflow as gf


@gf.function
def cli_shout(text: str) -> str:
    return text.upper()


@gf.function
def cli_whisper(name: str) -> str:
    return name.lower()


cli_graph = gf.workflow_graph(
    name="cli_graph",
    nodes={"whisper": "cli_whisper", "shout": "cli_shout"},
    config={"whisper": {"next": "shout"}, "shout": {"input": lambda ref: {"text": ref("whisper")}}},
)
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli_flows")
    (directory / "gf_cli_flows.py").write_text(FLOWS)
    (directory / "gf_cli_graphs.py").write_text(GRAPHS)
    (directory / "gf_cli_broken.py").write_text("raise ValueError('broken at import')\n")
    return directory


@pytest.fixture
def flows(flows_dir: Path) -> str:
    return str(flows_dir / "gf_cli_flows.py")


@pytest.fixture
def graphs(flows_dir: Path) -> str:
    return str(flows_dir / "gf_cli_graphs.py")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}?durability=normal"


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli.app, list(args), input=input, env=env)


def last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


def status_of(run_id: str, store: str) -> dict[str, Any]:
    result = invoke("status", run_id, "--json", "--store", store)
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def wait_state(run_id: str, store: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = status_of(run_id, store)
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {states}")


# --- run ------------------------------------------------------------------------------------------


def test_run_prints_the_output_json_as_the_last_stdout_line(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_hello", "--input", '{"name": "Ada"}', "--store", store)
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout) == {"greeting": "Hello, Ada!"}


def test_run_shows_plain_step_progress_on_stderr_when_not_a_terminal(
    flows: str, store: str
) -> None:
    result = invoke("run", flows, "cli_hello", "-i", '{"name": "Ada"}', "--store", store)
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines[0].startswith("run ")
    assert "'cli_hello'" in lines[0]
    assert any(line.startswith("step 'Greet': completed") for line in lines)
    assert lines[-1].endswith(": completed")
    assert "\x1b[" not in result.stderr


def test_run_reads_input_from_a_file_and_from_stdin(flows: str, store: str, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"name": "File"}')
    from_file = invoke("run", flows, "cli_hello", "--input", f"@{tmp_path / 'input.json'}",
                       "--store", store)  # fmt: skip
    assert last_json(from_file.stdout) == {"greeting": "Hello, File!"}
    from_stdin = invoke(
        "run", flows, "cli_hello", "--input", "@-", "--store", store, input='{"name": "Pipe"}'
    )
    assert last_json(from_stdin.stdout) == {"greeting": "Hello, Pipe!"}


def test_run_of_a_failing_workflow_exits_1_with_a_one_line_error(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_fails", "--store", store)
    assert result.exit_code == 1
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "ended failed" in error_lines[0]
    assert "RuntimeError: kaboom" in error_lines[0]
    assert "Traceback" not in result.stderr


def test_debug_adds_the_traceback(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_fails", "--store", store, "--debug")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError: kaboom" in result.stderr


def test_invalid_json_input_is_a_one_line_error_with_the_fix(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_hello", "--input", "{name: Ada}", "--store", store)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --input is not valid JSON")
    assert "@data.json" in result.stderr


def test_missing_input_file_is_a_one_line_error(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_hello", "--input", "@/nonexistent.json", "--store", store)
    assert result.exit_code == 1
    assert "cannot read the --input file '/nonexistent.json'" in result.stderr


def test_invalid_workflow_input_names_the_field(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_hello", "--input", '{"nam": "Ada"}', "--store", store)
    assert result.exit_code == 1
    assert "name: Field required" in result.stderr


def test_unknown_workflow_lists_the_registered_ones(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_nope", "--store", store)
    assert result.exit_code == 1
    assert "unknown workflow 'cli_nope'" in result.stderr
    assert "cli_hello" in result.stderr


def test_store_defaults_to_the_environment(flows: str, store: str) -> None:
    result = invoke("run", flows, "cli_hello", "-i", '{"name": "Env"}',
                    env={"GRAPHFLOW_STORE": store})  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = invoke("runs", "--json", "--store", store)
    assert [r["workflow"] for r in json.loads(runs.stdout)] == ["cli_hello"]


def test_unsupported_store_url_is_a_one_line_error(flows: str) -> None:
    result = invoke("run", flows, "cli_hello", "-i", '{"name": "A"}', "--store", "mongodb://x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unsupported store URL 'mongodb://x'")


# --- targets --------------------------------------------------------------------------------------


def test_missing_target_file_is_a_one_line_error(store: str) -> None:
    result = invoke("run", "no/such/flows.py", "cli_hello", "--store", store)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot import TARGET 'no/such/flows.py': no such file")


def test_unknown_dotted_target_is_a_one_line_error(store: str) -> None:
    result = invoke("run", "no_such_pkg.flows", "cli_hello", "--store", store)
    assert result.exit_code == 1
    assert "no module named 'no_such_pkg'" in result.stderr


def test_target_raising_at_import_names_the_error(flows_dir: Path, store: str) -> None:
    result = invoke("run", str(flows_dir / "gf_cli_broken.py"), "x", "--store", store)
    assert result.exit_code == 1
    assert "ValueError: broken at import" in result.stderr
    assert "--debug" in result.stderr


def test_file_target_is_imported_under_its_stem(flows: str) -> None:
    module = load_target(flows)
    assert module.__name__ == "gf_cli_flows"
    import gf_cli_flows  # type: ignore[import-not-found]  # on sys.path thanks to load_target

    assert gf_cli_flows is module
    assert load_target(flows) is module


def test_a_second_file_with_a_taken_stem_is_refused(flows: str, tmp_path: Path) -> None:
    load_target(flows)
    (tmp_path / "gf_cli_flows.py").write_text("")
    with pytest.raises(TargetError, match="already imported"):
        load_target(str(tmp_path / "gf_cli_flows.py"))


def test_dotted_target_is_imported_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "gf_cli_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text("VALUE = 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    module = load_target("gf_cli_pkg.flows")
    assert module.VALUE == 42


# --- start / status / runs ------------------------------------------------------------------------


def test_start_prints_the_run_id_and_leaves_the_run_to_workers(flows: str, store: str) -> None:
    result = invoke("start", flows, "cli_hello", "-i", '{"name": "Ada"}', "--store", store)
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    assert "graphflow worker" in result.stderr
    assert status_of(run_id, store)["state"] == "pending"


def test_start_with_run_id_is_idempotent_and_conflicts_on_other_input(
    flows: str, store: str
) -> None:
    args = ("start", flows, "cli_hello", "--run-id", "order-1", "--store", store)
    assert invoke(*args, "-i", '{"name": "A"}').stdout.strip() == "order-1"
    assert invoke(*args, "-i", '{"name": "A"}').stdout.strip() == "order-1"
    conflict = invoke(*args, "-i", '{"name": "B"}')
    assert conflict.exit_code == 1
    assert "run 'order-1' already exists with a different input" in conflict.stderr


def test_start_with_priority_and_dedup_key(flows: str, store: str) -> None:
    def start(name: str, *options: str) -> str:
        args = ("start", flows, "cli_hello", "-i", json.dumps({"name": name}), "--store", store)
        result = invoke(*args, *options)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    low = start("low")
    high = start("high", "--priority", "5")
    keyed = start("keyed", "--priority", "-1", "--dedup-key", "customer-7")
    assert start("other input", "--dedup-key", "customer-7") == keyed
    load_target(flows)

    async def drain() -> list[gf.RunStatus]:
        async with gf.Engine(store, max_runs=1) as engine:
            return [await engine.wait(run_id, timeout=30) for run_id in (low, high, keyed)]

    statuses = anyio.run(drain)
    assert [s.output for s in statuses] == [
        {"greeting": f"Hello, {name}!"} for name in ("low", "high", "keyed")
    ]
    by_start = sorted(statuses, key=lambda s: s.started_at or 0)
    assert [s.run_id for s in by_start] == [high, low, keyed]  # one at a time, highest first


def test_status_prints_a_table_of_steps(flows: str, store: str) -> None:
    invoke("run", flows, "cli_hello", "-i", '{"name": "Ada"}', "--run-id", "r1", "--store", store)
    result = invoke("status", "r1", "--store", store)
    assert result.exit_code == 0, result.output
    assert "cli_hello" in result.stdout
    assert "completed" in result.stdout
    assert "Greet" in result.stdout
    assert '{"greeting": "Hello, Ada!"}' in result.stdout


def test_status_json_is_the_run_status(flows: str, store: str) -> None:
    invoke("run", flows, "cli_hello", "-i", '{"name": "Ada"}', "--run-id", "r2", "--store", store)
    body = status_of("r2", store)
    assert body["state"] == "completed"
    assert body["output"] == {"greeting": "Hello, Ada!"}
    assert [s["name"] for s in body["steps"]] == ["Greet"]


def test_status_of_an_unknown_run_exits_1(store: str) -> None:
    result = invoke("status", "missing", "--store", store)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no run 'missing' in this store")


def test_runs_lists_newest_first_with_filters(flows: str, store: str) -> None:
    invoke("run", flows, "cli_hello", "-i", '{"name": "A"}', "--run-id", "a", "--store", store)
    invoke("run", flows, "cli_fails", "--run-id", "b", "--store", store)
    invoke("run", flows, "cli_hello", "-i", '{"name": "C"}', "--run-id", "c", "--store", store)

    def ids(*args: str) -> list[str]:
        result = invoke("runs", "--json", "--store", store, *args)
        assert result.exit_code == 0, result.output
        return [r["run_id"] for r in json.loads(result.stdout)]

    assert ids() == ["c", "b", "a"]
    assert ids("--workflow", "cli_hello") == ["c", "a"]
    assert ids("--state", "failed") == ["b"]
    assert ids("--limit", "1") == ["c"]
    table = invoke("runs", "--store", store)
    assert table.exit_code == 0
    assert all(name in table.stdout for name in ("a", "b", "c", "cli_fails"))


def test_runs_with_an_unknown_state_is_a_one_line_error(store: str) -> None:
    result = invoke("runs", "--state", "done", "--store", store)
    assert result.exit_code == 1
    assert "unknown --state 'done': use one of pending, queued, running" in result.stderr


# --- worker, resume, cancel (real worker processes) -----------------------------------------------


@pytest.fixture
def worker(flows: str, store: str, flows_dir: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "graphflow",
            "worker",
            flows,
            "--store",
            store,
            "--poll-interval",
            "0.1",
        ],
        cwd=flows_dir,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.slow
def test_worker_executes_started_runs_and_stops_on_sigterm(
    flows: str, store: str, worker: subprocess.Popen[str]
) -> None:
    run_id = invoke("start", flows, "cli_hello", "-i", '{"name": "W"}', "--store", store).stdout
    body = wait_state(run_id.strip(), store, {"completed"})
    assert body["output"] == {"greeting": "Hello, W!"}
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "workflows: cli_approval, cli_fails, cli_hello, cli_slow" in stderr
    assert "SIGTERM" in stderr
    assert stderr.rstrip().endswith("worker stopped")


@pytest.mark.slow
def test_resume_validates_the_data_and_continues_the_run(
    flows: str, store: str, worker: subprocess.Popen[str]
) -> None:
    run_id = invoke("start", flows, "cli_approval", "-i", '{"name": "R"}', "--store", store)
    run_id_text = run_id.stdout.strip()
    wait_state(run_id_text, store, {"suspended"})

    refused = invoke("resume", run_id_text, "--data", '{"approved": "maybe"}', "--store", store)
    assert refused.exit_code == 1
    assert "approved" in refused.stderr
    assert status_of(run_id_text, store)["state"] == "suspended"

    resumed = invoke("resume", run_id_text, "--data", '{"approved": true}', "--store", store)
    assert resumed.exit_code == 0, resumed.output
    body = wait_state(run_id_text, store, {"completed"})
    assert body["output"] == {"greeting": "Hello, R!", "approved": True}


@pytest.mark.slow
def test_cancel_stops_a_suspended_run_and_refuses_a_finished_one(
    flows: str, store: str, worker: subprocess.Popen[str]
) -> None:
    started = invoke("start", flows, "cli_approval", "-i", '{"name": "C"}', "--store", store)
    run_id = started.stdout.strip()
    wait_state(run_id, store, {"suspended"})
    cancelled = invoke("cancel", run_id, "--store", store)
    assert cancelled.exit_code == 0, cancelled.output
    assert wait_state(run_id, store, {"cancelled"})["state"] == "cancelled"
    again = invoke("cancel", run_id, "--store", store)
    assert again.exit_code == 1
    assert f"cannot cancel run {run_id!r}" in again.stderr


def test_resume_of_a_run_that_is_not_suspended_exits_1(flows: str, store: str) -> None:
    invoke("run", flows, "cli_hello", "-i", '{"name": "A"}', "--run-id", "done", "--store", store)
    result = invoke("resume", "done", "--data", "{}", "--store", store)
    assert result.exit_code == 1
    assert "cannot resume run 'done'" in result.stderr


# --- dot ------------------------------------------------------------------------------------------


def test_dot_prints_a_graph_workflow_without_opening_a_store(graphs: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'never.db'}"
    result = invoke("dot", graphs, "cli_graph", "--store", store)
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("digraph")
    assert "whisper" in result.stdout
    assert "shout" in result.stdout
    assert not (tmp_path / "never.db").exists()


def test_dot_prints_mermaid(graphs: str) -> None:
    result = invoke("dot", graphs, "cli_graph", "--format", "mermaid")
    assert result.exit_code == 0, result.output
    assert "whisper" in result.stdout
    assert "shout" in result.stdout


def test_dot_svg_without_graphviz_is_a_clear_error(graphs: str, tmp_path: Path) -> None:
    result = invoke("dot", graphs, "cli_graph", "--format", "svg", env={"PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert "Graphviz" in result.stderr


def test_dot_of_an_imperative_workflow_points_at_run_graphs(flows: str) -> None:
    result = invoke("dot", flows, "cli_hello")
    assert result.exit_code == 1
    assert "graphflow dot --run RUN_ID" in result.stderr


def test_dot_without_a_graph_or_run_is_a_one_line_error() -> None:
    result = invoke("dot")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: give TARGET GRAPH (a graph workflow) or --run RUN_ID (a run's graph)\n"
    )


def test_dot_run_renders_a_run_graph(flows: str, store: str) -> None:
    invoke("run", flows, "cli_hello", "-i", '{"name": "A"}', "--run-id", "g1", "--store", store)
    result = invoke("dot", "--run", "g1", "--store", store)
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("digraph")
    assert "Greet" in result.stdout


# --- the program itself ---------------------------------------------------------------------------


def test_version_and_main_return_exit_codes() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("graphflow ")
    assert cli.main(["--version"]) == 0
    assert cli.main(["status"]) == 2  # missing RUN_ID: a usage error


def graphflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_python_m_graphflow_run_for_real(flows_dir: Path, store: str) -> None:
    ok = graphflow("run", "gf_cli_flows.py", "cli_hello", "-i", '{"name": "Sub"}', "--store", store,
                   cwd=flows_dir)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert last_json(ok.stdout) == {"greeting": "Hello, Sub!"}
    assert "step 'Greet': completed" in ok.stderr

    failed = graphflow("run", "gf_cli_flows.py", "cli_fails", "--store", store, cwd=flows_dir)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.splitlines()[-1].startswith("error: run ")
    assert "Traceback" not in failed.stderr

    usage = graphflow("run", "--store", store, cwd=flows_dir)
    assert usage.returncode == 2


@pytest.mark.slow
def test_graphflow_console_script_runs() -> None:
    script = Path(sys.executable).with_name("graphflow")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("graphflow ")


@pytest.mark.slow
def test_interrupted_run_is_kept_and_finishes_with_the_same_run_id(
    flows_dir: Path, store: str, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    command = [sys.executable, "-m", "graphflow", "run", "gf_cli_flows.py", "cli_slow"]
    command += ["-i", json.dumps({"path": str(marker)}), "--run-id", "slow-1", "--store", store]
    process = subprocess.Popen(
        command, cwd=flows_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not Path(f"{marker}.waiting").exists():
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "error: interrupted by SIGINT" in stderr
    assert "--run-id slow-1" in stderr
    assert status_of("slow-1", store)["state"] == "running"  # kept, for any engine to take over

    marker.touch()
    again = subprocess.run(command, cwd=flows_dir, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert last_json(again.stdout) == "done"


@pytest.mark.slow
def test_worker_refuses_a_target_that_registers_nothing(tmp_path: Path, store: str) -> None:
    (tmp_path / "gf_cli_empty.py").write_text("X = 1\n")
    result = graphflow("worker", "gf_cli_empty.py", "--store", store, cwd=tmp_path)
    assert result.returncode == 1
    assert "registers no workflows or functions" in result.stderr
