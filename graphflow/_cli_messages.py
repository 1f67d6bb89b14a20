"""The ``graphflow`` commands for messages and events: ``send`` and ``event``.

Registered on ``cli.app`` when ``cli`` is imported. ``send`` stores a message for a run's
``wf.receive(topic)``; ``event`` prints the latest value a run published with ``wf.set_event``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .cli import (
    _DEFAULT_STORE,
    DebugOpt,
    StoreOpt,
    TargetOpt,
    _CliError,
    _load,
    _parse_json,
    _reporting,
    _with_client,
    app,
)

__all__ = ("event", "send")

RunIdArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")]


@app.command()
def send(
    run_id: RunIdArg,
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="What the run receives on.")],
    data: Annotated[
        str, typer.Option("--data", "-d", help="Message JSON, @file.json or @- (stdin).")
    ] = "null",
    target: TargetOpt = None,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Send a message to a run: its next wf.receive(TOPIC) gets it (kept in order until then)."""
    from . import _cli_display as display

    with _reporting(debug):
        payload = _parse_json(data, "--data")
        _load(target)
        _with_client(store, lambda engine: engine.send(run_id, topic, payload))
        display.note(f"sent a message on {topic!r} to run {run_id}")


@app.command()
def event(
    run_id: RunIdArg,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The event's key (wf.set_event).")],
    timeout: Annotated[
        float,
        typer.Option("--timeout", "-t", min=0, help="Seconds to wait for the key to be set."),
    ] = 0.0,
    store: StoreOpt = _DEFAULT_STORE,
    debug: DebugOpt = False,
) -> None:
    """Print the latest value (JSON) a run published as event KEY; exit 1 if it is not set."""
    from . import _cli_display as display

    with _reporting(debug):
        value = _with_client(store, lambda engine: engine.get_event(run_id, key, timeout))
        if value is None:
            raise _CliError(
                f"run {run_id!r} has not set event {key!r}"
                + (f" within {timeout:g}s" if timeout else "")
                + ": check the key, or wait longer with --timeout SECONDS"
            )
        typer.echo(display.dump_json(value))
