"""The worker side of RPC jobs: run one claimed job and store its outcome.

An engine executes a run's RPC steps itself when it has the function. A function it does not have,
but another live worker serves, becomes a job row (``steps.remote_step``); that worker claims it,
runs it here and stores the result, and the run's owner (which keeps the retry and timeout policy)
picks the result up.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pydantic_core

from ..errors import InputValidationError, NonRetryableError
from ..functions import Function
from ..store.base import JobRecord
from .context import StepInfo, enter_step, exit_step
from .failures import contained, error_info, escaped
from .faults import write_until_stored
from .host import RunHost

__all__ = ("run_job",)


async def run_job(host: RunHost, fn: Function[..., Any], job: JobRecord) -> None:
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
        gate = host.gates.gate(fn, json.loads(job.input))
        slot = None
        if gate is not None:
            slot = await gate.enter(lambda: job.job_id, what=f"input for function {fn.name!r}")
        try:
            await host.job_slots.acquire()
            try:
                value = await fn.invoke(args, kwargs, host.threads)
            finally:
                host.job_slots.release()
        finally:
            if gate is not None:
                gate.leave(slot)
        output = fn.io.dump_output(value).decode()
    except (NonRetryableError, InputValidationError) as exc:
        error, retryable = error_info(exc).model_dump_json(), False
    except (pydantic_core.PydanticSerializationError, pydantic.ValidationError) as exc:
        error, retryable = error_info(exc).model_dump_json(), False
    except Exception as exc:
        error = error_info(exc).model_dump_json()
    except BaseException as exc:
        if not escaped(exc):
            raise
        error, retryable = contained(exc, f"step {job.step_name!r}").info.model_dump_json(), False
    finally:
        exit_step(token)
    at = host.clock.time()
    await write_until_stored(
        f"storing the outcome of job {job.job_id} (step {job.step_name!r})",
        lambda: host.store.finish_job(job, output=output, error=error, retryable=retryable, at=at),
        host.clock,
        run_id=job.run_id,
    )
