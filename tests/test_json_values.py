"""Values JSON cannot hold: NaN, ±Infinity, lone surrogates, bad bytes, nesting too deep.

They are refused where they enter, never stored changed (NaN as ``null``) or stored to fail later:
a run's input at ``start`` (``InputValidationError``, HTTP 422, nothing written), a step's result
or a workflow's output (a non-retryable failure naming the path of the bad value).
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import graphflow as gf
from graphflow.http import create_app

LIMIT = 200
"""Levels of nested arrays and objects that stored JSON may have (pydantic's parser's limit)."""


def nested(levels: int) -> Any:
    """A value of ``levels`` nested arrays around a number."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def engine(registry: gf.Registry, url: str = "memory://") -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05)


async def finished(e: gf.Engine, workflow: str, data: Any = None) -> gf.RunStatus:
    """Start ``workflow``, wait for its end, and return its status with its steps."""
    run_id = await e.start(workflow, data)
    await e.wait(run_id, timeout=30)
    return await e.status(run_id)


@pytest.fixture
def echo(registry: gf.Registry) -> object:
    @gf.workflow(registry=registry)
    async def echo(wf: gf.Workflow, data: Any) -> Any:
        return await wf.do("echo", lambda: data)

    return echo


# --- run input --------------------------------------------------------------------------------


BAD_INPUTS = {
    "nan": ({"order": {"price": math.nan}}, "finite_number", ("order", "price")),
    "infinity": ({"items": [1.0, math.inf]}, "finite_number", ("items", 1)),
    "-infinity": ({"t": -math.inf}, "finite_number", ("t",)),
    "lone surrogate": ({"name": "a\ud800b"}, "string_unicode", ("name",)),
    "bytes not UTF-8": ({"blob": b"\xff\xfe"}, "bytes_invalid_encoding", ("blob",)),
    "201 levels": (nested(LIMIT + 1), "json_depth", (0, 0, 0, 0)),
    "254 levels": ({"a": nested(253)}, "json_depth", ("a", 0, 0, 0)),
    "255 levels": ({"a": nested(254)}, "json_depth", ("a", 0, 0, 0)),
    "5000 levels": ({"a": nested(5000)}, "json_depth", ("a", 0, 0, 0)),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
async def test_start_refuses_input_json_cannot_hold(
    registry: gf.Registry, echo: object, sqlite_url: str, case: str
) -> None:
    data, error_type, loc = BAD_INPUTS[case]
    async with engine(registry, sqlite_url) as e:
        with pytest.raises(gf.InputValidationError) as caught:
            await e.start("echo", data, run_id="bad")
        assert await e.list_runs() == []
        assert await e.store.get_run("bad") is None
    (error,) = caught.value.errors
    assert error["type"] == error_type
    assert tuple(error["loc"]) == loc
    assert "echo" in str(caught.value)


async def test_input_at_the_depth_limit_runs_to_completion(
    registry: gf.Registry, echo: object, sqlite_url: str
) -> None:
    async with engine(registry, sqlite_url) as e:
        status = await finished(e, "echo", {"a": nested(LIMIT - 1)})
    assert status.state == "completed"
    assert status.output == {"a": nested(LIMIT - 1)}


async def test_nan_in_a_typed_input_model_is_refused(registry: gf.Registry) -> None:
    class Order(BaseModel):
        price: float

    @gf.workflow(registry=registry)
    async def buy(wf: gf.Workflow, order: Order) -> float:
        return order.price

    async with engine(registry) as e:
        with pytest.raises(gf.InputValidationError, match="NaN"):
            await e.start("buy", {"price": math.nan})
        with pytest.raises(gf.InputValidationError, match="NaN"):
            await e.start("buy", Order(price=math.inf))
        assert await e.list_runs() == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"price": NaN}', ["price"]),
        (b'{"price": -Infinity}', ["price"]),
        (b'{"name": "\\ud800"}', ["name"]),
        (b"[" * (LIMIT + 1) + b"]" * (LIMIT + 1), [0, 0, 0, 0]),
    ],
)
async def test_http_start_answers_422_for_input_json_cannot_hold(
    registry: gf.Registry, echo: object, body: bytes, loc: list[Any]
) -> None:
    async with engine(registry) as e:
        app = create_app(e)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gf") as client:
            answer = await client.post("/workflows/echo/start", content=body)
        assert await e.list_runs() == []
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == loc


