"""MySQL 8.0+ and MariaDB 10.6+ through PyMySQL: many processes, many machines, one database.

PyMySQL is a blocking DBAPI driver, which is what the store runs on a database server: every
statement runs in a worker thread, on one of the store's two connections, in a transaction that the
group committer shares between concurrent writers. The async drivers (asyncmy, aiomysql) would only
add an event loop hop to a model built on DBAPI cursors, and a commit costs the same through each.

Leases run on the database's clock; claims skip rows other workers are taking (``FOR UPDATE SKIP
LOCKED``). There is no ``LISTEN/NOTIFY``: engines poll (``Engine(poll_interval=...)``).

What MySQL does its own way, and how this module meets it:

- ``UPDATE ... RETURNING`` does not exist: a claim selects and locks its rows, updates them and
  reads them back, in one transaction.
- ``INSERT IGNORE`` also turns errors such as a too long key into a warning and truncates the
  value, so an insert that ignores a duplicate is a plain ``INSERT`` whose duplicate key error on
  that one key counts as "no row" (the error rolls back the statement only).
- A write's ``rowcount`` must count matched rows: connections use the ``FOUND_ROWS`` flag.
- Sessions run at ``READ COMMITTED`` (as PostgreSQL does: no gap locks between claimers), in UTC
  (``UNIX_TIMESTAMP(NOW(6))`` is then exact), in strict mode (a too long value is an error).
- DDL is not transactional: the schema is created under a named lock (``GET_LOCK``), committed
  before the lock is released. Tables are InnoDB with a binary utf8mb4 collation without pad (ids
  and step names compare exactly, as on SQLite and PostgreSQL); ``Text`` payloads are ``LONGTEXT``
  (MySQL's ``TEXT`` holds 64 KiB); keys are ``VARCHAR(255)``, within InnoDB's index length limit.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Index, Insert, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql.base import MySQLTypeCompiler
from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import Dialect as SqlAlchemyDialect
from sqlalchemy.exc import ArgumentError
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import operators, sqltypes

from ...errors import StoreError, StoreUnavailableError
from ...errors._store import hide_password
from .._tx import Tx
from .base import Claim, conditional_row, first_rows

__all__ = ("MysqlDialect",)

_SESSION = (
    "SET time_zone = '+00:00',"
    " sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION',"
    " wait_timeout = 31536000"  # an idle client engine keeps its connections (the default is 8 h)
)
_ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
_SCHEMA_LOCK = "CONCAT('graphflow_schema_', SHA1(DATABASE()))"  # one per database, < 64 chars
_SCHEMA_LOCK_WAIT = 60
_IGNORE = re.compile(r"INSERT /\* on duplicate (\S+) nothing \*/")
_ER_DUP_ENTRY = 1062
_ER_DEADLOCK = 1213
_OPTIONS = {"unix_socket": str, "connect_timeout": int}


_MYSQL_UNAVAILABLE: dict[object, str] = {
    1021: "the server's disk is full",
    1114: "a table on the server is full (its disk, or a size limit)",
    1040: "the server has too many connections",
    1053: "the server is shutting down",
    1205: "a row lock was held by another transaction for longer than the lock wait timeout",
    2002: "the server cannot be reached",
    2003: "the server cannot be reached",
    2006: "the server has gone away (restarted, or closed the connection)",
    2013: "the connection to the server was lost",
    4031: "the server closed the connection",
}
"""Error codes that say the server cannot serve now, in plain words."""


class MysqlDialect:
    """The ``Dialect`` of MySQL 8.0+ and MariaDB 10.6+ (``mysql://`` and ``mariadb://`` URLs)."""

    inline = False
    notifies = False
    shared = True
    host_clock = False
    clock_sql = "UNIX_TIMESTAMP(NOW(6))"
    lock_share = " LOCK IN SHARE MODE"  # MariaDB has no FOR SHARE; MySQL 8 takes both
    lock_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    read_only = False
    lock_wait = 0.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.connect_args = _connect_args(url)
        self.sql_dialect: SqlAlchemyDialect = MySQLDialect_pymysql(paramstyle="pyformat")

    def clock_params(self) -> dict[str, Any]:
        """None: the clock is the database's."""
        return {}

    def connect(self) -> tuple[Any, Any]:
        """A writer (explicit transactions) and an autocommit reader."""
        return self.reconnect(writer=True), self.reconnect(writer=False)

    def reconnect(self, *, writer: bool) -> Any:
        """A new writer (explicit transactions) or autocommit reader."""
        return self._connect(autocommit=not writer)

    def lost(self, conn: Any) -> bool:
        """PyMySQL closes its socket once the server has dropped the connection."""
        return not conn.open

    def _connect(self, *, autocommit: bool) -> Any:
        try:
            import pymysql
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError(
                "MySQL and MariaDB stores need PyMySQL: pip install 'graphflow[mysql]'"
            ) from exc
        from pymysql.constants import CLIENT

        try:
            conn = pymysql.connect(
                **self.connect_args,
                charset="utf8mb4",
                autocommit=autocommit,
                client_flag=CLIENT.FOUND_ROWS,
                cursorclass=_cursor_class(),
            )
            with conn.cursor() as cursor:
                cursor.execute(_SESSION)
                cursor.execute(_ISOLATION)
            conn.commit()
        except pymysql.Error as exc:
            raise StoreError(f"cannot connect to {hide_password(self.url)!r}: {exc}") from exc
        return conn

    def close(self) -> None:
        """Nothing besides the connections."""

    def begin(self, conn: Any, cursor: Any) -> None:
        """Nothing: without autocommit, the first statement opens a transaction."""

    def commit(self, conn: Any, cursor: Any) -> None:
        """Commit the connection's transaction."""
        conn.commit()

    def rollback(self, conn: Any, cursor: Any) -> None:
        """Roll back the connection's transaction."""
        conn.rollback()

    def insert_ignore(self, table: Table, key: Sequence[str]) -> Insert:
        """A plain ``INSERT`` whose duplicate ``key`` error counts as no row (not ``IGNORE``)."""
        return mysql.insert(table).prefix_with(
            f"/* on duplicate {_key_name(table, key)} nothing */"
        )

    def upsert(self, table: Table, key: Sequence[str], where: ColumnElement[bool]) -> Insert:
        """``INSERT ... SELECT ... FROM DUAL WHERE ... ON DUPLICATE KEY UPDATE``.

        The ``FOUND_ROWS`` flag makes an update to the same values count one row, as an insert.
        """
        names = [column.name for column in table.columns]
        rows = conditional_row(table, where, typed=False)
        stmt = mysql.insert(table).from_select(names, rows)
        return stmt.on_duplicate_key_update(
            {name: stmt.inserted[name] for name in names if name not in key}
        )

    def claim(self, tx: Tx, claim: Claim, params: dict[str, Any]) -> list[Any]:
        """Lock the candidates (skipping rows others hold), update them, read them back.

        The candidates are the first rows of each of ``claim.parts``, each part locked.
        """
        candidates = first_rows(
            claim.table,
            [claim.key],
            claim.parts,
            claim.order_by,
            "limit",
            lock=self.skip_locked,
        )
        taken = tx.query(candidates, params)
        if not taken:
            return []
        keys = {f"claimed_{i}": row[0] for i, row in enumerate(taken)}
        where = f"{claim.key} IN ({', '.join(f':{name}' for name in keys)})"
        tx.execute(f"UPDATE {claim.table} SET {claim.assign} WHERE {where}", params | keys)
        return tx.query(f"SELECT {', '.join(claim.columns)} FROM {claim.table} WHERE {where}", keys)

    def transient(self, exc: BaseException) -> bool:
        """A deadlock victim: InnoDB rolled the whole transaction back."""
        import pymysql

        return isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] == (_ER_DEADLOCK,)

    def unavailable(self, exc: BaseException) -> StoreUnavailableError | None:
        """A lost or refused connection, a server going away, a full disk, a lock wait timeout."""
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            problem: str | None = "the connection to the server is closed"
        elif isinstance(exc, pymysql.err.OperationalError):
            problem = _MYSQL_UNAVAILABLE.get(exc.args[0] if exc.args else None)
        else:
            problem = None
        return (
            None
            if problem is None
            else StoreUnavailableError(url=hide_password(self.url), problem=problem)
        )

    def busy(self, exc: BaseException) -> bool:
        """Never: statements run in threads, where waiting for a lock blocks no event loop."""
        return False

    def verify_open(self) -> None:
        """Nothing to check: a server's database cannot be swapped under a connection."""

    def lock_key(self, tx: Tx, key: str) -> None:
        """A row lock (``FOR UPDATE``) on the key's own ``gf_meta`` row, held to the commit.

        The row is created on first use. ``GET_LOCK`` would outlive the transaction: it belongs
        to the session.
        """
        name = {"k": f"lock:{hashlib.sha1(key.encode()).hexdigest()}"}
        if not tx.query("SELECT 1 FROM gf_meta WHERE `key` = :k FOR UPDATE", name):
            # A fixed-length key: IGNORE can only skip the duplicate of a concurrent first use.
            tx.execute("INSERT IGNORE INTO gf_meta (`key`, value) VALUES (:k, '')", name)
            tx.query("SELECT 1 FROM gf_meta WHERE `key` = :k FOR UPDATE", name)

    def notify(self, tx: Tx, payload: str) -> None:
        """Nothing: engines on MySQL poll."""

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """Nothing to listen to: return at once."""

    def schema_lock(self, tx: Tx) -> AbstractContextManager[None]:
        """A named lock (``GET_LOCK``) per database; commits what it guarded before releasing."""
        return _named_lock(tx, self.url)

    def has_table(self, tx: Tx, name: str) -> bool:
        """Look in ``information_schema`` for a table of the connection's database."""
        return bool(
            tx.query(
                "SELECT 1 FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = :name",
                {"name": name},
            )
        )

    def create_tables(self, tx: Tx, metadata: MetaData) -> None:
        """``CREATE TABLE IF NOT EXISTS``, indexes inline (MySQL has no ``CREATE INDEX IF``)."""
        (version,) = tx.query("SELECT VERSION()")[0]
        # Binary and without pad: 'a' != 'A' and 'a' != 'a ', as in SQLite and PostgreSQL.
        collation = "utf8mb4_nopad_bin" if "mariadb" in str(version).lower() else "utf8mb4_0900_bin"
        for table in metadata.sorted_tables:
            tx.cursor.execute(_create_table(table, collation))


