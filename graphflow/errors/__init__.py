"""The graphflow exception hierarchy.

```
GraphflowError
├─ DefinitionError
│  ├─ RegistrationError            a name is taken by another callable
│  ├─ GraphDefinitionError         an invalid workflow_graph()
│  │  └─ GraphDurationError        a node's retry_delay/timeout (also a DurationError)
│  ├─ WorkflowDefinitionError(TypeError)  an invalid @gf.workflow function
│  ├─ DurationError(ValueError)    an unparseable duration
│  ├─ ScheduleError(ValueError)    an invalid cron expression, time zone or catch-up policy
│  └─ LimitError(ValueError)       an invalid concurrency or rate limit, priority or dedup key
├─ InputValidationError(ValueError)  workflow input, step input or resume data is invalid
├─ EngineConfigError(ValueError)   an Engine option is out of range
├─ EngineStateError(RuntimeError)  the engine is not open (or opened twice)
├─ EventLoopError(RuntimeError)    gf.run() called inside a running event loop
├─ OutsideStepError(RuntimeError)  gf.current_step()/gf.branch() called outside a step
├─ PruneStateError(ValueError)     prune asked for runs that are not finished
├─ NotFoundError(LookupError)
│  ├─ UnknownWorkflowError, UnknownFunctionError, RunNotFoundError, ScheduleNotFoundError
│  └─ StepNotFoundError            fork from a step the run does not have
├─ RunError                        facts about one run
│  ├─ RunConflictError, InvalidStateError, RunFailed
│  ├─ DuplicateStepError, NonDeterminismError, BranchError, LoopLimitError
│  ├─ StepFailed, SuspendTimeout, StepTimeout(TimeoutError)
│  ├─ StepNameError(ValueError), StepTargetError(TypeError), BranchKeyTypeError(TypeError)
│  ├─ PatchIdError(ValueError)     wf.patched() given an id that is not a non-empty string
│  ├─ AmbiguousResumeError(ValueError), RecoveryLimitError
├─ StoreError
│  ├─ StoreUnavailableError         locked, disk full, I/O error, connection lost: runs wait
│  │  └─ ReadOnlyStoreError        the store can be read but not written
│  ├─ StoreFileLostError           the SQLite file was deleted or replaced under the engine
│  ├─ SchemaVersionError
│  └─ LeaseLostError               this process no longer owns the run
└─ NonRetryableError               raised by user code to fail a step at once
```

Every constructor takes keyword facts, keeps them as attributes and builds a message that says
what went wrong, where, and how to fix it. Errors pickle (``__reduce__``) so they cross process
boundaries.
"""

from __future__ import annotations as _annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._base import GraphflowError as GraphflowError
from ._flow import LimitError as LimitError
from ._flow import ScheduleError as ScheduleError
from ._flow import ScheduleNotFoundError as ScheduleNotFoundError
from ._run import AmbiguousResumeError as AmbiguousResumeError
from ._run import BranchError as BranchError
from ._run import BranchKeyTypeError as BranchKeyTypeError
from ._run import DuplicateStepError as DuplicateStepError
from ._run import InvalidStateError as InvalidStateError
from ._run import LoopLimitError as LoopLimitError
from ._run import NonDeterminismError as NonDeterminismError
from ._run import PatchIdError as PatchIdError
from ._run import RecoveryLimitError as RecoveryLimitError
from ._run import RunConflictError as RunConflictError
from ._run import RunError as RunError
from ._run import RunFailed as RunFailed
from ._run import StepFailed as StepFailed
from ._run import StepNameError as StepNameError
from ._run import StepTargetError as StepTargetError
from ._run import StepTimeout as StepTimeout
from ._run import SuspendTimeout as SuspendTimeout
from ._setup import DefinitionError as DefinitionError
from ._setup import DurationError as DurationError
from ._setup import EngineConfigError as EngineConfigError
from ._setup import EngineStateError as EngineStateError
from ._setup import EventLoopError as EventLoopError
from ._setup import GraphDefinitionError as GraphDefinitionError
from ._setup import GraphDurationError as GraphDurationError
from ._setup import InputValidationError as InputValidationError
from ._setup import NotFoundError as NotFoundError
from ._setup import OutsideStepError as OutsideStepError
from ._setup import PruneStateError as PruneStateError
from ._setup import RegistrationError as RegistrationError
from ._setup import RunNotFoundError as RunNotFoundError
from ._setup import StepNotFoundError as StepNotFoundError
from ._setup import UnknownFunctionError as UnknownFunctionError
from ._setup import UnknownWorkflowError as UnknownWorkflowError
from ._setup import WorkflowDefinitionError as WorkflowDefinitionError
from ._store import LeaseLostError as LeaseLostError
from ._store import NonRetryableError as NonRetryableError
from ._store import ReadOnlyStoreError as ReadOnlyStoreError
from ._store import SchemaVersionError as SchemaVersionError
from ._store import StoreError as StoreError
from ._store import StoreFileLostError as StoreFileLostError
from ._store import StoreUnavailableError as StoreUnavailableError

__all__ = (
    "AmbiguousResumeError",
    "BranchError",
    "BranchKeyTypeError",
    "DefinitionError",
    "DuplicateStepError",
    "DurationError",
    "EngineConfigError",
    "EngineStateError",
    "ErrorInfo",
    "EventLoopError",
    "GraphDefinitionError",
    "GraphDurationError",
    "GraphflowError",
    "InputValidationError",
    "InvalidStateError",
    "LoopLimitError",
    "LeaseLostError",
    "LimitError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "OutsideStepError",
    "PatchIdError",
    "PruneStateError",
    "ReadOnlyStoreError",
    "RecoveryLimitError",
    "RegistrationError",
    "RunConflictError",
    "RunError",
    "RunFailed",
    "RunNotFoundError",
    "ScheduleError",
    "ScheduleNotFoundError",
    "SchemaVersionError",
    "StepFailed",
    "StepNameError",
    "StepNotFoundError",
    "StepTargetError",
    "StepTimeout",
    "StoreError",
    "StoreFileLostError",
    "StoreUnavailableError",
    "SuspendTimeout",
    "UnknownFunctionError",
    "UnknownWorkflowError",
    "WorkflowDefinitionError",
)


if _TYPE_CHECKING:
    from ._info import ErrorInfo as ErrorInfo


def __getattr__(name: str) -> object:
    """``ErrorInfo`` on first use: it needs pydantic, which raising an error does not."""
    if name != "ErrorInfo":
        raise AttributeError(f"module 'graphflow.errors' has no attribute {name!r}")
    from ._info import ErrorInfo

    ErrorInfo.__module__ = __name__
    globals()[name] = ErrorInfo
    return ErrorInfo


for _name in __all__:
    if _name != "ErrorInfo":
        globals()[_name].__module__ = __name__  # tracebacks and pickles name the public module
