"""The ``graphflow`` commands that execute runs in this process: ``run``, ``worker`` and ``serve``.

Registered on ``cli.app`` when ``cli`` is imported. ``run`` watches its run on ``engine.watch``: a
live table on a terminal (drawn once while the run is parked), plain lines otherwise; a run that
suspends is waited for (Ctrl-C leaves it, kept), or left at once with ``--no-wait`` (exit code 2).
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from ._targets import load_target
from ._types import JSON, SETTLED
from .cli import (
    _DEFAULT_STORE,
    EXIT_SUSPENDED,
    DebugOpt,
    MaxJobsOpt,
    MaxRunsOpt,
    StoreOpt,
    TargetArg,
    _CliError,
    _Interrupted,
    _parse_json,
    _reporting,
    app,
)

PollOpt = Annotated[
    float,
    typer.Option(
        "--poll-interval",
        min=0.01,
        help="Seconds between looks for work from other processes (the pick-up delay on stores"
        " without notifications: SQLite, MariaDB/MySQL).",
    ),
]

if TYPE_CHECKING:
    from . import _cli_display as display
    from .engine import Engine
    from .runtime.status import RunStatus

__all__ = ("run", "serve", "worker")


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
    from . import _cli_display as display

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
    from . import _cli_display as display
    from .engine import Engine

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
    from . import _cli_display as display
    from .errors import RunFailed

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


def _freeze_startup_heap() -> None:
    """Take what starting up made (graphflow, its store's driver, TARGET) out of the collector.

    A worker keeps those objects all its life, yet every full collection would scan them again:
    ``gc.freeze()`` stops that (3-step workflows, 1,000 in flight: 5-8% more per second). This
    process is the CLI's own, so no host application's objects are frozen with them.
    """
    gc.collect()
    gc.freeze()


async def _work(store: str, max_runs: int, max_jobs: int, poll_interval: float) -> None:
    from . import _cli_display as display
    from .engine import Engine
    from .functions import DEFAULT_REGISTRY

    registry = DEFAULT_REGISTRY
    engine = Engine(store, max_runs=max_runs, max_jobs=max_jobs, poll_interval=poll_interval)
    _freeze_startup_heap()  # the store's driver is imported now; no run is held yet
    async with engine:
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


# --- commands -------------------------------------------------------------------------------------


@app.command()
def worker(
    target: TargetArg,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    poll_interval: PollOpt = 0.5,
    debug: DebugOpt = False,
) -> None:
    """Execute runs, jobs and timers of TARGET's workflows until SIGINT/SIGTERM."""
    from .functions import DEFAULT_REGISTRY

    with _reporting(debug):
        load_target(target)
        if not DEFAULT_REGISTRY.workflow_names and not DEFAULT_REGISTRY.function_names:
            raise _CliError(
                f"TARGET {target!r} registers no workflows or functions: point it at the module"
                " that holds the @gf.workflow / @gf.function definitions"
            )
        anyio.run(_work, store, max_runs, max_jobs, poll_interval)


def _auth_hook(spec: str) -> Callable[..., Any]:
    """The callable named by ``--auth MODULE:HOOK`` (a module as TARGET takes it, then a name)."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise _CliError(
            f"--auth {spec!r} is not MODULE:HOOK: give a module (or .py file) and the name of"
            " the hook in it, e.g. --auth myapp.auth:check"
        )
    hook: object = getattr(load_target(module_name), attribute, None)
    if not callable(hook):
        raise _CliError(
            f"--auth {spec!r}: module {module_name!r} has no callable {attribute!r}. Define"
            f" `def {attribute}(request)` returning None to allow or a Response to refuse"
        )
    return hook


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
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            metavar="MODULE:HOOK",
            help="An auth hook, request -> None (allow) or a Response (refuse), e.g."
            " myapp.auth:check or auth.py:check.",
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="Largest request body in bytes (else 413).")
    ] = 1_000_000,
    store: StoreOpt = _DEFAULT_STORE,
    max_runs: MaxRunsOpt = 100,
    max_jobs: MaxJobsOpt = 64,
    debug: DebugOpt = False,
) -> None:
    """Serve TARGET's workflows over HTTP and the web page at /ui (create_app under uvicorn)."""
    from .engine import Engine

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
        hook = None if auth is None else _auth_hook(auth)
        engine = Engine(store, worker=worker_, max_runs=max_runs, max_jobs=max_jobs)
        uvicorn.run(
            create_app(engine, auth=hook, max_body=max_body, ui=ui),
            host=host,
            port=port,
            log_level="debug" if debug else "info",
            timeout_graceful_shutdown=5,
        )
