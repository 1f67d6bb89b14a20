"""Flow control in the SQL store: run concurrency at claim time, function slots and rate limits.

Limits are enforced in the database, inside the transaction that claims the work, so they hold
across every process sharing the store. The transactions that count and take the slots of one
limit are serialised by the dialect's ``lock_key`` (SQLite serialises every writer anyway). Slots
are tied to leases: a run holds its workflow's slot while it is ``running`` under a live lease, a
step attempt holds a ``gf_slots`` row whose lease its owner renews, so a crashed worker's slots
free themselves when its lease expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ._sql_db import SqlDatabase
from ._tx import Tx
from .base import ClaimQuery, RunLimit, RunRecord, SlotRequest
from .dialects import Claim
from .dialects.base import first_rows

__all__ = ("QUEUED_WAIT", "FlowQueries", "bind_list", "claim_assign")

QUEUED_WAIT = 0.0
"""``acquire_slot``'s answer when only a release can let the attempt start."""


def bind_list(params: dict[str, Any], prefix: str, values: Sequence[str]) -> str:
    """Bind ``values`` as ``:prefix0, :prefix1...`` in ``params``; return the placeholders."""
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names)


def claim_assign(clock: str) -> str:
    """The ``SET`` list that makes a run ours (a recovery counts when it was held before).

    ``recoveries`` comes first: it reads the state and owner that the rest assigns.
    """
    return (
        "recoveries = recoveries"
        " + CASE WHEN state = 'running' AND owner_id IS NOT NULL THEN 1 ELSE 0 END,"
        " lease_epoch = lease_epoch + 1, owner_id = :owner,"
        f" lease_expires_at = {clock} + :lease, state = 'running', wake_at = NULL,"
        " live_steps = NULL, started_at = COALESCE(started_at, :now), updated_at = :now"
    )


def _run_scope(workflow: str) -> str:
    return f"run:{workflow}"


