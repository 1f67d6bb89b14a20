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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.text import Text

from . import __version__
from . import _cli_display as display
from ._scaffold import scaffold
from ._targets import load_target
from ._types import JSON, RUN_STATES, SETTLED
from .engine import Engine
from .errors import GraphflowError, RunFailed
from .functions import DEFAULT_REGISTRY
from .graph.render import to_dot, to_mermaid, to_svg
from .graph.spec import GraphWorkflow
from .runtime.status import RunStatus

if TYPE_CHECKING:
    from networkx import DiGraph

__all__ = ("EXIT_SUSPENDED", "app", "main")

T = TypeVar("T")

_DEFAULT_STORE = "sqlite:///graphflow.db"
EXIT_SUSPENDED = 2
"""``graphflow run``'s exit code when it leaves a run suspended (``--no-wait`` or Ctrl-C)."""

app = typer.Typer(
    name="graphflow",
    help="Durable workflows from plain Python functions.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: typer's rich panels label every flag ``<bool>`` as if it took a value.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


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
    str,
    typer.Argument(
        metavar="TARGET", help="A Python file (flows.py) or dotted module (app.flows) to import."
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="A file or module to import first (registers its workflows)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MaxRunsOpt = Annotated[int, typer.Option("--max-runs", min=1, help="Runs held at once.")]
MaxJobsOpt = Annotated[int, typer.Option("--max-jobs", min=1, help="Jobs executing at once.")]


# --- errors and output ----------------------------------------------------------------------------


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
        display.stderr.print(Text("stored traceback of the failure:", style="bold"))
        display.stderr.print(Text(stored))


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
            display.error_line(f"interrupted by {exc}")
            raise typer.Exit(130) from None
        if not isinstance(exc, Exception):
            raise
        if debug:
            _debug_details(exc)
        if isinstance(exc, GraphflowError):
            display.error_line(str(exc))
        else:
            hint = "" if debug else " (run with --debug for the traceback)"
            display.error_line(f"unexpected {type(exc).__name__}: {exc}{hint}")
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


# --- watching a run -------------------------------------------------------------------------------


async def _until_signal(scope: anyio.CancelScope, caught: list[int]) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM, recording it in ``caught``."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


async def _watch(engine: Engine, run_id: str, view: display.View, *, wait: bool) -> RunStatus:
    """Update ``view`` until the run is terminal (or suspended, unless ``wait``).

    Interrupted (SIGINT/SIGTERM) while the run is suspended, this returns its status: leaving a
    run that waits for a person is the expected way out. Interrupted otherwise, ``_Interrupted``.
    """
    caught: list[int] = []
    last: RunStatus | None = None
    announced: str | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_signal, tg.cancel_scope, caught)
        async with aclosing(engine.watch(run_id)) as statuses:
            async for status in statuses:
                view.update(status)
                last = status
                if status.state != "suspended":
                    announced = None
                elif not wait:
                    break
                elif announced != status.suspend_reason:
                    announced = status.suspend_reason
                    display.note(display.waiting_note(status), style="magenta")
        tg.cancel_scope.cancel()
    if last is not None and last.state in SETTLED:
        return last
    raise _Interrupted(caught[0] if caught else signal.SIGINT)


async def _run_to_end(
    store: str,
    workflow: str,
    data: JSON,
    run_id: str | None,
    options: dict[str, Any],
    wait: bool,
) -> RunStatus:
    async with Engine(store, **options) as engine:
        started = await engine.start(workflow, data, run_id=run_id)
        display.note(f"run {started} of workflow {workflow!r} on {store}", style="dim")
        try:
            with display.make_view() as view:
                return await _watch(engine, started, view, wait=wait)
        except _Interrupted:
            display.note(
                f"run {started} is kept in the store; continue it with `graphflow worker` or this"
                f" command with --run-id {started}",
                style="yellow",
            )
            raise


# --- commands -------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        display.stdout_console().print(f"graphflow {__version__}")
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
    workflow: Annotated[
        str, typer.Argument(metavar="WORKFLOW", help="The workflow's registered name.")
    ],
    input_: Annotated[
        str, typer.Option("--input", "-i", help="Input JSON, @file.json or @- (stdin).")
    ] = "{}",
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Run id (idempotent: continues that run).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait through suspends (default), or exit 2 printing the run id when the run"
            " suspends.",
        ),
    ] = True,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Run WORKFLOW to completion in this process and print its output JSON.

    Exit codes: 0 completed (the output JSON on stdout), 1 failed or cancelled, 2 suspended
    (--no-wait, or Ctrl-C while it waits for a resume: the run id on stdout), 130 interrupted
    while running. A usage error (a missing argument) also exits 2, with nothing on stdout.
    """
    with _reporting(debug):
        data = _parse_json(input_, "--input")
        load_target(target)
        options = {"max_runs": max_runs, "max_jobs": max_jobs}
        status = anyio.run(_run_to_end, store, workflow, data, run_id, options, wait)
        if status.state == "suspended":
            display.note(
                f"run {status.run_id} is suspended at {status.suspend_reason!r} and kept: resume"
                f" it with {display.resume_hint(status)}; a `graphflow worker` on this store (or"
                f" this command with --run-id {status.run_id}) then continues it",
                style="magenta",
            )
            typer.echo(status.run_id)
            raise typer.Exit(EXIT_SUSPENDED)
        if status.state != "completed":
            raise RunFailed(
                run_id=status.run_id,
                workflow=status.workflow,
                state=status.state,
                error=status.error,
            )
        typer.echo(display.dump_json(status.output))


def _with_client(store: str, call: Callable[[Engine], Awaitable[T]]) -> T:
    """Open a client engine (it executes nothing) on ``store``, await ``call`` with it, close."""

    async def go() -> T:
        async with Engine(store, worker=False) as engine:
            return await call(engine)

    return anyio.run(go)


@app.command()
def start(
    target: TargetArg,
    workflow: Annotated[
        str, typer.Argument(metavar="WORKFLOW", help="The workflow's registered name.")
    ],
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

        started = _with_client(store, lambda engine: engine.start(workflow, data, run_id=run_id))
        display.note(
            f"started run {started}; a `graphflow worker` on this store executes it", "dim"
        )
        typer.echo(started)


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")],
    as_json: JsonOpt = False,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Show a run's state and steps (each error on one line; --debug adds stored tracebacks)."""
    with _reporting(debug):
        _load(target)
        found = _with_client(store, lambda engine: engine.status(run_id))
        if as_json:
            typer.echo(found.model_dump_json(indent=2))
            return
        display.print_status(found)
        if debug:
            for what, text in display.tracebacks(found):
                display.note(f"stored traceback of {what}:", style="bold")
                display.stderr.print(Text(text.rstrip()))


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
        if state is not None and state not in RUN_STATES:
            raise _CliError(f"unknown --state {state!r}: use one of {', '.join(RUN_STATES)}")
        _load(target)
        found = _with_client(
            store, lambda engine: engine.list_runs(workflow=workflow, state=state, limit=limit)
        )
        if as_json:
            typer.echo(json.dumps([r.model_dump(mode="json", exclude={"steps"}) for r in found]))
            return
        display.print_runs(found)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The suspended run's id.")],
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
        _with_client(store, lambda engine: engine.resume(run_id, payload, reason=reason))
        display.note(f"resumed run {run_id}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")],
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Cancel a run that has not finished."""
    with _reporting(debug):
        _load(target)
        _with_client(store, lambda engine: engine.cancel(run_id))
        display.note(f"cancelled run {run_id}")


async def _work(store: str, max_runs: int, max_jobs: int) -> None:
    registry = DEFAULT_REGISTRY
    async with Engine(store, max_runs=max_runs, max_jobs=max_jobs) as engine:
        names = ", ".join(sorted(registry.workflow_names)) or "none"
        display.note(f"worker {engine.owner_id[:8]} on {store}; workflows: {names}")
        display.note("stop it with Ctrl-C or SIGTERM", style="dim")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                display.note(
                    f"{signal.Signals(signum).name}: finishing in-flight steps, releasing runs"
                )
                break
    display.note("worker stopped")


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


def _render(graph: DiGraph[Any] | GraphWorkflow, fmt: GraphFormat) -> str:
    if fmt is GraphFormat.dot:
        return to_dot(graph)
    if fmt is GraphFormat.mermaid:
        return to_mermaid(graph)
    return to_svg(graph)


def _echo_text(text: str) -> None:
    typer.echo(text, nl=not text.endswith("\n"))


def _definition_graph(graph_name: str) -> DiGraph[str]:
    declared = DEFAULT_REGISTRY.get_workflow(graph_name).declared_graph
    if declared is None:
        raise _CliError(
            f"workflow {graph_name!r} is imperative: its graph only exists per run. Show one with"
            " `graphflow dot --run RUN_ID`"
        )
    return declared


@app.command()
def dot(
    target: Annotated[
        str | None, typer.Argument(help="File or module defining the graph (with --run: optional).")
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
            _echo_text(_render(_definition_graph(graph), fmt))
            return

        _echo_text(_render(_with_client(store, lambda engine: engine.run_graph(run_id)), fmt))


@app.command()
def serve(
    target: TargetArg,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port.")] = 8000,
    worker_: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also execute runs in this process.")
    ] = True,
    ui: Annotated[
        bool, typer.Option("--ui/--no-ui", help="Also serve the web page at /ui.")
    ] = True,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Serve TARGET's workflows over HTTP and the web page at /ui (create_app under uvicorn)."""
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
            create_app(engine, ui=ui),
            host=host,
            port=port,
            log_level="debug" if debug else "info",
            timeout_graceful_shutdown=5,
        )


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="The new project's directory (its name).")],
    debug: DebugOpt = False,
) -> None:
    """Create a runnable project NAME: workflows, a virtual-clock test, README with commands."""
    with _reporting(debug):
        directory = Path(name)
        written = scaffold(directory, version=__version__)
        for path in written:
            display.note(f"wrote {path}", "dim")
        typer.echo(
            f"created {directory}: cd {directory}, then see README.md (run an example; pytest)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        app(args=None if argv is None else list(argv), prog_name="graphflow")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        display.error_line(str(code))
        return 1
    return 0
