"""A number next to a cell's matrix (symbptt/arith.py): which values count as numbers, the
terms each operator builds and in which order, and the words for NumPy's functions.

These tests came from ``tools/mutation.py symbptt/arith.py --sample 40``.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy import MatAdd, MatMul, OneMatrix

from symbptt import Cell
from symbptt.arith import NUMPY_REPLACEMENTS, as_number, numpy_replacement, times_ones


def state():
    cell = Cell("c")
    (n,) = cell.dims("n")
    return cell.state("h", n)


def test_numpys_names_get_symbptts_spelling():
    assert numpy_replacement("tanh") == "tanh"
    assert numpy_replacement("maximum", ["tanh"]) == "relu (relu(u) is max(u, 0))"
    assert all(numpy_replacement(name) == words for name, words in NUMPY_REPLACEMENTS.items())


def test_other_names_get_the_vocabulary():
    assert numpy_replacement("sinh", ["tanh", "exp"]) == "one of symbptt's functions (tanh, exp, odot, stack)"
    assert numpy_replacement("sinh") == "one of symbptt's functions (symbptt.ops.FUNCTIONS)"
    assert numpy_replacement("sinh", ()) == "one of symbptt's functions (symbptt.ops.FUNCTIONS)"


def test_plain_numbers_are_numbers_and_nothing_else_is():
    assert as_number(3) == sp.Integer(3) and isinstance(as_number(3), sp.Integer)
    assert as_number(0.5) == sp.Float(0.5) and as_number(np.float64(0.25)) == sp.Float(0.25)
    assert as_number(sp.Rational(1, 2)) == sp.Rational(1, 2) and as_number(sp.pi) is sp.pi
    for value in (True, False, "3", None, sp.Symbol("a"), sp.Identity(2), sp.ZeroMatrix(2, 2), state()):
        assert as_number(value) is None, value


def test_times_ones_is_the_ones_for_one_and_a_multiple_otherwise():
    assert times_ones(sp.Integer(1), (2, 3)) == OneMatrix(2, 3)
    assert times_ones(sp.Integer(2), (2, 3)) == MatMul(2, OneMatrix(2, 3))
    assert times_ones(sp.Integer(-1), (4, 1)) == MatMul(-1, OneMatrix(4, 1))


def test_a_number_and_a_matrix_in_either_order():
    h = state()
    ones = OneMatrix(*h.shape)
    assert (h + 2).args == (h, MatMul(2, ones)) and (2 + h).args == (MatMul(2, ones), h)
    assert (h - 2).args == (h, MatMul(-2, ones)) and (2 - h).args == (MatMul(2, ones), MatMul(-1, h))
    assert (h + 1).args == (h, ones) and (1 - h).args == (ones, MatMul(-1, h))
    assert (h - 1).args == (h, MatMul(-1, ones))
    assert isinstance(h + 2, MatAdd) and isinstance(2 - h, MatAdd)


def test_zero_changes_nothing_but_the_sign_of_zero_minus():
    h = state()
    assert h + 0 is h and 0 + h is h and h - 0 is h
    assert 0 - h == MatMul(-1, h)


def test_matrices_go_to_sympy():
    h = state()
    assert h + h == MatAdd(h, h).doit() and (h - h).doit() == sp.ZeroMatrix(*h.shape)
    assert (sp.ZeroMatrix(*h.shape) + h) == h
    with pytest.raises(TypeError):
        h + "1"
    explicit = sp.ImmutableMatrix([[1]])  # SymPy's own matrix asks h to add it (h has the higher priority)
    assert isinstance(explicit + h, MatAdd) and set((explicit + h).args) == {explicit, h}
    assert isinstance(explicit - h, MatAdd) and set((explicit - h).args) == {explicit, MatMul(-1, h)}


def test_numpys_functions_on_a_matrix_name_the_replacement():
    h = state()
    with pytest.raises(TypeError) as caught:
        np.tanh(h)
    assert str(caught.value) == ("np.tanh is NumPy's function on arrays of numbers and cannot act on the "
                                 "symbolic matrix h_prev; use tanh from symbptt")
    with pytest.raises(TypeError, match=r"^np.sin is .* use one of symbptt's functions \(symbptt.ops.FUNCTIONS\) "
                                        r"from symbptt$"):
        np.sin(h)
