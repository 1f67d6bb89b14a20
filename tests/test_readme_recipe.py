"""The README's testing recipe, run as written in a fresh project (no pytest configuration)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _recipe_files() -> dict[str, str]:
    section = README.read_text().split("## Testing your workflows", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section, flags=re.DOTALL)
    return dict(blocks)


def test_readme_testing_recipe_passes_in_a_fresh_project(tmp_path: Path) -> None:
    files = _recipe_files()
    assert set(files) == {"conftest.py", "test_trial.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'fresh'\nversion = '0'\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
