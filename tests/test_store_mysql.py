"""What is particular to MariaDB/MySQL stores: URLs, key lengths, and errors that name the cause."""

from __future__ import annotations

import pytest

import graphflow as gf
from graphflow.store import open_store


@gf.workflow(registry=(REGISTRY := gf.Registry()))
async def echo(wf: gf.Workflow, data: dict[str, int]) -> dict[str, int]:
    return data


async def test_mariadb_and_mysql_urls_open_the_same_store(mysql_url: str) -> None:
    run_url = mysql_url.replace("mariadb://", "mysql+pymysql://", 1)
    async with gf.Engine(mysql_url, registry=REGISTRY) as engine:
        run_id = await engine.start("echo", {"n": 1}, run_id="r1")
        assert (await engine.wait(run_id, timeout=30)).output == {"n": 1}
    async with gf.Engine(run_url, registry=REGISTRY, worker=False) as client:
        assert (await client.status("r1")).output == {"n": 1}


async def test_a_too_long_run_id_is_refused_not_cut(mysql_url: str) -> None:
    async with gf.Engine(mysql_url, registry=REGISTRY, worker=False) as client:
        with pytest.raises(gf.StoreError, match="Data too long for column 'run_id'"):
            await client.start("echo", {"n": 1}, run_id="x" * 256)
        assert await client.list_runs() == []
        assert await client.start("echo", {"n": 1}, run_id="x" * 255) == "x" * 255


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("mysql://root@127.0.0.1:3306", "names no database: use mysql://user@host/database"),
        ("mariadb://root@127.0.0.1/db?sslmode=on", "unsupported option 'sslmode'"),
        ("mariadb://root@127.0.0.1/db?connect_timeout=soon", "invalid connect_timeout 'soon'"),
    ],
)
def test_invalid_urls_are_refused_with_the_fix(url: str, error: str) -> None:
    with pytest.raises(gf.StoreError, match=error):
        open_store(url)


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    store = open_store("mariadb://root:s3cret@127.0.0.1:1/app?connect_timeout=2")
    with pytest.raises(gf.StoreError, match="cannot connect to 'mariadb://root:\\*\\*\\*@") as info:
        await store.open()
    assert "s3cret" not in str(info.value)
