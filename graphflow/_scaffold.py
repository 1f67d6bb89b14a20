"""``graphflow init NAME``: write a small project that runs and tests as written.

The project holds a ``pyproject.toml`` (graphflow as its dependency, pytest configured for the async
fixtures of ``graphflow.testing``), a workflows module with one imperative and one graph workflow, a
test that runs both on the virtual clock (a one-day sleep passes at once), and a README with the
command that runs an example and the one that runs the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import GraphflowError

__all__ = ("ScaffoldError", "package_name", "scaffold")


class ScaffoldError(GraphflowError):
    """``graphflow init`` cannot write the project where it was asked to."""

    def __init__(self, *, path: str, problem: str, fix: str) -> None:
        super().__init__(
            f"cannot create a project in {path!r}: {problem}. Fix: {fix}",
            path=path,
            problem=problem,
            fix=fix,
        )


def package_name(project: str) -> str:
    """The importable package name of a project name (``my-app`` -> ``my_app``).

    Raises:
        ScaffoldError: no valid Python identifier can be made of ``project``.
    """
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", project).strip("_").lower()
    if not name or not name.isidentifier() or name[0].isdigit():
        raise ScaffoldError(
            path=project,
            problem="the project name gives no valid Python package name",
            fix="start the name with a letter and use letters, digits, '-' or '_' (e.g. my-app)",
        )
    return name


def _version_range(version: str) -> str:
    """``>=0.1.0,<0.2``: this graphflow's minor series (another project owns ``graphflow`` 0.8)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return f">={version},<{major}.{minor + 1}"


def _files(project: str, package: str, version: str) -> dict[str, str]:
    subs = {"project": project, "package": package, "requirement": _version_range(version)}
    return {
        "pyproject.toml": _PYPROJECT.format(**subs),
        "README.md": _README.format(**subs),
        ".gitignore": _GITIGNORE,
        f"{package}/__init__.py": f'"""{project}: durable workflows on graphflow."""\n',
        f"{package}/workflows.py": _WORKFLOWS.format(**subs),
        "tests/__init__.py": "",
        "tests/conftest.py": _CONFTEST,
        "tests/test_workflows.py": _TEST.format(**subs),
    }


def scaffold(directory: Path, *, version: str) -> list[Path]:
    """Write a new project into ``directory`` (created if missing); return the files written.

    The project is named after the directory's last component.

    Raises:
        ScaffoldError: ``directory`` exists and is not an empty directory, or its name gives no
            valid package name. Nothing is written then.
    """
    project = directory.resolve().name
    package = package_name(project)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        what = "it is a directory that is not empty" if directory.is_dir() else "it is a file"
        raise ScaffoldError(
            path=str(directory),
            problem=f"{what}, and init never overwrites anything",
            fix="give the name of a new (or empty) directory",
        )
    written = []
    for relative, text in _files(project, package, version).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{project}"
version = "0.1.0"
description = "Durable workflows on graphflow"
requires-python = ">=3.11"
dependencies = ["graphflow{requirement}"]

[project.optional-dependencies]
dev = ["pytest>=8.2"]

[tool.hatch.build.targets.wheel]
packages = ["{package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
# graphflow.testing's fixtures are async: anyio's pytest plugin runs them (and the tests).
anyio_mode = "auto"
"""

_GITIGNORE = """\
__pycache__/
.venv/
graphflow.db*
"""

_WORKFLOWS = '''\
"""The workflows of {project}: one imperative, one graph, over the same two functions."""

from __future__ import annotations

import graphflow as gf


@gf.function
async def make_greeting(name: str) -> str:
    """Build a greeting (an async function runs on the event loop)."""
    return f"Hello, {{name}}!"


@gf.function(retries=2)
def shout(text: str) -> str:
    """Upper-case a text (a sync function runs in a worker thread)."""
    return text.upper()


@gf.workflow
async def welcome(wf: gf.Workflow, data: dict[str, str]) -> str:
    """Greet, wait a day (durably: a restart does not reset it), then shout."""
    greeting = await wf.do("Greet", make_greeting, {{"name": data["name"]}})
    await wf.sleep("Wait a day", "1d")
    return await wf.do("Shout", shout, {{"text": greeting}})


pipeline = gf.workflow_graph(
    name="pipeline",
    description="Greet, then shout the greeting",
    nodes={{"greet": "make_greeting", "shout": "shout"}},
    config={{
        "greet": {{"next": "shout"}},
        "shout": {{"input": lambda ref: {{"text": ref("greet")}}}},
    }},
)
'''

_CONFTEST = """\
# The virtual_clock and memory_engine fixtures.
pytest_plugins = ["graphflow.testing"]
"""

_TEST = '''\
"""The workflows run on a private in-memory engine driven by a virtual clock."""

from __future__ import annotations

import graphflow as gf
from graphflow.testing import VirtualClock

from {package} import workflows  # noqa: F401  (importing registers the workflows)


async def test_welcome_waits_a_day_in_virtual_time(
    memory_engine: gf.Engine, virtual_clock: VirtualClock
) -> None:
    began = virtual_clock.time()
    assert await memory_engine.run("welcome", {{"name": "Ada"}}, timeout=10) == "HELLO, ADA!"
    assert virtual_clock.time() - began >= 86400


async def test_pipeline_runs_greet_then_shout(memory_engine: gf.Engine) -> None:
    output = await memory_engine.run("pipeline", {{"name": "Ada"}}, timeout=10)
    assert output == {{"shout": "HELLO, ADA!"}}
'''

_README = """\
# {project}

Durable workflows on graphflow: `{package}/workflows.py`
holds `welcome` (imperative: greet, sleep a day, shout) and `pipeline` (the same functions as a
graph).

Set up (graphflow itself must be installed or installable in this environment):

```bash
python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'
```

Run an example (the run and its steps are stored in `graphflow.db`):

```bash
graphflow run {package}/workflows.py pipeline --input '{{"name": "Ada"}}'
```

Run the tests (the virtual clock makes `welcome`'s one-day sleep pass at once):

```bash
pytest
```

`graphflow start {package}/workflows.py welcome --input '{{"name": "Ada"}}'` starts the sleeping
one for a worker; `graphflow worker {package}/workflows.py` executes it; `graphflow runs` lists
runs.
"""