def _connect_args(url: str) -> dict[str, Any]:
    """PyMySQL's ``connect`` arguments for ``mysql://user:password@host:port/db?options``.

    Raises:
        StoreError: the URL names no database, or has an option other than ``unix_socket`` and
            ``connect_timeout``.
    """
    try:
        parts = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid store URL {hide_password(url)!r}: {exc}") from exc
    if not parts.database:
        raise StoreError(
            f"store URL {hide_password(url)!r} names no database: use mysql://user@host/database"
        )
    args: dict[str, Any] = {
        "host": parts.host or "localhost",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "database": parts.database,
    }
    for name, value in parts.query.items():
        convert = _OPTIONS.get(name)
        if convert is None or not isinstance(value, str):
            raise StoreError(
                f"unsupported option {name!r} in store URL {hide_password(url)!r}:"
                f" use {' or '.join(sorted(_OPTIONS))}"
            )
        try:
            args[name] = convert(value)
        except ValueError as exc:
            raise StoreError(
                f"invalid {name} {value!r} in store URL {hide_password(url)!r}"
            ) from exc
    return args


def _key_name(table: Table, key: Sequence[str]) -> str:
    """The name MySQL gives the unique index on ``key`` in its duplicate key errors."""
    if list(key) == [column.name for column in table.primary_key.columns]:
        return "PRIMARY"
    uniques: list[Index | UniqueConstraint] = [index for index in table.indexes if index.unique]
    uniques += [c for c in table.constraints if isinstance(c, UniqueConstraint)]
    for unique in uniques:
        if [column.name for column in unique.columns] == list(key) and unique.name:
            return str(unique.name)
    raise ValueError(f"no unique index on {list(key)} in table {table.name!r}")


