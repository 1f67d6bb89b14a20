"""The job queue of the SQL store: RPC steps handed to whichever worker has their function.

Jobs are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers), held
through a lease that the owner's heartbeat renews, and re-queued when that lease expires.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from .base import JobRecord

__all__ = ("JOB_COLUMNS", "JobQueries")

JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(JobRecord))
_JOB_SELECT = f"SELECT {', '.join(JOB_COLUMNS)} FROM gf_jobs"


def _job(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["retryable"] = bool(values["retryable"])
    return JobRecord(**values)


class JobQueries:
    """Job and owner-registry statements, mixed into ``SqlStore`` (which provides the rest)."""

    skip_locked: str

    @property
    def lease_now(self) -> str:
        """SQL for the lease clock."""
        raise NotImplementedError

    def lease_params(self) -> dict[str, Any]:
        """Parameters that ``lease_now`` needs."""
        raise NotImplementedError

    async def write(self, op: Callable[[Any], Any]) -> Any:
        """Run ``op`` in a group-committed transaction."""
        raise NotImplementedError

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn`` on the read connection."""
        raise NotImplementedError

    def notify(self, tx: Any, payload: str) -> None:
        """Wake listening engines at commit."""
        raise NotImplementedError

    async def served_functions(self, lease: float) -> set[str]:
        """Functions served by engines whose heartbeat is younger than three leases."""
        params = {"age": 3 * lease, **self.lease_params()}
        rows = await self.read(
            lambda tx: tx.query(
                f"SELECT functions FROM gf_owners WHERE heartbeat_at >= {self.lease_now} - :age",
                params,
            )
        )
        return {name for (functions,) in rows for name in json.loads(functions or "[]")}

    async def enqueue_job(self, job: JobRecord) -> None:
        """Queue a job (idempotent on ``job_id``) and wake idle workers."""
        params = {column: getattr(job, column) for column in JOB_COLUMNS}
        columns = ", ".join(JOB_COLUMNS)
        values = ", ".join(f":{c}" for c in JOB_COLUMNS)

        def op(tx: Any) -> None:
            tx.execute(
                f"INSERT INTO gf_jobs ({columns}) VALUES ({values})"
                " ON CONFLICT (job_id) DO NOTHING",
                params,
            )
            self.notify(tx, f"job:{job.function}")

        await self.write(op)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or ``None``."""
        rows = await self.read(
            lambda tx: tx.query(f"{_JOB_SELECT} WHERE job_id = :job_id", {"job_id": job_id})
        )
        return _job(rows[0]) if rows else None

    async def claim_jobs(
        self, owner_id: str, functions: Sequence[str], limit: int, lease: float
    ) -> list[JobRecord]:
        """Take queued jobs, or running ones whose owner's lease expired, of these functions."""
        if not functions or limit <= 0:
            return []
        params: dict[str, Any] = {"owner": owner_id, "lease": lease, "limit": limit}
        params |= self.lease_params()
        names = ", ".join(f":f{i}" for i in range(len(functions)))
        params |= {f"f{i}": name for i, name in enumerate(functions)}
        sql = (
            f"UPDATE gf_jobs SET state = 'running', owner_id = :owner,"
            f" lease_expires_at = {self.lease_now} + :lease"
            " WHERE job_id IN (SELECT job_id FROM gf_jobs"
            f" WHERE function IN ({names}) AND (state = 'queued'"
            f" OR (state = 'running' AND lease_expires_at < {self.lease_now}))"
            f" ORDER BY created_at LIMIT :limit{self.skip_locked})"
            f" RETURNING {', '.join(JOB_COLUMNS)}"
        )
        rows = await self.write(lambda tx: tx.query(sql, params))
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

        def op(tx: Any) -> bool:
            changed = tx.execute(
                "UPDATE gf_jobs SET state = :state, output = :output, error = :error,"
                " retryable = :retryable, finished_at = :at, lease_expires_at = NULL"
                " WHERE job_id = :job_id AND owner_id = :owner AND state = 'running'",
                params,
            )
            if changed:
                self.notify(tx, f"done:{job.job_id}")
            return bool(changed)

        return bool(await self.write(op))
