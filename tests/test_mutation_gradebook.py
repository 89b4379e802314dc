"""Points from verdicts (symbptt/grading/gradebook.py): the rubric files a teacher writes and the
mistakes in them, each function's share of its part, the derivation's points, the CSV gradebook
and one student's feedback, each compared with what the rubric says they must be.

These tests came from ``tools/mutation.py symbptt/grading/gradebook.py --sample 40``.
"""

from __future__ import annotations

import csv
import json
import locale

import pytest

from symbptt.check import Verdict
from symbptt.grading import gradebook
from symbptt.grading.gradebook import DEFAULT_RUBRIC, Grade, RubricError


def test_the_default_rubric_is_a_fresh_copy_of_the_notebooks():
    rubric = gradebook.read_rubric(None)
    assert rubric == {"forward": 20.0, "backward": 30.0, "derivation": 50.0}
    rubric["forward"] = 0.0
    assert DEFAULT_RUBRIC["forward"] == 20.0 and gradebook.read_rubric(None)["forward"] == 20.0


def test_a_json_rubric_gives_missing_parts_zero(tmp_path):
    path = tmp_path / "rubric.json"
    path.write_text(json.dumps({"backward": "12.5", "forward": 10}), encoding="utf-8")
    rubric = gradebook.read_rubric(path)
    assert rubric == {"forward": 10.0, "backward": 12.5, "derivation": 0.0}
    assert list(rubric) == ["forward", "backward", "derivation"]
    assert gradebook.read_rubric(str(path)) == rubric


def test_broken_json_rubrics_are_named(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{forward: 1", encoding="utf-8")
    with pytest.raises(RubricError, match=r"r\.json: not JSON \(.+\)$"):
        gradebook.read_rubric(path)
    path.write_text("[20, 30, 50]", encoding="utf-8")
    with pytest.raises(RubricError, match=r"r\.json: expected an object such as "
                                          r'\{"forward": 20\.0, "backward": 30\.0, "derivation": 50\.0\}$'):
        gradebook.read_rubric(path)


def test_a_rubric_of_lines_with_comments_and_both_separators(tmp_path):
    path = tmp_path / "rubric.txt"
    path.write_text('# points of the homework\n\nforward = 15  # two functions\n  backward: 25\n'
                    '"derivation" = 60\n# derivation = 1\n', encoding="utf-8")
    assert gradebook.read_rubric(path) == {"forward": 15.0, "backward": 25.0, "derivation": 60.0}
    path.write_text("forward = 5\n", encoding="utf-8")
    assert gradebook.read_rubric(path) == {"forward": 5.0, "backward": 0.0, "derivation": 0.0}
    path.write_text("forward = 10  # not #1, nor # 2\n", encoding="utf-8")  # a comment from its first #
    assert gradebook.read_rubric(path)["forward"] == 10.0
    path.write_text("forward: 1=2\n", encoding="utf-8")  # the first separator splits
    with pytest.raises(RubricError, match=r"forward = '1=2' is not a number of points"):
        gradebook.read_rubric(path)


def test_a_rubric_is_read_as_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "rubric.txt"
    path.write_text("# pondération: δ-règle\nforward = 12\n", encoding="utf-8")
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # the locale's encoding is then ASCII
    try:
        rubric = gradebook.read_rubric(path)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert rubric["forward"] == 12.0


@pytest.mark.parametrize(("text", "message"), [
    ("forward = 10\nbackward 30\n", r"rubric\.txt:2: expected 'part = points', got 'backward 30'$"),
    ("forward = 10\nstyle = 5\n", r"rubric\.txt: unknown part 'style' \(parts: forward, backward, derivation\)$"),
    ("forward = ten\n", r"rubric\.txt: forward = 'ten' is not a number of points$"),
    ("Xforward = 1\n", r"rubric\.txt: unknown part 'Xforward' "),
    ('forward = 1X\n', r"rubric\.txt: forward = '1X' is not a number of points$"),
    ("backward = -1\n", r"rubric\.txt: backward = -1 is negative$"),
])
def test_mistakes_in_a_rubric_file_are_named_with_the_line(tmp_path, text, message):
    path = tmp_path / "rubric.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RubricError, match=message):
        gradebook.read_rubric(path)


def test_json_values_that_are_not_numbers_or_negative_are_refused(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"forward": None}), encoding="utf-8")
    with pytest.raises(RubricError, match="forward = None is not a number of points"):
        gradebook.read_rubric(path)
    path.write_text(json.dumps({"forward": -0.5}), encoding="utf-8")
    with pytest.raises(RubricError, match=r"forward = -0\.5 is negative"):
        gradebook.read_rubric(path)
    path.write_text(json.dumps({"forward": 0}), encoding="utf-8")
    assert gradebook.read_rubric(path)["forward"] == 0.0


