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
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from typer.core import TyperGroup

from . import __version__
from ._targets import load_target
from ._types import JSON, RUN_STATES
from .errors import GraphflowError

if TYPE_CHECKING:
    from networkx import DiGraph

    from .engine import Engine

__all__ = ("EXIT_SUSPENDED", "app", "main")

T = TypeVar("T")

_DEFAULT_STORE = "sqlite:///graphflow.db"
EXIT_SUSPENDED = 2
"""``graphflow run``'s exit code when it leaves a run suspended (``--no-wait`` or Ctrl-C)."""

_HELP_ORDER = (
    "run", "start", "status", "runs", "resume", "cancel", "send", "event", "worker", "serve",
    "dot", "init",
)  # fmt: skip


class _Commands(TyperGroup):
    """The commands in ``graphflow --help`` in the order a user meets them (others after)."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's own click Context
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(_HELP_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    name="graphflow",
    cls=_Commands,
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
    from rich.text import Text

    from . import _cli_display as display

    traceback.print_exception(exc, file=sys.stderr)
    error = getattr(exc, "error", None)
    stored = getattr(error, "traceback", None)
    if isinstance(stored, str) and stored:
        display.stderr.print(Text("stored traceback of the failure:", style="bold"))
        display.stderr.print(Text(stored))


@contextmanager
def _reporting(debug: bool) -> Iterator[None]:
    """Turn any exception into one ``error:`` line (plus the traceback with ``--debug``), exit 1."""
    from . import _cli_display as display

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


# --- commands -------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    from . import _cli_display as display

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


def _with_client(store: str, call: Callable[[Engine], Awaitable[T]]) -> T:
    """Open a client engine (it executes nothing) on ``store``, await ``call`` with it, close."""
    from .engine import Engine

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
    priority: Annotated[
        int, typer.Option("--priority", help="Higher first among queued runs (default 0).")
    ] = 0,
    dedup_key: Annotated[
        str | None,
        typer.Option("--dedup-key", help="Print the unfinished run that has this key, if any."),
    ] = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Start a run for workers to execute and print its run id."""
    from . import _cli_display as display

    with _reporting(debug):
        data = _parse_json(input_, "--input")
        load_target(target)

        started = _with_client(
            store,
            lambda engine: engine.start(
                workflow, data, run_id=run_id, priority=priority, dedup_key=dedup_key
            ),
        )
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
    from rich.text import Text

    from . import _cli_display as display

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
    from . import _cli_display as display

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
def schedules(
    as_json: JsonOpt = False,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """List the cron schedules (stored ones, and those declared in --target's code)."""
    from . import _cli_display as display

    with _reporting(debug):
        _load(target)
        found = _with_client(store, lambda engine: engine.list_schedules())
        if as_json:
            typer.echo(json.dumps([info.model_dump(mode="json") for info in found]))
            return
        display.print_schedules(found)


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
    from . import _cli_display as display

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
    from . import _cli_display as display

    with _reporting(debug):
        _load(target)
        _with_client(store, lambda engine: engine.cancel(run_id))
        display.note(f"cancelled run {run_id}")


def _render(graph: DiGraph[Any], fmt: GraphFormat) -> str:
    from .graph.render import to_dot, to_mermaid, to_svg

    if fmt is GraphFormat.dot:
        return to_dot(graph)
    if fmt is GraphFormat.mermaid:
        return to_mermaid(graph)
    return to_svg(graph)


def _echo_text(text: str) -> None:
    typer.echo(text, nl=not text.endswith("\n"))


def _definition_graph(graph_name: str) -> DiGraph[str]:
    from .functions import DEFAULT_REGISTRY

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
def init(
    name: Annotated[str, typer.Argument(help="The new project's directory (its name).")],
    debug: DebugOpt = False,
) -> None:
    """Create a runnable project NAME: workflows, a virtual-clock test, README with commands."""
    from . import _cli_display as display
    from ._scaffold import scaffold

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
    from . import _cli_display as display

    try:
        app(args=None if argv is None else list(argv), prog_name="graphflow")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        display.error_line(str(code))
        return 1
    return 0


# Importing these registers their commands on ``app``: run, worker and serve; send and event;
# check, fork and prune.
from . import _cli_messages, _cli_process, _cli_repair  # noqa: E402, F401
