"""``symbptt check`` and ``symbptt.testing`` on the notebook's own code, the fixed references,
hand-written GRUs with one planted mistake each, and misbehaving functions (hang, mutation, NaN).

The notebook fixtures are the seed's code cells exactly as given: the checker must not crash on
them and must name every deliberate bug, going on past each one.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from pathlib import Path

import pytest

from symbptt.check import Report, Verdict, call_with_timeout, check_module, main
from symbptt.testing import assert_cell_matches
from tests.fixtures.planted import PLANTS, write_planted

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
REFERENCE = HERE / "reference"
TIMEOUT = 0.5  # seconds per call of a person's function: enough for these small problems


def verdicts(report: Report, function: str, item: str | None = None, status: str | None = None) -> list[Verdict]:
    """The report's verdicts on one function (and item, and status, when given)."""
    return [v for v in report.verdicts if v.function == function
            and (item is None or v.item == item) and (status is None or v.status == status)]


def one(report: Report, function: str, item: str, status: str) -> Verdict:
    """The single verdict on (function, item) with that status; fail with the table otherwise."""
    found = verdicts(report, function, item, status)
    assert found, f"no {status!r} verdict on {function} {item}\n{report.table()}"
    return found[0]


def raised(report: Report, function: str, pattern: str) -> Verdict:
    """A 'raised' verdict on ``function`` whose detail matches ``pattern``."""
    for v in verdicts(report, function, "(call)", "raised"):
        if re.search(pattern, v.detail):
            return v
    raise AssertionError(f"no raised verdict matching {pattern!r} on {function}\n{report.table()}")


@pytest.fixture(scope="module")
def rnn_report() -> Report:
    return check_module(FIXTURES / "notebook_rnn.py", "rnn", timeout=TIMEOUT)


@pytest.fixture(scope="module")
def lstm_report() -> Report:
    return check_module(FIXTURES / "notebook_lstm.py", "lstm", timeout=TIMEOUT)


# ---------------------------------------------------------------------------------------
# The notebook's own RNN and LSTM, exactly as given
# ---------------------------------------------------------------------------------------


def test_notebook_rnn_undefined_names_are_named_and_supplied(rnn_report):
    raised(rnn_report, "rnn_one_step_forward", r"NameError: name 'softmax' is not defined.*standard softmax")
    raised(rnn_report, "rnn_forward", r"NameError: name 'Yt_ha' is not defined \(line \d+.*evidently means Yt_hat")
    raised(rnn_report, "rnn_one_step_backward", r"NameError: name 'dWh' is not defined.*evidently means dWhh")
    raised(rnn_report, "rnn_backward", r"UnboundLocalError: .*'dWhh'.*evidently means dWh\b")


def test_notebook_rnn_wrong_key_and_dh0(rnn_report):
    assert "'dbh'" in one(rnn_report, "rnn_one_step_backward", "dba", "unexpected key").detail
    assert "'dba' evidently means it" in one(rnn_report, "rnn_one_step_backward", "dbh", "missing key").detail
    dh0 = one(rnn_report, "rnn_backward", "dh0", "wrong").detail
    assert "left at zeros" in dh0 and "da0 holds the expected value" in dh0


def test_notebook_rnn_checks_go_on_past_each_bug(rnn_report):
    """Behind every repaired bug the rest is checked, and is right."""
    for function, item in [("rnn_one_step_forward", "yt_hat"), ("rnn_forward", "Y"),
                           ("rnn_one_step_backward", "dWhh"), ("rnn_backward", "dWhh"), ("rnn_backward", "dx")]:
        one(rnn_report, function, item, "ok")
    assert not rnn_report.ok


def test_notebook_lstm_helpers_and_misnamed_functions(lstm_report):
    raised(lstm_report, "lstm_one_step_forward", r"name 'sigmoid' is not defined.*standard logistic sigmoid")
    raised(lstm_report, "lstm_one_step_forward", r"name 'softmax' is not defined")
    raised(lstm_report, "lstm_forward", r"name 'lstm_cell_forward'.*evidently means lstm_one_step_forward")
    raised(lstm_report, "lstm_backward", r"name 'lstm_cell_backward'.*evidently means lstm_one_step_backward")
    for name in ("Wf", "Wi", "Wc", "Wo"):  # used in lstm_one_step_backward, never read from parameters
        raised(lstm_report, "lstm_one_step_backward", rf"name '{name}' is not defined.*parameters\['{name}'\]")


def test_notebook_lstm_truncated_bptt(lstm_report):
    """The loop never carries dh_prev/dc_prev back: every gradient of lstm_backward says so."""
    for item in ("dx", "dh0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"):
        assert "truncated BPTT" in one(lstm_report, "lstm_backward", item, "wrong").detail
    why = one(lstm_report, "lstm_backward", "(diagnosis)", "diagnosis").detail
    assert "dc_prevt and dh_prevt are passed to the step call but never updated in the loop" in why
    for item in ("H", "Y", "C"):
        one(lstm_report, "lstm_forward", item, "ok")
    for item in ("dxt", "dh_prev", "dc_prev", "dWf", "dbo"):
        one(lstm_report, "lstm_one_step_backward", item, "ok")


