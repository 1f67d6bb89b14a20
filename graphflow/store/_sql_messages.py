"""Messages to runs and the events runs publish, in the SQL store.

A message is a row of ``gf_messages`` until a receive step takes it: the step's completion (its
output is the message) and the message's ``received_by`` are written in one transaction, fenced by
the run's lease, so a message is received exactly once however the process dies. Sending to a run
parked on a receive of that topic makes it runnable in the same transaction; parking checks for
waiting messages in its own (see ``SqlStore.park_run``), so no message is lost to that race: both
lock the run's row. Declared graphs (``gf_graphs``) are kept here too: what a client without the
code reads to draw a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Insert, true

from .._types import TERMINAL
from ._sql_db import SqlDatabase
from ._tx import Tx
from .base import Fence, StepRecord, receive_input
from .dialects import Dialect
from .tables import EVENTS, GRAPHS

__all__ = ("MessageQueries", "pending_topics")

T = TypeVar("T")


def _set_event(dialect: Dialect) -> Insert:
    return dialect.upsert(EVENTS, ["run_id", "name"], where=true())


def _save_graph(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(GRAPHS, ["graph_hash"])


def pending_topics(tx: Tx, run_id: str, topics: Sequence[str]) -> bool:
    """Whether a message not yet received waits for ``run_id`` on one of ``topics``."""
    params: dict[str, Any] = {"run_id": run_id}
    names = []
    for i, topic in enumerate(topics):
        params[f"t{i}"] = topic
        names.append(f":t{i}")
    return bool(
        tx.query(
            "SELECT 1 FROM gf_messages WHERE run_id = :run_id AND received_by IS NULL"
            f" AND topic IN ({', '.join(names)})",
            params,
        )
    )


class MessageQueries:
    """Messages, events and declared graphs: statements mixed into ``SqlStore``.

    ``SqlStore`` provides the database, the fenced step write and the fenced transaction.
    """

    _db: SqlDatabase

    def _write_step(self, tx: Tx, fence: Fence, step: StepRecord) -> None:
        """Upsert ``step`` if ``fence`` holds the run, else raise ``LeaseLostError``."""
        raise NotImplementedError

    async def _fenced_write(self, op: Callable[[Tx], T]) -> T:
        """Run ``op``, whose step write is fenced (a refusal for a cancel is passed on)."""
        raise NotImplementedError

    async def send_message(self, run_id: str, topic: str, data: str, at: float) -> str:
        """Store a message for the run and wake it if it is parked on a receive of ``topic``.

        Returns ``"sent"``, ``"missing"`` or ``"ended:<state>"`` (nothing stored for those).
        """
        dialect = self._db.dialect
        params = {"run_id": run_id, "topic": topic, "data": data, "at": at}

        def op(tx: Tx) -> str:
            rows = tx.query(
                "SELECT state FROM gf_runs WHERE run_id = :run_id" + dialect.lock_update, params
            )
            if not rows:
                return "missing"
            if rows[0][0] in TERMINAL:
                return f"ended:{rows[0][0]}"
            tx.execute(
                "INSERT INTO gf_messages (run_id, topic, data, sent_at)"
                " VALUES (:run_id, :topic, :data, :at)",
                params,
            )
            woken = tx.execute(
                "UPDATE gf_runs SET state = 'running', owner_id = NULL, wake_at = NULL,"
                " suspend_reason = NULL, updated_at = :at WHERE run_id = :run_id"
                " AND state IN ('sleeping', 'suspended') AND owner_id IS NULL AND EXISTS"
                " (SELECT 1 FROM gf_steps WHERE gf_steps.run_id = :run_id"
                " AND kind = 'receive' AND state = 'suspended' AND input = :input)",
                params | {"input": receive_input(topic)},
            )
            dialect.notify(tx, f"run:{run_id}" if woken else f"message:{run_id}")
            return "sent"

        return str(await self._db.write(op))

    async def take_message(self, fence: Fence, step: StepRecord, topic: str) -> str | None:
        """Receive the oldest message on ``topic``: complete ``step`` with it, in one transaction.

        ``step`` is the receive's completed record but for its output, which becomes the
        message's data. Returns that data, or ``None`` (nothing written) when no message waits.

        Raises:
            LeaseLostError: ``fence`` no longer holds the run (nothing received).
        """
        params = {"run_id": step.run_id, "topic": topic}
        lock = self._db.dialect.lock_update

        def op(tx: Tx) -> str | None:
            rows = tx.query(
                "SELECT seq, data FROM gf_messages WHERE run_id = :run_id AND topic = :topic"
                f" AND received_by IS NULL ORDER BY seq LIMIT 1{lock}",
                params,
            )
            if not rows:
                return None
            seq, data = rows[0]
            self._write_step(
                tx, fence, dataclasses.replace(step, output=str(data))
            )  # fenced: first
            tx.execute(
                "UPDATE gf_messages SET received_by = :name WHERE seq = :seq",
                {"name": step.name, "seq": seq},
            )
            return str(data)

        result: str | None = await self._fenced_write(op)
        return result

    async def has_message(self, run_id: str, topic: str) -> bool:
        """Whether a message not yet received waits for the run on ``topic``."""
        return await self._db.read(lambda tx: pending_topics(tx, run_id, [topic]))

    async def set_event(self, fence: Fence, step: StepRecord, name: str, value: str) -> None:
        """Publish ``value`` as the run's event ``name`` and record ``step``, in one transaction.

        Raises:
            LeaseLostError: ``fence`` no longer holds the run (nothing published).
        """
        params = {
            "run_id": step.run_id,
            "name": name,
            "value": value,
            "updated_at": step.finished_at,
        }

        def op(tx: Tx) -> None:
            self._write_step(tx, fence, step)  # fenced: first
            tx.execute(self._db.prepare(_set_event), params)
            self._db.dialect.notify(tx, f"event:{step.run_id}")

        await self._fenced_write(op)

    async def get_event(self, run_id: str, name: str) -> str | None:
        """The latest value (JSON) of the run's event ``name``, or ``None`` if it was never set."""
        rows = await self._db.read(
            lambda tx: tx.query(
                "SELECT value FROM gf_events WHERE run_id = :run_id AND name = :name",
                {"run_id": run_id, "name": name},
            )
        )
        return str(rows[0][0]) if rows else None

    async def save_graph(self, graph_hash: str, structure: str, at: float) -> None:
        """Keep a graph workflow's declared structure (JSON) under its hash (idempotent)."""
        params = {"graph_hash": graph_hash, "structure": structure, "saved_at": at}
        statement = self._db.prepare(_save_graph)
        await self._db.write(lambda tx: tx.execute(statement, params))

    async def get_graph(self, graph_hash: str) -> str | None:
        """The declared structure saved under ``graph_hash``, or ``None``."""
        rows = await self._db.read(
            lambda tx: tx.query(
                "SELECT structure FROM gf_graphs WHERE graph_hash = :graph_hash",
                {"graph_hash": graph_hash},
            )
        )
        return str(rows[0][0]) if rows else None
