"""``symbptt check``'s verdicts as printed, and the pieces that make them: the table, where a
wrong array starts, the comparison of one array, the worst verdict over shapes, what each
function is given and must return.

These tests came from a mutation run over ``symbptt/check.py`` (tools/mutation.py): each one
kills mutants that the tests of test_check.py let through.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from symbptt import check
from symbptt.check import Report, Verdict, check_module
from symbptt.grading.wire import Opaque
from tests.fixtures.planted import write_planted

TIMEOUT = 0.5


def problems_of(report: Report) -> list[str]:
    """The printed table without its header and its ok rows (whose errors are rounding noise)."""
    return [line for line in report.table().splitlines()[1:] if "  ok  " not in line]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("planted")
    return lambda name: check_module(write_planted(name, directory), "gru", timeout=TIMEOUT)


# -- whole tables, as a person reads them ------------------------------------------------------


def test_the_table_of_a_truncated_bptt(planted):
    report = planted("truncated")
    cut = "; truncated BPTT (m=1, T=3; m=5, T=3)"
    assert problems_of(report) == [
        "function               item         verdict    detail",
        "gru_backward           dx           wrong      max rel. error 7.5e-01; starts at t=1 (wrong at t=0-1 of "
        "0-2), rows 0-2 of 0-2" + cut,
        "                       dh0          wrong      max rel. error 6.6e-01; rows 0-3 of 0-3" + cut,
        "                       dWz          wrong      max rel. error 3.3e-01; rows 0-3 of 0-3" + cut,
        "                       dbz          wrong      max rel. error 2.2e-01; rows 0-3 of 0-3" + cut,
        "                       dWr          wrong      max rel. error 6.8e-01; rows 0-3 of 0-3" + cut,
        "                       dbr          wrong      max rel. error 3.2e-01; rows 0-3 of 0-3" + cut,
        "                       dWh          wrong      max rel. error 4.2e-01; rows 0-3 of 0-3" + cut,
        "                       dbh          wrong      max rel. error 3.1e-01; rows 0-3 of 0-3" + cut,
        ("                       (diagnosis)  diagnosis  truncated BPTT: no gradient is carried back from step t+1 "
        "to step t: the numbers equal the reference's with the recurrence cut at every step (truncate=1); in "
        "gru_backward, dh_prevt is updated in the loop but never passed to the step call"),
        "8 problem(s) found",
    ]
    assert not report.ok and len(report.problems) == 8
    assert report.table().startswith(f"symbptt check {report.path} --cell gru   (float64; n_x=3, n_h=4, n_y=2; "
                                     "shapes m=1, T=1; m=1, T=3; m=5, T=3)\n")


def test_the_table_of_a_sign_flip_blames_the_step_in_the_sequence(planted):
    assert problems_of(planted("sign")) == [
        "function               item      verdict  detail",
        "gru_one_step_backward  dxt       wrong    max rel. error 1.4e+00; rows 0-2 of 0-2",
        "                       dh_prev   wrong    max rel. error 3.1e-01; rows 0-3 of 0-3",
        ("                       dWz       wrong    max rel. error 2.0e+00; rows 0-3 of 0-3; sign flip: it equals minus "
        "the expected array"),
        ("                       dbz       wrong    max rel. error 2.0e+00; rows 0-3 of 0-3; sign flip: it equals minus "
        "the expected array"),
        ("gru_backward           dx        wrong    max rel. error 5.2e-01; starts at t=2 (wrong at t=0-2 of 0-2), rows "
        "0-2 of 0-2"),
        "                       dh0       wrong    max rel. error 6.3e-01; rows 0-3 of 0-3",
        "                       dWz       wrong    max rel. error 2.0e+00; rows 0-3 of 0-3",
        "                       dbz       wrong    max rel. error 2.0e+00; rows 0-3 of 0-3",
        "                       dWr       wrong    max rel. error 1.3e-01; rows 0-3 of 0-3 (m=1, T=3; m=5, T=3)",
        "                       dbr       wrong    max rel. error 1.3e-01; rows 0-3 of 0-3 (m=1, T=3; m=5, T=3)",
        "                       dWh       wrong    max rel. error 1.3e-01; rows 0-3 of 0-3 (m=1, T=3; m=5, T=3)",
        "                       dbh       wrong    max rel. error 1.4e-01; rows 0-3 of 0-3 (m=1, T=3; m=5, T=3)",
        "                       (inputs)  note     it calls gru_one_step_backward, which has wrong outputs",
        "12 problem(s) found",
    ]


def test_the_table_of_a_gradient_not_accumulated(planted):
    assert problems_of(planted("accumulate")) == [
        "function               item         verdict    detail",
        ("                       dWz          wrong      max rel. error 1.0e+00; rows 0-3 of 0-3; gradient not "
        "accumulated over time (step t=0 only) (m=1, T=3; m=5, T=3)"),
        ("                       (diagnosis)  diagnosis  gradient not accumulated over time (step t=0 only): the "
        "parameter gradient equals the first step's (t=0) alone: assigned, not added, in the loop"),
        "1 problem(s) found",
    ]


def test_the_table_of_a_misspelt_key(planted):
    lines = problems_of(planted("key"))
    assert lines[1:] == [
        "                       dbr        missing key     not returned; the returned key 'db_r' evidently means it "
        "(its value: ok, max rel. error " + lines[1].rsplit("max rel. error ", 1)[1],
        "                       db_r       unexpected key  not a gradient the cell has; did you mean 'dbr'?",
        "                       (callers)  note            functions that call it read 'db_r' as 'dbr' from here on",
        "2 problem(s) found",
    ]
    assert float(lines[1].rsplit("max rel. error ", 1)[1].rstrip(")")) < 1e-12


def test_the_table_of_wrong_shapes(planted):
    assert problems_of(planted("transposed"))[1] == (
        "                       dWh      wrong shape  got (7, 4), expected (4, 7); transposed: it equals the expected "
        "array's transpose (the product's factors swapped)")
    lines = problems_of(planted("axis"))
    assert lines[1] == (
        "                       dbz       wrong shape  got (1, 5), expected (4, 1); sum over the wrong axis: a bias "
        "gradient sums over the batch (axis=1, keepdims=True)")
    assert lines[3] == "                       dbz       wrong        max rel. error 1.9e+00; rows 0-3 of 0-3 (m=1, T=1; m=1, T=3)"
    assert lines[-2] == "                       (inputs)  note         it calls gru_one_step_backward, which has wrong outputs"


def test_the_table_of_nan_and_of_a_changed_input(planted):
    assert problems_of(planted("nan"))[1:3] == [
        ("gru_backward           dx       NaN/inf  45 non-finite entries; starts at t=2 (wrong at t=0-2 of 0-2), rows "
        "0-2 of 0-2"),
        "                       dh0      NaN/inf  20 non-finite entries; rows 0-3 of 0-3",
    ]
    assert problems_of(planted("mutation"))[1:] == [
        ("gru_backward           (inputs)  changed input  the call changed dh in place; a function must leave its "
        "inputs and the parameters as it found them (m=1, T=3; m=5, T=3)"),
        "1 problem(s) found",
    ]


def test_a_zero_array_names_the_local_that_holds_the_value(planted):
    assert problems_of(planted("dh0_zeros"))[1] == (
        "                       dh0      wrong    max rel. error 1.0e+00; rows 0-3 of 0-3; left at zeros: the array is "
        "all zeros (initialised and never filled); the local variable dh_prevt holds the expected value but is not "
        "returned")


# -- the table and its verdicts ------------------------------------------------------------


def test_a_verdict_names_its_shapes_only_when_not_all():
    assert Verdict("f", "x", "wrong", "off").text() == "off"
    assert Verdict("f", "x", "wrong", "off", ["m=1, T=1", "m=1, T=3", "m=5, T=3"]).text() == "off"
    assert Verdict("f", "x", "wrong", "off", ["m=1, T=3", "m=5, T=3"]).text() == "off (m=1, T=3; m=5, T=3)"
    assert Verdict("f", "x", "wrong", "", ["m=5, T=3"]).text() == "(m=5, T=3)"
    assert Verdict("f", "x", "ok").ok and Verdict("f", "x", "note").ok and Verdict("f", "x", "diagnosis").ok
    assert not Verdict("f", "x", "unexpected key").ok and not Verdict("f", "x", "changed input").ok


def test_the_table_layout_and_its_last_line():
    report = Report("p.py", "gru", [Verdict("fwd", "h", "ok", "max rel. error 1e-16"),
                                    Verdict("fwd", "y", "wrong", "bad"),
                                    Verdict("bwd", "dW", "note", "")])
    assert report.table() == ("function  item  verdict  detail\n"
                              "fwd       h     ok       max rel. error 1e-16\n"
                              "          y     wrong    bad\n"
                              "bwd       dW    note\n"
                              "1 problem(s) found")
    assert [v.item for v in report.problems] == ["y"]
    report.header = "HEADER"
    assert report.table().splitlines()[0] == "HEADER"
    report.verdicts.pop(1)
    assert report.ok and report.table().endswith("\nall ok")
    assert not Report("p.py", "gru").ok  # nothing checked is not a pass


# -- where a wrong array starts ------------------------------------------------------------


def test_span_writes_runs_of_indices():
    assert check._span([0, 1, 2, 5]) == "0-2, 5"
    assert check._span([3]) == "3"
    assert check._span([0, 2, 3, 4, 7, 8]) == "0, 2-4, 7-8"
    assert check._span([]) == ""


def test_locate_gives_the_rows_and_the_first_wrong_step():
    bad = np.zeros((4, 2), bool)
    bad[1, 0] = bad[2, 1] = True
    assert check.locate(bad, backward=True) == "rows 1-2 of 0-3"
    seq = np.zeros((3, 2, 5), bool)
    seq[0, 1, 1] = seq[2, 0, 3] = seq[2, 0, 2] = True
    # backward errors start at the latest wrong step, forward ones at the earliest
    assert check.locate(seq, backward=True) == "starts at t=3 (wrong at t=1-3 of 0-4), rows 0, 2 of 0-2"
    assert check.locate(seq, backward=False) == "starts at t=1 (wrong at t=1-3 of 0-4), rows 0, 2 of 0-2"


# -- comparing one array -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def problem():
    return check.make_problem(check._kernel("rnn"), 5, 3, seed=0)


def test_compare_verdicts(problem):
    expected = np.arange(1.0, 7.0).reshape(2, 3)
    finding, array = check.compare(expected.copy(), expected, False, problem)
    assert (finding.status, finding.error) == ("ok", 0.0) and finding.problem is problem
    np.testing.assert_array_equal(array, expected)
    got = expected.copy()
    got[1, 2] += 6e-3  # relative error 1e-3
    finding, _ = check.compare(got, expected, False, problem)
    assert (finding.status, finding.detail) == ("wrong", "rows 1 of 0-1")
    assert finding.error == pytest.approx(1e-3)
    got = expected.copy()
    got[0, 0] += 0.5 * 6e-7  # 0.5e-7 relative: within the tolerance
    assert check.compare(got, expected, False, problem)[0].status == "ok"
    got[0, 0] += 6e-7  # 1.5e-7 relative: wrong, and only that entry is named
    finding, _ = check.compare(got, expected, False, problem)
    assert (finding.status, finding.detail) == ("wrong", "rows 0 of 0-1")


def test_compare_wrong_kinds_of_value(problem):
    expected = np.ones((2, 3))
    finding, array = check.compare(Opaque("generator", "not data"), expected, False, problem)
    assert (finding.status, finding.detail, array) == ("wrong type", "got generator (not data), expected an array",
                                                       None)
    finding, array = check.compare(expected + 1j, expected, False, problem)
    assert (finding.status, finding.detail, array) == (
        "wrong type", "got a complex array, expected real float64 values", None)
    finding, array = check.compare("text", expected, False, problem)
    assert (finding.status, finding.detail, array) == ("wrong type", "got str, expected an array", None)
    finding, array = check.compare({"a": 1}, expected, False, problem)
    assert (finding.status, finding.detail) == ("wrong type", "got dict, expected an array")
    finding, array = check.compare(np.ones((3, 2)) * 2, expected, False, problem)
    assert (finding.status, finding.detail) == ("wrong shape", "got (3, 2), expected (2, 3)")
    assert array.shape == (3, 2)
    nan = expected.copy()
    nan[1, 1] = np.nan
    nan[0, 2] = np.inf
    finding, array = check.compare(nan, expected, False, problem)
    assert (finding.status, finding.detail) == ("NaN/inf", "2 non-finite entries; rows 0-1 of 0-1")
    assert finding.error == float("inf")
    # a list of numbers is read as an array
    assert check.compare([[1.0, 1.0, 1.0]] * 2, expected, False, problem)[0].status == "ok"


def test_the_worst_verdict_over_shapes_is_shown(problem):
    small = check.make_problem(check._kernel("rnn"), 1, 1, seed=0)
    middle = check.make_problem(check._kernel("rnn"), 1, 3, seed=1)
    findings = [check.Finding("ok", small, 1e-16), check.Finding("wrong", middle, 0.5, "a"),
                check.Finding("wrong", problem, 0.25, "b"), check.Finding("NaN/inf", small, float("inf"), "c")]
    shown, error, shapes = check.summarize(findings)
    assert (shown.status, shown.detail, error, shapes) == ("NaN/inf", "c", float("inf"), ["m=1, T=1"])
    shown, error, shapes = check.summarize(findings[:3])
    # the largest shape's finding is shown, with the worst error of that status
    assert (shown.detail, error, shapes) == ("b", 0.5, ["m=1, T=3", "m=5, T=3"])
    shown, error, _ = check.summarize([check.Finding("ok", small, 1e-16), check.Finding("ok", middle, 2e-16)])
    assert (shown.problem, error) == (middle, 2e-16)
    shown, _, _ = check.summarize([check.Finding("wrong", problem, 0.1),
                                   check.Finding("unexpected key", problem)])
    assert shown.status == "wrong"


# -- what each function is given and must return ------------------------------------------------


def test_the_functions_of_the_lstm_and_their_arguments():
    specs = check.specs_for(check._kernel("lstm"))
    assert [(s.name, s.kind, s.argnames, s.outputs) for s in specs] == [
        ("lstm_one_step_forward", "step_forward", ("xt", "h_prev", "c_prev", "parameters"),
         ("h_next", "c_next", "yt_hat")),
        ("lstm_forward", "forward", ("x", "h0", "parameters"), ("H", "Y", "C")),
        ("lstm_one_step_backward", "step_backward", ("dh_next", "dc_next", "cache"), ()),
        ("lstm_backward", "backward", ("dh", "caches"), ()),
        ("forward", "generic_forward", ("parameters", "x", "initial_states"), ()),
        ("backward", "generic_backward", ("cache", "upstream"), ()),
    ]
    assert [s.backward for s in specs] == [False, False, True, True, False, True]
    assert [s.kind for s in check.specs_for(check._kernel("gru_torch"))] == ["generic_forward", "generic_backward"]


def test_a_random_problem():
    kernel = check._kernel("lstm")
    p = check.make_problem(kernel, 5, 3, seed=2)
    assert p.label == "m=5, T=3" and (p.m, p.T) == (5, 3)
    assert p.x.shape == (3, 5, 3) and p.dh.shape == (4, 5, 3)
    assert {k: v.shape for k, v in p.prev.items()} == {"h": (4, 5), "c": (4, 5)}
    assert {k: v.shape for k, v in p.d_next.items()} == {"h": (4, 5), "c": (4, 5)}
    assert {k: v.shape for k, v in p.upstream.items()} == {"h": (4, 5, 3), "c": (4, 5, 3), "y": (2, 5, 3)}
    assert all(np.all(v != 0) for v in [p.x, p.dh, *p.prev.values(), *p.d_next.values(), *p.upstream.values()])
    big = check.make_problem(check._kernel("rnn"), 400, 1, seed=0)
    assert 0.4 < big.prev["h"].std() < 0.6  # half a standard normal: tanh's useful range
    again = check.make_problem(kernel, 5, 3, seed=2)
    assert np.array_equal(p.x, again.x) and np.array_equal(p.upstream["y"], again.upstream["y"])
    assert not np.array_equal(p.x, check.make_problem(kernel, 5, 3, seed=3).x)


def test_what_a_function_returned_is_split_or_refused():
    specs = {s.kind: s for s in check.specs_for(check._kernel("gru"))}
    outputs, cache, complaint = check.split_result(specs["step_forward"], (1, 2, "c"))
    assert (outputs, cache, complaint) == ({"h_next": 1, "yt_hat": 2}, "c", None)
    assert check.split_result(specs["step_forward"], [1, 2])[2] == (
        "returns 2 values, expected 3: (h_next, yt_hat, cache)")
    assert check.split_result(specs["forward"], np.zeros(3))[2] == (
        "returns ndarray, expected 3: (H, Y, caches)")
    assert check.split_result(specs["forward"], (1, 2, 3)) == ({"H": 1, "Y": 2}, 3, None)
    assert check.split_result(specs["generic_forward"], ({"h": 1}, "c")) == ({"h": 1}, "c", None)
    for bad in [({"h": 1},), ([1], "c"), "x", ({"h": 1}, "c", 3)]:
        assert check.split_result(specs["generic_forward"], bad)[2] == (
            "returns something other than (outputs dict, cache)")
    assert check.split_result(specs["step_backward"], {"dWz": 1}) == ({"dWz": 1}, None, None)
    assert check.split_result(specs["backward"], [1])[2] == "returns a list, expected a dict of gradients"


def test_the_checker_names_the_functions_it_expected(tmp_path):
    path = tmp_path / "nothing.py"
    path.write_text("import numpy as np\n", encoding="utf-8")
    report = check_module(path, "rnn", timeout=TIMEOUT)
    assert [(v.function, v.item, v.status, v.detail) for v in report.verdicts] == [
        ("(module)", "functions", "missing function",
         ("none of the expected functions is defined (rnn_one_step_forward, rnn_forward, rnn_one_step_backward, "
         "rnn_backward, forward, backward)"))]


def test_a_partial_notebook_names_each_missing_function(tmp_path):
    from symbptt.check_diagnose import kernel_source

    source = kernel_source("rnn")
    start = source.index("def rnn_one_step_forward")
    end = source.index("def rnn_forward")
    path = tmp_path / "partial.py"
    helpers = source[source.index("def sigmoid"):source.index("_workspaces = ")]
    path.write_text("import numpy as np\n" + helpers + source[start:end], encoding="utf-8")
    report = check_module(path, "rnn", timeout=TIMEOUT)
    missing = [(v.function, v.item, v.detail) for v in report.verdicts if v.status == "missing function"]
    assert missing == [("rnn_forward", "(function)", "rnn_forward is not defined"),
                       ("rnn_one_step_backward", "(function)", "rnn_one_step_backward is not defined"),
                       ("rnn_backward", "(function)", "rnn_backward is not defined")]
    assert all(v.ok for v in report.verdicts if v.function == "rnn_one_step_forward")
    assert "forward" not in {v.function for v in report.verdicts}  # the generic pair is not asked for


def test_the_main_prints_the_table_and_says_ok(capsys, tmp_path):
    path = tmp_path / "nothing.py"
    path.write_text("x = 1\n", encoding="utf-8")
    assert check.main(str(path), "rnn", timeout=TIMEOUT) == 1
    out = capsys.readouterr().out
    assert out.endswith("1 problem(s) found\n")
    assert out.startswith(f"symbptt check {path} --cell rnn   (float64; n_x=3, n_h=4, n_y=2; shapes m=1, T=1; "
                          "m=1, T=3; m=5, T=3)\n")


# -- a backward fed caches built step by step -------------------------------------------------

REFERENCE = Path(__file__).parent / "reference"


def _hanging_forward(tmp_path: Path, name: str, step_edit: tuple[str, str] | None = None) -> Path:
    text = (REFERENCE / "lstm_notebook.py").read_text(encoding="utf-8")
    text = text.replace("    for t in range(T_x):", "    while True:\n        pass\n    for t in range(T_x):")
    if step_edit:
        assert text.count(step_edit[0]) == 1
        text = text.replace(*step_edit)
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_hanging_forward_leaves_the_backward_checked_on_caches_built_step_by_step(tmp_path):
    """The LSTM's notebook forward starts c at zeros: the caches built from the one-step
    forward must too, or every gradient of a right backward would look wrong."""
    report = check_module(_hanging_forward(tmp_path, "lstm_hang"), "lstm", timeout=0.3)
    assert [(v.status, v.detail) for v in report.verdicts if v.function == "lstm_backward" and not v.item.startswith("d")] == [
        ("note", "caches built as (caches, x) from lstm_one_step_forward, step by step")]
    assert all(v.status == "ok" for v in report.verdicts if v.function == "lstm_backward" and v.item.startswith("d"))
    assert len(report.problems) == 1 and report.problems[0].status == "hung"


def test_no_caches_from_a_one_step_forward_that_returns_the_wrong_values(tmp_path):
    text = (REFERENCE / "lstm_notebook.py").read_text(encoding="utf-8")
    step_return = next(line for line in text.splitlines() if line.strip().startswith("return h_next, c_next"))
    path = _hanging_forward(tmp_path, "lstm_hang_step", (step_return, step_return + ", 0"))
    report = check_module(path, "lstm", timeout=0.3)
    assert [(v.item, v.status, v.detail) for v in report.verdicts if v.function == "lstm_backward"] == [
        ("(inputs)", "not checked", "needs the cache of lstm_forward, which did not run")]


# -- keys ---------------------------------------------------------------------------------------


STEP_GRADIENTS = 'gradients = {"dxt": dxt, "dh_prev": dh_prev,\n                 "dWz": dWz, "dbz": dbz, "dWr": dWr, '


def _gru_variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (REFERENCE / "gru_handwritten.py").read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_a_key_not_returned_at_all(tmp_path):
    path = _gru_variant(tmp_path, "no_dbr", STEP_GRADIENTS + '"dbr": dbr,', STEP_GRADIENTS)
    report = check_module(path, "gru", timeout=TIMEOUT)
    assert [(v.status, v.detail) for v in report.verdicts
            if v.function == "gru_one_step_backward" and v.item == "dbr"] == [("missing key", "not returned")]


def test_a_misspelt_key_with_a_wrong_value(tmp_path):
    path = _gru_variant(tmp_path, "db_r_wrong", STEP_GRADIENTS + '"dbr": dbr,', STEP_GRADIENTS + '"db_r": 2 * dbr,')
    report = check_module(path, "gru", timeout=TIMEOUT)
    assert [v.detail for v in report.verdicts if v.function == "gru_one_step_backward" and v.item == "dbr"] == [
        "not returned; the returned key 'db_r' evidently means it (its value: wrong)"]


# -- diagnoses and their evidence ----------------------------------------------------------------


def test_a_step_diagnosis_has_no_loop_evidence(planted):
    lines = problems_of(planted("step_missing"))
    assert lines[2] == (
        "                       (diagnosis)  diagnosis  contribution from step t+1 missing (dh_prev lacks dh_next * "
        "z): dh_prev lacks the term dh_next * z, so that part of the gradient from step t+1 never reaches step t")
    derivative = problems_of(planted("derivative"))
    assert derivative[7] == (
        "                       (diagnosis)  diagnosis  σ' and tanh' confused (h_tilde): the derivative through "
        "h_tilde = tanh(·) is written as σ' h_tilde(1 − h_tilde) instead of tanh' (1 − h_tilde²)")
    assert derivative[-3] == derivative[7]


def test_a_loop_inside_a_step_backward_gives_no_loop_evidence(tmp_path):
    """A one-step backward has no step t+1 to carry from: even with a loop of its own that
    passes a never-updated "carry" variable, its diagnosis names no loop."""
    import re

    from tests.fixtures.planted import planted_source

    source = re.sub(r"^( *)dh_prev = np\.zeros_like\(dh_next\)  # PLANTED$",
                    lambda m: (f"{m[1]}dh_prev_carry = dh_next\n{m[1]}for _ in range(1):\n"
                               f"{m[1]}    dh_prev = 0 * abs(dh_prev_carry)  # PLANTED"),
                    planted_source("step_missing"), flags=re.MULTILINE)
    assert "dh_prev_carry" in source
    path = tmp_path / "gru_step_loop.py"
    path.write_text(source, encoding="utf-8")
    report = check_module(path, "gru", timeout=2.0)
    details = [v.detail for v in report.verdicts if v.status == "diagnosis"]
    assert details and all(d.startswith("contribution from step t+1 missing") for d in details)
    assert not any("; in " in d for d in details), details


def test_main_passes_its_timeout_on(capsys, tmp_path):
    path = write_planted("hang", tmp_path)
    assert check.main(str(path), "gru", timeout=0.3) == 1
    assert "stopped after the 0.3 s timeout" in capsys.readouterr().out


def test_the_loop_evidence_of_a_lost_carry(tmp_path):
    from symbptt.check_diagnose import kernel_source

    source = kernel_source("lstm")
    path = tmp_path / "lstm_dc_frozen.py"
    path.write_text(source.replace('        dc_prev = grads["dc_prev"]\n', ""), encoding="utf-8")
    report = check_module(path, "lstm", timeout=2.0)
    assert [v.detail for v in report.verdicts if v.status == "diagnosis"] == [
        ("contribution from step t+1 missing (dc_prev not carried): dc_prev is never carried back, so the part of the "
        "gradient that reaches c from step t+1 is lost at every step; in lstm_backward, dc_prev is passed to the step "
        "call but never updated in the loop")]
    # a generic backward cut by truncate=1 has no loop of its own to point at: the diagnosis alone
    cut = tmp_path / "generic_cut.py"
    cut.write_text(kernel_source("gru_torch") + "\n\n_backward = backward\n\n\ndef backward(cache, upstream):\n"
                   "    return _backward(cache, upstream, truncate=1)\n", encoding="utf-8")
    report = check_module(cut, "gru_torch", timeout=2.0)
    assert [v.detail for v in report.verdicts if v.status == "diagnosis"] == [
        ("truncated BPTT: no gradient is carried back from step t+1 to step t: the numbers equal the reference's with "
        "the recurrence cut at every step (truncate=1)")]


# -- a sampled mutation run over check.py (tools/mutation.py --sample 40) ----------------------


def _gru_edited(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    text = (REFERENCE / "gru_handwritten.py").read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_process_that_keeps_crashing_leaves_the_rest_not_checked(tmp_path):
    """After MAX_RESTARTS crashes no call is made: its row is 'not checked', at those shapes."""
    header = "def gru_one_step_forward(xt, h_prev, parameters):\n"
    path = _gru_edited(tmp_path, "gru_crash", (header, header + "    import os\n    os._exit(3)\n"))
    report = check_module(path, "gru", timeout=TIMEOUT)
    rows = [(v.function, v.item, v.status, v.text()) for v in report.verdicts if v.function == "gru_forward"]
    crashed = "the process exited with status 3 (os._exit or similar) instead of returning"
    assert rows == [("gru_forward", "(call)", "crashed", f"{crashed} (m=1, T=1; m=1, T=3)"),
                    ("gru_forward", "(inputs)", "not checked",
                     "the checked code's process crashed or hung too often (m=5, T=3)")]
    assert "gru_forward            (inputs)" not in report.table()  # the function is not repeated


def test_a_raising_backward_is_blamed_on_its_wrong_forward(tmp_path):
    path = _gru_edited(tmp_path, "gru_blame", ("    return H, Y, caches", "    return 1.01 * H, Y, caches"),
                        ("def gru_backward(dh, caches):\n",
                         "def gru_backward(dh, caches):\n    raise ValueError('no')\n"))
    report = check_module(path, "gru", timeout=TIMEOUT)
    [raised] = [v for v in report.verdicts if v.function == "gru_backward"]
    assert raised.status == "raised"
    assert raised.detail.endswith("ValueError('no')); its cache comes from gru_forward, which has wrong outputs")


def test_a_hang_is_reported_at_the_shape_it_hung_at(tmp_path):
    """The function is not called again after it hung: the verdict names that one shape."""
    report = check_module(write_planted("hang", tmp_path), "gru", timeout=0.3)
    [hung] = [v for v in report.verdicts if v.status == "hung"]
    assert hung.shapes == ["m=1, T=1"] and hung.detail.startswith("stopped after the 0.3 s timeout")
    assert hung.text().endswith(") (m=1, T=1)")


def test_caches_lost_with_a_crashed_process_are_made_again(tmp_path):
    """One crash restarts the child: the caches the forwards left in the old one are stale, and
    the checker runs each forward again (Checker.refresh_cache) so every backward is checked."""
    flag = tmp_path / "crashed-once"
    header = "def gru_one_step_backward(dh_next, cache):\n"
    crash_once = (f"    import os\n    if not os.path.exists({str(flag)!r}):\n"
                  f"        open({str(flag)!r}, 'w').close()\n        os._exit(3)\n")
    report = check_module(_gru_edited(tmp_path, "gru_crash_once", (header, header + crash_once)), "gru",
                          timeout=TIMEOUT)
    [problem] = report.problems
    assert (problem.function, problem.status, problem.shapes) == ("gru_one_step_backward", "crashed", ["m=1, T=1"])
    checked = {(v.function, v.item) for v in report.verdicts if v.status == "ok"}
    assert {("gru_one_step_backward", "dWz"), ("gru_backward", "dWz"), ("gru_backward", "dx")} <= checked


def test_a_notebook_is_checked_as_its_code_cells_with_notes_on_what_was_dropped(tmp_path):
    """An .ipynb: its code cells checked as one module for the cell named, what was dropped
    (a magic) listed first as notes, and the notebook's own path in the header."""
    nbformat = pytest.importorskip("nbformat")
    from symbptt.check_diagnose import kernel_source

    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
                  nbformat.v4.new_code_cell(kernel_source("rnn"))]
    path = tmp_path / "homework.ipynb"
    nbformat.write(book, str(path))
    report = check_module(path, "rnn", timeout=2.0)
    note = report.verdicts[0]
    assert (note.function, note.item, note.status) == ("(notebook)", "cells", "note")
    assert note.detail.startswith("cell 1, line 1: '%matplotlib inline' is IPython")
    assert report.ok and str(path) in report.header and report.path == str(path)
    assert {v.function for v in report.verdicts[1:]} >= {"rnn_forward", "rnn_backward"}


