"""The ``graphflow`` command line (also ``python -m graphflow``): typer commands over the engine.

Progress and errors go to stderr; results go to stdout (``run`` prints the output JSON as its last
line). A failure is one ``error: ...`` line on stderr and exit code 1; ``--debug`` adds the
traceback. Every command takes ``--store URL`` (default ``$GRAPHFLOW_STORE`` or
``sqlite:///graphflow.db``).
"""

from __future__ import annotations

import enum
import json
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Protocol

import anyio
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import __version__
from ._targets import load_target
from ._types import JSON, TERMINAL_RUN_STATES
from .engine import Engine
from .errors import GraphflowError, RunFailed
from .functions import DEFAULT_REGISTRY
from .runtime.status import RunStatus, StepStatus

__all__ = ("app", "main")

_DEFAULT_STORE = "sqlite:///graphflow.db"
_RUN_STATES = ("pending", "running", "sleeping", "suspended", "completed", "failed", "cancelled")
_STATE_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "sleeping": "blue",
    "suspended": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "dim",
}
_WATCH_INTERVAL = 0.1

app = typer.Typer(
    name="graphflow",
    help="Durable workflows from plain Python functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _out() -> Console:
    """A console on the current stdout; wide when piped, so tables are not squeezed to 80."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


_err = Console(stderr=True, highlight=False, soft_wrap=True)


class GraphFormat(enum.StrEnum):
    """Output formats of ``graphflow dot``."""

    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"


class _CliError(GraphflowError):
    """A bad command-line argument: the message names it and the fix."""


class _Interrupted(Exception):
    """SIGINT or SIGTERM stopped a command that was waiting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


# --- shared options -------------------------------------------------------------------------------

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="GRAPHFLOW_STORE",
        help="Store URL: sqlite:///path.db, postgresql://user@host/db or memory://.",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
TargetArg = Annotated[
    str, typer.Argument(help="A Python file (flows.py) or dotted module (app.flows) to import.")
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="A file or module to import first (registers its workflows)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MaxRunsOpt = Annotated[int, typer.Option("--max-runs", min=1, help="Runs held at once.")]
MaxJobsOpt = Annotated[int, typer.Option("--max-jobs", min=1, help="Jobs executing at once.")]


# --- errors and output ----------------------------------------------------------------------------


def _error_line(message: str) -> None:
    _err.print(Text(f"error: {message}", style="bold red"))


def _note(message: str, style: str | None = None) -> None:
    _err.print(Text(message, style=style or ""))


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _debug_details(exc: BaseException) -> None:
    traceback.print_exception(exc, file=sys.stderr)
    error = getattr(exc, "error", None)
    stored = getattr(error, "traceback", None)
    if isinstance(stored, str) and stored:
        _err.print(Text("stored traceback of the failure:", style="bold"))
        _err.print(Text(stored))


@contextmanager
def _reporting(debug: bool) -> Iterator[None]:
    """Turn any exception into one ``error:`` line (plus the traceback with ``--debug``), exit 1."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except BaseException as raw:
        exc = _unwrap(raw)
        if isinstance(exc, _Interrupted):
            _error_line(f"interrupted by {exc}")
            raise typer.Exit(130) from None
        if not isinstance(exc, Exception):
            raise
        if debug:
            _debug_details(exc)
        if isinstance(exc, GraphflowError):
            _error_line(str(exc))
        else:
            hint = "" if debug else " (run with --debug for the traceback)"
            _error_line(f"unexpected {type(exc).__name__}: {exc}{hint}")
        raise typer.Exit(1) from None


def _parse_json(raw: str, option: str) -> JSON:
    """Parse ``raw`` (JSON text, ``@file`` or ``@-`` for stdin) given to ``option``."""
    text = raw
    if raw.startswith("@"):
        source = raw[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise _CliError(
                f"cannot read the {option} file {source!r}: {exc.strerror or exc}. Give an"
                f" existing JSON file ({option} @data.json) or JSON text"
            ) from exc
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _CliError(
            f"{option} is not valid JSON ({exc}): quote it for the shell, e.g."
            f" {option} '{{\"key\": 1}}', or pass a file with {option} @data.json"
        ) from exc


def _load(target: str | None) -> None:
    if target is not None:
        load_target(target)


def _dump(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False)


def _time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(step: StepStatus) -> str:
    if step.started_at is None:
        return ""
    end = step.finished_at or datetime.now(UTC)
    seconds = max((end - step.started_at).total_seconds(), 0.0)
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _styled(state: str) -> Text:
    return Text(state, style=_STATE_STYLES.get(state, ""))


def _step_detail(step: StepStatus) -> str:
    if step.error is not None and step.state in ("failed", "cancelled"):
        return str(step.error)
    if step.state == "sleeping" and step.wake_at is not None:
        return f"until {_time(step.wake_at)}"
    if step.attempt_errors and step.state != "completed":
        return f"last error: {step.attempt_errors[-1]}"
    return ""


def _resume_hint(status: RunStatus) -> str:
    return f"graphflow resume {status.run_id} --data '{{...}}'"


def _run_detail(status: RunStatus) -> str:
    if status.state == "sleeping" and status.wake_at is not None:
        return f"sleeping until {_time(status.wake_at)}"
    if status.state == "suspended":
        return f"suspended: {status.suspend_reason!r}; resume with: {_resume_hint(status)}"
    if status.error is not None:
        return f"{status.state}: {status.error}"
    return status.state


# --- watching a run -------------------------------------------------------------------------------


class _View(Protocol):
    def update(self, status: RunStatus) -> None: ...

    def __enter__(self) -> _View: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _PlainView:
    """Line-oriented progress on stderr: one line per step or run change (for logs and pipes)."""

    def __init__(self) -> None:
        self._steps: dict[str, tuple[str, int]] = {}
        self._run: tuple[str, datetime | None, str | None] | None = None

    def __enter__(self) -> _PlainView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, status: RunStatus) -> None:
        for step in status.steps:
            key = (step.state, step.attempts)
            if self._steps.get(step.name) != key:
                self._steps[step.name] = key
                self._print_step(step)
        run_key = (status.state, status.wake_at, status.suspend_reason)
        if run_key != self._run:
            # The first line already announced the run: only a change of state is news.
            if self._run is not None or status.state not in ("pending", "running"):
                _note(f"run {status.run_id}: {_run_detail(status)}")
            self._run = run_key

    @staticmethod
    def _print_step(step: StepStatus) -> None:
        parts = [f"step {step.name!r}: {step.state}"]
        if step.attempts > 1 or step.state == "running":
            parts.append(f"(attempt {max(step.attempts, 1)})")
        if step.state in ("completed", "failed") and step.started_at is not None:
            parts.append(f"in {_duration(step)}")
        detail = _step_detail(step)
        if detail:
            parts.append(f"- {detail}")
        _note(" ".join(parts))


class _LiveView:
    """A live rich table of the run's steps on stderr (for terminals)."""

    def __init__(self) -> None:
        self._live = Live(console=_err, refresh_per_second=8, transient=False)

    def __enter__(self) -> _LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def update(self, status: RunStatus) -> None:
        self._live.update(self._render(status))

    def _render(self, status: RunStatus) -> RenderableType:
        header = Text.assemble(
            (f"{status.workflow} ", "bold"), (f"{status.run_id}  ", "dim"), _styled(status.state)
        )
        detail = _run_detail(status)
        lines: list[RenderableType] = [header]
        if detail != status.state:
            lines.append(Text(detail, style=_STATE_STYLES.get(status.state, "")))
        lines.append(_steps_table(status.steps, limit=max(_err.height - 8, 5)))
        return Group(*lines)


def _steps_table(steps: Sequence[StepStatus], limit: int | None = None) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("Step", "Kind", "State", "Attempt", "Duration", "Detail"):
        table.add_column(column, overflow="fold" if column == "Detail" else "ellipsis")
    shown = steps if limit is None or len(steps) <= limit else steps[-limit:]
    if len(shown) < len(steps):
        table.add_row(Text(f"... {len(steps) - len(shown)} earlier steps", style="dim"))
    for step in shown:
        table.add_row(
            step.name,
            step.kind,
            _styled(step.state),
            str(step.attempts or ""),
            _duration(step),
            _step_detail(step),
        )
    return table


async def _until_signal(scope: anyio.CancelScope, caught: list[int]) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM, recording it in ``caught``."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


async def _watch(engine: Engine, run_id: str, view: _View) -> RunStatus:
    """Update ``view`` until the run is terminal; ``_Interrupted`` on SIGINT/SIGTERM."""
    caught: list[int] = []
    final: RunStatus | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_signal, tg.cancel_scope, caught)
        while True:
            try:
                status = await engine.wait(run_id, timeout=_WATCH_INTERVAL)
            except TimeoutError:
                status = await engine.status(run_id)
            view.update(status)
            if status.state in TERMINAL_RUN_STATES:
                final = status
                tg.cancel_scope.cancel()
                break
    if final is None:
        raise _Interrupted(caught[0] if caught else signal.SIGINT)
    return final


def _make_view() -> _View:
    return _LiveView() if _err.is_terminal else _PlainView()


async def _run_to_end(
    store: str, workflow: str, data: JSON, run_id: str | None, max_runs: int, max_jobs: int
) -> RunStatus:
    async with Engine(store, max_runs=max_runs, max_jobs=max_jobs) as engine:
        started = await engine.start(workflow, data, run_id=run_id)
        _note(f"run {started} of workflow {workflow!r} on {store}", style="dim")
        try:
            with _make_view() as view:
                return await _watch(engine, started, view)
        except _Interrupted:
            _note(
                f"run {started} is kept in the store; continue it with `graphflow worker` or this"
                f" command with --run-id {started}",
                style="yellow",
            )
            raise


# --- commands -------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        _out().print(f"graphflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Durable workflows from plain Python functions, with state in your own database."""


@app.command()
def run(
    target: TargetArg,
    workflow: Annotated[str, typer.Argument(help="The workflow's registered name.")],
    input_: Annotated[
        str, typer.Option("--input", "-i", help="Input JSON, @file.json or @- (stdin).")
    ] = "{}",
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Run id (idempotent: continues that run).")
    ] = None,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Run WORKFLOW to completion in this process and print its output JSON."""
    with _reporting(debug):
        data = _parse_json(input_, "--input")
        load_target(target)
        status = anyio.run(_run_to_end, store, workflow, data, run_id, max_runs, max_jobs)
        if status.state != "completed":
            raise RunFailed(
                run_id=status.run_id,
                workflow=status.workflow,
                state=status.state,
                error=status.error,
            )
        typer.echo(_dump(status.output))


@app.command()
def start(
    target: TargetArg,
    workflow: Annotated[str, typer.Argument(help="The workflow's registered name.")],
    input_: Annotated[
        str, typer.Option("--input", "-i", help="Input JSON, @file.json or @- (stdin).")
    ] = "{}",
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id (idempotent).")] = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Start a run for workers to execute and print its run id."""
    with _reporting(debug):
        data = _parse_json(input_, "--input")
        load_target(target)

        async def go() -> str:
            async with Engine(store, worker=False) as engine:
                return await engine.start(workflow, data, run_id=run_id)

        started = anyio.run(go)
        _note(f"started run {started}; a `graphflow worker` on this store executes it", "dim")
        typer.echo(started)


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: JsonOpt = False,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Show a run's state and steps."""
    with _reporting(debug):
        _load(target)

        async def go() -> RunStatus:
            async with Engine(store, worker=False) as engine:
                return await engine.status(run_id)

        found = anyio.run(go)
        if as_json:
            typer.echo(found.model_dump_json(indent=2))
            return
        _print_status(found)


def _print_status(found: RunStatus) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_row(Text("run", style="bold"), found.run_id)
    facts.add_row(Text("workflow", style="bold"), found.workflow)
    facts.add_row(Text("state", style="bold"), _styled(found.state))
    facts.add_row(Text("created", style="bold"), _time(found.created_at))
    if found.finished_at is not None:
        facts.add_row(Text("finished", style="bold"), _time(found.finished_at))
    if found.parent_run_id is not None:
        facts.add_row(Text("parent", style="bold"), found.parent_run_id)
    if found.state in ("sleeping", "suspended", "failed", "cancelled"):
        facts.add_row(Text("detail", style="bold"), _run_detail(found))
    if found.state == "completed":
        facts.add_row(Text("output", style="bold"), _dump(found.output))
    _out().print(facts)
    if found.steps:
        _out().print()
        _out().print(_steps_table(found.steps))


@app.command()
def runs(
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", "-s", help="Only runs in this state.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    as_json: JsonOpt = False,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """List runs, newest first."""
    with _reporting(debug):
        if state is not None and state not in _RUN_STATES:
            raise _CliError(f"unknown --state {state!r}: use one of {', '.join(_RUN_STATES)}")
        _load(target)

        async def go() -> list[RunStatus]:
            async with Engine(store, worker=False) as engine:
                return await engine.list_runs(workflow=workflow, state=state, limit=limit)

        found = anyio.run(go)
        if as_json:
            typer.echo(json.dumps([r.model_dump(mode="json", exclude={"steps"}) for r in found]))
            return
        _print_runs(found)


def _print_runs(found: list[RunStatus]) -> None:
    if not found:
        _note("no runs match")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("Run ID", "Workflow", "State", "Created", "Finished"):
        table.add_column(column, no_wrap=column == "Run ID")
    for item in found:
        table.add_row(
            item.run_id,
            item.workflow,
            _styled(item.state),
            _time(item.created_at),
            _time(item.finished_at),
        )
    _out().print(table)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The suspended run's id.")],
    data: Annotated[
        str, typer.Option("--data", "-d", help="Resume data JSON, @file.json or @- (stdin).")
    ] = "{}",
    reason: Annotated[
        str | None, typer.Option("--reason", help="Which suspend, when several are waiting.")
    ] = None,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Resume a suspended run with data (validated against the suspend's schema)."""
    with _reporting(debug):
        payload = _parse_json(data, "--data")
        _load(target)

        async def go() -> None:
            async with Engine(store, worker=False) as engine:
                await engine.resume(run_id, payload, reason=reason)

        anyio.run(go)
        _note(f"resumed run {run_id}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Cancel a run that has not finished."""
    with _reporting(debug):
        _load(target)

        async def go() -> None:
            async with Engine(store, worker=False) as engine:
                await engine.cancel(run_id)

        anyio.run(go)
        _note(f"cancelled run {run_id}")


async def _work(store: str, max_runs: int, max_jobs: int) -> None:
    registry = DEFAULT_REGISTRY
    async with Engine(store, max_runs=max_runs, max_jobs=max_jobs) as engine:
        names = ", ".join(sorted(registry.workflow_names)) or "none"
        _note(f"worker {engine.owner_id[:8]} on {store}; workflows: {names}")
        _note("stop it with Ctrl-C or SIGTERM", style="dim")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                _note(f"{signal.Signals(signum).name}: finishing in-flight steps, releasing runs")
                break
    _note("worker stopped")


@app.command()
def worker(
    target: TargetArg,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Execute runs, jobs and timers of TARGET's workflows until SIGINT/SIGTERM."""
    with _reporting(debug):
        load_target(target)
        if not DEFAULT_REGISTRY.workflow_names and not DEFAULT_REGISTRY.function_names:
            raise _CliError(
                f"TARGET {target!r} registers no workflows or functions: point it at the module"
                " that holds the @gf.workflow / @gf.function definitions"
            )
        anyio.run(_work, store, max_runs, max_jobs)


def _render(graph: Any, fmt: GraphFormat) -> str:
    from .graph.render import to_dot, to_mermaid, to_svg

    if fmt is GraphFormat.dot:
        return to_dot(graph)
    if fmt is GraphFormat.mermaid:
        return to_mermaid(graph)
    return to_svg(graph)


def _definition_graph(graph_name: str) -> Any:
    definition = DEFAULT_REGISTRY.get_workflow(graph_name)
    graph = getattr(definition, "nx", None)
    if graph is None:
        raise _CliError(
            f"workflow {graph_name!r} is imperative: its graph only exists per run. Show one with"
            " `graphflow dot --run RUN_ID`"
        )
    return graph


@app.command()
def dot(
    target: Annotated[
        str | None, typer.Argument(help="File or module defining the graph workflow.")
    ] = None,
    graph: Annotated[str | None, typer.Argument(help="The graph workflow's name.")] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Render this run's graph from the store instead.")
    ] = None,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = (
        GraphFormat.dot
    ),
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Print a graph workflow (TARGET GRAPH, no store opened) or a run's graph (--run RUN_ID)."""
    with _reporting(debug):
        if run_id is None and (target is None or graph is None):
            raise _CliError("give TARGET GRAPH (a graph workflow) or --run RUN_ID (a run's graph)")
        if run_id is not None and graph is not None:
            raise _CliError("give either TARGET GRAPH or --run RUN_ID, not both")
        _load(target)
        if run_id is None:
            assert graph is not None
            typer.echo(_render(_definition_graph(graph), fmt))
            return

        async def go() -> Any:
            async with Engine(store, worker=False) as engine:
                return await engine.run_graph(run_id)

        typer.echo(_render(anyio.run(go), fmt))


@app.command()
def serve(
    target: TargetArg,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port.")] = 8000,
    worker_: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also execute runs in this process.")
    ] = True,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Serve TARGET's workflows over HTTP (graphflow.http.create_app under uvicorn)."""
    with _reporting(debug):
        load_target(target)
        try:
            import uvicorn

            from .http import create_app
        except ImportError as exc:
            raise _CliError(
                f"`graphflow serve` needs Starlette and uvicorn ({exc}): install them with"
                " pip install 'graphflow[http]'"
            ) from exc
        engine = Engine(store, worker=worker_, max_runs=max_runs, max_jobs=max_jobs)
        uvicorn.run(
            create_app(engine),
            host=host,
            port=port,
            log_level="debug" if debug else "info",
            timeout_graceful_shutdown=5,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        app(args=None if argv is None else list(argv), prog_name="graphflow")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        _error_line(str(code))
        return 1
    return 0
