"""Edge cases found in review: graph definition errors and CLI rendering of user data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import graphflow as gf
from graphflow import cli

runner = CliRunner()


def _echo_registry(registry: gf.Registry) -> None:
    @gf.function(registry=registry)
    def echo(**data: Any) -> dict[str, Any]:
        return data


# --- graph definition errors ------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["retry_delay", "timeout"])
def test_bad_duration_option_in_graph_config_is_a_graph_definition_error(
    registry: gf.Registry, option: str
) -> None:
    """DESIGN §1: '... bad option values. Each is a GraphDefinitionError with the node and the fix.'"""
    _echo_registry(registry)
    with pytest.raises(gf.GraphDefinitionError) as caught:
        gf.workflow_graph(
            name="bad_duration",
            nodes={"a": "echo"},
            config={"a": {option: "soon"}},
            registry=registry,
        )
    assert "'a'" in str(caught.value)  # the message names the node


def test_computing_with_gf_ref_in_a_mapping_input_is_a_graph_definition_error(
    registry: gf.Registry,
) -> None:
    """DESIGN §1b: refs are opaque, computing with them (f"Hi {ref(...)}") is a GraphDefinitionError;
    gf.ref is exported for the mapping form."""
    _echo_registry(registry)
    with pytest.raises(gf.GraphDefinitionError):
        gf.workflow_graph(
            name="fstring_mapping",
            nodes={"a": "echo", "b": "echo"},
            config={"a": {"next": "b"}, "b": {"input": {"greeting": f"Hi {gf.ref('a', 'name')}"}}},
            registry=registry,
        )


def test_bad_ref_path_in_a_mapping_input_is_a_graph_definition_error(
    registry: gf.Registry,
) -> None:
    _echo_registry(registry)
    with pytest.raises(gf.GraphDefinitionError):
        gf.workflow_graph(
            name="badpath_mapping",
            nodes={"a": "echo", "b": "echo"},
            config={"a": {"next": "b"}, "b": {"input": {"x": gf.ref("a", "items[[")}}},
            registry=registry,
        )


# --- CLI ------------------------------------------------------------------------------------------

_FLOWS = """
import graphflow as gf


@gf.function
def review_cli_fail(reason: str) -> None:
    raise ValueError(reason)


@gf.workflow
async def review_cli_brackets(wf: gf.Workflow, data: dict) -> dict:
    return {"note": data["note"]}


@gf.workflow
async def review_cli_failing(wf: gf.Workflow, data: dict) -> None:
    await wf.do("Fail", review_cli_fail, {"reason": data["reason"]})
"""


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("review_cli") / "gf_review_cli_flows.py"
    path.write_text(_FLOWS)
    return str(path)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'review_cli.db'}?durability=normal"


def test_cli_status_shows_an_output_with_square_brackets(flows: str, store: str) -> None:
    """`graphflow status RUN_ID` renders user data through rich markup: '[/...]' crashes it."""
    data = json.dumps({"note": "see [/docs] for details"})
    ran = runner.invoke(cli.app, ["run", flows, "review_cli_brackets", "-i", data,
                                  "--run-id", "rb1", "--store", store])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(cli.app, ["status", "rb1", "--store", store])
    assert result.exit_code == 0, result.output
    assert "see [/docs] for details" in result.stdout


def test_cli_status_shows_a_step_error_with_square_brackets_verbatim(
    flows: str, store: str
) -> None:
    """Error text like pydantic's '[type=missing, ...]' is swallowed as a rich style tag."""
    reason = "Field required [type=missing, input_value={}, input_type=dict]"
    ran = runner.invoke(cli.app, ["run", flows, "review_cli_failing", "-i",
                                  json.dumps({"reason": reason}), "--run-id", "rb2",
                                  "--store", store])  # fmt: skip
    assert ran.exit_code == 1
    result = runner.invoke(cli.app, ["status", "rb2", "--store", store])
    assert result.exit_code == 0, result.output
    assert "[type=missing" in result.stdout
