"""Store errors name the store's URL, never its password (they reach logs and HTTP answers)."""

from __future__ import annotations

import pytest

import graphflow as gf
from graphflow.errors import StoreUnavailableError
from graphflow.errors._store import hide_password


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("store 'mysql://root:p%40ss@h/db' failed", "store 'mysql://root:***@h/db' failed"),
        (
            "postgresql+psycopg://u:pw@h/db and redis://:tok@r:6379",
            "postgresql+psycopg://u:***@h/db and redis://:***@r:6379",
        ),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("sqlite:///tmp/a:b@c.db", "sqlite:///tmp/a:b@c.db"),
    ],
)
def test_hide_password_masks_only_url_passwords(text: str, shown: str) -> None:
    assert hide_password(text) == shown


async def test_a_store_that_cannot_be_reached_is_named_without_its_password() -> None:
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(gf.StoreError) as caught:
        async with gf.Engine(url):
            pass
    assert "hunter2-secret" not in str(caught.value)
    assert "postgres:***@127.0.0.1:1" in str(caught.value)


def test_store_error_facts_keep_no_password() -> None:
    error = StoreUnavailableError(url="mysql://root:topsecret@h/db", problem="the disk is full")
    assert "topsecret" not in str(error) and "topsecret" not in error.url
    assert error.url == "mysql://root:***@h/db"