# --- step results and workflow outputs -----------------------------------------------------------


async def test_nan_step_result_fails_the_step_without_retrying(registry: gf.Registry) -> None:
    calls = 0

    @gf.function(registry=registry, retries=3)
    def measure() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"readings": [1.5, math.nan]}

    @gf.workflow(registry=registry)
    async def survey(wf: gf.Workflow, data: None) -> Any:
        return await wf.do("measure", measure)

    async with engine(registry) as e:
        status = await finished(e, "survey")
    assert status.state == "failed"
    assert calls == 1
    (step,) = status.steps
    assert step.state == "failed"
    assert step.error is not None
    assert "$.readings[1]" in step.error.message
    assert "NaN" in step.error.message


class Reading(BaseModel):
    value: float


@pytest.mark.parametrize(
    "result",
    [math.inf, Reading(value=math.nan), [Reading(value=-math.inf)], {"r": Reading(value=math.nan)}],
)
async def test_non_finite_results_of_every_shape_are_refused(
    registry: gf.Registry, result: Any
) -> None:
    @gf.workflow(registry=registry)
    async def shapes(wf: gf.Workflow, data: None) -> Any:
        return await wf.do("make", lambda: result)

    async with engine(registry) as e:
        status = await finished(e, "shapes")
    assert status.state == "failed"
    assert status.steps[0].state == "failed"
    assert status.error is not None
    assert "not a finite number" in status.error.message


async def test_typed_model_result_with_nan_is_refused(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    async def read() -> Reading:
        return Reading(value=math.nan)

    @gf.workflow(registry=registry)
    async def sensor(wf: gf.Workflow, data: None) -> Reading:
        return await wf.do("read", read)

    async with engine(registry) as e:
        status = await finished(e, "sensor")
    assert status.state == "failed"
    assert status.error is not None
    assert "$.value" in status.error.message


async def test_workflow_output_with_infinity_fails_the_run(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def ratio(wf: gf.Workflow, data: None) -> dict[str, float]:
        zero = await wf.do("zero", lambda: 0.0)
        return {"ratio": math.inf if zero == 0 else 1 / zero}

    async with engine(registry) as e:
        status = await finished(e, "ratio")
    assert status.state == "failed"
    assert status.error is not None
    assert "$.ratio" in status.error.message


async def test_step_result_nested_too_deep_fails_the_step(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def deep(wf: gf.Workflow, data: None) -> Any:
        return await wf.do("deep", lambda: nested(LIMIT + 1))

    async with engine(registry) as e:
        status = await finished(e, "deep")
    assert status.state == "failed"
    assert status.steps[0].state == "failed"
    assert status.error is not None
    assert f"at most {LIMIT} levels" in status.error.message


async def test_workflow_output_nested_too_deep_fails_the_run(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def deep_output(wf: gf.Workflow, data: None) -> Any:
        inner = await wf.do("inner", lambda: nested(LIMIT - 1))
        return [inner, [[inner]]]

    async with engine(registry) as e:
        status = await finished(e, "deep_output")
    assert status.state == "failed"
    assert status.error is not None
    assert f"at most {LIMIT} levels" in status.error.message


async def test_strings_that_spell_nan_are_kept(registry: gf.Registry) -> None:
    @gf.workflow(registry=registry)
    async def words(wf: gf.Workflow, data: dict[str, Any]) -> Any:
        return await wf.do("words", lambda: {**data, "none": None, "text": "NaN Infinity null"})

    async with engine(registry) as e:
        status = await finished(e, "words", {"x": "NaN", "y": None, "z": 1e308})
    assert status.state == "completed"
    assert status.output == {"x": "NaN", "y": None, "z": 1e308, "none": None,
                             "text": "NaN Infinity null"}  # fmt: skip
