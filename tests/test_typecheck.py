"""The type checker is clean on the whole of symbptt/ (issue 11), with the [tool.mypy]
settings of pyproject.toml: a new error anywhere in the package fails here."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_the_package():
    pytest.importorskip("mypy")
    run = subprocess.run([sys.executable, "-m", "mypy", "symbptt"], check=False, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr  # 1: errors found, 2: mypy itself failed
    assert "Success: no issues found" in run.stdout, run.stdout