@functools.cache
def _cursor_class() -> type[Any]:
    """PyMySQL's cursor, where an ``insert_ignore`` statement's duplicate key counts no row."""
    import pymysql.cursors

    class Cursor(pymysql.cursors.Cursor):
        def execute(self, query: Any, args: Any = None) -> int:
            ignore = _IGNORE.match(query) if isinstance(query, str) else None
            if ignore is None:
                return super().execute(query, args)
            try:
                return super().execute(query, args)
            except pymysql.IntegrityError as exc:
                code, message = exc.args[0], str(exc.args[-1])
                # MariaDB says "for key 'PRIMARY'", MySQL 8 "for key 'gf_runs.PRIMARY'".
                if code != _ER_DUP_ENTRY or not re.search(
                    rf"for key '([^']*\.)?{re.escape(ignore.group(1))}'$", message
                ):
                    raise
                self.rowcount = 0
                return 0

    return Cursor


@contextmanager
def _named_lock(tx: Tx, url: str) -> Iterator[None]:
    (got,) = tx.query(f"SELECT GET_LOCK({_SCHEMA_LOCK}, {_SCHEMA_LOCK_WAIT})")[0]
    if got != 1:
        raise StoreError(
            f"store {hide_password(url)!r}: another process held the schema lock for"
            f" {_SCHEMA_LOCK_WAIT} s; is a schema creation stuck? Retry, or check the server"
        )
    try:
        yield
        tx.cursor.connection.commit()  # DDL commits by itself; the rows written with it too
    finally:
        tx.query(f"SELECT RELEASE_LOCK({_SCHEMA_LOCK})")


