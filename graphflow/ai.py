"""Durable pydantic-ai agents: every model request and tool call of a run is a graphflow step.

```python
from pydantic_ai import Agent
from graphflow.ai import GraphflowDurability

agent = Agent("openai:gpt-5", name="weather", capabilities=[GraphflowDurability()])

@gf.workflow
async def forecast(wf: gf.Workflow, data: dict) -> str:
    result = await agent.run(data["question"])     # steps weather__model.request, ...#2, ...
    return result.output
```

Built on pydantic-ai's public engine surface (``pydantic_ai.durable_exec``): the capability
subclasses ``BaseDurabilityCapability`` and hands it a ``CallableOperationBackend`` whose
``execute`` runs each operation as an inline ``wf.do`` step of the current run. pydantic-ai owns
the model, toolset and event machinery; graphflow owns only where the results are recorded. After
a crash the recorded model responses and tool results are replayed, never re-billed or re-run; the
one in flight runs again (at least once, like every step).

Step names are pydantic-ai's journal names (``JournalOperationNamer``): ``{agent}__model.request``,
``{agent}__function_toolset__{toolset}.call_tool:{tool}``, ... Repeated names get ``#2``, ``#3`` in
issue order, and a run inside a step (a graph node's function, an inline step) prefixes them with
that step's name and ``/``. Tool calls run one after another inside a run, so the numbering never
depends on timing.

Tools declared with ``requires_approval=True`` suspend the run (``wf.suspend``, the tool call as the
payload) until ``engine.resume(run_id, {"approved": true})`` or ``{"approved": false, "message":
"..."}`` (the message goes to the model).

Outside a run (and in a function a worker of another process executes) the agent runs as usual.
Needs ``pip install 'graphflow[ai]'``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict, cast

from pydantic import BaseModel

from .durations import Duration
from .runtime.workflow import Workflow, find_current_workflow, numbered, scoped

try:
    from pydantic_ai.agent import EventStreamHandler
    from pydantic_ai.durable_exec import (
        JSON_CODEC,
        BaseDurabilityCapability,
        DurabilityEngineSpec,
        DurableOperationBackend,
        DurableOperationId,
        JournalCallableOperationBackend,
        RoleBasedOperationConfig,
        ToolsetKind,
        conversation_id_from_run_id,
    )
    from pydantic_ai.models import Model
    from pydantic_ai.tools import (
        AgentDepsT,
        DeferredToolRequests,
        DeferredToolResults,
        RunContext,
        ToolDenied,
    )
    from pydantic_ai.toolsets import ToolsetTool
except ImportError as exc:  # pragma: no cover - the extra is part of `dev`
    raise ImportError(
        f"graphflow.ai needs pydantic-ai ({exc}): install it with pip install 'graphflow[ai]'"
    ) from exc

__all__ = ("GraphflowDurability", "StepSettings", "ToolApproval")


class StepSettings(TypedDict, total=False):
    """How the steps of one kind of operation retry and time out (``wf.do``'s options)."""

    retries: int
    retry_delay: Duration
    backoff: float
    timeout: Duration


class ToolApproval(BaseModel):
    """The resume data of a tool call waiting for approval.

    ``{"approved": true}`` runs the tool; ``{"approved": false, "message": "..."}`` does not, and
    tells the model ``message`` instead.
    """

    approved: bool
    message: str | None = None


_IN_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "graphflow_ai_step", default=None
)
"""The run whose model request or tool call executes here as a step: what that calls for the same
run runs directly (a child run it starts is another run, with durable agents of its own)."""


def _current_workflow() -> Workflow | None:
    """The run an agent operation here belongs to, or ``None`` to run as a plain agent."""
    handle = find_current_workflow()
    return None if handle is None or _IN_STEP.get() == handle.run_id else handle


class _StepBackend(JournalCallableOperationBackend[StepSettings]):
    """Runs each pydantic-ai operation as an inline step of the current graphflow run."""

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: StepSettings,
    ) -> object:
        handle = _current_workflow()
        if handle is None:  # the capability checked, but a unit can outlive its run's context
            return await body()

        async def step() -> object:
            token = _IN_STEP.set(handle.run_id)
            try:
                return await body()
            finally:
                _IN_STEP.reset(token)

        return await handle.do(numbered(handle, name), step, **config)


class GraphflowDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent durable inside graphflow runs: model requests and tool calls become steps.

    ``Agent(model, name="weather", capabilities=[GraphflowDurability()])``: the agent's ``name`` (or
    ``name=`` here) prefixes its step names, so it must be unique among the agents of a workflow and
    stay the same across deploys (runs in flight replay by name).
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="graphflow",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="workflow",
        codec=JSON_CODEC,  # steps store JSON
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",  # steps run in the run's own process
            "dynamic": "enter-never",
        },
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        # Step names are numbered in issue order: parallel tool calls would number by timing.
        sequential_tools_in_durable_context=True,
        tool_config_key="graphflow",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        models: Mapping[str, Model] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        model_step: StepSettings | None = None,
        tool_step: StepSettings | None = None,
    ) -> None:
        """Create the capability; the agent's model, name and toolsets are found when it is bound.

        Args:
            name: The agent's name in step names (default: the agent's ``name``).
            models: Further models by id, for ``agent.run(model=...)`` inside a run.
            event_stream_handler: Receives the run's stream events (model events live, inside
                the model request step).
            model_step: Retries and timeout of model request steps (default: no retry).
            tool_step: Retries and timeout of tool call steps; a tool's
                ``metadata={"graphflow": {...}}`` overrides them, ``{"graphflow": False}`` runs
                that tool outside any step.
        """
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self._model_step = StepSettings(**(model_step or {}))
        self._tool_step = StepSettings(**(tool_step or {}))

    # --- where runs are ------------------------------------------------------------------------

    @property
    def in_durable_context(self) -> bool:
        """Whether this code runs in a graphflow run (and not inside one of its agent steps)."""
        return _current_workflow() is not None

    def get_default_run_id(self) -> str | None:
        """The agent run's id, stable on replay: the graphflow run id and a numbered agent run."""
        handle = _current_workflow()
        if handle is None:
            return None
        return f"{handle.run_id}:{scoped(handle, numbered(handle, f'{self.name}__run'))}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        """A conversation id derived from the (replay-stable) run id."""
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        """When this point of the workflow was first reached (``wf.now()``): the same on replay."""
        handle = _current_workflow()
        return None if handle is None else handle.now()

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        """The backend that runs every operation as a step, named by pydantic-ai's journal namer."""
        base = self._build_resolve_tool_config(self._tool_step)

        def resolve_tool(
            operation_id: DurableOperationId, tool: object | None, tool_name: str
        ) -> StepSettings | Literal[False]:
            config = base(cast("ToolsetTool[Any] | None", tool), tool_name)
            return cast("StepSettings | Literal[False]", config)

        return _StepBackend(
            agent_name=self.name,
            default_model_id=self.default_model_id,
            config=RoleBasedOperationConfig(
                model=self._model_step,
                event=StepSettings(),
                capability=StepSettings(),
                tool=self._tool_step,
                resolve_tool=resolve_tool,
            ),
        )

    def _toolset_base_config(self, kind: ToolsetKind) -> Any:
        return self._tool_step

    # --- approvals -----------------------------------------------------------------------------

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[AgentDepsT], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        """Suspend the run for each tool call that needs approval; resume data decides it.

        The suspend is named ``{agent}__approve:{tool}`` (numbered like steps) and carries the call
        (``tool_name``, ``args``, ``tool_call_id``) as its payload; resume it with a
        ``ToolApproval``. Calls that wait for an external result are left to other handlers.
        """
        handle = _current_workflow()
        if handle is None or not requests.approvals:
            return None
        decisions: dict[str, bool | ToolDenied] = {}
        for call in requests.approvals:
            reason = numbered(handle, f"{self.name}__approve:{call.tool_name}")
            payload = {
                "tool_name": call.tool_name,
                "args": call.args_as_dict(),
                "tool_call_id": call.tool_call_id,
            }
            decision = await handle.suspend(reason, schema=ToolApproval, payload=payload)
            decisions[call.tool_call_id] = (
                True
                if decision.approved
                else ToolDenied(decision.message or "The tool call was denied.")
            )
        return requests.build_results(approvals=decisions)
