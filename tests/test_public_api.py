"""The facade: every public name DESIGN.md promises is importable from ``graphflow``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import graphflow as gf

DESIGN_NAMES = [
    "function",
    "workflow",
    "Workflow",
    "Registry",
    "Engine",
    "run",
    "RunStatus",
    "StepStatus",
    "ErrorInfo",
    "current_step",
    "branch",
    "workflow_graph",
    "ref",
    "to_dot",
    "to_mermaid",
    "GraphflowError",
    "RegistrationError",
    "GraphDefinitionError",
    "DurationError",
    "InputValidationError",
    "UnknownWorkflowError",
    "UnknownFunctionError",
    "RunNotFoundError",
    "RunConflictError",
    "InvalidStateError",
    "DuplicateStepError",
    "NonDeterminismError",
    "BranchError",
    "StepFailed",
    "RunFailed",
    "SuspendTimeout",
    "SchemaVersionError",
    "StoreError",
    "StepTimeout",
    "NonRetryableError",
]


def test_all_is_a_tuple_of_real_names() -> None:
    assert isinstance(gf.__all__, tuple)
    assert len(set(gf.__all__)) == len(gf.__all__)
    for name in gf.__all__:
        assert hasattr(gf, name), name


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_names_are_exported(name: str) -> None:
    assert name in gf.__all__


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("graphflow.http", ["workflow_start", "workflow_run", "workflow_status", "workflow_resume",
                            "workflow_cancel", "create_app"]),
        ("graphflow.testing", ["VirtualClock", "MemoryStore"]),
        ("graphflow.testing.store_contract", ["StoreContract", "StoreFactory"]),
    ],
)  # fmt: skip
def test_submodule_names(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert name in imported.__all__


def test_every_error_is_a_graphflow_error_and_lookups_are_lookup_errors() -> None:
    for name in gf.__all__:
        value = getattr(gf, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, gf.GraphflowError), name
    for lookup in (gf.UnknownWorkflowError, gf.UnknownFunctionError, gf.RunNotFoundError):
        assert issubclass(lookup, LookupError)
    assert issubclass(gf.StepTimeout, TimeoutError)
    assert issubclass(gf.DurationError, ValueError)


def test_import_graphflow_and_its_engine_leave_heavy_libraries_unloaded() -> None:
    """``import graphflow`` (and the engine, the decorators) loads no graph, CLI or schema library."""
    code = (
        "import sys, graphflow as gf; gf.Engine; gf.workflow; gf.function; gf.run;"
        " import graphflow.cli;"
        " print(sorted(m for m in ('networkx', 'rich', 'jsonschema', 'jsonpath_ng', 'sqlalchemy')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
