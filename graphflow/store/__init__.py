"""Storage: the ``Store`` protocol, its records, and ``open_store(url)`` for a SQL store.

``base`` holds the contract; ``sql`` implements it once for every SQL database, with what differs
per database in ``dialects``. The SQL modules are imported only when a store is opened.
"""

from __future__ import annotations

import os

from ..errors import EngineConfigError
from .base import AttemptRecord as AttemptRecord
from .base import Fence as Fence
from .base import RunRecord as RunRecord
from .base import StepRecord as StepRecord
from .base import Store as Store

__all__ = (
    "AttemptRecord",
    "Fence",
    "RunRecord",
    "StepRecord",
    "Store",
    "default_store_url",
    "open_store",
)


def default_store_url() -> str:
    """``$GRAPHFLOW_STORE`` or ``sqlite:///graphflow.db``."""
    return os.environ.get("GRAPHFLOW_STORE") or "sqlite:///graphflow.db"


def open_store(url: str | None = None) -> Store:
    """A store for ``url``: ``sqlite:///path``, ``postgresql://...`` or ``memory://``.

    The returned store is not connected yet; the engine awaits ``open()``.

    Raises:
        EngineConfigError: ``url`` is empty (``None`` means the default; ``""`` is a mistake).
        StoreError: the URL's scheme is not supported.
    """
    from .sql import SqlStore

    if url is not None and not url.strip():
        raise EngineConfigError(
            option="store",
            value=url,
            expected="a store URL such as 'sqlite:///graphflow.db' or 'postgresql://host/db'"
            " (or None for $GRAPHFLOW_STORE, else sqlite:///graphflow.db)",
        )

    return SqlStore(default_store_url() if url is None else url)