def test_notebook_tables_and_exit_status(capsys):
    assert main(str(FIXTURES / "notebook_rnn.py"), "rnn", timeout=TIMEOUT) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["function", "item", "verdict", "detail"]
    assert "problem(s) found" in out


def test_notebook_gru_skeleton_does_not_crash_the_checker(tmp_path):
    """The notebook's GRU cells are unfinished (a SyntaxError): a verdict, not a traceback."""
    text = (Path(__file__).parents[2] / "shared" / "seed" / "course-notebook.txt")
    skeleton = "def gru_forward(x, h0, parameters):\n  for t in range(3):\n    # ==> codifica aqui\n\n  return 1\n"
    if text.is_file():
        lines = text.read_text(encoding="utf-8").splitlines()
        start = next(k for k, line in enumerate(lines) if line.startswith("def gru_one_step_forward"))
        skeleton = "\n".join(line for line in lines[start:] if not line.startswith("In ["))
    path = tmp_path / "gru_skeleton.py"
    path.write_text("import numpy as np\n" + skeleton, encoding="utf-8")
    report = check_module(path, "gru", timeout=TIMEOUT)
    assert one(report, "(module)", "import", "raised").detail.startswith("SyntaxError")
    assert not report.ok


# ---------------------------------------------------------------------------------------
# The fixed references
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("file, cell", [("rnn_notebook.py", "rnn"), ("lstm_notebook.py", "lstm"),
                                        ("gru_handwritten.py", "gru")])
def test_references_are_all_ok(file, cell):
    report = check_module(REFERENCE / file, cell, timeout=5.0)
    assert report.ok, report.table()
    assert report.table().endswith("all ok")
    assert {v.function for v in report.verdicts} == {f"{cell}_one_step_forward", f"{cell}_forward",
                                                     f"{cell}_one_step_backward", f"{cell}_backward"}


def test_main_exit_status_zero_when_all_ok(capsys):
    assert main(str(REFERENCE / "gru_handwritten.py"), "gru") == 0
    assert capsys.readouterr().out.rstrip().endswith("all ok")


