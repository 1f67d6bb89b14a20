"""Shared fixtures: the anyio backend, fresh registries and store URLs for every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import graphflow as gf

pytest_plugins = ["graphflow.testing"]  # the fixtures users get: virtual_clock, memory_engine

PG_URL = os.environ.get("GRAPHFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("GRAPHFLOW_TEST_MYSQL", "mariadb://root@127.0.0.1:3306/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simulation", "the deterministic simulation (tests/test_simulation.py)")
    group.addoption(
        "--sim-seeds", type=int, default=None, help="how many seeds to simulate (default: CI's)"
    )
    group.addoption("--sim-seed", type=int, default=0, help="the first seed (default 0)")
    group.addoption(
        "--sim-kinds",
        default=None,
        help="fault kinds to inject, comma-separated, or 'all' (default: CI's set)",
    )
    group.addoption(
        "--sim-jobs", type=int, default=None, help="processes to simulate in (default: the CPUs)"
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> gf.Registry:
    """A private registry, so tests can reuse names."""
    return gf.Registry()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'graphflow.db'}?durability=normal"


def _fresh_pg_database() -> Iterator[str]:
    import psycopg

    name = f"gf_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards. Fails (never skips) without a server."""
    yield from _fresh_pg_database()


def _fresh_mysql_database() -> Iterator[str]:
    import pymysql
    from sqlalchemy.engine import make_url

    name = f"gf_test_{uuid.uuid4().hex[:12]}"
    server = make_url(MYSQL_URL)

    def execute(sql: str) -> None:
        conn = pymysql.connect(
            host=server.host or "127.0.0.1",
            port=server.port or 3306,
            user=server.username or "root",
            password=server.password or "",
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    execute(f"CREATE DATABASE `{name}`")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MariaDB (or MySQL) database, dropped afterwards. Fails (never skips) without one."""
    yield from _fresh_mysql_database()


@pytest.fixture(params=["postgres", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on each database server (what several hosts share), in turn."""
    yield from _fresh_pg_database() if request.param == "postgres" else _fresh_mysql_database()


@pytest.fixture(params=["memory", "sqlite", "postgres", "mariadb"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store backend in turn."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'graphflow.db'}"
    elif request.param == "postgres":
        yield from _fresh_pg_database()
    else:
        yield from _fresh_mysql_database()
