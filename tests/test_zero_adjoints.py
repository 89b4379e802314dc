r"""``\mathbf{0}``: the zero the report prints for an adjoint nothing feeds, read back.

A state that no equation reads (h_t = tanh(W x_t)) has δh_{t-1} = 0; the report prints that
row as ``\mathbf{0}``, and its round trip, like a student's hand derivation, must read it as a
zero of the target's shape, not answer "cannot check"."""

from __future__ import annotations

import re

import pytest

from symbptt import Cell, derive, tanh
from symbptt.handcheck import check_one
from symbptt.report import report_tex
from symbptt.report_check import check_report


def no_feedback_cell() -> Cell:
    """h_t = tanh(W x_t): the state is an output, but nothing reads h_{t-1}."""
    cell = Cell("nofeed", "a state that does not feed back")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    cell.state("h", n_h, "hidden state")
    W = cell.weight("W", n_h, n_x, "input weights")
    cell.update("h", tanh(W @ x))
    return cell


@pytest.mark.parametrize("lang", ["en", "es"])
def test_report_round_trip_reads_the_printed_zero(lang):
    d = derive(no_feedback_cell())
    verdict = check_report(d, report_tex(d, lang=lang))
    zero_rows = [side for side in verdict.checked if side.rhs.strip() == r"\mathbf{0}"]
    assert not verdict.failures, verdict.failures
    assert zero_rows, "the report printed no zero row, or the check skipped it"
    assert all(re.search(r"\\mathbf\{h\}_\{t(-1)?\}", side.lhs) for side in zero_rows), zero_rows


@pytest.mark.parametrize("written", [r"\mathbf{0}", "0", r"0 \cdot h"])
def test_zero_is_the_adjoint_of_a_state_nothing_reads(written):
    d = derive(no_feedback_cell())
    result = check_one(d, "dh_prev", written)
    assert result.equivalent, result.report()
    assert result.numeric_error == 0


@pytest.mark.parametrize("written", [r"\mathbf{0}", "0"])
def test_zero_is_not_a_nonzero_adjoint(written):
    d = derive(no_feedback_cell())
    result = check_one(d, "da_h", written)
    assert result.verdict == "NOT equivalent", result.report()
    assert result.counterexample


@pytest.mark.parametrize("written", [
    r"\mathbf{0} + (1 - h \odot h) \odot \delta h",       # a zero term of a sum
    r"(1 - h \odot h) \odot \delta h - \mathbf{0}^\top",  # subtracted, transposed
    r"(1 - h \odot h) \odot \delta h + W^\top \mathbf{0}",  # a product with zero
    r"(1 - h \odot h) \odot \delta h + 3 \cdot \mathbf{0} \odot h",
])
def test_zero_terms_change_nothing(written):
    d = derive(no_feedback_cell())
    assert check_one(d, "da_h", written).equivalent


@pytest.mark.parametrize("written", [
    r"(1 - h \odot h) \odot \delta h + \mathbf{0} \odot \delta h + h",
    r"\mathbf{0} \odot \delta h + (1 + h \odot h) \odot \delta h",
])
def test_zero_terms_hide_no_mistake(written):
    d = derive(no_feedback_cell())
    assert check_one(d, "da_h", written).verdict == "NOT equivalent"


def test_a_function_of_zero_is_named_not_guessed():
    d = derive(no_feedback_cell())
    result = check_one(d, "da_h", r"\tanh(\mathbf{0})")
    assert result.verdict == "cannot check"
    assert r"\mathbf{0}" in result.error and "a matrix is needed" in result.error


def test_a_number_other_than_zero_is_still_no_matrix():
    result = check_one(derive(no_feedback_cell()), "dh_prev", "1")
    assert result.verdict == "cannot check" and "the number 1" in result.error
