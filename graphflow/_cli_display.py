"""Terminal output of the ``graphflow`` command line: live and plain run progress, tables.

Everything for people goes to stderr (progress, notes, errors) through ``stderr``; tables asked for
by ``status`` and ``runs`` go to stdout. On a terminal ``run`` shows a live rich table of the
run's steps; elsewhere (pipes, CI logs) it prints one plain line per change.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._types import JSON
from .errors import ErrorInfo
from .runtime.schedules import ScheduleInfo
from .runtime.status import RunStatus, StepStatus

__all__ = (
    "STATE_STYLES",
    "LiveView",
    "PlainView",
    "View",
    "dump_json",
    "error_line",
    "format_time",
    "make_view",
    "note",
    "one_line",
    "print_runs",
    "print_schedules",
    "print_status",
    "run_detail",
    "stderr",
    "stdout_console",
    "tracebacks",
    "waiting_note",
)

STATE_STYLES = {
    "pending": "dim",
    "queued": "dim yellow",
    "running": "cyan",
    "sleeping": "blue",
    "suspended": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "dim",
}

_ENDED = ("completed", "failed", "cancelled")
_ERROR_WIDTH = 300
"""Errors longer than this are cut in tables and progress (``--json`` has them whole)."""


def stdout_console() -> Console:
    """A console on the current stdout; wide when piped, so tables are not squeezed to 80."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


stderr = Console(stderr=True, highlight=False, soft_wrap=True)
"""Where progress, notes and errors go."""


def dump_json(value: JSON) -> str:
    """``value`` as one line of JSON."""
    return json.dumps(value, ensure_ascii=False)


def error_line(message: str) -> None:
    """Print ``error: message`` on stderr, one line (never wrapped; newlines in it collapsed)."""
    stderr.print(Text(f"error: {' '.join(message.split())}", style="bold red"))


def note(message: str, style: str | None = None) -> None:
    """Print a line for people on stderr."""
    stderr.print(Text(message, style=style or ""))


def format_time(value: datetime | None) -> str:
    """Local time to the second, or empty."""
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(step: StepStatus) -> str:
    """How long the step ran (so far, if it is running)."""
    if step.started_at is None:
        return ""
    end = step.finished_at or datetime.now(UTC)
    seconds = max((end - step.started_at).total_seconds(), 0.0)
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def styled(state: str) -> Text:
    """A state coloured by ``STATE_STYLES``."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def one_line(error: ErrorInfo, limit: int = _ERROR_WIDTH) -> str:
    """``Type: message`` on one line (whitespace collapsed), cut at ``limit`` characters.

    Tracebacks never show here: the stored one is printed by ``--debug`` (and is in ``--json``).
    """
    text = " ".join(str(error).split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def step_detail(step: StepStatus) -> str:
    """The error, wake time or last failed attempt worth showing beside a step (one line)."""
    if step.error is not None and step.state in ("failed", "cancelled"):
        return one_line(step.error)
    if step.state == "sleeping" and step.wake_at is not None:
        return f"until {format_time(step.wake_at)}"
    if step.attempt_errors:
        return f"last error: {one_line(step.attempt_errors[-1])}"
    return ""


def resume_hint(status: RunStatus) -> str:
    """The command that resumes a suspended run (or sends the message its receive waits for)."""
    waiting = next((s for s in status.steps if s.name == status.suspend_reason), None)
    if waiting is not None and waiting.kind == "receive" and isinstance(waiting.input, dict):
        return f"graphflow send {status.run_id} {waiting.input.get('topic')} --data '{{...}}'"
    return f"graphflow resume {status.run_id} --data '{{...}}'"


def run_detail(status: RunStatus) -> str:
    """The run's state with its wake time, suspend reason or error."""
    if status.state == "sleeping" and status.wake_at is not None:
        return f"sleeping until {format_time(status.wake_at)}"
    if status.state == "suspended":
        return f"suspended: {status.suspend_reason!r}; resume with: {resume_hint(status)}"
    if status.error is not None:
        return f"{status.state}: {one_line(status.error)}"
    return status.state


def waiting_note(status: RunStatus) -> str:
    """What ``graphflow run`` says while its run waits for a resume."""
    return (
        f"waiting for run {status.run_id} to be resumed (suspended at"
        f" {status.suspend_reason!r}): from another shell, {resume_hint(status)}. Ctrl-C stops"
        " waiting and keeps the run: once resumed, any `graphflow worker` on this store (or this"
        f" command with --run-id {status.run_id}) continues it"
    )


def tracebacks(found: RunStatus) -> list[tuple[str, str]]:
    """``(what, traceback)`` of the run's error and each step's last error that stored one."""
    shown: list[tuple[str, str]] = []
    if found.error is not None and found.error.traceback:
        shown.append((f"run {found.run_id}", found.error.traceback))
    for step in found.steps:
        error = step.error or (step.attempt_errors[-1] if step.attempt_errors else None)
        if error is not None and error.traceback:
            shown.append((f"step {step.name!r}", error.traceback))
    return shown


# --- views ----------------------------------------------------------------------------------------


