"""``run_flow`` for the agent workflows of ``tests.flows.ai_flows`` (same usage)."""

from __future__ import annotations

import sys

import anyio

from tests.flows import ai_flows  # noqa: F401  (registers the workflows)
from tests.flows.run_flow import main

if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
