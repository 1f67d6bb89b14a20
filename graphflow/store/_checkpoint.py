"""Checkpointing a SQLite WAL in a thread, so that commits on the event loop rarely do it.

SQLite copies the WAL back into the database file by itself, inside the commit that grows the WAL
past 1,000 pages: for the store, on the event loop, a stall of milliseconds (two syncs) every
~1,500 sequential steps. In ``normal`` durability (a commit writes the WAL without syncing it) the
store's writer lets SQLite do that only past ``BACKSTOP_FRAMES`` (``wal_autocheckpoint``) and
reports each commit here; every ``every`` commits a passive checkpoint runs in a thread of its
own, on a connection of its own: it never waits for the writer nor blocks it, and it syncs as the
store's durability says.

A passive checkpoint copies the frames written before it began. While writes go on during it, it
never copies the last ones, and the WAL is only reused (written from its start again) once every
frame is copied: under steady writes the thread alone would let it grow without end. The backstop
bounds it, whatever the size of the commits or the speed of the thread: past ``BACKSTOP_FRAMES``
the writer checkpoints itself, as SQLite always did, but copies only what the thread left (a few
hundred pages), and the WAL starts over.
"""

from __future__ import annotations

import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ("BACKSTOP_FRAMES", "WalCheckpointer")

BACKSTOP_FRAMES = 2_048
"""The writer's own ``wal_autocheckpoint``: the most frames the WAL holds before it starts over
(plus one commit's)."""

_LOG = logging.getLogger("graphflow")


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite file at ``path`` away from the writer's thread."""

    def __init__(self, path: str, *, synchronous: str, every: int = 256) -> None:
        self._uri = f"{Path(path).resolve().as_uri()}?mode=rw"  # never creates a lost file
        self._synchronous = synchronous
        self._every = every
        self._commits = 0
        self._running: Future[None] | None = None
        self._thread = ThreadPoolExecutor(1, "graphflow-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self.checkpoints = 0
        """Checkpoints the thread completed (for tests and benchmarks)."""

    def committed(self) -> None:
        """After a commit of the writer's: start a checkpoint in the thread when one is due."""
        self._commits += 1
        if self._commits < self._every or not (self._running is None or self._running.done()):
            return
        self._commits = 0
        self._running = self._thread.submit(self._checkpoint)

    def close(self) -> None:
        """Wait for a running checkpoint, then close the checkpoint connection."""
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _checkpoint(self) -> None:
        """In the thread: one passive checkpoint."""
        try:
            if self._conn is None:
                # A short busy wait: a checkpoint that cannot start now runs at the next turn,
                # and closing the store waits for this thread.
                self._conn = sqlite3.connect(
                    self._uri, uri=True, isolation_level=None, check_same_thread=False, timeout=0.1
                )
                self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # a full disk, a lost file: the writer reports those
            _LOG.debug("WAL checkpoint in a thread failed: %s", exc)
            return
        self.checkpoints += 1
