"""``graphflow init``: the project it writes passes its own tests in a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphflow import cli
from graphflow._scaffold import ScaffoldError, package_name, scaffold

CHECKOUT = Path(__file__).resolve().parents[1]


def _init(tmp_path: Path, name: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["init", str(tmp_path / name)])
    return result.exit_code, result.stdout, result.stderr


def test_init_writes_a_project_with_workflows_test_and_readme(tmp_path: Path) -> None:
    code, stdout, _ = _init(tmp_path, "my-app")
    assert code == 0, stdout
    project = tmp_path / "my-app"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "my_app/__init__.py",
        "my_app/workflows.py",
        "pyproject.toml",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/test_workflows.py",
    ]
    config = tomllib.loads((project / "pyproject.toml").read_text())
    assert config["project"]["name"] == "my-app"
    assert config["project"]["dependencies"] == ["graphflow>=0.1.0,<0.2"]
    assert config["tool"]["pytest"]["ini_options"]["anyio_mode"] == "auto"
    readme = (project / "README.md").read_text()
    assert "graphflow run my_app/workflows.py pipeline --input" in readme
    assert "\npytest\n" in readme


def test_init_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, _, stderr = _init(tmp_path, "taken")
    assert code == 1
    assert "cannot create a project in" in stderr and "not empty" in stderr
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]


def test_init_accepts_an_empty_directory_and_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert scaffold(tmp_path / "empty", version="0.1.0")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScaffoldError, match="it is a file"):
        scaffold(tmp_path / "file", version="0.1.0")


def test_project_names_become_package_names() -> None:
    assert package_name("My-App") == "my_app"
    assert package_name("shop.orders") == "shop_orders"
    with pytest.raises(ScaffoldError, match="no valid Python package name"):
        package_name("42-things")


def _pip_install(target: Path, source: Path) -> None:
    """Build ``source`` into a wheel and install it (no dependencies) for the interpreter ``target``."""
    command = [sys.executable, "-m", "pip", "--python", str(target), "install", "-q"]
    command += ["--no-deps", "--no-build-isolation", str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_generated_project_passes_its_own_tests_in_a_fresh_venv(tmp_path: Path) -> None:
    code, stdout, _ = _init(tmp_path, "fresh-app")
    assert code == 0, stdout
    project = tmp_path / "fresh-app"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # graphflow's dependencies, pytest and hatchling come from this environment (one path line,
    # which imports none of its editable installs); graphflow and the project are installed anew.
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The fresh interpreter has no pip of its own: this environment's pip installs into it.
    _pip_install(python, CHECKOUT)
    _pip_install(python, project)
    where = subprocess.run(
        [str(python), "-c", "import graphflow, fresh_app; print(graphflow.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)
    # The README's test command, in the project.
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    # The README's example command, with the graphflow script installed in the fresh venv.
    command = [str(env_dir / "bin" / "graphflow"), "run", "fresh_app/workflows.py", "pipeline"]
    example = subprocess.run(
        [*command, "--input", '{"name": "Ada"}'],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=120,
    )
    assert example.returncode == 0, example.stderr
    assert example.stdout.strip().splitlines()[-1] == '{"shout": "HELLO, ADA!"}'
