"""The graph scheduling kernel: a pure, graphlib-style state machine over a ``Topology``.

The caller decides how ready nodes run::

    frontier = Frontier(plan, run_id=run_id)
    while frontier.is_active():
        for node_id in frontier.ready():
            start(node_id)                    # run it; later frontier.done(node_id, key)
        record(frontier.skipped())            # nodes resolved as skipped, in resolution order
        ...                                   # await one completion, then done()/failed()

A node runs when every parent is resolved (completed or skipped) and at least one incoming edge
was taken; otherwise it is skipped, and skipping propagates. After a failure only ``on_error``
handlers are released: the run is failing. Every operation costs O(nodes + edges) over a whole
run: in-degree counters, no scans.

A bounded loop's back edge, taken, resets its body to pending for the next pass (``pass_of``); a
pass beyond the loop's limit raises ``LoopLimitError`` from ``done``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final, Literal

from ..errors import BranchError, GraphflowError, LoopLimitError
from ..graph.loops import pass_name
from ..graph.plan import LoopIndex, Plan, Topology

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

__all__ = ("Frontier", "NodeState", "RestoreError")

NodeState = Literal["pending", "ready", "running", "completed", "skipped", "failed"]

_PENDING: Final = 0
_READY: Final = 1
_RUNNING: Final = 2
_COMPLETED: Final = 3
_SKIPPED: Final = 4
_FAILED: Final = 5
_STATES: Final[tuple[NodeState, ...]] = (
    "pending",
    "ready",
    "running",
    "completed",
    "skipped",
    "failed",
)


class RestoreError(GraphflowError, ValueError):
    """A run's recorded history does not fit its graph (the runtime reports non-determinism)."""

    node: str
    reason: str

    def __init__(self, *, node: str, reason: str) -> None:
        super().__init__(
            f"recorded history does not fit the graph at node {node!r}: {reason}. Replay the run"
            " under the graph it started with",
            node=node,
            reason=reason,
        )


