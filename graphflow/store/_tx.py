"""The statements of one transaction, on a DBAPI cursor.

SQL reaches the cursor in two forms: portable ``text()`` with ``:name`` binds, compiled to the
dialect's parameter style on first use and cached by the store, and ``Prepared`` statements that a
dialect built with SQLAlchemy Core (upserts, insert-ignore) and compiled once, run as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ("Prepared", "Tx")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement already compiled for the store's dialect."""

    sql: str


class Tx:
    """One transaction's cursor, with text SQL compiled through ``compile_sql`` (a cache)."""

    __slots__ = ("_compile", "cursor")

    def __init__(self, cursor: Any, compile_sql: Callable[[str], str]) -> None:
        self.cursor = cursor
        self._compile = compile_sql

    def execute(self, sql: str | Prepared, params: dict[str, Any] | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        self.cursor.execute(self._text(sql), params or {})
        return int(self.cursor.rowcount)

    def query(self, sql: str | Prepared, params: dict[str, Any] | None = None) -> list[Any]:
        """Run a statement; return its rows."""
        self.cursor.execute(self._text(sql), params or {})
        return list(self.cursor.fetchall())

    def _text(self, sql: str | Prepared) -> str:
        return sql.sql if isinstance(sql, Prepared) else self._compile(sql)
