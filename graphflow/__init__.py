"""graphflow: durable workflows from plain Python functions, with state in your own database.

```python
import graphflow as gf

@gf.function
async def greet(name: str) -> str:
    return f"Hello, {name}!"

@gf.workflow
async def hello(wf: gf.Workflow, data: dict) -> str:
    return await wf.do("Greet", greet, {"name": data["name"]})

print(gf.run("hello", {"name": "Ada"}))
```
"""

from __future__ import annotations as _annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:  # the names below, imported on first use (see __getattr__)
    from ._types import JSON as JSON
    from .durations import parse_duration as parse_duration
    from .engine import Engine as Engine
    from .engine import EngineStats as EngineStats
    from .engine import run as run
    from .errors import AmbiguousResumeError as AmbiguousResumeError
    from .errors import BranchError as BranchError
    from .errors import BranchKeyTypeError as BranchKeyTypeError
    from .errors import DefinitionError as DefinitionError
    from .errors import DuplicateStepError as DuplicateStepError
    from .errors import DurationError as DurationError
    from .errors import EngineConfigError as EngineConfigError
    from .errors import EngineStateError as EngineStateError
    from .errors import ErrorInfo as ErrorInfo
    from .errors import EventLoopError as EventLoopError
    from .errors import GraphDefinitionError as GraphDefinitionError
    from .errors import GraphDurationError as GraphDurationError
    from .errors import GraphflowError as GraphflowError
    from .errors import InputValidationError as InputValidationError
    from .errors import InvalidStateError as InvalidStateError
    from .errors import LeaseLostError as LeaseLostError
    from .errors import LimitError as LimitError
    from .errors import LoopLimitError as LoopLimitError
    from .errors import NonDeterminismError as NonDeterminismError
    from .errors import NonRetryableError as NonRetryableError
    from .errors import NotFoundError as NotFoundError
    from .errors import OutsideStepError as OutsideStepError
    from .errors import PatchIdError as PatchIdError
    from .errors import PruneStateError as PruneStateError
    from .errors import ReadOnlyStoreError as ReadOnlyStoreError
    from .errors import RecoveryLimitError as RecoveryLimitError
    from .errors import RegistrationError as RegistrationError
    from .errors import RunConflictError as RunConflictError
    from .errors import RunError as RunError
    from .errors import RunFailed as RunFailed
    from .errors import RunNotFoundError as RunNotFoundError
    from .errors import ScheduleError as ScheduleError
    from .errors import ScheduleNotFoundError as ScheduleNotFoundError
    from .errors import SchemaVersionError as SchemaVersionError
    from .errors import StepFailed as StepFailed
    from .errors import StepNameError as StepNameError
    from .errors import StepNotFoundError as StepNotFoundError
    from .errors import StepTargetError as StepTargetError
    from .errors import StepTimeout as StepTimeout
    from .errors import StoreError as StoreError
    from .errors import StoreFileLostError as StoreFileLostError
    from .errors import StoreUnavailableError as StoreUnavailableError
    from .errors import SuspendTimeout as SuspendTimeout
    from .errors import UnknownFunctionError as UnknownFunctionError
    from .errors import UnknownWorkflowError as UnknownWorkflowError
    from .errors import WorkflowDefinitionError as WorkflowDefinitionError
    from .functions import DEFAULT_REGISTRY as DEFAULT_REGISTRY
    from .functions import Function as Function
    from .functions import Registry as Registry
    from .functions import function as function
    from .graph.render import RenderError as RenderError
    from .graph.render import to_dot as to_dot
    from .graph.render import to_mermaid as to_mermaid
    from .graph.render import to_svg as to_svg
    from .graph.spec import GraphWorkflow as GraphWorkflow
    from .graph.spec import workflow_graph as workflow_graph
    from .limits import Concurrency as Concurrency
    from .refs import RefResolutionError as RefResolutionError
    from .refs import RefUsageError as RefUsageError
    from .refs import ref as ref
    from .runtime.check import CheckResult as CheckResult
    from .runtime.clock import Clock as Clock
    from .runtime.context import StepInfo as StepInfo
    from .runtime.context import branch as branch
    from .runtime.context import current_step as current_step
    from .runtime.schedules import ScheduleInfo as ScheduleInfo
    from .runtime.status import RunList as RunList
    from .runtime.status import RunOwner as RunOwner
    from .runtime.status import RunStatus as RunStatus
    from .runtime.status import StepStatus as StepStatus
    from .runtime.workflow import Workflow as Workflow
    from .runtime.workflow import workflow as workflow
    from .store import Store as Store
    from .store import open_store as open_store

__version__ = "0.1.0"

