"""Notebooks as submissions, handcheck's limits (issue 10, Found 4) and ``symbptt grade``.

The whole class of tests/fixtures/classroom.py (42 submissions) is graded with SYMBPTT_SLOW=1
(about a minute on two cores); the default run grades a few of them.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest

from symbptt import derive, handcheck
from symbptt.check import check_module
from symbptt.grading import notebook
from symbptt.grading.grade import grade_folder
from symbptt.grading.gradebook import RubricError, read_rubric
from symbptt.loader import load
from tests.fixtures.classroom import DERIVATION, EXPECT, _notebook, _save, completed, handed_out, write_class

pytest.importorskip("nbformat")
SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "course-notebook.txt"
slow = pytest.mark.skipif(os.environ.get("SYMBPTT_SLOW") != "1", reason="a whole class; run with SYMBPTT_SLOW=1")


@pytest.fixture(scope="module")
def gru():
    return derive(load("gru"))


# ---------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------


def test_handed_out_notebook_is_checked_as_handed_in(tmp_path):
    path = _save(_notebook(handed_out()), tmp_path / "handed_out.ipynb")
    text, notes = notebook.code_module(path)
    assert "def rnn_one_step_forward" in text and "def lstm_backward" in text
    assert sum("does not parse" in n for n in notes) >= 2, notes  # the unfinished GRU cells
    report = check_module(path, "gru", timeout=0.5)
    assert not report.ok
    assert any(v.status == "missing function" for v in report.verdicts), report.table()
    assert any(v.function == "(notebook)" and "does not parse" in v.detail for v in report.verdicts)


def test_completed_notebook_code_and_derivation(tmp_path, gru):
    path = _save(_notebook(completed(DERIVATION)), tmp_path / "done.ipynb")
    report = check_module(path, "gru", timeout=2.0)
    assert report.ok, report.table()
    assert any("'%matplotlib inline' is IPython" in v.detail for v in report.verdicts)
    rows, notes = notebook.derivation_lines(path)
    assert len(rows) == len(DERIVATION) and not notes
    assert rows[-1][0].startswith("cell") and "&" not in rows[-1][1]


def test_course_notebook_itself_when_present(tmp_path):
    """The seed notebook's text (not shipped): its code cells in a notebook, checked as rnn."""
    if not SEED.is_file():
        pytest.skip("the course notebook is not beside the repository")
    parts = SEED.read_text(encoding="utf-8").split("In [")
    cells = [("code", p.split("]:\n", 1)[1].split("\n#", 1)[0]) for p in parts[1:] if "]:\n" in p]
    path = _save(_notebook([("markdown", "# course")] + cells), tmp_path / "course.ipynb")
    report = check_module(path, "rnn", timeout=0.5)
    assert any("evidently means Yt_hat" in v.detail for v in report.verdicts), report.table()


def test_broken_notebooks_are_one_line(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(notebook.NotebookError, match="broken.ipynb: not a readable notebook"):
        check_module(broken, "gru")
    with pytest.raises(notebook.NotebookError):
        handcheck.read_entries(broken)


# ---------------------------------------------------------------------------------------
# handcheck: Found 4
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, verdict, phrase", [
    (r"\delta a_z = \delta a_z", "refused", "may not be written in terms of da_z"),
    (r"\delta z = \delta a_z \odot z", "refused", "derived after it"),
    (r"\delta a_z = z^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2^2", "cannot check", "double superscript"),
    ("\\delta a_z = " + "(" * 200 + "z" + ")" * 200, "too deep", "nested"),
    ("\\delta a_z = " + " + ".join(["z"] * 400), "too large", "symbols"),
    (r"\delta a_z = \mathbf{1}", "cannot check", r"\mathbf{1} (a matrix of ones"),
    (r"\delta a_z = [z]_{5:1}", "cannot check", "row range 5:1 is empty"),
    (r"\delta a_z = \exp(1000000000 z)", "NOT equivalent", ""),
])
def test_found_4_each_line_its_verdict(tmp_path, line, verdict, phrase):
    path = tmp_path / "lines.tex"
    path.write_text(line + "\n", encoding="utf-8")
    [result], _ = handcheck.check_file("gru", path, seconds=20)
    assert result.verdict == verdict, result.report()
    assert phrase in result.report()


def test_a_slow_line_is_stopped_and_the_rest_checked(tmp_path, gru):
    slow_line = r"\delta a_z = " + "((((((((((z^2)^2)^2)^2)^2)^2)^2)^2)^2)^2)^2"
    path = tmp_path / "mixed.tex"
    path.write_bytes(("no equals sign\n" + slow_line + "\n" + DERIVATION[7] + "\n").encode("utf-8")
                     + "% año\n".encode("latin-1"))
    start = time.monotonic()
    results, notes = handcheck.check_file(gru, path, seconds=2)
    assert time.monotonic() - start < 30
    assert [r.verdict for r in results] == ["too slow", "equivalent"], [r.report() for r in results]
    assert any("line 1" in n or ":1:" in n for n in notes) and any("Latin-1" in n for n in notes)


def test_tautologies_score_nothing(tmp_path, capsys):
    path = tmp_path / "tautology.tex"
    path.write_text("\\delta a_z = \\delta a_z\n" * 15, encoding="utf-8")
    assert handcheck.main("gru", path) == 1
    assert "0 of 15 equivalent" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# symbptt grade
# ---------------------------------------------------------------------------------------


def test_rubric_default_file_and_errors(tmp_path):
    assert read_rubric(None) == {"forward": 20, "backward": 30, "derivation": 50}
    good = tmp_path / "rubric.txt"
    good.write_text("forward = 10  # less\nbackward: 40\nderivation = 50\n", encoding="utf-8")
    assert read_rubric(good) == {"forward": 10, "backward": 40, "derivation": 50}
    bad = tmp_path / "bad.txt"
    bad.write_text("forwards = 10\n", encoding="utf-8")
    with pytest.raises(RubricError, match="bad.txt: unknown part 'forwards'"):
        read_rubric(bad)


def _grade(tmp_path: Path, keep: set[str] | None) -> dict[str, dict[str, float]]:
    folder = tmp_path / "submissions"
    written = write_class(folder)
    for student, path in written.items():
        if keep is not None and student not in keep:
            if path.is_dir():
                for p in path.iterdir():
                    p.unlink()
                path.rmdir()
            else:
                path.unlink()
    grade_folder(folder, "gru", tmp_path / "out", timeout=1.0, workers=2)
    rows = list(csv.reader((tmp_path / "out" / "gradebook.csv").open(encoding="utf-8")))
    assert rows[0][:5] == ["student", "forward (20)", "backward (30)", "derivation (50)", "total (100)"]
    return {r[0]: {"forward": float(r[1]), "backward": float(r[2]), "derivation": float(r[3])} for r in rows[1:]}


def test_grade_a_few_submissions(tmp_path):
    keep = {"correct", "planted_sign", "hostile_forged_exit", "notebook_broken", "notebook_handed_out"}
    points = _grade(tmp_path, keep)
    assert set(points) == keep
    for student, got in points.items():
        assert EXPECT[student](got), (student, got)
    feedback = (tmp_path / "out" / "feedback" / "planted_sign.md").read_text(encoding="utf-8")
    assert "sign flip" in feedback and "| **total** |" in feedback


@slow
def test_grade_the_whole_class(tmp_path):
    start = time.monotonic()
    points = _grade(tmp_path, None)
    assert len(points) >= 30
    wrong = {s: p for s, p in points.items() if not EXPECT[s](p)}
    assert not wrong, wrong
    assert time.monotonic() - start < 300
