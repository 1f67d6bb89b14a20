"""Creating the schema, or checking the version of the one found.

Runs in the store's first transaction, under the dialect's schema lock, so that processes opening
a new database at the same moment create it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from sqlalchemy import Insert, MetaData, Select, Table, Update, bindparam, select, update

from ..errors import SchemaVersionError
from ._sql_db import SqlDatabase
from ._tx import Tx
from .dialects import Dialect
from .tables import EVENTS, GRAPHS, MESSAGES, META, METADATA

__all__ = ("SCHEMA_VERSION", "SchemaCreator")

SCHEMA_VERSION = 4
"""The version of the tables in ``tables``; an older one is migrated, a newer one refused.

2: ``gf_runs.trace_context``. 3: ``gf_runs.forked_from``, prune indexes. 4: messages, events and
declared graphs (``gf_messages``, ``gf_events``, ``gf_graphs``).
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
