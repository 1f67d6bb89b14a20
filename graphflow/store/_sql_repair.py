"""Repair and retention in the SQL store: histories for ``check``, forks, pruning finished runs.

Plain portable SQL (``:name`` binds compiled per dialect), so every dialect runs the same
statements; composed into ``SqlStore`` like the job queue. Lists of ids are bound in chunks, well
under every database's parameter limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import StoreError
from ._sql_db import SqlDatabase
from ._tx import Prepared, Tx
from .base import PruneBatch, PruneQuery, RunRecord, StepRecord
from .tables import ATTEMPTS, METADATA, STEPS

__all__ = ("RUN_TABLES", "SqlRepair")

_CHUNK = 500
"""Ids bound per ``IN (...)`` list."""

_TERMINAL = ("completed", "failed", "cancelled")

RUN_TABLES: tuple[str, ...] = tuple(
    table.name
    for table in METADATA.sorted_tables
    if "run_id" in table.columns and table.name != "gf_runs"
)
"""Tables whose rows belong to a run (they have a ``run_id`` column): pruned with it. A new table
keyed by run joins by itself; it should lead an index with ``run_id``."""

_STEP_COLUMNS = [column.name for column in STEPS.columns]
_ATTEMPT_COLUMNS = [column.name for column in ATTEMPTS.columns]


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _bind(params: dict[str, Any], values: Sequence[str], prefix: str = "i") -> str:
    names = []
    for index, value in enumerate(values):
        params[f"{prefix}{index}"] = value
        names.append(f":{prefix}{index}")
    return ", ".join(names)


def _copy_steps(tx: Tx, source_run_id: str, target_run_id: str, names: Sequence[str]) -> None:
    """Copy the named steps of one run, and their failed attempts, into another run."""
    step_values = ", ".join(":target" if c == "run_id" else c for c in _STEP_COLUMNS)
    attempt_values = ", ".join(":target" if c == "run_id" else c for c in _ATTEMPT_COLUMNS)
    for chunk in _chunks(names):
        params: dict[str, Any] = {"source": source_run_id, "target": target_run_id}
        bound = _bind(params, chunk)
        tx.execute(
            f"INSERT INTO gf_steps ({', '.join(_STEP_COLUMNS)}) SELECT {step_values}"
            f" FROM gf_steps WHERE run_id = :source AND name IN ({bound})",
            params,
        )
        tx.execute(
            f"INSERT INTO gf_attempts ({', '.join(_ATTEMPT_COLUMNS)}) SELECT {attempt_values}"
            f" FROM gf_attempts WHERE run_id = :source AND step_name IN ({bound})",
            params,
        )


def _scan(tx: Tx, query: PruneQuery) -> list[tuple[str, float]]:
    """The next runs finished before the cutoff, in ``(finished_at, run_id)`` order.

    Only the ``(finished_at, run_id)`` index is read (the rest of the cursor's instant, then
    later ones), so every database seeks instead of scanning and sorting the runs; filters are
    applied to what this returns.
    """
    params: dict[str, Any] = {"before": query.finished_before, "limit": query.limit}
    select = "SELECT run_id, finished_at FROM gf_runs WHERE "
    order = " ORDER BY finished_at, run_id LIMIT :limit"
    rows: list[Any] = []
    later = "finished_at < :before"
    if query.after is not None:
        params["after_at"], params["after_id"] = query.after
        rows = tx.query(f"{select}finished_at = :after_at AND run_id > :after_id{order}", params)
        later = "finished_at > :after_at AND finished_at < :before"
    if len(rows) < query.limit:
        rows += tx.query(f"{select}{later}{order}", params | {"limit": query.limit - len(rows)})
    return [(row[0], float(row[1])) for row in rows]


def _rows_by_id(tx: Tx, columns: str, run_ids: Sequence[str]) -> list[Any]:
    """``columns`` of the runs with these ids: primary-key lookups only, in every database."""
    rows: list[Any] = []
    for chunk in _chunks(run_ids):
        params: dict[str, Any] = {}
        rows += tx.query(
            f"SELECT {columns} FROM gf_runs WHERE run_id IN ({_bind(params, chunk)})", params
        )
    return rows


def _candidates(tx: Tx, query: PruneQuery, scanned: Sequence[str]) -> list[str]:
    """Those of ``scanned`` in the query's states and workflow whose parent (if any) finished.

    Filtered here rather than in SQL: with a filter on ``state`` beside the ids, planners may
    pick the state index and scan every finished run.
    """
    rows = _rows_by_id(tx, "run_id, state, workflow, parent_run_id", scanned)
    matching = {
        run_id: parent
        for run_id, state, workflow, parent in rows
        if state in query.states and query.workflow in (None, workflow)
    }
    parents = sorted({parent for parent in matching.values() if parent is not None})
    rows = _rows_by_id(tx, "run_id, state", parents) if parents else []
    unfinished = {run_id for run_id, state in rows if state not in _TERMINAL}
    return [
        run_id for run_id in scanned if run_id in matching and matching[run_id] not in unfinished
    ]


def _children(tx: Tx, roots: Sequence[str]) -> tuple[dict[str, list[str]], set[str]]:
    """The runs below ``roots``: children by parent, and those not finished."""
    children: dict[str, list[str]] = {}
    unfinished: set[str] = set()
    seen = set(roots)
    level = list(roots)
    while level:
        below: list[str] = []
        for chunk in _chunks(level):
            params: dict[str, Any] = {}
            terminal = _bind(params, list(_TERMINAL), "t")
            rows = tx.query(
                f"SELECT run_id, parent_run_id, state NOT IN ({terminal}) FROM gf_runs"
                f" WHERE parent_run_id IN ({_bind(params, chunk)})",
                params,
            )
            for run_id, parent_run_id, running in rows:
                children.setdefault(parent_run_id, []).append(run_id)
                if running:
                    unfinished.add(run_id)
                if run_id not in seen:
                    seen.add(run_id)
                    below.append(run_id)
        level = below
    return children, unfinished


def _tree(root: str, children: dict[str, list[str]]) -> list[str]:
    tree, stack = [], [root]
    while stack:
        run_id = stack.pop()
        tree.append(run_id)
        stack.extend(children.get(run_id, ()))
    return tree


def _delete(tx: Tx, run_ids: Sequence[str]) -> int:
    deleted = 0
    for chunk in _chunks(run_ids):
        params: dict[str, Any] = {}
        bound = _bind(params, chunk)
        for table in RUN_TABLES:
            tx.execute(f"DELETE FROM {table} WHERE run_id IN ({bound})", params)
        deleted += tx.execute(f"DELETE FROM gf_runs WHERE run_id IN ({bound})", params)
    return deleted


def _prune_batch(tx: Tx, query: PruneQuery) -> PruneBatch:
    """Delete (or count, dry) one batch of finished runs and their finished descendants.

    A run with an unfinished descendant is kept, with its whole tree.
    """
    scanned = _scan(tx, query)
    if not scanned:
        return PruneBatch(run_ids=(), last=None)
    candidates = _candidates(tx, query, [run_id for run_id, _ in scanned])
    children, unfinished = _children(tx, candidates)
    doomed: dict[str, None] = {}
    for run_id in candidates:
        tree = _tree(run_id, children)
        if unfinished.isdisjoint(tree):
            doomed.update(dict.fromkeys(tree))
    deleted = 0 if query.dry_run else _delete(tx, list(doomed))
    last_id, last_at = scanned[-1]
    return PruneBatch(run_ids=tuple(doomed), deleted=deleted, last=(last_at, last_id))


class SqlRepair:
    """Repair and retention statements of one ``SqlDatabase``.

    ``run_select`` (``SELECT <run columns> FROM gf_runs``), ``run_row`` and ``step_row`` decode
    rows as the store does; ``insert_run`` inserts a run unless its id exists.
    """

    def __init__(
        self,
        db: SqlDatabase,
        *,
        run_select: str,
        run_row: Callable[[Sequence[Any]], RunRecord],
        step_row: Callable[[Sequence[Any]], StepRecord],
        insert_run: Prepared,
    ) -> None:
        self.db = db
        self._run_select = run_select
        self._run_row = run_row
        self._step_row = step_row
        self._insert_run = insert_run

    async def load_histories(
        self, *, states: Sequence[str], workflow: str | None, after: str | None, limit: int
    ) -> list[tuple[RunRecord, list[StepRecord]]]:
        """A page of runs in ``states`` ordered by run id, with their steps (one read)."""
        params: dict[str, Any] = {"limit": limit}
        where = [f"state IN ({_bind(params, list(states), 's')})"]
        if workflow is not None:
            params["workflow"] = workflow
            where.append("workflow = :workflow")
        if after is not None:
            params["after"] = after
            where.append("run_id > :after")
        runs_sql = f"{self._run_select} WHERE {' AND '.join(where)} ORDER BY run_id LIMIT :limit"

        def read(tx: Tx) -> list[tuple[RunRecord, list[StepRecord]]]:
            runs = [self._run_row(row) for row in tx.query(runs_sql, params)]
            steps: dict[str, list[StepRecord]] = {run.run_id: [] for run in runs}
            for chunk in _chunks(list(steps)):
                ids: dict[str, Any] = {}
                rows = tx.query(
                    f"SELECT {', '.join(_STEP_COLUMNS)} FROM gf_steps"
                    f" WHERE run_id IN ({_bind(ids, chunk)}) ORDER BY run_id, seq",
                    ids,
                )
                for row in rows:
                    step = self._step_row(row)
                    steps[step.run_id].append(step)
            return [(run, steps[run.run_id]) for run in runs]

        return await self.db.read(read)

    async def fork_run(self, run: RunRecord, source_run_id: str, steps: Sequence[str]) -> None:
        """Insert ``run`` with copies of the named steps and attempts of ``source_run_id``."""
        params = {column: getattr(run, column) for column in self._run_columns()}

        def op(tx: Tx) -> None:
            if not tx.execute(self._insert_run, params):
                raise StoreError(f"cannot fork into run {run.run_id!r}: that id is taken")
            _copy_steps(tx, source_run_id, run.run_id, steps)
            self.db.dialect.notify(tx, f"run:{run.run_id}")

        await self.db.write(op)

    @staticmethod
    def _run_columns() -> list[str]:
        return [field.name for field in dataclasses.fields(RunRecord)]

    async def oldest_finished_at(self, workflow: str) -> float | None:
        """When the first finished run of ``workflow`` finished."""
        rows = await self.db.read(
            lambda tx: tx.query(
                "SELECT MIN(finished_at) FROM gf_runs WHERE workflow = :workflow"
                " AND finished_at IS NOT NULL",
                {"workflow": workflow},
            )
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def prune_runs(self, query: PruneQuery) -> PruneBatch:
        """Delete one batch of finished runs with their descendants (one transaction)."""
        if query.dry_run:
            return await self.db.read(lambda tx: _prune_batch(tx, query))
        batch: PruneBatch = await self.db.write(lambda tx: _prune_batch(tx, query))
        return batch
