"""The repair and retention commands of the ``graphflow`` CLI: ``check``, ``fork`` and ``prune``.

Registered on ``cli.app`` when ``cli`` is imported. ``check`` is a deploy gate: it prints one line
per stored run that the code in TARGET would replay differently and exits 1 if there is any.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._targets import load_target
from ._types import RUN_STATES, TERMINAL
from .cli import (
    _DEFAULT_STORE,
    DebugOpt,
    JsonOpt,
    StoreOpt,
    TargetArg,
    TargetOpt,
    _CliError,
    _load,
    _parse_json,
    _reporting,
    _with_client,
    app,
)

__all__ = ("check", "fork", "prune")

_TERMINAL = tuple(state for state in RUN_STATES if state in TERMINAL)
_UNFINISHED = tuple(state for state in RUN_STATES if state not in TERMINAL)


@app.command()
def check(
    target: TargetArg,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", help="Check runs in this state (repeatable; default: unfinished)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Replay stored runs against TARGET's code, executing nothing; exit 1 if any diverges."""
    from . import _cli_display as display

    with _reporting(debug):
        states = tuple(state or _UNFINISHED)
        load_target(target)
        results = _with_client(store, lambda engine: engine.check(workflow, states))
        diverged = [result for result in results if not result.ok]
        if as_json:
            typer.echo(json.dumps([result.model_dump(mode="json") for result in results]))
        else:
            for result in diverged:
                typer.echo(str(result))
        if diverged:
            display.note(
                f"{len(diverged)} of {len(results)} runs checked diverge: let them finish"
                " under the old code, branch on wf.patched(...), or fork them",
                style="red",
            )
            raise typer.Exit(1)
        display.note(f"{len(results)} runs checked, none diverges", style="green")


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    from_step: Annotated[
        str, typer.Option("--from", help="The step to run again (it and what follows run again).")
    ],
    input_: Annotated[
        str | None,
        typer.Option("--input", "-i", help="A new input: JSON, @file.json or @- (stdin)."),
    ] = None,
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Start a new run that replays RUN up to a step, then runs it and what follows again."""
    from . import _cli_display as display

    with _reporting(debug):
        data = None if input_ is None else _parse_json(input_, "--input")
        _load(target)
        forked = _with_client(store, lambda engine: engine.fork(run_id, from_step, input=data))
        display.note(
            f"forked run {run_id} from step {from_step!r} into run {forked}; a `graphflow worker`"
            " on this store executes it",
            "dim",
        )
        typer.echo(forked)


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete runs finished longer ago (30d, 12h...).")
    ],
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", help="Only runs in this state (repeatable; default: all finished)."
        ),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the runs that would go; delete nothing.")
    ] = False,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Delete finished runs (with their children, steps and jobs) older than --older-than."""
    from . import _cli_display as display
    from .durations import to_seconds

    with _reporting(debug):
        states = tuple(state or _TERMINAL)
        unfinished = [s for s in states if s not in _TERMINAL]
        if unfinished:
            raise _CliError(
                f"--state {unfinished[0]!r} is not a finished state: prune deletes only runs"
                f" that are {', '.join(_TERMINAL)}"
            )
        to_seconds(older_than)  # a bad duration fails before the store is opened
        count = _with_client(
            store,
            lambda engine: engine.prune(older_than, states, workflow, dry_run=dry_run),
        )
        verb = "would delete" if dry_run else "deleted"
        display.note(f"{verb} {count} runs finished more than {older_than} ago")
        typer.echo(count)
