"""The type checker is clean on symbptt/ (issue 11), with the [tool.mypy] settings of pyproject.toml."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The modules mypy must find no error in. The list grows to the whole package (then the test
#: asserts mypy's exit status 0 on all of symbptt/).
CLEAN = [
    "symbptt/arith.py",
    "symbptt/build.py",
    "symbptt/cell.py",
    "symbptt/check.py",
    "symbptt/check_diagnose.py",
    "symbptt/derive.py",
    "symbptt/fdcheck.py",
    "symbptt/grading/__init__.py",
    "symbptt/grading/child.py",
    "symbptt/grading/grade.py",
    "symbptt/grading/gradebook.py",
    "symbptt/grading/limits.py",
    "symbptt/grading/notebook.py",
    "symbptt/grading/person.py",
    "symbptt/grading/sandbox.py",
    "symbptt/grading/wire.py",
    "symbptt/graph.py",
    "symbptt/handcheck.py",
    "symbptt/limited.py",
    "symbptt/loader.py",
    "symbptt/notation.py",
    "symbptt/paths.py",
    "symbptt/pdf.py",
    "symbptt/proof.py",
    "symbptt/text.py",
    "symbptt/torch.py",
    "symbptt/torch_oracle.py",
    "symbptt/tree.py",
    "symbptt/verify.py",
]


def test_mypy_finds_no_error_in_the_clean_modules():
    pytest.importorskip("mypy")
    run = subprocess.run([sys.executable, "-m", "mypy", "symbptt"], check=False, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 0: clean, 1: errors found, 2: mypy failed
    errors = [line for line in run.stdout.splitlines()
              if ": error: " in line and line.split(":", 1)[0] in CLEAN]
    assert not errors, "\n".join(errors)


def test_the_clean_list_names_existing_modules():
    missing = [path for path in CLEAN if not (ROOT / path).is_file()]
    assert not missing, missing
