"""The Store contract (``graphflow.testing.store_contract``) on every built-in store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


# --- the kit, as a third party uses it (the README's "Write your own store", as written) ----------

README = Path(__file__).parent.parent / "README.md"

MY_STORE = '''
from graphflow.store import open_store


class MyStore:
    """A stand-in third-party store: graphflow's SQLite store behind an object of its own."""

    def __init__(self, path):
        self._inner = open_store(f"sqlite:///{path}?durability=normal")
        self.url = f"my-store://{path}"

    def __getattr__(self, name):
        return getattr(self._inner, name)
'''

BROKEN = '''

class BrokenStore(MyStore):
    """Forgets that a run id is taken: every create reports a new run."""

    async def create_run(self, run):
        stored, _ = await self._inner.create_run(run)
        return stored, True
'''


def _readme_kit() -> str:
    section = README.read_text().split("## Write your own store", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(
        r"```python\n# test_my_store.py\n(.*?)```", section, flags=re.DOTALL
    )
    assert len(blocks) == 1
    return blocks[0]


def test_a_third_party_store_runs_the_contract_as_the_readme_says(tmp_path: Path) -> None:
    kit = _readme_kit()
    (tmp_path / "my_store.py").write_text(MY_STORE + BROKEN)
    broken = kit.replace("TestMyStore", "TestBrokenStore").replace("MyStore(", "BrokenStore(")
    broken = broken.replace("import MyStore", "import BrokenStore")
    (tmp_path / "test_my_store.py").write_text(kit)
    (tmp_path / "test_broken_store.py").write_text(broken)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'fresh'\nversion = '0'\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    clauses = len([name for name in dir(StoreContract) if name.startswith("test_")])
    failed = re.findall(r"^FAILED (\S+)", result.stdout, flags=re.MULTILINE)
    assert failed, result.stdout + result.stderr  # the contract can fail...
    assert all("TestBrokenStore::" in test for test in failed), failed  # ...only the broken store
    assert any("test_create_run_is_idempotent" in test for test in failed)
    assert f"{2 * clauses - len(failed)} passed" in result.stdout, result.stdout
