"""Creating the schema, or checking the version of the one found.

Runs in the store's first transaction, under the dialect's schema lock, so that processes opening
a new database at the same moment create it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from sqlalchemy import Index, Insert, MetaData, Select, Table, Update, bindparam, select, update
from sqlalchemy.schema import CreateColumn, CreateIndex, DropIndex

from ..errors import SchemaVersionError
from ._sql_db import SqlDatabase
from ._tx import Tx
from .dialects import Dialect
from .tables import (
    EVENTS,
    GRAPHS,
    JOBS,
    MESSAGES,
    META,
    METADATA,
    RATE_STARTS,
    READY_INDEX,
    RUNS,
    SCHEDULES,
    SLOTS,
)

__all__ = ("SCHEMA_VERSION", "SchemaCreator")

SCHEMA_VERSION = 6
"""The version of the tables in ``tables``; an older one is migrated, a newer one refused.

2: ``gf_runs.trace_context``. 3: ``gf_runs.forked_from``, prune indexes. 4: messages, events and
declared graphs (``gf_messages``, ``gf_events``, ``gf_graphs``). 5: schedules and flow control
(``gf_schedules``, ``gf_slots``, ``gf_rate_starts``; the runs' priority, concurrency and dedup keys
and live steps). 6: the claim order indexes (``gf_runs_ready``; ``gf_jobs_claim`` gains
``created_at``).
"""

Migration: TypeAlias = "str | Callable[[Tx, Dialect], None]"

_MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    1: ("ALTER TABLE gf_runs ADD COLUMN trace_context TEXT",),  # OpenTelemetry (runtime.tracing)
    2: (  # engine.fork, and the indexes engine.prune reads and deletes by
        "ALTER TABLE gf_runs ADD COLUMN forked_from TEXT",
        "CREATE INDEX gf_runs_finished ON gf_runs (finished_at, run_id)",
        "CREATE INDEX gf_jobs_run ON gf_jobs (run_id)",
    ),
    3: (lambda tx, dialect: _create(tx, dialect, MESSAGES, EVENTS, GRAPHS),),  # messages, events
    4: (lambda tx, dialect: _flow_control(tx, dialect),),  # schedules and flow control
    5: (  # claims read runs and jobs in claim order
        lambda tx, dialect: _create_index(tx, dialect, READY_INDEX),
        lambda tx, dialect: _rebuild_index(tx, dialect, _index(JOBS, "gf_jobs_claim")),
    ),
}
"""The statements that bring a schema of version ``v`` to ``v + 1``, in one transaction."""

_KEY = "schema_version"


def _insert_version(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(META, ["key"])


def _select_version(dialect: Dialect) -> Select[tuple[str]]:
    return select(META.c.value).where(META.c.key == bindparam("key"))


def _update_version(dialect: Dialect) -> Update:
    return update(META).where(META.c.key == bindparam("k")).values(value=bindparam("v"))


def _create(tx: Tx, dialect: Dialect, *tables: Table) -> None:
    """Create new tables (and their indexes) in an existing schema, as the dialect creates any."""
    added = MetaData()
    for table in tables:
        table.to_metadata(added)
    dialect.create_tables(tx, added)


def _create_index(tx: Tx, dialect: Dialect, index: Index) -> None:
    tx.cursor.execute(str(CreateIndex(index).compile(dialect=dialect.sql_dialect)))


def _rebuild_index(tx: Tx, dialect: Dialect, index: Index) -> None:
    """Drop an index of an older schema's shape and create it as ``tables`` declares it now."""
    tx.cursor.execute(str(DropIndex(index).compile(dialect=dialect.sql_dialect)))
    _create_index(tx, dialect, index)


def _index(table: Table, name: str) -> Index:
    return next(index for index in table.indexes if index.name == name)


def _flow_control(tx: Tx, dialect: Dialect) -> None:
    """The runs' new columns and indexes, and the tables of schedules, slots and rate windows."""
    sql = dialect.sql_dialect
    for name in ("priority", "concurrency_key", "dedup_key", "live_steps"):
        column = CreateColumn(RUNS.c[name]).compile(dialect=sql)
        tx.cursor.execute(f"ALTER TABLE gf_runs ADD COLUMN {column}")
    for name in ("gf_runs_dedup", "gf_runs_limit"):
        _create_index(tx, dialect, _index(RUNS, name))
    _create(tx, dialect, SCHEDULES, SLOTS, RATE_STARTS)


class SchemaCreator:
    """Creates the tables of ``tables`` on one dialect, or checks the version found."""

    def __init__(self, db: SqlDatabase) -> None:
        self.url = db.url
        self.dialect = db.dialect
        # Through Core, so each dialect quotes ``key`` (reserved in MySQL) its own way.
        self._insert = db.prepare(_insert_version)
        self._select = db.prepare(_select_version)
        self._update = db.prepare(_update_version)

    def __call__(self, tx: Tx) -> None:
        """Create the schema if there is none; check its version.

        Raises:
            SchemaVersionError: the database holds another version of the schema.
        """
        with self.dialect.schema_lock(tx):
            found = self._version(tx)
            if found is not None:
                # No DDL on an existing schema of this version: CREATE INDEX IF NOT EXISTS still
                # takes a table lock that can deadlock with running workers. An older schema is
                # migrated once, by the first process to open it.
                if found < SCHEMA_VERSION and all(
                    v in _MIGRATIONS for v in range(found, SCHEMA_VERSION)
                ):
                    self._migrate(tx, found)
                elif found != SCHEMA_VERSION:
                    raise SchemaVersionError(url=self.url, found=found, expected=SCHEMA_VERSION)
                return
            self.dialect.create_tables(tx, METADATA)
            tx.execute(self._insert, {"key": _KEY, "value": str(SCHEMA_VERSION)})
            found = self._version(tx)
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(url=self.url, found=found or 0, expected=SCHEMA_VERSION)

    def check(self, tx: Tx) -> None:
        """Check the version of a store opened read-only (nothing can be created or migrated).

        Raises:
            SchemaVersionError: the database holds another version of the schema, or none.
        """
        found = self._version(tx)
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(url=self.url, found=found or 0, expected=SCHEMA_VERSION)

    def _migrate(self, tx: Tx, found: int) -> None:
        """Bring the schema from version ``found`` to ``SCHEMA_VERSION`` (under the lock)."""
        for version in range(found, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                if isinstance(statement, str):
                    tx.execute(statement)
                else:
                    statement(tx, self.dialect)
        tx.execute(self._update, {"k": _KEY, "v": str(SCHEMA_VERSION)})

    def _version(self, tx: Tx) -> int | None:
        if not self.dialect.has_table(tx, META.name):
            return None
        rows = tx.query(self._select, {"key": _KEY})
        return int(rows[0][0]) if rows else None
