"""The databases the SQL store runs on, one ``Dialect`` object each, chosen by URL.

Each backend's module is imported only when a URL asks for it, and no backend imports another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from ...errors import StoreError
from .base import Claim as Claim
from .base import Dialect as Dialect

__all__ = ("Claim", "Dialect", "dialect_for")

_MYSQL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql")


def dialect_for(url: str, *, host_time: Callable[[], float] | None = None) -> Dialect:
    """The dialect for ``url``: SQLite, ``memory://``, PostgreSQL, MySQL or MariaDB.

    ``sqlite:///path``, ``memory://``, ``postgresql://...``, ``mysql://...``, ``mariadb://...``.
    ``host_time`` is the lease clock of a database on this host's clock (SQLite; default
    ``time.time``); servers keep their own.

    Raises:
        StoreError: the scheme is not supported, or one of the URL's options is invalid.
    """
    if not url.strip():
        raise StoreError("the store URL is empty: use sqlite:///path.db, postgresql://... etc.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _MYSQL_SCHEMES:
        from .mysql import MysqlDialect

        return MysqlDialect(url)
    if scheme not in ("sqlite", "memory", "postgres", "postgresql") and not scheme.startswith(
        "postgresql+"
    ):
        raise StoreError(
            f"unsupported store URL {url!r}: use sqlite:///path.db, postgresql://user@host/db,"
            " mysql://user@host/db, mariadb://user@host/db or memory://"
        )
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    durability = options.get("durability", "full")
    if durability not in ("full", "normal"):
        raise StoreError(
            f"invalid durability {durability!r} in store URL {url!r}: use full or normal"
        )
    if scheme in ("sqlite", "memory"):
        from .sqlite import SqliteDialect

        return SqliteDialect(url, durability=durability, host_time=host_time or time.time)
    from .postgres import PostgresDialect

    return PostgresDialect(url)
