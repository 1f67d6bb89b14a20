"""Checkpointing a SQLite WAL in a thread, so that commits on the event loop rarely do it.

SQLite copies the WAL back into the database file by itself, inside the commit that grows the WAL
past 1,000 pages: for the store, on the event loop, a stall of milliseconds (two syncs) every
~1,500 sequential steps. In ``normal`` durability (a commit writes the WAL without syncing it) the
store's writer turns that off (``wal_autocheckpoint=0``) and reports each commit here; every
``every`` commits a passive checkpoint runs in a thread of its own, on a connection of its own: it
never waits for the writer nor blocks it, and it syncs as the store's durability says.

A passive checkpoint copies the frames written before it began. While writes go on during it, it
never copies the last ones, and the WAL is only reused (written from its start again) once every
frame is copied: under steady writes it would grow without end. So once it holds ``catch_up``
frames, the next due commit checkpoints on the writer itself, as SQLite would have: with nothing
written meanwhile, that completes, and the WAL starts over. It copies only what the thread left,
a few hundred pages, about once per ``catch_up`` frames instead of every 1,000.
"""

from __future__ import annotations

import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ("WalCheckpointer",)

_LOG = logging.getLogger("graphflow")


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite file at ``path`` away from the writer's thread."""

    def __init__(
        self, path: str, *, synchronous: str, every: int = 256, catch_up: int = 2_048
    ) -> None:
        self._uri = f"{Path(path).resolve().as_uri()}?mode=rw"  # never creates a lost file
        self._synchronous = synchronous
        self._every = every
        self._catch_up = catch_up
        self._commits = 0
        self._behind = False
        """The WAL holds ``catch_up`` frames or more: the writer checkpoints at its next commit."""
        self._running: Future[None] | None = None
        self._thread = ThreadPoolExecutor(1, "graphflow-checkpoint")
        self._conn: sqlite3.Connection | None = None

    def committed(self, writer: sqlite3.Connection) -> None:
        """After a commit on ``writer``: start a checkpoint when one is due."""
        self._commits += 1
        if self._commits < self._every or not self._idle():
            return
        self._commits = 0
        if self._behind:
            self._behind = False
            try:
                writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer's next commits show any real trouble
                _LOG.debug("WAL checkpoint on the writer failed: %s", exc)
            return
        self._running = self._thread.submit(self._checkpoint)

    def close(self) -> None:
        """Wait for a running checkpoint, then close the checkpoint connection."""
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _idle(self) -> bool:
        return self._running is None or self._running.done()

    def _checkpoint(self) -> None:
        """In the thread: a passive checkpoint; note whether the WAL grew past ``catch_up``."""
        try:
            if self._conn is None:
                # A short busy wait: a checkpoint that cannot start now runs at the next turn,
                # and closing the store waits for this thread.
                self._conn = sqlite3.connect(
                    self._uri, uri=True, isolation_level=None, check_same_thread=False, timeout=0.1
                )
                self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # a full disk, a lost file: the writer reports those
            _LOG.debug("WAL checkpoint in a thread failed: %s", exc)
            return
        frames = row[1] if row is not None else -1
        self._behind = frames >= self._catch_up
