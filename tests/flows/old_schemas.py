"""Turn a fresh graphflow database into what an older schema version wrote (migration tests)."""

from __future__ import annotations

from pathlib import Path

LATEST = 6
"""The schema version graphflow writes now (``graphflow.store._sql_schema.SCHEMA_VERSION``)."""


def undone(version: int, url: str) -> tuple[str, ...]:
    """What schema ``version`` added, taken away again (MySQL names an index's table)."""

    def drop_index(index: str, table: str) -> str:
        return (
            f"DROP INDEX {index} ON {table}" if url.startswith("mariadb") else f"DROP INDEX {index}"
        )

    if version == 6:  # the claim order indexes
        return (
            drop_index("gf_runs_ready", "gf_runs"),
            drop_index("gf_jobs_claim", "gf_jobs"),
            "CREATE INDEX gf_jobs_claim ON gf_jobs (state, function)",
        )
    if version == 5:  # schedules and flow control
        return (
            drop_index("gf_runs_limit", "gf_runs"),
            drop_index("gf_runs_dedup", "gf_runs"),
            *(f"DROP TABLE {name}" for name in ("gf_schedules", "gf_slots", "gf_rate_starts")),
            *(
                f"ALTER TABLE gf_runs DROP COLUMN {name}"
                for name in ("priority", "concurrency_key", "dedup_key", "live_steps")
            ),
        )
    if version == 4:  # messages, events and declared graphs
        return tuple(f"DROP TABLE {name}" for name in ("gf_messages", "gf_events", "gf_graphs"))
    if version == 3:  # engine.fork and engine.prune
        return (
            "ALTER TABLE gf_runs DROP COLUMN forked_from",
            drop_index("gf_runs_finished", "gf_runs"),
            drop_index("gf_jobs_run", "gf_jobs"),
        )
    if version == 2:  # OpenTelemetry
        return ("ALTER TABLE gf_runs DROP COLUMN trace_context",)
    return ()


def version_key(url: str) -> str:
    """The ``gf_meta.key`` column, quoted where the name is reserved (MySQL)."""
    return "`key`" if url.startswith("mariadb") else "key"


def make_version(version: int, url: str, path: Path | None) -> None:
    """Rewind the fresh database of ``url`` (the SQLite file ``path``) to schema ``version``."""
    statements = [s for v in range(LATEST, version, -1) for s in undone(v, url)]
    statements.append(
        f"UPDATE gf_meta SET value = '{version}' WHERE {version_key(url)} = 'schema_version'"
    )
    run_statements(url, path, statements)


def run_statements(url: str, path: Path | None, statements: list[str]) -> None:
    """Execute ``statements`` on the database of ``url`` (the SQLite file ``path``), outside graphflow."""
    if path is not None:
        import sqlite3

        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
    elif url.startswith("mariadb"):
        import pymysql
        from sqlalchemy.engine import make_url

        server = make_url(url)
        mysql = pymysql.connect(
            host=server.host, port=server.port or 3306, user=server.username or "root",
            password=server.password or "", database=server.database, autocommit=True,
        )  # fmt: skip
        try:
            cursor = mysql.cursor()
            for statement in statements:
                cursor.execute(statement)
        finally:
            mysql.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