__all__ = (
    # engine
    "Engine",
    "EngineStats",
    "run",
    "RunStatus",
    "RunList",
    "RunOwner",
    "StepStatus",
    "CheckResult",
    "ScheduleInfo",
    "Store",
    "open_store",
    "Clock",
    # definitions
    "function",
    "Function",
    "workflow",
    "Workflow",
    "Registry",
    "DEFAULT_REGISTRY",
    "current_step",
    "StepInfo",
    "branch",
    "parse_duration",
    "Concurrency",
    # graphs
    "workflow_graph",
    "GraphWorkflow",
    "ref",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "JSON",
    # errors
    "GraphflowError",
    "DefinitionError",
    "RegistrationError",
    "GraphDefinitionError",
    "GraphDurationError",
    "DurationError",
    "ScheduleError",
    "LimitError",
    "InputValidationError",
    "NotFoundError",
    "UnknownWorkflowError",
    "UnknownFunctionError",
    "RunNotFoundError",
    "StepNotFoundError",
    "PruneStateError",
    "ScheduleNotFoundError",
    "RunError",
    "RunConflictError",
    "InvalidStateError",
    "RunFailed",
    "DuplicateStepError",
    "NonDeterminismError",
    "BranchError",
    "LoopLimitError",
    "StepFailed",
    "SuspendTimeout",
    "StepTimeout",
    "StoreError",
    "StoreUnavailableError",
    "ReadOnlyStoreError",
    "StoreFileLostError",
    "SchemaVersionError",
    "LeaseLostError",
    "NonRetryableError",
    "ErrorInfo",
    "WorkflowDefinitionError",
    "EngineConfigError",
    "EngineStateError",
    "EventLoopError",
    "OutsideStepError",
    "StepNameError",
    "PatchIdError",
    "StepTargetError",
    "BranchKeyTypeError",
    "AmbiguousResumeError",
    "RecoveryLimitError",
    "RefResolutionError",
    "RefUsageError",
    "RenderError",
)

_HOMES: dict[str, str] = {
    "JSON": "._types",
    "parse_duration": ".durations",
    "Engine": ".engine",
    "EngineStats": ".engine",
    "run": ".engine",
    "AmbiguousResumeError": ".errors",
    "BranchError": ".errors",
    "BranchKeyTypeError": ".errors",
    "DefinitionError": ".errors",
    "DuplicateStepError": ".errors",
    "DurationError": ".errors",
    "EngineConfigError": ".errors",
    "EngineStateError": ".errors",
    "ErrorInfo": ".errors",
    "EventLoopError": ".errors",
    "GraphDefinitionError": ".errors",
    "GraphDurationError": ".errors",
    "GraphflowError": ".errors",
    "InputValidationError": ".errors",
    "InvalidStateError": ".errors",
    "LeaseLostError": ".errors",
    "LimitError": ".errors",
    "LoopLimitError": ".errors",
    "NonDeterminismError": ".errors",
    "NonRetryableError": ".errors",
    "NotFoundError": ".errors",
    "OutsideStepError": ".errors",
    "PatchIdError": ".errors",
    "PruneStateError": ".errors",
    "RecoveryLimitError": ".errors",
    "RegistrationError": ".errors",
    "RunConflictError": ".errors",
    "RunError": ".errors",
    "RunFailed": ".errors",
    "RunNotFoundError": ".errors",
    "ScheduleError": ".errors",
    "ScheduleNotFoundError": ".errors",
    "SchemaVersionError": ".errors",
    "StepFailed": ".errors",
    "StepNameError": ".errors",
    "StepNotFoundError": ".errors",
    "StepTargetError": ".errors",
    "StepTimeout": ".errors",
    "StoreError": ".errors",
    "StoreFileLostError": ".errors",
    "StoreUnavailableError": ".errors",
    "ReadOnlyStoreError": ".errors",
    "SuspendTimeout": ".errors",
    "UnknownFunctionError": ".errors",
    "UnknownWorkflowError": ".errors",
    "WorkflowDefinitionError": ".errors",
    "DEFAULT_REGISTRY": ".functions",
    "Function": ".functions",
    "Registry": ".functions",
    "function": ".functions",
    "RenderError": ".graph.render",
    "to_dot": ".graph.render",
    "to_mermaid": ".graph.render",
    "to_svg": ".graph.render",
    "GraphWorkflow": ".graph.spec",
    "workflow_graph": ".graph.spec",
    "Concurrency": ".limits",
    "RefResolutionError": ".refs",
    "RefUsageError": ".refs",
    "ref": ".refs",
    "CheckResult": ".runtime.check",
    "Clock": ".runtime.clock",
    "StepInfo": ".runtime.context",
    "branch": ".runtime.context",
    "current_step": ".runtime.context",
    "ScheduleInfo": ".runtime.schedules",
    "RunList": ".runtime.status",
    "RunOwner": ".runtime.status",
    "RunStatus": ".runtime.status",
    "StepStatus": ".runtime.status",
    "Workflow": ".runtime.workflow",
    "workflow": ".runtime.workflow",
    "Store": ".store",
    "open_store": ".store",
}
"""Where each public name lives: ``import graphflow`` loads none of it until a name is used."""


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (PEP 562), so ``import graphflow`` is cheap."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'graphflow' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
