"""``python -m graphflow``: the command line."""

from __future__ import annotations

from . import cli

raise SystemExit(cli.main())