def test_the_total_is_rounded_to_hundredths():
    assert Grade("a", {"forward": 0.1, "backward": 0.2}).total == 0.3
    assert Grade("a", {"forward": 1.005, "backward": 2.0}).total == round(3.005, 2)
    assert Grade("a").total == 0 and Grade("a").feedback == "" and Grade("a").seconds == 0.0


def _v(function, item, status):
    return Verdict(function, item, status, "")


def test_a_function_earns_the_fraction_of_its_items_that_are_right_at_every_shape():
    verdicts = [_v("f", "h", "ok"), _v("f", "c", "ok"), _v("f", "c", "wrong values"), _v("f", "y", "ok"),
                _v("f", "(call)", "note"), _v("g", "h", "ok")]
    assert gradebook.function_share(verdicts, "f", ["h", "c", "y", "z"]) == (0.5, "f: 2 of 4 wrong or missing")
    assert gradebook.function_share(verdicts, "f", ["h", "y"]) == (1.0, "")
    assert gradebook.function_share(verdicts, "g", ["h"]) == (1.0, "")
    assert gradebook.function_share(verdicts, "g", []) == (0.0, "g: nothing to compare")
    noted = [_v("f", "h", "note"), _v("f", "c", "diagnosis")]  # passing, but not "ok"
    assert gradebook.function_share(noted, "f", ["h", "c"]) == (0.0, "f: 2 of 2 wrong or missing")


@pytest.mark.parametrize("status", ["raised", "hung", "crashed", "out of memory", "wrong return",
                                    "missing function", "not checked", "changed input"])
def test_a_call_that_broke_takes_the_functions_whole_share(status):
    verdicts = [_v("f", "h", "ok"), _v("f", "(call)", status)]
    assert gradebook.function_share(verdicts, "f", ["h"]) == (0.0, f"f: {status}")
    module = [_v("f", "h", "ok"), _v("(module)", "import", status)]
    assert gradebook.function_share(module, "f", ["h"]) == (0.0, f"f: {status}")


def test_a_broken_item_alone_or_another_functions_call_does_not_take_the_share():
    verdicts = [_v("f", "h", "ok"), _v("f", "c", "raised"), _v("g", "(call)", "raised")]
    assert gradebook.function_share(verdicts, "f", ["h", "c"]) == (0.5, "f: 1 of 2 wrong or missing")
    first = [_v("f", "(call)", "hung"), _v("f", "(call)", "raised")]
    assert gradebook.function_share(first, "f", ["h"]) == (0.0, "f: hung")
    assert gradebook.function_share([_v("f", "(call)", "wrong values"), _v("f", "h", "ok")], "f", ["h"]) == (1.0, "")


def test_code_points_average_the_functions_of_each_part():
    verdicts = [_v("fwd", "h", "ok"), _v("one", "h", "ok"), _v("one", "c", "wrong values"),
                _v("bwd", "(call)", "raised")]
    parts = {"forward": {"fwd": ["h"], "one": ["h", "c"]}, "backward": {"bwd": ["dW"]}, "derivation": {}}
    rubric = {"forward": 20.0, "backward": 30.0, "derivation": 50.0}
    grade = gradebook.code_points(verdicts, parts, rubric)
    assert grade.points == {"forward": 15.0, "backward": 0.0, "derivation": 0.0}
    assert grade.reasons == {"forward": "one: 1 of 2 wrong or missing", "backward": "bwd: raised"}
    assert grade.student == ""
    third = gradebook.code_points([_v("a", "h", "ok")], {"forward": {"a": ["h"], "b": ["h"], "c": ["h"]}},
                                  {"forward": 10.0})
    assert third.points == {"forward": 3.33}
    assert third.reasons == {"forward": "b: 1 of 1 wrong or missing; c: 1 of 1 wrong or missing"}
    full = gradebook.code_points([_v("a", "h", "ok")], {"forward": {"a": ["h"]}}, {"forward": 10.0})
    assert full.points == {"forward": 10.0} and full.reasons == {}


