"""Issue 10's adversarial suite: hostile and broken submissions get their right verdict, the
checker never hangs or dies, and only the parent decides the exit status.

Every case of tests/fixtures/hostile.py runs through ``check_module`` (the person's code in a
limited child process) with a short timeout; the whole file stays within a few tens of seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from symbptt.check import check_module
from symbptt.testing import assert_cell_matches
from tests.fixtures.hostile import EXPECTED, HOSTILE, PASSING, write_hostile

TIMEOUT = 0.5
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("hostile")
    return {name: write_hostile(name, directory) for name in HOSTILE}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_submission_gets_its_verdict(hostile, name):
    start = time.monotonic()
    report = check_module(hostile[name], "gru", timeout=TIMEOUT)
    assert time.monotonic() - start < 20, f"{name} took too long"
    function, item, status, phrase = EXPECTED[name]
    found = [v for v in report.verdicts if (v.function, v.item, v.status) == (function, item, status)
             and phrase in v.detail]
    assert found, f"{name}: no {status!r} verdict on {function} {item} with {phrase!r}\n{report.table()}"
    assert report.ok == (name in PASSING), report.table()


def test_the_forged_table_is_captured_not_shown(hostile):
    report = check_module(hostile["forged_exit"], "gru", timeout=TIMEOUT)
    assert "all ok" in report.printed and not report.table().endswith("all ok")


def test_the_crash_and_the_hang_name_the_line(hostile):
    report = check_module(hostile["segfault"], "gru", timeout=TIMEOUT)
    crashed = next(v for v in report.verdicts if v.status == "crashed")
    assert "ctypes.string_at(0)" in crashed.detail, report.table()
    report = check_module(hostile["catch_timeout"], "gru", timeout=TIMEOUT)
    hung = next(v for v in report.verdicts if v.status == "hung")
    assert "line" in hung.detail, report.table()
    # the rest is still checked after the child was killed and restarted
    for function in ("gru_one_step_backward", "gru_backward"):  # its caches rebuilt in the new child
        assert [v for v in report.verdicts if (v.function, v.item, v.status) == (function, "dWz", "ok")], \
            report.table()


@pytest.mark.parametrize("name", ["sys_exit", "raise_system_exit", "os_exit_in_function", "forged_exit"])
def test_assert_cell_matches_fails_instead_of_ending_pytest(hostile, name):
    with pytest.raises(AssertionError, match="problem"):
        assert_cell_matches(hostile[name], "gru", timeout=TIMEOUT)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symbptt.cli", *args], capture_output=True, text=True,
                          check=False, cwd=ROOT, timeout=120)


def test_cli_exit_status_is_the_parents(hostile):
    run = _cli("check", str(hostile["forged_exit"]), "--cell", "gru")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.rstrip().endswith("problem(s) found")


def test_cli_cell_that_is_not_a_cell_is_one_line():
    run = _cli("check", str(ROOT / "tests" / "reference" / "gru_handwritten.py"), "--cell", "/etc/passwd")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and ("not a cell" in run.stderr or "cannot be loaded" in run.stderr) and "Traceback" not in run.stderr
