"""``symbptt grade`` (symbptt/grading/grade.py) with one student graded in this process (the
command grades in worker processes, where a mutation run sees nothing): full marks for the
reference solution, zero with the reason for what is missing, the items each function must get
right against the checker's own table, the progress bar, and ``main``'s summary, output folder
and exit status.

These tests came from ``tools/mutation.py symbptt/grading/grade.py --sample 40``.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from symbptt.check import check_module
from symbptt.grading import grade
from symbptt.grading.gradebook import DEFAULT_RUBRIC, Grade

REFERENCE = Path(__file__).parent / "reference" / "gru_handwritten.py"
DA_Z = r"da_z = \delta h_t \odot (h_{t-1} - \tilde{h}_t) \odot z_t \odot (1 - z_t)"


def test_the_reference_solution_gets_full_code_marks_and_one_line_part_of_the_derivation(tmp_path):
    (tmp_path / "derivation.txt").write_text(DA_Z + "\n", encoding="utf-8")
    student = grade.Submission("ada", REFERENCE, tmp_path / "derivation.txt")
    result = grade.grade_one(student, "gru", dict(DEFAULT_RUBRIC), 2.0)
    assert result.points["forward"] == DEFAULT_RUBRIC["forward"]
    assert result.points["backward"] == DEFAULT_RUBRIC["backward"]
    assert 0 < result.points["derivation"] < DEFAULT_RUBRIC["derivation"]
    assert set(result.reasons) == {"derivation"}
    assert result.feedback.startswith("# ") and "ada" in result.feedback
    assert "da_z" in result.feedback and "## What the code printed" not in result.feedback


def test_nothing_handed_in_is_zero_with_its_reasons():
    result = grade.grade_one(grade.Submission("bob", None, None), "gru", dict(DEFAULT_RUBRIC), 2.0)
    assert result.points == {"forward": 0.0, "backward": 0.0, "derivation": 0.0}
    assert result.reasons == {"forward": "no .py or .ipynb file", "backward": "no .py or .ipynb file",
                              "derivation": "no derivation found"}
    assert "## Code: the verdict table\n\n```\n(no code checked)\n```" in result.feedback


def test_the_items_each_function_must_get_right_are_the_checkers():
    report = check_module(REFERENCE, "gru", timeout=2.0)
    seen: dict[str, list[str]] = {}
    for v in report.verdicts:
        if v.ok and not v.item.startswith("("):
            seen.setdefault(v.function, []).append(v.item)
    expected = grade._expected("gru")
    assert {**expected["forward"], **expected["backward"]} == seen
    assert set(expected["backward"]) == {"gru_one_step_backward", "gru_backward"}


def test_an_unfinished_student_has_no_printed_output_section():
    result = grade._unfinished(grade.Submission("cy", None, None), dict(DEFAULT_RUBRIC), "not graded: time")
    assert result.points == {"forward": 0.0, "backward": 0.0, "derivation": 0.0}
    assert "not graded: time" in result.feedback and "## What the code printed" not in result.feedback


def test_the_progress_bar(capsys):
    grade._progress(1, 3, Grade("ann", {"forward": 2.5}), time.monotonic())
    line = capsys.readouterr().err.strip()
    bar = re.fullmatch(r"\[([#.]+)\] 1/3  ann: 2.5  \(\d+ s\)", line)
    assert bar and bar[1] == "#" * 10 + "." * 20, line


def _class(tmp_path: Path) -> Path:
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(REFERENCE, folder / "ada.py")
    (folder / "bob.py").write_text("import numpy as np\n", encoding="utf-8")
    return folder


def test_main_grades_the_class_beside_its_folder(tmp_path, capsys):
    folder = _class(tmp_path)
    assert grade.main(str(folder), "gru", timeout=2.0, workers=1) == 0
    out = tmp_path / "class-graded"
    message = capsys.readouterr().out.strip()
    assert message == (f"graded 2 of 2 submissions; wrote {out / 'gradebook.csv'} and 2 feedback files "
                       f"in {out / 'feedback'}")
    assert sorted(p.name for p in (out / "feedback").iterdir()) == ["ada.md", "bob.md"]


def test_main_says_when_the_time_ran_out(tmp_path, capsys):
    folder = _class(tmp_path)
    assert grade.main(str(folder), "gru", str(tmp_path / "out"), timeout=2.0, total_seconds=0.0, workers=1) == 1
    feedback = (tmp_path / "out" / "feedback" / "ada.md").read_text(encoding="utf-8")
    assert "not graded: the total time limit of 0 s was reached" in feedback
    assert capsys.readouterr().out.startswith("graded 0 of 2 submissions")


def test_code_the_checker_cannot_open_is_zero_with_the_error(tmp_path):
    missing = tmp_path / "missing.py"
    result = grade.grade_one(grade.Submission("eve", missing, None), "gru", dict(DEFAULT_RUBRIC), 2.0)
    assert result.points == {"forward": 0.0, "backward": 0.0, "derivation": 0.0}
    assert result.reasons["forward"] == result.reasons["backward"] == f"FileNotFoundError: no such file: {missing}"


def test_discover_pairs_a_notebook_with_itself_and_a_script_with_its_folders_derivation(tmp_path):
    folder = tmp_path / "class"
    (folder / "dee").mkdir(parents=True)
    (folder / "eli").mkdir()
    (folder / "ann.py").write_text("", encoding="utf-8")
    (folder / "bea.ipynb").write_text("{}", encoding="utf-8")
    (folder / "dee" / "work.ipynb").write_text("{}", encoding="utf-8")
    (folder / "dee" / "notes.tex").write_text("", encoding="utf-8")  # the notebook is the derivation
    (folder / "eli" / "cell.py").write_text("", encoding="utf-8")
    (folder / "eli" / "derivation.md").write_text("", encoding="utf-8")
    found = {s.student: s for s in grade.discover(folder)}
    assert found["ann"] == grade.Submission("ann", folder / "ann.py", None)
    assert found["bea"] == grade.Submission("bea", folder / "bea.ipynb", folder / "bea.ipynb")
    assert found["dee"] == grade.Submission("dee", folder / "dee" / "work.ipynb", folder / "dee" / "work.ipynb")
    assert found["eli"] == grade.Submission("eli", folder / "eli" / "cell.py", folder / "eli" / "derivation.md")


def test_the_code_part_passes_the_per_call_time_limit_on(monkeypatch):
    import symbptt.check

    seen = []

    def recorder(path, cell, timeout=99.0):
        seen.append(timeout)
        raise RuntimeError("recorded")

    monkeypatch.setattr(symbptt.check, "check_module", recorder)
    result = Grade("fay")
    grade._code_part(grade.Submission("fay", REFERENCE, None), "gru", 3.5, dict(DEFAULT_RUBRIC), result)
    assert seen == [3.5]
    assert result.reasons["forward"] == "RuntimeError: recorded"


def test_a_derivation_the_checker_cannot_read_is_zero_with_the_error(monkeypatch, tmp_path):
    import symbptt.handcheck

    def broken(*args, **kwargs):
        raise ValueError("line 3 is not LaTeX")

    monkeypatch.setattr(symbptt.handcheck, "check_file", broken)
    result = Grade("gus")
    out = grade._derivation_part(grade.Submission("gus", None, tmp_path / "d.tex"), "gru", dict(DEFAULT_RUBRIC), result)
    assert out == ([], [])
    assert result.points == {"derivation": 0.0}
    assert result.reasons == {"derivation": "ValueError: line 3 is not LaTeX"}


def test_workers_are_spawned_not_forked(monkeypatch, tmp_path):
    """A forked worker would inherit the parent's threads and locks (BLAS, torch): spawn."""
    from concurrent import futures

    contexts = []

    class Recorder(futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context):
            contexts.append(mp_context.get_start_method())
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(grade.futures, "ProcessPoolExecutor", Recorder)
    grade.grade_folder(_class(tmp_path), "gru", tmp_path / "out", timeout=2.0, workers=1)
    assert contexts == ["spawn"]