class Frontier:
    """Which nodes of one graph run may start now, and which are skipped.

    Not thread-safe: drive it from one task.
    """

    __slots__ = (
        "_branch",
        "_failing",
        "_handed_out",
        "_pass",
        "_queue",
        "_run_id",
        "_skipped",
        "_state",
        "_taken",
        "_topology",
        "_waiting",
    )

    def __init__(self, graph: Plan | Topology, *, run_id: str | None = None) -> None:
        """Start with every entry node ready.

        Args:
            graph: a compiled plan, or a bare topology.
            run_id: named in ``BranchError``s.
        """
        topology = graph.topology if isinstance(graph, Plan) else graph
        size = len(topology.node_ids)
        self._topology = topology
        self._run_id = run_id
        self._waiting = list(topology.in_degree)
        self._taken = [False] * size
        self._state = [_PENDING] * size
        self._queue: list[int] = []
        self._skipped: list[int] = []
        # Loops only: each node's pass (1 until its loop goes back) and selected branch.
        self._pass = [1] * size if topology.loops else []
        self._branch: list[str | None] = [None] * size if topology.loops else []
        self._handed_out = 0
        self._failing = False
        for node in range(size):
            if not topology.in_degree[node] and not topology.is_handler[node]:
                self._make_ready(node)

    def ready(self) -> list[str]:
        """Nodes that became ready since the last call, in plan order; they are now running."""
        batch = sorted(self._queue)
        self._queue.clear()
        for node in batch:
            self._state[node] = _RUNNING
        self._handed_out += len(batch)
        return [self._topology.node_ids[node] for node in batch]

    def skipped(self) -> list[str]:
        """Nodes skipped since the last call, in the order they were resolved."""
        names = [self._topology.node_ids[node] for node in self._skipped]
        self._skipped.clear()
        return names

    def pass_of(self, node_id: str) -> int:
        """The loop pass ``node_id`` is in: 1, then 2, 3... each time its loop goes back."""
        return self._pass[self._index(node_id)] if self._pass else 1

    def step_name(self, node_id: str) -> str:
        """The step name of ``node_id`` in its current pass: ``node``, ``node#2``..."""
        return pass_name(node_id, self.pass_of(node_id)) if self._pass else node_id

    def is_active(self) -> bool:
        """Whether a node is ready to hand out or running (not yet ``done``/``failed``)."""
        return bool(self._queue) or self._handed_out > 0

    @property
    def failing(self) -> bool:
        """Whether a node has failed (only ``on_error`` handlers are released from then on)."""
        return self._failing

    def state(self, node_id: str) -> NodeState:
        """The state of ``node_id`` in this run (``pending`` if unreached)."""
        return _STATES[self._state[self._index(node_id)]]

    def done(self, node_id: str, branch: str | None = None) -> None:
        """Mark a running node completed, having selected ``branch`` (ignored if not keyed).

        Raises:
            BranchError: the node has keyed ``next`` and ``branch`` is ``None`` or unknown.
            ValueError: the node is not running.
        """
        node = self._running(node_id)
        self._check_branch(node, branch)
        self._handed_out -= 1
        if self._pass:  # the graph has loops
            self._complete(node, branch)
        else:
            self._resolve(node, completed=True, branch=branch)

    def _complete(self, node: int, branch: str | None) -> None:
        loop = self._topology.loops[node] if self._topology.loops else None
        if loop is not None and branch in loop.keys:
            self._state[node] = _COMPLETED
            self._loop_back(node, loop)
            return
        if self._branch:
            self._branch[node] = branch
        self._resolve(node, completed=True, branch=branch)

    def _loop_back(self, node: int, loop: LoopIndex) -> None:
        """Start the next pass of ``loop``: its body pending again, its target ready.

        Every parent of the body outside it was resolved before the loop's node ran.
        """
        current = self._pass[node]
        if current >= loop.max_iterations:
            raise LoopLimitError(
                workflow=self._topology.name,
                run_id=self._run_id,
                node=self._topology.node_ids[node],
                target=self._topology.node_ids[loop.target],
                max_iterations=loop.max_iterations,
            )
        for body_node, inner, outer in zip(
            loop.body, loop.inner_in_degree, loop.outer_parents, strict=True
        ):
            self._state[body_node] = _PENDING
            self._pass[body_node] = current + 1
            self._branch[body_node] = None
            self._waiting[body_node] = inner
            self._taken[body_node] = any(self._took(parent, keys) for parent, keys in outer)
        self._taken[loop.target] = True
        self._make_ready(loop.target)

    def _took(self, parent: int, keys: frozenset[str] | None) -> bool:
        return self._state[parent] == _COMPLETED and (keys is None or self._branch[parent] in keys)

    def failed(self, node_id: str) -> list[str]:
        """Mark a running node failed after its last attempt; return the handlers it triggers.

        The triggered ``on_error`` handlers (not yet triggered by another failure) are also
        handed out by the next ``ready()``. Nodes that are not handlers are released no more.

        Raises:
            ValueError: the node is not running.
        """
        node = self._running(node_id)
        self._handed_out -= 1
        return [self._topology.node_ids[h] for h in self._fail(node)]

    def restore(
        self,
        completed: Mapping[str, str | None],
        skipped: Collection[str] = (),
        failed: Collection[str] = (),
    ) -> None:
        """Replay recorded outcomes (node -> selected branch key) into a fresh frontier.

        Afterwards ``ready()`` gives the nodes to run (including any that were in flight at a
        crash) and ``skipped()`` the skips derived but not in ``skipped``.

        Raises:
            RestoreError: a recorded node could not have run, or a recorded skip is not derived.
            ValueError: the frontier was already used.
        """
        if self._handed_out or any(state >= _RUNNING for state in self._state):
            raise ValueError("restore() needs a fresh Frontier")
        self._check_known(completed, skipped, failed)
        for node, node_id in enumerate(self._topology.node_ids):
            if node_id in completed or node_id in failed:
                self._replay(node, node_id, completed, failed)
        self._queue = [node for node in self._queue if self._state[node] == _READY]
        recorded = {self._topology.index[node_id] for node_id in skipped}
        for node in recorded:
            if self._state[node] != _SKIPPED:
                raise RestoreError(node=self._topology.node_ids[node], reason="it is not skipped")
        self._skipped = [node for node in self._skipped if node not in recorded]

    def replay(self, events: Iterable[tuple[str, int, str, str | None]]) -> None:
        """Replay recorded outcomes in the order they were recorded, loop passes included.

        ``events`` are ``(node_id, pass, state, branch)`` with state ``completed``, ``failed``
        or ``skipped``. Afterwards, as after ``restore``, ``ready()`` gives the nodes to run.

        Raises:
            RestoreError: an outcome could not have been recorded at that point.
            LoopLimitError: the recorded outcomes end past a loop's limit.
            ValueError: the frontier was already used.
        """
        if self._handed_out or any(state >= _RUNNING for state in self._state):
            raise ValueError("replay() needs a fresh Frontier")
        for node_id, pass_number, state, branch in events:
            node = self._index(node_id)
            if self.pass_of(node_id) != pass_number:
                raise RestoreError(node=node_id, reason=f"it has no pass {pass_number} yet")
            if state == "skipped":
                if node not in self._skipped:
                    raise RestoreError(node=node_id, reason="it is not skipped")
                self._skipped.remove(node)
                continue
            if self._state[node] != _READY:
                raise RestoreError(node=node_id, reason="it was recorded but could not run yet")
            if state == "failed":
                self._fail(node)
                continue
            try:
                self._check_branch(node, branch)
            except BranchError as exc:
                raise RestoreError(node=node_id, reason=exc.message) from exc
            self._complete(node, branch)
        # A node made ready in several passes is queued once.
        self._queue = [node for node in dict.fromkeys(self._queue) if self._state[node] == _READY]

    def _replay(
        self, node: int, node_id: str, completed: Mapping[str, str | None], failed: Collection[str]
    ) -> None:
        if self._state[node] != _READY:
            raise RestoreError(node=node_id, reason="it was recorded but could not have run yet")
        if node_id in failed:
            self._fail(node)
            return
        try:
            self._check_branch(node, completed[node_id])
        except BranchError as exc:
            raise RestoreError(node=node_id, reason=exc.message) from exc
        self._resolve(node, completed=True, branch=completed[node_id])

    def _check_known(self, *groups: Collection[str]) -> None:
        for group in groups:
            for node_id in group:
                if node_id not in self._topology.index:
                    raise RestoreError(node=node_id, reason="the graph has no such node")

    def _index(self, node_id: str) -> int:
        try:
            return self._topology.index[node_id]
        except KeyError:
            raise ValueError(f"unknown node {node_id!r}") from None

    def _running(self, node_id: str) -> int:
        node = self._index(node_id)
        if self._state[node] != _RUNNING:
            state = _STATES[self._state[node]]
            raise ValueError(f"node {node_id!r} is {state}, not running (from ready())")
        return node

    def _check_branch(self, node: int, branch: str | None) -> None:
        keys = self._topology.branch_keys[node]
        if keys is not None and (branch is None or branch not in keys):
            raise BranchError(
                workflow=self._topology.name,
                run_id=self._run_id,
                node=self._topology.node_ids[node],
                key=branch,
                keys=sorted(keys),
            )

    def _make_ready(self, node: int) -> None:
        self._state[node] = _READY
        if not self._failing or self._topology.is_handler[node]:
            self._queue.append(node)

    def _fail(self, node: int) -> list[int]:
        self._state[node] = _FAILED
        if not self._failing:
            self._failing = True
            self._queue = [n for n in self._queue if self._topology.is_handler[n]]
        triggered = [h for h in self._topology.handlers[node] if self._state[h] == _PENDING]
        for handler in triggered:
            self._make_ready(handler)
        return triggered

    def _resolve(self, node: int, *, completed: bool, branch: str | None) -> None:
        """Resolve ``node``, then every descendant this decides, breadth first."""
        self._state[node] = _COMPLETED if completed else _SKIPPED
        pending = deque([(node, completed, branch)])
        children, waiting, taken = self._topology.children, self._waiting, self._taken
        while pending:
            parent, ran, key = pending.popleft()
            for child, keys in children[parent]:
                if ran and (keys is None or key in keys):
                    taken[child] = True
                waiting[child] -= 1
                if waiting[child]:
                    continue
                if taken[child]:
                    self._make_ready(child)
                else:
                    self._state[child] = _SKIPPED
                    self._skipped.append(child)
                    pending.append((child, False, None))
