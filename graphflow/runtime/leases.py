"""A worker's leases as its runs rely on them: renewals, waiting for one, orphans, dead owners.

The worker renews the leases of every run it owns in one write (its lease loop). An execution
knows until when its lease surely holds (``RunExecution.leased``); past that, it asks for a
renewal and waits for it before it starts a step attempt. A renewal also finds the runs the
store says this worker owns but that it executes nowhere: a claim or start whose commit reached
the database while the worker saw an error. Those are given back, to be claimed and replayed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

import anyio

from ..errors import StoreError
from ..store.base import Fence, Store
from . import logs
from .execution import RunExecution

__all__ = ("Leases",)


class Leases:
    """The renewals of one worker's leases, and the executions waiting on them."""

    def __init__(self, store: Store, owner_id: str) -> None:
        self._store = store
        self._owner_id = owner_id
        self._wanted = anyio.Event()
        self._renewed = anyio.Event()

    async def due(self, interval: float) -> None:
        """Return once a renewal is due: ``interval`` seconds passed, or an execution asked."""
        with anyio.move_on_after(interval):
            await self._wanted.wait()
        self._wanted = anyio.Event()

    async def renewal(self) -> None:
        """Wait for the next renewal (asking for one now)."""
        renewed = self._renewed
        self._wanted.set()
        await renewed.wait()

    def renewed(
        self, executions: Mapping[str, RunExecution], owned: Mapping[str, bool], until: float
    ) -> list[str]:
        """A renewal succeeded: the runs in ``owned`` hold until ``until``; wake the waiters.

        Returns the runs of ``executions`` that the renewal did not find owned here (lost to
        another engine).
        """
        lost = []
        for run_id, execution in executions.items():
            if run_id in owned:
                execution.lease_renewed(until)
            else:
                lost.append(run_id)
        renewed, self._renewed = self._renewed, anyio.Event()
        renewed.set()
        return lost

    async def dead_owners(self, host: str) -> list[str]:
        """The other owners registered on ``host`` whose process is gone (their runs are free)."""
        owners = await self._store.owners_on_host(host)
        return [
            o.owner_id
            for o in owners
            if o.owner_id != self._owner_id and o.pid != os.getpid() and not _pid_alive(o.pid)
        ]

    async def release_orphans(self, run_ids: Iterable[str], busy: Callable[[str], bool]) -> None:
        """Give back the runs this worker owns in the store but executes nowhere.

        ``busy(run_id)`` tells a run that is being taken meanwhile (it is no orphan).
        """
        for run_id in sorted(run_ids):
            try:
                run = await self._store.get_run(run_id)
                if run is None or run.owner_id != self._owner_id or busy(run_id):
                    continue
                fence = Fence(run_id=run_id, owner_id=self._owner_id, epoch=run.lease_epoch)
                await self._store.release_run(fence)
            except StoreError:
                return  # the next renewal finds them again
            logs.run_state(run_id, run.workflow, run.state, why="released: executed nowhere")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