HANGS = '''import time


def gru_one_step_forward(*args, **kwargs):
    time.sleep(120)
'''


def test_a_worker_still_busy_at_the_time_limit_is_killed(tmp_path):
    """At the total time limit the class is written at once, and no worker is left running."""
    import multiprocessing

    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "slow.py").write_text(HANGS, encoding="utf-8")
    start = time.monotonic()
    grades = grade.grade_folder(folder, "gru", tmp_path / "out", timeout=60.0, total_seconds=4.0, workers=1)
    assert time.monotonic() - start < 30
    assert grades[0].reasons == {"all": "not graded: the total time limit of 4 s was reached"}
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []


def test_a_stray_file_or_a_folder_named_like_code_is_no_mistake(tmp_path):
    folder = tmp_path / "class"
    (folder / "dan.py").mkdir(parents=True)  # a student's folder that happens to end in .py
    (folder / "dan.py" / "cell.py").write_text("", encoding="utf-8")
    (folder / "README.txt").write_text("instructions", encoding="utf-8")  # no student
    assert grade.discover(folder) == [grade.Submission("dan.py", folder / "dan.py" / "cell.py", None)]


def test_a_derivation_must_give_every_adjoint_but_the_printing_only_ones():
    """gru's report names the stacked operands' gradients (dh_prev_xt, …) only to print them; the
    cell's own values and every parameter are required."""
    assert grade._required("gru") == ["da_y", "dh", "dh_tilde", "da_h_tilde", "dr", "da_r", "dz", "da_z", "dxt",
                                      "dh_prev", "dWz", "dbz", "dWr", "dbr", "dWh", "dbh", "dWy", "dby"]


def test_what_the_code_printed_reaches_the_feedback(tmp_path):
    chatty = tmp_path / "chatty.py"
    chatty.write_text('print("hello from the student")\n' + REFERENCE.read_text(encoding="utf-8"), encoding="utf-8")
    result = grade.grade_one(grade.Submission("hal", chatty, None), "gru", dict(DEFAULT_RUBRIC), 2.0)
    assert "## What the code printed" in result.feedback and "hello from the student" in result.feedback


def test_one_worker_per_core_when_none_is_asked(monkeypatch, tmp_path):
    import os
    from concurrent import futures

    sizes = []

    class Recorder(futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(grade.futures, "ProcessPoolExecutor", Recorder)
    grade.grade_folder(_class(tmp_path), "gru", tmp_path / "out", timeout=2.0)
    assert sizes == [len(os.sched_getaffinity(0))]


def test_main_grades_with_the_rubric_it_is_given(tmp_path, capsys):
    """The reference solution gets the rubric's code points: 10 + 40 here, not the default 20 + 30."""
    folder = _class(tmp_path)
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("forward = 10\nbackward = 40\nderivation = 50\n", encoding="utf-8")
    assert grade.main(str(folder), "gru", str(tmp_path / "out"), str(rubric), timeout=2.0, workers=1) == 0
    book = (tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8").splitlines()
    ada = next(line for line in book if line.startswith("ada,"))
    assert ada.split(",")[1:3] == ["10", "40"]