class _DdlTypes(MySQLTypeCompiler):
    """MySQL's type names, with an unbounded ``Text`` as ``LONGTEXT`` (``TEXT`` is 64 KiB)."""

    def visit_text(self, type_: sqltypes.Text, **kw: Any) -> str:
        if type_.length is None:
            return "LONGTEXT"
        return super().visit_text(type_, **kw)


class _DdlDialect(MySQLDialect_pymysql):
    """Compiles the schema's DDL (never connects)."""

    type_compiler_cls = _DdlTypes


_DDL = _DdlDialect()


def _index_key(expression: Any) -> str:
    """One key of an index, quoted, with its order: ``priority DESC`` as the migration makes it."""
    column = getattr(expression, "element", expression)  # ``desc()`` wraps its column
    descending = getattr(expression, "modifier", None) is operators.desc_op
    return _DDL.identifier_preparer.quote(column.name) + (" DESC" if descending else "")


def _create_table(table: Table, collation: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the table's indexes inline and its storage options."""
    ddl = str(CreateTable(table, if_not_exists=True).compile(dialect=_DDL)).rstrip()
    quote = _DDL.identifier_preparer.quote
    indexes = [
        f"{'UNIQUE ' if index.unique else ''}INDEX {quote(str(index.name))}"
        f" ({', '.join(_index_key(expression) for expression in index.expressions)})"
        for index in sorted(table.indexes, key=lambda index: str(index.name))
    ]
    body = ddl.removesuffix(")").rstrip() + "".join(f",\n\t{index}" for index in indexes)
    return f"{body}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"
