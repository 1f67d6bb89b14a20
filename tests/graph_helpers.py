"""Helpers shared by the graph-run tests (``test_graph_runs.py``, ``test_graph_failures.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

import graphflow as gf


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


class Profile(BaseModel):
    user_id: str
    email: str
    plan: str


def engine(url: str, registry: gf.Registry, **options: Any) -> gf.Engine:
    return gf.Engine(url, registry=registry, poll_interval=0.05, **options)


def states(status: gf.RunStatus) -> list[tuple[str, str]]:
    return [(step.name, step.state) for step in status.steps]


async def failed_run(e: gf.Engine, workflow: str, data: Any = None) -> gf.RunStatus:
    run_id = await e.start(workflow, data)
    status = await e.wait(run_id, timeout=30)
    assert status.state == "failed"
    assert status.error is not None
    return status


def echo_function(registry: gf.Registry, name: str) -> None:
    """Register ``name`` as a function returning its input unchanged."""

    async def echo(data: Anything) -> dict[str, Any]:
        return data.model_dump()

    gf.function(name=name, registry=registry)(echo)
