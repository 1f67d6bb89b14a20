"""The job queue of the SQL store: RPC steps handed to whichever worker has their function.

Jobs are claimed through the dialect's claim statement (skipping rows other workers are taking
where the database has row locks), held through a lease that the owner's heartbeat renews, and
re-queued when that lease expires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert

from ._sql_db import SqlDatabase
from ._tx import Tx
from .base import JobRecord
from .dialects import Claim, Dialect
from .tables import JOBS

__all__ = ("SqlJobs",)

_JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(JobRecord))
_JOB_SELECT = f"SELECT {', '.join(_JOB_COLUMNS)} FROM gf_jobs"


def _job(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_JOB_COLUMNS, row, strict=True))
    values["retryable"] = bool(values["retryable"])
    return JobRecord(**values)


def _enqueue(dialect: Dialect) -> Insert:
    return dialect.insert_ignore(JOBS, ["job_id"])


class SqlJobs:
    """Job statements of one ``SqlDatabase``."""

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        self._enqueue = db.prepare(_enqueue)

    async def enqueue_job(self, job: JobRecord) -> None:
        """Queue a job (idempotent on ``job_id``) and wake idle workers."""
        params = {column: getattr(job, column) for column in _JOB_COLUMNS}

        def op(tx: Tx) -> None:
            tx.execute(self._enqueue, params)
            self.db.dialect.notify(tx, f"job:{job.function}")

        await self.db.write(op)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or ``None``."""
        rows = await self.db.read(
            lambda tx: tx.query(f"{_JOB_SELECT} WHERE job_id = :job_id", {"job_id": job_id})
        )
        return _job(rows[0]) if rows else None

    async def claim_jobs(
        self, owner_id: str, functions: Sequence[str], limit: int, lease: float
    ) -> list[JobRecord]:
        """Take queued jobs, or running ones whose owner's lease expired, of these functions."""
        if not functions or limit <= 0:
            return []
        dialect = self.db.dialect
        params: dict[str, Any] = {"owner": owner_id, "lease": lease, "limit": limit}
        params |= dialect.clock_params()
        binds = [f":f{i}" for i in range(len(functions))]
        params |= {f"f{i}": name for i, name in enumerate(functions)}
        clock = dialect.clock_sql
        abandoned = (
            f"state = 'running' AND lease_expires_at < {clock} AND function IN ({', '.join(binds)})"
        )
        claim = Claim(
            table="gf_jobs",
            key="job_id",
            # Each function's queue through gf_jobs_claim, in order; then abandoned jobs.
            parts=[*(f"state = 'queued' AND function = {bind}" for bind in binds), abandoned],
            order_by="created_at",
            assign=f"state = 'running', owner_id = :owner, lease_expires_at = {clock} + :lease",
            columns=_JOB_COLUMNS,
        )
        rows = await self.db.write(lambda tx: dialect.claim(tx, claim, params))
        return [_job(row) for row in rows]

    async def finish_job(
        self,
        job: JobRecord,
        *,
        output: str | None,
        error: str | None,
        retryable: bool,
        at: float,
    ) -> bool:
        """Store a job's outcome if ``job.owner_id`` still holds it."""
        params = {
            "job_id": job.job_id,
            "owner": job.owner_id,
            "state": "completed" if error is None else "failed",
            "output": output,
            "error": error,
            "retryable": retryable,
            "at": at,
        }

        def op(tx: Tx) -> bool:
            changed = tx.execute(
                "UPDATE gf_jobs SET state = :state, output = :output, error = :error,"
                " retryable = :retryable, finished_at = :at, lease_expires_at = NULL"
                " WHERE job_id = :job_id AND owner_id = :owner AND state = 'running'",
                params,
            )
            if changed:
                self.db.dialect.notify(tx, f"done:{job.job_id}")
            return bool(changed)

        return bool(await self.db.write(op))
