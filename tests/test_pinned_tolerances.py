"""Tolerances pinned by tests: a gradient a little wrong is judged wrong, and says by how
much; a hand derivation off by a small term is not equivalent; a value within rounding is ok.

The checker compares float64 arrays with a relative error max|got − expected| / max|expected|
(symbptt.check_diagnose.TOLERANCE); handcheck compares a hand line with the derivation
numerically at random values (symbptt.handcheck.NUMERIC_TOLERANCE) besides symbolically.
"""

from __future__ import annotations

import re

import pytest

from symbptt import derive
from symbptt.check import check_module
from symbptt.check_diagnose import TOLERANCE
from symbptt.codegen import numpy_kernel
from symbptt.handcheck import check_one
from symbptt.loader import load

# The generated rnn kernel, written into the person's file, with its backward's gradient
# dWhx scaled by (1 + EPS) at the entry of largest magnitude, or everywhere.
PERTURB = '''

_backward = rnn_backward


def rnn_backward(dh, caches):
    gradients = _backward(dh, caches)
    g = np.array(gradients["dWhx"], dtype=np.float64)
    if {everywhere}:
        g *= 1 + {eps!r}
    else:
        g.flat[np.argmax(np.abs(g))] *= 1 + {eps!r}
    gradients["dWhx"] = g
    return gradients
'''


def person(tmp_path, eps: float, everywhere: bool):
    path = tmp_path / f"rnn_{eps}_{everywhere}.py"
    path.write_text(numpy_kernel(derive(load("rnn")), "rnn.py")
                    + PERTURB.format(eps=eps, everywhere=everywhere))
    return check_module(path, "rnn", timeout=20)


def verdict(report, function: str, item: str):
    found = [v for v in report.verdicts if v.function == function and v.item == item]
    assert found, report.table()
    return found[0]


@pytest.mark.parametrize("everywhere", [False, True], ids=["one entry", "everywhere"])
@pytest.mark.parametrize("eps", [1e-3, 1e-5, 1e-6])
def test_a_gradient_a_little_wrong_is_wrong_and_says_by_how_much(tmp_path, eps, everywhere):
    report = person(tmp_path, eps, everywhere)
    v = verdict(report, "rnn_backward", "dWhx")
    assert v.status == "wrong", report.table()
    shown = float(re.search(r"max rel\. error ([0-9.e+-]+)", v.detail).group(1))
    assert shown == pytest.approx(eps, rel=0.05), v.detail
    assert not report.ok
    others = [x for x in report.verdicts if x.function == "rnn_backward" and x.item != "dWhx"]
    assert others and all(x.ok for x in others), report.table()


@pytest.mark.parametrize("factor,ok", [(0.5, True), (2.0, False)])
def test_the_checker_tolerance_boundary(tmp_path, factor, ok):
    report = person(tmp_path, factor * TOLERANCE, everywhere=True)
    assert verdict(report, "rnn_backward", "dWhx").ok is ok, report.table()


# -- hand derivations ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gru():
    return derive(load("gru"))


def test_a_hand_line_off_by_a_tiny_term_is_not_equivalent(gru):
    right = r"\delta \mathbf{z}_t \odot \mathbf{z}_t \odot (1 - \mathbf{z}_t)"
    assert check_one(gru, "da_z", right).equivalent
    for small in ("0.001", "0.000001", "0.00000001"):
        wrong = right + rf" + {small}\, \mathbf{{z}}_t"
        result = check_one(gru, "da_z", wrong)
        assert not result.equivalent, (small, result)
        # the numeric comparison sees the tiny term too, and shows where the two differ
        assert result.counterexample.startswith("at n_x=1"), (small, result.counterexample)


def test_a_hand_line_with_a_near_one_coefficient_is_not_equivalent(gru):
    wrong = r"1.0000001\, \delta \mathbf{z}_t \odot \mathbf{z}_t \odot (1 - \mathbf{z}_t)"
    assert not check_one(gru, "da_z", wrong).equivalent
