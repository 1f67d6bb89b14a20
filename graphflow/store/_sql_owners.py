"""The owner registry of the SQL store: engine processes, their heartbeats and their leases.

Heartbeats and leases are stamped with the dialect's lease clock (the database's where many hosts
share it), so a stalled process loses its runs by the same clock everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, text

from ._sql_db import SqlDatabase
from ._tx import Tx
from .base import OwnerRecord
from .dialects import Dialect
from .tables import OWNERS

__all__ = ("SqlOwners",)


def _register(dialect: Dialect) -> Insert:
    insert = dialect.insert_ignore(OWNERS, ["owner_id"])
    return insert.values(heartbeat_at=text(dialect.clock_sql))  # stamped by the lease clock


class SqlOwners:
    """Owner statements of one ``SqlDatabase``."""

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        self.clock = db.dialect.clock_sql
        self._register = db.prepare(
            _register, columns=("owner_id", "host", "pid", "started_at", "functions")
        )

    async def register_owner(self, owner: OwnerRecord) -> None:
        """Record an engine process and the functions it serves."""
        params = {
            "owner_id": owner.owner_id,
            "host": owner.host,
            "pid": owner.pid,
            "started_at": owner.started_at,
            "functions": json.dumps(sorted(owner.functions)),
            **self.db.dialect.clock_params(),
        }
        await self.db.write(lambda tx: tx.execute(self._register, params))

    async def remove_owner(self, owner_id: str) -> None:
        """Forget an engine process and release its runs and concurrency slots."""

        def op(tx: Tx) -> None:
            tx.execute(
                "UPDATE gf_runs SET owner_id = NULL, lease_expires_at = NULL WHERE owner_id = :o",
                {"o": owner_id},
            )
            tx.execute("DELETE FROM gf_slots WHERE owner_id = :o", {"o": owner_id})
            tx.execute("DELETE FROM gf_owners WHERE owner_id = :o", {"o": owner_id})

        await self.db.write(op)

    async def get_owner(self, owner_id: str) -> OwnerRecord | None:
        """An owner's registration with its last heartbeat (``None``: not registered)."""
        rows = await self.db.read(
            lambda tx: tx.query(
                "SELECT owner_id, host, pid, started_at, heartbeat_at, functions FROM gf_owners"
                " WHERE owner_id = :o",
                {"o": owner_id},
            )
        )
        if not rows:
            return None
        owner_id, host, pid, started_at, heartbeat_at, functions = rows[0]
        return OwnerRecord(
            owner_id=owner_id,
            host=host,
            pid=pid,
            started_at=started_at,
            heartbeat_at=heartbeat_at or 0.0,
            functions=tuple(json.loads(functions or "[]")),
        )

    async def owners_on_host(self, host: str) -> list[OwnerRecord]:
        """Every owner registered on ``host``."""
        rows = await self.db.read(
            lambda tx: tx.query(
                "SELECT owner_id, host, pid, started_at FROM gf_owners WHERE host = :h",
                {"h": host},
            )
        )
        return [OwnerRecord(owner_id=r[0], host=r[1], pid=r[2], started_at=r[3]) for r in rows]

    async def renew_leases(
        self, owner_id: str, lease: float, live: Mapping[str, str | None] | None = None
    ) -> dict[str, bool]:
        """Extend every lease ``owner_id`` holds; return its runs and their cancel requests.

        ``live``: the steps to publish per run (``gf_runs.live_steps``), in the same write.
        """
        params = {"o": owner_id, "lease": lease, **self.db.dialect.clock_params()}

        def op(tx: Tx) -> list[Any]:
            for run_id, steps in (live or {}).items():
                tx.execute(
                    "UPDATE gf_runs SET live_steps = :steps WHERE run_id = :r AND owner_id = :o",
                    {"steps": steps, "r": run_id, "o": owner_id},
                )
            tx.execute(
                f"UPDATE gf_owners SET heartbeat_at = {self.clock} WHERE owner_id = :o", params
            )
            tx.execute(
                f"UPDATE gf_jobs SET lease_expires_at = {self.clock} + :lease"
                " WHERE owner_id = :o AND state = 'running'",
                params,
            )
            tx.execute(
                f"UPDATE gf_slots SET lease_expires_at = {self.clock} + :lease WHERE owner_id = :o",
                params,
            )
            # A held run is always 'running': naming the state lets the (state, owner_id) index
            # find the owner's runs, where owner_id alone would scan every run ever stored.
            tx.execute(
                f"UPDATE gf_runs SET lease_expires_at = {self.clock} + :lease"
                " WHERE state = 'running' AND owner_id = :o",
                params,
            )
            # Read back in the same transaction (portable: MySQL has no UPDATE ... RETURNING).
            return tx.query(
                "SELECT run_id, cancel_requested FROM gf_runs"
                " WHERE state = 'running' AND owner_id = :o",
                {"o": owner_id},
            )

        rows = await self.db.write(op)
        return {row[0]: bool(row[1]) for row in rows}

    async def served_functions(self, lease: float) -> set[str]:
        """Functions served by engines whose heartbeat is younger than three leases."""
        params = {"age": 3 * lease, **self.db.dialect.clock_params()}
        rows = await self.db.read(
            lambda tx: tx.query(
                f"SELECT functions FROM gf_owners WHERE heartbeat_at >= {self.clock} - :age",
                params,
            )
        )
        return {name for (functions,) in rows for name in json.loads(functions or "[]")}