# ---------------------------------------------------------------------------------------
# A hand-written GRU with one planted mistake each
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Every planted GRU written as a file, as a person would hand it in: name -> path."""
    directory = tmp_path_factory.mktemp("planted")
    return {name: write_planted(name, directory) for name in PLANTS}


def _line_of(path, marker: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(k for k, line in enumerate(lines, 1) if marker in line)


PLANTED = [
    # fixture, function, item, status, what the detail must say
    ("truncated", "gru_backward", "dWz", "wrong", "truncated BPTT"),
    ("step_missing", "gru_one_step_backward", "dh_prev", "wrong",
     "contribution from step t+1 missing (dh_prev lacks dh_next * z)"),
    ("sign", "gru_one_step_backward", "dWz", "wrong", "sign flip"),
    ("transposed", "gru_one_step_backward", "dWh", "wrong shape", "got (7, 4), expected (4, 7); transposed"),
    ("axis", "gru_one_step_backward", "dbz", "wrong shape", "sum over the wrong axis"),
    ("derivative", "gru_one_step_backward", "dbh", "wrong", "σ' and tanh' confused (h_tilde)"),
    ("accumulate", "gru_backward", "dWz", "wrong", "not accumulated over time (step t=0 only)"),
    ("dh0_zeros", "gru_backward", "dh0", "wrong", "left at zeros"),
    ("key", "gru_one_step_backward", "db_r", "unexpected key", "did you mean 'dbr'?"),
    ("raises", "gru_one_step_backward", "(call)", "raised", "ValueError"),
    ("hang", "gru_forward", "(call)", "hung", "stopped after the 0.5 s timeout"),
    ("mutation", "gru_backward", "(inputs)", "changed input", "changed dh in place"),
    ("nan", "gru_backward", "dx", "NaN/inf", "non-finite entries"),
]


@pytest.mark.parametrize("fixture, function, item, status, phrase", PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_gru_mistake_is_named(planted, fixture, function, item, status, phrase):
    report = check_module(planted[fixture], "gru", timeout=TIMEOUT)
    assert not report.ok
    assert phrase in one(report, function, item, status).detail, report.table()
    # The one-step forward is untouched by every plant: its verdicts stay ok.
    one(report, "gru_one_step_forward", "h_next", "ok")


def test_planted_exception_names_the_line(planted):
    report = check_module(planted["raises"], "gru", timeout=TIMEOUT)
    line = _line_of(planted["raises"], "concat_T = np.hstack([h_prev, xt.T])")
    assert f"(line {line}: concat_T = np.hstack([h_prev, xt.T])" in one(
        report, "gru_one_step_backward", "(call)", "raised").detail


def test_planted_key_is_read_under_its_meaning_by_callers(planted):
    report = check_module(planted["key"], "gru", timeout=TIMEOUT)
    one(report, "gru_one_step_backward", "dbr", "missing key")
    one(report, "gru_backward", "dbr", "ok")  # gru_backward reads gradients["dbr"]: not hidden


def test_hang_is_stopped_and_the_rest_still_checked(planted):
    start = time.monotonic()
    report = check_module(planted["hang"], "gru", timeout=0.3)
    assert time.monotonic() - start < 10
    one(report, "gru_forward", "(call)", "hung")
    one(report, "gru_backward", "dWz", "ok")  # fed caches built from gru_one_step_forward


def test_hang_off_the_main_thread_is_stopped_too():
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(r=call_with_timeout(time.sleep, (5,), 0.2)))
    worker.start()
    worker.join(3)
    assert outcome["r"].hung


# ---------------------------------------------------------------------------------------
# Misbehaving functions written on the fly from the GRU reference
# ---------------------------------------------------------------------------------------


def _variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (REFERENCE / "gru_handwritten.py").read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_changing_the_parameters_is_reported(tmp_path):
    path = _variant(tmp_path, "gru_mutates", '    Wz = parameters["Wz"]\n    bz = parameters["bz"]\n    Wr',
                    '    Wz = parameters["Wz"]\n    Wz *= 1.0 + 1e-3\n    bz = parameters["bz"]\n    Wr')
    report = check_module(path, "gru", timeout=TIMEOUT)
    assert "parameters['Wz']" in one(report, "gru_one_step_forward", "(inputs)", "changed input").detail


def test_nan_in_a_forward_is_a_verdict(tmp_path):
    path = _variant(tmp_path, "gru_nan", "    return h_next, yt_hat, cache",
                    "    return h_next * np.nan, yt_hat, cache")
    report = check_module(path, "gru", timeout=TIMEOUT)
    one(report, "gru_one_step_forward", "h_next", "NaN/inf")
    one(report, "gru_one_step_forward", "yt_hat", "ok")


def test_wrong_number_of_return_values(tmp_path):
    """The notebook's GRU skeleton returns a c_next the GRU does not have."""
    path = _variant(tmp_path, "gru_c_next", "    return h_next, yt_hat, cache",
                    "    c_next = h_next\n    print('debug output is not part of the table')\n"
                    "    return h_next, c_next, yt_hat, cache")
    report = check_module(path, "gru", timeout=TIMEOUT)
    detail = one(report, "gru_one_step_forward", "(return)", "wrong return").detail
    assert detail == "returns 4 values, expected 3: (h_next, yt_hat, cache)"
    assert "needs the cache of gru_one_step_forward" in one(
        report, "gru_one_step_backward", "(inputs)", "not checked").detail


def test_module_without_the_functions(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("import numpy as np\n", encoding="utf-8")
    report = check_module(path, "gru", timeout=TIMEOUT)
    assert not report.ok
    one(report, "(module)", "functions", "missing function")


def test_generic_interface_is_checked(tmp_path):
    """design.md's forward/backward: right, and with the recurrence cut. The file holds the
    kernel's text (the checked code may not import symbptt: see test_adversarial.py)."""
    from symbptt.check_diagnose import kernel_source

    base = kernel_source("gru_torch")
    right, cut = tmp_path / "generic_ok.py", tmp_path / "generic_cut.py"
    right.write_text(base, encoding="utf-8")
    cut.write_text(base + "\n\n_backward = backward\n\n\ndef backward(cache, upstream):\n"
                   "    return _backward(cache, upstream, truncate=1)\n", encoding="utf-8")
    assert check_module(right, "gru_torch", timeout=5.0).ok
    report = check_module(cut, "gru_torch", timeout=5.0)
    assert "truncated BPTT" in one(report, "backward", "dW_hz", "wrong").detail


# ---------------------------------------------------------------------------------------
# symbptt.testing
# ---------------------------------------------------------------------------------------


def test_assert_cell_matches_passes_on_the_reference():
    spec = importlib.util.spec_from_file_location("gru_handwritten_for_test", REFERENCE / "gru_handwritten.py")
    gru_handwritten = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gru_handwritten)
    assert assert_cell_matches(gru_handwritten, "gru").ok
    assert assert_cell_matches(REFERENCE / "rnn_notebook.py", "rnn").ok


def test_assert_cell_matches_fails_with_the_table(planted):
    with pytest.raises(AssertionError) as failure:
        assert_cell_matches(planted["sign"], "gru", timeout=TIMEOUT)
    message = str(failure.value)
    assert "function" in message and "verdict" in message and "sign flip" in message
    assert "problem(s) found" in message


def test_a_missing_file_or_unknown_cell_is_the_users_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_module(tmp_path / "nowhere.py", "gru")
    with pytest.raises(Exception, match="unknown cell"):
        check_module(REFERENCE / "gru_handwritten.py", "no_such_cell")