class View(Protocol):
    """Shows a run's progress while ``graphflow run`` waits for it."""

    def update(self, status: RunStatus) -> None: ...

    def __enter__(self) -> View: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class PlainView:
    """Line-oriented progress on stderr: one line per step or run change (for logs and pipes)."""

    def __init__(self) -> None:
        self._steps: dict[str, tuple[str, int]] = {}
        self._run: tuple[str, datetime | None, str | None] | None = None

    def __enter__(self) -> PlainView:
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
            # The first line already announced the run: only a change of state is news. A run
            # that ended failed says so in one word: its error is the command's ``error:`` line.
            if self._run is not None or status.state not in ("pending", "running"):
                detail = status.state if status.state in _ENDED else run_detail(status)
                note(f"run {status.run_id}: {detail}")
            self._run = run_key

    @staticmethod
    def _print_step(step: StepStatus) -> None:
        parts = [f"step {step.name!r}: {step.state}"]
        if step.attempts > 1 or step.state == "running":
            parts.append(f"(attempt {max(step.attempts, 1)})")
        if step.state in ("completed", "failed") and step.started_at is not None:
            parts.append(f"in {duration(step)}")
        detail = step_detail(step)
        if detail:
            parts.append(f"- {detail}")
        note(" ".join(parts))


class LiveView:
    """A live rich table of the run's steps on stderr (for terminals).

    The table refreshes (for the running steps' durations) only while the run executes: a run
    parked asleep or suspended is drawn once, so waiting for it costs no CPU.
    """

    def __init__(self) -> None:
        self._live = Live(console=stderr, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def update(self, status: RunStatus) -> None:
        parked = status.state in ("sleeping", "suspended")
        if not parked and not self._live.is_started:
            self._live.start()
        self._live.update(self._render(status), refresh=True)
        if parked:
            self._live.stop()

    def _render(self, status: RunStatus) -> RenderableType:
        header = Text.assemble(
            (f"{status.workflow} ", "bold"), (f"{status.run_id}  ", "dim"), styled(status.state)
        )
        detail = run_detail(status)
        lines: list[RenderableType] = [header]
        if detail != status.state:
            lines.append(Text(detail, style=STATE_STYLES.get(status.state, "")))
        lines.append(steps_table(status.steps, limit=max(stderr.height - 8, 5)))
        return Group(*lines)


def steps_table(steps: Sequence[StepStatus], limit: int | None = None) -> Table:
    """A table of steps; with ``limit``, only the latest ``limit`` of them."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("Step", "Kind", "State", "Attempt", "Duration", "Detail"):
        table.add_column(column, overflow="fold" if column == "Detail" else "ellipsis")
    shown = steps if limit is None or len(steps) <= limit else steps[-limit:]
    if len(shown) < len(steps):
        table.add_row(Text(f"... {len(steps) - len(shown)} earlier steps", style="dim"))
    for step in shown:
        table.add_row(  # user data as Text: never parsed as rich markup
            Text(step.name),
            Text(step.kind),
            styled(step.state),
            Text(str(step.attempts or "")),
            Text(duration(step)),
            Text(step_detail(step)),
        )
    return table


def make_view() -> View:
    """A live table on a terminal, plain lines otherwise."""
    return LiveView() if stderr.is_terminal else PlainView()


def print_status(found: RunStatus) -> None:
    """Print a run's facts and its steps on stdout."""
    facts = Table.grid(padding=(0, 2))
    facts.add_row(Text("run", style="bold"), Text(found.run_id))
    facts.add_row(Text("workflow", style="bold"), Text(found.workflow))
    facts.add_row(Text("state", style="bold"), styled(found.state))
    facts.add_row(Text("created", style="bold"), format_time(found.created_at))
    if found.finished_at is not None:
        facts.add_row(Text("finished", style="bold"), format_time(found.finished_at))
    if found.parent_run_id is not None:
        facts.add_row(Text("parent", style="bold"), Text(found.parent_run_id))
    if found.owner is not None:
        style = "" if found.owner.alive else "bold red"
        facts.add_row(Text("owner", style="bold"), Text(found.owner.summary, style=style))
    if found.state in ("sleeping", "suspended", "failed", "cancelled"):
        facts.add_row(Text("detail", style="bold"), Text(run_detail(found)))
    if found.state == "completed":
        facts.add_row(Text("output", style="bold"), Text(dump_json(found.output)))
    console = stdout_console()
    console.print(facts)
    if found.steps:
        console.print()
        console.print(steps_table(found.steps))


def print_schedules(found: list[ScheduleInfo]) -> None:
    """Print a table of schedules on stdout (or say there are none, on stderr)."""
    if not found:
        note("no schedules")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("Name", "Workflow", "Cron", "Time zone", "Catch-up", "Next tick"):
        table.add_column(column, no_wrap=column == "Name")
    for info in found:
        table.add_row(
            Text(info.name),
            Text(info.workflow),
            Text(info.cron),
            Text(info.timezone),
            Text(info.catch_up),
            format_time(info.next_tick),
        )
    stdout_console().print(table)


def print_runs(found: list[RunStatus]) -> None:
    """Print a table of runs on stdout (or say that none match, on stderr)."""
    if not found:
        note("no runs match")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("Run ID", "Workflow", "State", "Created", "Finished"):
        table.add_column(column, no_wrap=column == "Run ID")
    for item in found:
        table.add_row(
            Text(item.run_id),
            Text(item.workflow),
            styled(item.state),
            format_time(item.created_at),
            format_time(item.finished_at),
        )
    stdout_console().print(table)
