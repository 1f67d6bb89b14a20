"""The Store contract (``graphflow.testing.store_contract``) on every built-in store."""

from __future__ import annotations

import pytest

from graphflow.store import open_store
from graphflow.store.base import Store
from graphflow.testing.store_contract import StoreContract, StoreFactory


class TestBuiltInStores(StoreContract):
    """memory://, a SQLite file, PostgreSQL and MariaDB, each on a fresh database per test."""

    @pytest.fixture
    def new_store(self, store_url: str) -> StoreFactory:
        return lambda: open_store(store_url)


BUILT_IN_CAPABILITIES = {
    "memory": {"notifies": False, "shared": False},
    "sqlite": {"notifies": False, "shared": True},
    "postgresql": {"notifies": True, "shared": True},
    "mariadb": {"notifies": False, "shared": True},
}


async def test_built_in_stores_declare_their_capabilities(store_url: str) -> None:
    store: Store = open_store(store_url)
    expected = BUILT_IN_CAPABILITIES[store_url.split(":", 1)[0]]
    assert {"notifies": store.notifies, "shared": store.shared} == expected
