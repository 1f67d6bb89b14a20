"""Import a CLI ``TARGET``: a Python file (``examples/flows.py``) or a dotted module name.

Importing the target is how its ``@gf.function``/``@gf.workflow`` decorators register their names. A
file is imported under its file stem with its directory on ``sys.path``, so ``graphflow run
examples/flows.py ...`` and ``import flows`` in code next to it register the very same objects (and
re-registering the same ``module.qualname`` is allowed, so importing twice is harmless).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import GraphflowError

__all__ = ("TargetError", "load_target")


class TargetError(GraphflowError):
    """A CLI ``TARGET`` could not be found or imported."""

    def __init__(self, *, target: str, problem: str, fix: str) -> None:
        super().__init__(
            f"cannot import TARGET {target!r}: {problem}. Fix: {fix}",
            target=target,
            problem=problem,
            fix=fix,
        )


def _looks_like_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def _import(name: str, target: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if name == missing or name.startswith(f"{missing}."):
            raise TargetError(
                target=target,
                problem=f"no module named {missing!r} (looked in the current directory and"
                " sys.path)",
                fix="give a file path such as path/to/flows.py, or a dotted module importable"
                " from the current directory",
            ) from exc
        raise TargetError(
            target=target,
            problem=f"importing it failed: {type(exc).__name__}: {exc}",
            fix="install the missing package; run with --debug for the traceback",
        ) from exc
    except Exception as exc:
        raise TargetError(
            target=target,
            problem=f"importing it raised {type(exc).__name__}: {exc}",
            fix="fix the error in the module; run with --debug for the traceback",
        ) from exc


def _load_file(target: str) -> ModuleType:
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise TargetError(
            target=target,
            problem=f"no such file {str(path)!r}",
            fix="check the path, or give a dotted module name such as myapp.workflows",
        )
    if path.suffix != ".py" or not path.stem.isidentifier():
        raise TargetError(
            target=target,
            problem=f"{path.name!r} is not an importable Python file",
            fix="give a .py file whose name is a valid module name (letters, digits, _)",
        )
    existing = sys.modules.get(path.stem)
    existing_file = getattr(existing, "__file__", None)
    if existing is not None:
        if existing_file is not None and Path(existing_file).resolve() == path:
            return existing
        raise TargetError(
            target=target,
            problem=f"another module named {path.stem!r} is already imported"
            f" (from {existing_file!r})",
            fix="rename the file so that its stem is a unique module name",
        )
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return _import(path.stem, target)


def load_target(target: str) -> ModuleType:
    """Import ``target`` (a ``.py`` file path or a dotted module name) and return the module.

    A file is imported under its stem with its directory prepended to ``sys.path``; a dotted name is
    imported with the current directory on ``sys.path`` (as ``python -m`` does).

    Raises:
        TargetError: the file or module does not exist, or importing it raised; the message names
            the target, the problem and the fix (the original exception is chained).
    """
    if not target:
        raise TargetError(
            target=target, problem="it is empty", fix="give a file path or a dotted module"
        )
    if _looks_like_file(target) or Path(target).is_file():
        return _load_file(target)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return _import(target, target)