def test_isolated_false_runs_the_file_in_this_process(tmp_path, monkeypatch):
    """isolated=False imports the person's file here (what it does is seen by the caller);
    the default runs it in a child process, whose side effects stay there."""
    import os

    from symbptt.check_diagnose import kernel_source

    monkeypatch.delenv("SYMBPTT_CHECKED_IN", raising=False)
    path = tmp_path / "here.py"
    path.write_text("import os\nos.environ['SYMBPTT_CHECKED_IN'] = str(os.getpid())\n" + kernel_source("rnn"),
                    encoding="utf-8")
    assert check_module(path, "rnn", timeout=2.0).ok
    assert "SYMBPTT_CHECKED_IN" not in os.environ
    assert check_module(path, "rnn", timeout=2.0, isolated=False).ok
    assert os.environ["SYMBPTT_CHECKED_IN"] == str(os.getpid())


def test_an_entry_off_by_exactly_the_tolerance_is_not_located_as_wrong(problem):
    """The tolerance is inclusive: where the wrong entries are says nothing of one that is off
    by exactly TOLERANCE times the scale (here 1, so 1e-7 exactly)."""
    from symbptt import check_diagnose

    expected = np.array([[1.0, 0.0], [0.0, 0.0]])
    got = expected + np.array([[0.5, 0.0], [check_diagnose.TOLERANCE, 0.0]])
    assert got[1, 0] - expected[1, 0] == check_diagnose.TOLERANCE * 1.0
    finding, _ = check.compare(got, expected, False, problem)
    assert (finding.status, finding.detail) == ("wrong", "rows 0 of 0-1")


def test_a_memory_error_in_the_child_is_out_of_memory(tmp_path):
    from symbptt.check_diagnose import kernel_source

    path = tmp_path / "greedy.py"
    path.write_text(kernel_source("rnn") + "\n\ndef rnn_forward(*args, **kwargs):\n    raise MemoryError\n",
                    encoding="utf-8")
    report = check_module(path, "rnn", timeout=2.0)
    [call] = [v for v in report.verdicts if v.function == "rnn_forward" and v.item == "(call)"]
    assert call.status == "out of memory"


@pytest.mark.parametrize("isolated", [True, False])
def test_a_missing_file_is_named(tmp_path, isolated):
    path = tmp_path / "missing.py"
    with pytest.raises(FileNotFoundError, match=f"^no such file: {re.escape(str(path))}$"):
        check_module(path, "rnn", timeout=TIMEOUT, isolated=isolated)