class FlowQueries:
    """Flow-control statements, mixed into ``SqlStore`` (which provides the database)."""

    _db: SqlDatabase

    @property
    def _clock(self) -> str:
        """SQL for the lease clock."""
        return self._db.dialect.clock_sql

    # --- runs -----------------------------------------------------------------------------------

    async def _claim_rows(self, query: ClaimQuery, now: float, columns: Sequence[str]) -> list[Any]:
        """The rows (``columns``) of the runs ``query`` takes: see ``Store.claim_runs``."""
        dialect = self._db.dialect
        params: dict[str, Any] = {
            "owner": query.owner_id,
            "lease": query.lease,
            "now": now,
            "limit": query.limit,
            **dialect.clock_params(),
        }
        dead = bind_list(params, "d", query.dead_owners) if query.dead_owners else None
        abandoned = f"owner_id IS NULL OR lease_expires_at < {self._clock}"
        if dead:
            abandoned += f" OR owner_id IN ({dead})"
        # Disjoint by state, each read through an index in claim order: new runs and queued ones
        # (gf_runs_ready), runs held by nobody or a dead owner, and waits that are due (_wake).
        ready: tuple[str, ...] = (
            f"state = 'pending' AND ({abandoned})",
            f"state = 'queued' AND ({abandoned})",
            f"state = 'running' AND ({abandoned})",
            "state IN ('sleeping', 'suspended') AND owner_id IS NULL AND wake_at <= :now",
        )
        if query.run_id is not None:
            params["run_id"] = query.run_id
            ready = tuple(f"run_id = :run_id AND {part}" for part in ready)
        free = [w for w in query.workflows if w not in query.limits]
        limited = sorted(w for w in query.workflows if w in query.limits)
        free_params = dict(params)
        served = f"workflow IN ({bind_list(free_params, 'w', free)})"
        claim = Claim(
            table="gf_runs",
            key="run_id",
            parts=tuple(f"{served} AND {part}" for part in ready),
            order_by="priority DESC, created_at",
            assign=claim_assign(self._clock),
            columns=columns,
        )

        def op(tx: Tx) -> list[Any]:
            rows = dialect.claim(tx, claim, free_params) if free else []
            for workflow in limited:
                rows += self._claim_limited(
                    tx, workflow, query.limits[workflow], params, ready, query.dead_owners,
                    columns=columns,
                )  # fmt: skip
            return rows

        rows: list[Any] = await self._db.write(op)
        return rows

    def _holders(self, tx: Tx, workflow: str, dead: Sequence[str]) -> dict[str | None, int]:
        """Runs holding a slot of ``workflow`` now, by concurrency key."""
        params: dict[str, Any] = {"w": workflow, **self._db.dialect.clock_params()}
        not_dead = ""
        if dead:
            not_dead = f" AND owner_id NOT IN ({bind_list(params, 'd', dead)})"
        rows = tx.query(
            "SELECT concurrency_key, COUNT(*) FROM gf_runs WHERE workflow = :w"
            " AND state = 'running' AND owner_id IS NOT NULL"
            f" AND lease_expires_at >= {self._clock}{not_dead}"
            " GROUP BY concurrency_key",
            params,
        )
        return {key: int(count) for key, count in rows}

    def _start_state(
        self, tx: Tx, run: RunRecord, limit: RunLimit
    ) -> Literal["held", "queued", "pending"]:
        """The state a new run starts in under ``limit``.

        ``"held"`` if a slot is free and nothing queued is ahead, else ``"queued"``; ``"pending"``
        when the starter would not hold the run anyway.
        """
        self._db.dialect.lock_key(tx, _run_scope(run.workflow))
        held = self._holders(tx, run.workflow, ()).get(run.concurrency_key, 0)
        ahead = tx.query(
            "SELECT 1 FROM gf_runs WHERE workflow = :w AND state = 'queued'"
            " AND (concurrency_key = :k OR (concurrency_key IS NULL AND :k IS NULL)) LIMIT 1",
            {"w": run.workflow, "k": run.concurrency_key},
        )
        if held >= limit.limit or ahead:
            return "queued"
        return "held" if limit.owned else "pending"

    def _claim_limited(
        self,
        tx: Tx,
        workflow: str,
        limit: int,
        base: dict[str, Any],
        ready: Sequence[str],
        dead: Sequence[str],
        *,
        columns: Sequence[str],
    ) -> list[Any]:
        """Claim runnable runs of ``workflow`` into its free slots; mark the rest ``queued``.

        Highest priority first, then oldest. ``base`` holds the claim parameters, ``ready`` the
        claimable filter (its disjoint parts).
        """
        runnable = " OR ".join(f"({part})" for part in ready)
        self._db.dialect.lock_key(tx, _run_scope(workflow))
        held = self._holders(tx, workflow, dead)
        params = base | {"w": workflow, "scan": max(base["limit"] * 4, 200)}
        candidates = tx.query(
            first_rows(
                "gf_runs",
                ["run_id", "concurrency_key", "owner_id", "state"],
                [f"workflow = :w AND {part}" for part in ready],
                "priority DESC, created_at, run_id",
                "scan",
            ),
            params,
        )
        granted: list[str] = []
        waiting: list[str] = []
        for run_id, key, owner, state in candidates:
            if held.get(key, 0) < limit and len(granted) < base["limit"]:
                held[key] = held.get(key, 0) + 1
                granted.append(run_id)
            elif owner is None and state != "queued":
                waiting.append(run_id)
        if waiting:
            marks: dict[str, Any] = {"now": base["now"]}
            tx.execute(
                "UPDATE gf_runs SET state = 'queued', wake_at = NULL, updated_at = :now"
                f" WHERE run_id IN ({bind_list(marks, 'q', waiting)})",
                marks,
            )
        if not granted:
            return []
        claim = dict(params)
        ids = bind_list(claim, "g", granted)
        tx.execute(
            f"UPDATE gf_runs SET {claim_assign(self._clock)}"
            f" WHERE run_id IN ({ids}) AND ({runnable})",
            claim,
        )
        # Read back in the same transaction (portable: MySQL has no UPDATE ... RETURNING).
        return tx.query(
            f"SELECT {', '.join(columns)} FROM gf_runs"
            f" WHERE run_id IN ({ids}) AND owner_id = :owner",
            claim,
        )

    # --- function slots and rates -----------------------------------------------------------------

    async def acquire_slot(self, request: SlotRequest) -> float | None:
        """Grant ``request`` (``None``) or say when to ask again (``QUEUED_WAIT``: on a release)."""
        result: float | None = await self._db.write(lambda tx: self._acquire(tx, request))
        return result

    def _acquire(self, tx: Tx, request: SlotRequest) -> float | None:
        params: dict[str, Any] = {
            "scope": request.scope,
            "holder": request.holder,
            "owner": request.owner_id,
            "now": request.now,
            "lease": request.lease,
            "limit": request.limit,
            "rate_scope": request.rate_scope,
            **self._db.dialect.clock_params(),
        }
        if request.rate is not None:
            retry_at = self._rate_window(tx, request.rate, params)
            if retry_at is not None:
                return retry_at
        if request.limit is not None and not self._take_slot(tx, params):
            return QUEUED_WAIT
        if request.rate is not None:
            self._rate_started(tx, params)
        return None

    def _rate_window(self, tx: Tx, rate: tuple[int, float], params: dict[str, Any]) -> float | None:
        """When the rate window has room again, or ``None`` if it has room now."""
        count, period = rate
        self._db.dialect.lock_key(tx, params["rate_scope"])
        params["since"] = params["now"] - period
        tx.execute(
            "DELETE FROM gf_rate_starts WHERE scope = :rate_scope AND started_at <= :since", params
        )
        started = tx.query(
            "SELECT COUNT(*), MIN(started_at) FROM gf_rate_starts WHERE scope = :rate_scope",
            params,
        )
        if int(started[0][0]) >= count:
            return float(started[0][1]) + period
        return None

    def _rate_started(self, tx: Tx, params: dict[str, Any]) -> None:
        # The holder may have started before (a retried call): its start moves, counted once.
        if not tx.execute(
            "UPDATE gf_rate_starts SET started_at = :now"
            " WHERE scope = :rate_scope AND holder = :holder",
            params,
        ):
            tx.execute(
                "INSERT INTO gf_rate_starts (scope, holder, started_at)"
                " VALUES (:rate_scope, :holder, :now)",
                params,
            )

    def _take_slot(self, tx: Tx, params: dict[str, Any]) -> bool:
        """Take a slot of the scope if fewer than the limit are held (by live leases)."""
        self._db.dialect.lock_key(tx, params["scope"])
        held = tx.query(
            "SELECT COUNT(*) FROM gf_slots WHERE scope = :scope AND holder <> :holder"
            f" AND lease_expires_at >= {self._clock}",
            params,
        )
        if int(held[0][0]) >= params["limit"]:
            return False
        # The holder's own row (a retried call, or a dead owner's attempt taken over) is reused.
        if not tx.execute(
            "UPDATE gf_slots SET owner_id = :owner, acquired_at = :now,"
            f" lease_expires_at = {self._clock} + :lease WHERE scope = :scope AND holder = :holder",
            params,
        ):
            tx.execute(
                "INSERT INTO gf_slots (scope, holder, owner_id, acquired_at, lease_expires_at)"
                f" VALUES (:scope, :holder, :owner, :now, {self._clock} + :lease)",
                params,
            )
        return True

    async def release_slot(self, scope: str, holder: str) -> None:
        """Delete a slot row and wake the engines waiting for one."""

        def op(tx: Tx) -> None:
            if tx.execute(
                "DELETE FROM gf_slots WHERE scope = :scope AND holder = :holder",
                {"scope": scope, "holder": holder},
            ):
                self._db.dialect.notify(tx, f"slot:{scope}")

        await self._db.write(op)
