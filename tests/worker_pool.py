"""Worker processes for multi-process tests: each runs ``python -m <flows module> worker URL``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ("ROOT", "WorkerPool", "worker_pool")

ROOT = Path(__file__).resolve().parents[1]


class WorkerPool:
    """Worker processes of one flows module on one store, each announcing ``ready`` on stdout.

    ``log`` is where the flows write what they executed (the module reads it from ``log_var``).
    """

    def __init__(self, module: str, url: str, log: Path, log_var: str) -> None:
        self.module = module
        self.url = url
        self.log = log
        self.env: Mapping[str, str] = os.environ | {log_var: str(log), "PYTHONPATH": str(ROOT)}
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self) -> subprocess.Popen[str]:
        """Start a worker and wait until it serves."""
        proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", self.url],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """Terminate the workers still running (resuming any a test stopped with SIGSTOP)."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


def worker_pool(module: str, url: str, log: Path, log_var: str) -> Iterator[WorkerPool]:
    """A fixture body: the pool, stopped when the test ends."""
    pool = WorkerPool(module, url, log, log_var)
    try:
        yield pool
    finally:
        pool.stop()