class _Line:
    def __init__(self, target, equivalent):
        self.target, self.equivalent = target, equivalent


def test_the_derivation_earns_the_fraction_of_required_adjoints_with_an_equivalent_line():
    results = [_Line("da_z", True), _Line("da_r", False), _Line("dh", True), _Line("extra", True)]
    assert gradebook.derivation_points(results, ["da_z", "da_r", "dh"], {"derivation": 60.0}) == (
        40.0, "no equivalent line for da_r")
    assert gradebook.derivation_points(results, ["da_z", "dh"], {"derivation": 60.0}) == (60.0, "")
    assert gradebook.derivation_points([], ["a", "b", "c"], {"derivation": 10.0}) == (
        0.0, "no equivalent line for a, b, c")
    assert gradebook.derivation_points([_Line("a", True)], ["a", "b", "c"], {"derivation": 10.0})[0] == 3.33
    assert gradebook.derivation_points(results, [], {"derivation": 10.0}) == (0.0, "")
    twice = [_Line("a", False), _Line("a", True)]
    assert gradebook.derivation_points(twice, ["a"], {"derivation": 5.0}) == (5.0, "")


def test_the_gradebook_csv(tmp_path):
    rubric = {"forward": 20.0, "backward": 30.5, "derivation": 50.0}
    grades = [Grade("zoe", {"forward": 20.0, "backward": 15.25, "derivation": 50.0},
                    {"backward": "bwd: 1 of 2 wrong or missing"}),
              Grade("adam", {"forward": 0.0}, {"forward": "fwd: raised", "derivation": "no derivation found"})]
    path = tmp_path / "gradebook.csv"
    gradebook.write_gradebook(grades, path, rubric)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["student", "forward (20)", "backward (30.5)", "derivation (50)", "total (100.5)", "notes"],
                    ["adam", "0", "0", "0", "0", "forward: fwd: raised | derivation: no derivation found"],
                    ["zoe", "20", "15.25", "50", "85.25", "backward: bwd: 1 of 2 wrong or missing"]]


def test_the_gradebook_is_written_as_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "gradebook.csv"
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # the locale's encoding is then ASCII
    try:
        gradebook.write_gradebook([Grade("Zoë Ångström", {"forward": 1.0})], path, {"forward": 2.0})
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert path.read_text(encoding="utf-8").splitlines()[1] == "Zoë Ångström,1,1,"


def test_the_feedback_file_of_a_student_who_lost_points():
    rubric = {"forward": 20.0, "backward": 30.0, "derivation": 50.0}
    grade = Grade("ada", {"forward": 20.0, "backward": 7.5, "derivation": 25.0},
                  {"backward": "bwd: raised", "derivation": "no equivalent line for dh"})
    text = gradebook.feedback_markdown(grade, rubric, "  the table  \n", ["da = 1", "db = 2", ""],
                                       ["a note"], "  printed " + "x" * 4000)
    expected = ["# Feedback: ada", "", "| part | points | of |", "| --- | --- | --- |",
                "| forward | 20 | 20 |", "| backward | 7.5 | 30 |", "| derivation | 25 | 50 |",
                "| **total** | **52.5** | 100 |", "",
                "## What lost points", "", "- **backward**: bwd: raised",
                "- **derivation**: no equivalent line for dh", "",
                "## Code: the verdict table", "", "```", "the table", "```", "",
                "## Derivation", "", "```", "da = 1\ndb = 2", "```", "",
                "## Notes", "", "- a note", "",
                "## What the code printed (captured)", "", "```", ("printed " + "x" * 4000)[:3000], "```", ""]
    assert text == "\n".join(expected)


def test_the_feedback_file_of_a_student_with_nothing_to_show():
    rubric = {"forward": 2.0, "backward": 3.0}
    text = gradebook.feedback_markdown(Grade("bo", {"backward": 3.0}), rubric, "  ", [" "], [], " \n")
    expected = ["# Feedback: bo", "", "| part | points | of |", "| --- | --- | --- |",
                              "| forward | 0 | 2 |", "| backward | 3 | 3 |", "| **total** | **3** | 5 |", "",
                              "## Code: the verdict table", "", "```", "(no code checked)", "```", "",
                              "## Derivation", "", "```", "(no derivation found)", "```", ""]
    assert text == "\n".join(expected)
