"""RPC steps as queued jobs: handed to whichever worker has the function, and executed there.

An engine executes a run's RPC steps itself when it has the function. A function it does not have,
but another live worker serves, becomes a job row; that worker claims it, runs it and stores the
result, and the run's owner (which keeps the retry and timeout policy) picks the result up.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pydantic
import pydantic_core

from .._types import JSON
from ..errors import ErrorInfo, InputValidationError, NonRetryableError
from ..functions import Function, StepOptions
from ..store.base import JobRecord
from .context import StepInfo, current_step, enter_step, exit_step
from .execution import ReportedError, RunExecution, StepCall, error_info
from .host import RunHost

__all__ = ("execute_job", "remote_call")

_NAMESPACE = uuid.UUID("5d2b8c1e-7a43-4f0e-9f5e-2c6a1b9d3e77")


def _raw_json(value: Any) -> bytes:
    return str(value).encode()


def remote_call(
    execution: RunExecution, name: str, function: str, data: JSON, options: StepOptions
) -> StepCall:
    """A step whose attempts are queued as jobs for workers that serve ``function``."""
    host = execution.host

    async def call() -> str:
        attempt = current_step().attempt
        job_id = str(uuid.uuid5(_NAMESPACE, f"{execution.run_id}\x00{name}\x00{attempt}"))
        await host.store.enqueue_job(
            JobRecord(
                job_id=job_id,
                run_id=execution.run_id,
                step_name=name,
                function=function,
                input=json.dumps(data),
                attempt=attempt,
                created_at=host.clock.time(),
            )
        )
        job = await host.wait_job(job_id)
        if job.state == "completed" and job.output is not None:
            return job.output
        info = ErrorInfo.model_validate_json(job.error or '{"type": "Error", "message": "?"}')
        raise ReportedError(info, retryable=job.retryable)

    from .workflow import _load_any

    return StepCall(
        name=name,
        kind="rpc",
        function=function,
        call=call,
        dump=_raw_json,
        load=_load_any,
        options=options,
    )


async def execute_job(host: RunHost, fn: Function[..., Any], job: JobRecord) -> None:
    """Run one claimed job and store its outcome (unless its lease was lost meanwhile)."""
    token = enter_step(
        StepInfo(run_id=job.run_id, workflow="", step_name=job.step_name, attempt=job.attempt)
    )
    output = error = None
    retryable = True
    try:
        args, kwargs = fn.validate_input(
            json.loads(job.input), run_id=job.run_id, step=job.step_name
        )
        await host.job_slots.acquire()
        try:
            value = await fn.invoke(args, kwargs)
        finally:
            host.job_slots.release()
        output = fn.io.dump_output(value).decode()
    except (NonRetryableError, InputValidationError) as exc:
        error, retryable = error_info(exc).model_dump_json(), False
    except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
        error, retryable = error_info(exc).model_dump_json(), False
    except Exception as exc:
        error = error_info(exc).model_dump_json()
    finally:
        exit_step(token)
    await host.store.finish_job(
        job, output=output, error=error, retryable=retryable, at=host.clock.time()
    )
