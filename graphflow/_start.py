"""Starting runs: the one path that validates input and stores a new run record.

Used by the engine's ``start`` (client or worker) and by a worker starting a child run, so the
idempotency and conflict rules of ``start`` hold for all of them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._types import JSON
from .errors import LimitError, RunConflictError
from .functions import Registry, WorkflowDefinition
from .graph.run_graph import dump_structure
from .limits import stored_key
from .runtime import logs, tracing
from .runtime.clock import Clock
from .store.base import RunLimit, RunRecord, Store

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ("NewRun", "RunStarter")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRun:
    """A run stored by ``RunStarter.create`` (``created``) or found under the same id."""

    record: RunRecord
    created: bool
    validated: Any
    """The input validated into the workflow's input type (what the workflow receives)."""


class RunStarter:
    """Validates a workflow's input and stores its run, owned by a worker or pending."""

    def __init__(self, *, store: Store, registry: Registry, clock: Clock, lease: float) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.lease = lease
        self.tracer: Tracer | None = None
        """Set as the engine opens when tracing is on: new runs store the caller's span."""
        self._last_created = 0.0
        self._saved_graphs: set[str] = set()

    def definition(self, workflow: str | WorkflowDefinition) -> WorkflowDefinition:
        """The definition for a name or object (an object is registered, so it can be replayed)."""
        if isinstance(workflow, WorkflowDefinition):
            if self.registry.find_workflow(workflow.name) is not workflow:
                self.registry.add_workflow(workflow)
            return workflow
        return self.registry.get_workflow(workflow)

    async def _save_graph(self, definition: WorkflowDefinition, now: float) -> None:
        """Keep a graph's declared structure in the store, once per graph and process.

        So a client without the workflow's code (``graphflow dot --run``, a web front end) draws
        its runs as the declared graph is drawn: branch labels, ``for_each`` nodes folded.
        """
        graph_hash, declared = definition.graph_hash, definition.declared_graph
        if graph_hash is None or declared is None or graph_hash in self._saved_graphs:
            return
        await self.store.save_graph(graph_hash, dump_structure(declared), now)
        self._saved_graphs.add(graph_hash)

    async def create(
        self,
        workflow: str | WorkflowDefinition,
        data: JSON,
        *,
        run_id: str | None,
        parent: tuple[str, str] | None = None,
        owner_id: str | None = None,
        priority: int = 0,
        dedup_key: str | None = None,
    ) -> NewRun:
        """Store a new run (``running`` under ``owner_id``, else ``pending``), or find it.

        Under the workflow's concurrency limit the store holds it only while a slot is free, else
        it waits ``queued``. With ``dedup_key``, the workflow's unfinished run that has the key is
        found instead (whatever its input).

        Raises:
            UnknownWorkflowError: no workflow has that name here.
            InputValidationError: ``data`` does not match the workflow's input type, or lacks its
                concurrency key (nothing is written).
            RunConflictError: ``run_id`` exists with another workflow or input.
        """
        definition = self.definition(workflow)
        validated = definition.validate_input(data, run_id=run_id)
        input_json = definition.dump_input(data, run_id=run_id)
        _check_options(priority, dedup_key)
        limit = definition.concurrency
        key = None
        if limit is not None:
            key = limit.key_of(
                json.loads(input_json), what="workflow input", workflow=definition.name
            )
        # Strictly increasing per engine, so runs started at one (virtual) instant still list
        # newest first.
        now = max(self.clock.time(), self._last_created + 1e-6)
        self._last_created = now
        owned = owner_id is not None
        record = RunRecord(
            run_id=run_id or str(uuid.uuid4()),
            workflow=definition.name,
            state="running" if owned else "pending",
            input=input_json,
            parent_run_id=parent[0] if parent else None,
            parent_step=parent[1] if parent else None,
            graph_hash=definition.graph_hash,
            created_at=now,
            started_at=now if owned else None,
            updated_at=now,
            owner_id=owner_id,
            lease_epoch=1 if owned else 0,
            lease_expires_at=(await self.store.now()) + self.lease if owned else None,
            trace_context=tracing.capture(self.tracer),
            priority=priority,
            concurrency_key=key,
            dedup_key=None if dedup_key is None else stored_key(dedup_key),
        )
        await self._save_graph(definition, now)
        stored, created = await self.store.create_run(
            record, None if limit is None else RunLimit(limit=limit.limit, owned=owned)
        )
        if created:
            logs.run_state(stored.run_id, stored.workflow, stored.state, why="started")
        elif stored.run_id == record.run_id:
            _check_same(stored, definition.name, input_json)
        return NewRun(record=stored, created=created, validated=validated)


def _check_options(priority: object, dedup_key: object) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise LimitError(
            where="engine.start", option="priority", value=priority,
            fix="give a whole number (higher first among queued runs; default 0)",
        )  # fmt: skip
    if dedup_key is not None and (not isinstance(dedup_key, str) or not dedup_key):
        raise LimitError(
            where="engine.start", option="dedup_key", value=dedup_key,
            fix="give a non-empty string, or None for no deduplication",
        )  # fmt: skip


def _check_same(stored: RunRecord, workflow: str, input_json: str) -> None:
    if stored.workflow != workflow:
        raise RunConflictError(
            run_id=stored.run_id, workflow=workflow, reason=f"workflow {stored.workflow!r}"
        )
    if json.loads(stored.input) != json.loads(input_json):
        raise RunConflictError(run_id=stored.run_id, workflow=workflow, reason="a different input")
