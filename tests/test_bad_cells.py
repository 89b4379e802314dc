"""Bad cell definitions: each raises CellError whose message names the problem and where.

One test per kind of mistake a person makes when writing a cell file. Each asserts the
error type and the words of the message that say what is wrong and in which equation or
symbol, so a message that loses its "where" fails here.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import sympy as sp
from sympy import Inverse, MatPow, MatrixSymbol

from symbptt import Cell, CellError, derive, odot, sigmoid, softmax, stack, tanh
from symbptt.ops import BATCH


def small_cell() -> SimpleNamespace:
    """A half-written cell: dims, one input, one state, weights W (n_h×n_x), U (n_h×n_h), b."""
    cell = Cell("bad", "a cell with a mistake")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    return SimpleNamespace(
        cell=cell, n_x=n_x, n_h=n_h, n_y=n_y, x=cell.input("x", n_x), h_prev=cell.state("h", n_h),
        W=cell.weight("W", n_h, n_x), U=cell.weight("U", n_h, n_h), b=cell.bias("b", n_h))


def raises(*words: str):
    """pytest.raises(CellError) whose message contains every word (regex-escaped)."""
    pattern = "".join(f"(?=.*{re.escape(w)})" for w in words)
    return pytest.raises(CellError, match=re.compile(pattern, re.DOTALL))


def test_shape_mismatch_names_the_equation_and_both_shapes():
    c = small_cell()
    with raises("equation a", "W", "(n_h, n_x)", "h_prev", "(n_h, m)"):
        c.cell.let("a", c.W @ c.h_prev + c.b)


def test_elementwise_shape_mismatch():
    c = small_cell()
    with raises("equation g", "elementwise product", "h_prev (n_h, m)", "xt (n_x, m)"):
        c.cell.let("g", odot(c.h_prev, c.x))


@pytest.mark.parametrize("function", [sp.sin, sp.Function("f"), sp.tanh],
                         ids=["sympy.sin", "undefined Function", "sympy.tanh"])
def test_unknown_function_names_it_and_the_vocabulary(function):
    c = small_cell()
    with raises("equation a", str(function), "sigmoid", "tanh"):
        c.cell.let("a", function(c.W @ c.x))


def test_state_never_updated():
    c = small_cell()
    c.cell.state("c", c.n_h)
    c.cell.update("h", tanh(c.W @ c.x + c.U @ c.h_prev + c.b))
    with raises("state 'c'", "never updated"):
        c.cell.validate()


def test_state_never_updated_is_caught_by_derive():
    c = small_cell()
    c.cell.state("c", c.n_h)
    c.cell.update("h", tanh(c.W @ c.x + c.U @ c.h_prev + c.b))
    with raises("'c'", "never updated"):
        derive(c.cell)


def test_unused_parameter():
    c = small_cell()
    c.cell.weight("V", c.n_h, c.n_h)
    c.cell.update("h", tanh(c.W @ c.x + c.U @ c.h_prev + c.b))
    with raises("weight 'V'", "never used"):
        c.cell.validate()


def test_cycle_within_a_step_names_the_symbol_used_too_early():
    c = small_cell()
    later = MatrixSymbol("g", c.n_h, BATCH)
    with raises("equation a", "'g'", "not yet defined", "cycle"):
        c.cell.let("a", tanh(c.W @ c.x + later))


def test_update_using_its_own_new_value_says_so():
    c = small_cell()
    new_h = MatrixSymbol("h", c.n_h, BATCH)
    with raises("equation h", "new value of h", "h_prev"):
        c.cell.update("h", tanh(c.W @ c.x + c.U @ new_h))


def test_equation_name_used_twice():
    c = small_cell()
    c.cell.let("a", tanh(c.W @ c.x))
    with raises("'a'", "used twice"):
        c.cell.let("a", sigmoid(c.W @ c.x))


def test_parameter_name_used_twice():
    """Declared again with another shape: an error naming it and both shapes."""
    c = small_cell()
    with raises("'W'", "used twice", "(n_h, n_x)", "(n_x, n_h)"):
        c.cell.weight("W", c.n_x, c.n_h)


def test_identical_declarations_run_again_are_no_ops():
    """A Jupyter cell of declarations run twice: the same symbols back, nothing added."""
    c = small_cell()
    before = dict(c.cell.symbols)
    assert c.cell.dims("n_x", "n_h") == (c.n_x, c.n_h)
    assert c.cell.weight("W", c.n_h, c.n_x) == c.W
    assert c.cell.symbols == before


def test_state_updated_twice():
    c = small_cell()
    c.cell.update("h", tanh(c.W @ c.x + c.b))
    with raises("equation h", "updated twice"):
        c.cell.update("h", tanh(c.U @ c.h_prev + c.b))


@pytest.mark.parametrize("make, operation", [(lambda U, h: Inverse(U) @ h, "Inverse"),
                                             (lambda U, h: MatPow(U, 2) @ h, "MatPow")],
                         ids=["Inverse", "MatPow"])
def test_operation_without_a_derivative_rule(make, operation):
    c = small_cell()
    with raises("equation a", operation, "not supported", "no shape or VJP rule"):
        c.cell.let("a", make(c.U, c.h_prev))


def test_readout_without_batch_columns():
    c = small_cell()
    c.cell.update("h", tanh(c.W @ c.x + c.U @ c.h_prev + c.b))
    V = c.cell.weight("V", c.n_y, c.n_h)
    with raises("readout y", "(n_y, n_h)", "one column per batch entry"):
        c.cell.readout("y", softmax(V))


def test_update_of_the_wrong_shape():
    c = small_cell()
    V = c.cell.weight("V", c.n_y, c.n_x)
    with raises("equation h", "(n_y, m)", "state is (n_h, m)"):
        c.cell.update("h", tanh(V @ c.x))


def test_update_of_an_undeclared_state():
    c = small_cell()
    with raises("update of 'q'", "no state of that name"):
        c.cell.update("q", tanh(c.W @ c.x))


def test_dimension_never_defined_in_a_state():
    cell = Cell("bad")
    (n_x,) = cell.dims("n_x")
    cell.input("x", n_x)
    with raises("dimension n_h", "never defined", "h"):
        cell.state("h", sp.Symbol("n_h", integer=True, positive=True))


def test_dimension_never_defined_in_a_weight():
    c = small_cell()
    with raises("V", "dimension n_z", "never defined"):
        c.cell.weight("V", sp.Symbol("n_z", integer=True, positive=True), c.n_h)


@pytest.mark.parametrize("value", [sp.Symbol("k"), 3, sp.Trace(MatrixSymbol("A", 2, 2))],
                         ids=["scalar symbol", "int", "trace"])
def test_non_matrix_expression(value):
    c = small_cell()
    with raises("equation a", "needs a matrix expression"):
        c.cell.let("a", value)


def test_stack_of_parts_with_different_columns():
    c = small_cell()
    with raises("equation a", "stack", "equal columns", "U (n_h, n_h)"):
        c.cell.let("a", stack(c.h_prev, c.U))


def test_bias_added_without_broadcast():
    c = small_cell()
    raw = MatrixSymbol("c0", c.n_h, 1)
    with raises("equation a"):
        c.cell.let("a", c.W @ c.x + raw)


def test_undeclared_scalar_coefficient():
    c = small_cell()
    with raises("equation h", "'k'"):
        c.cell.update("h", tanh(sp.Symbol("k") * (c.W @ c.x) + c.U @ c.h_prev))


def test_cell_without_equations():
    c = small_cell()
    with raises("cell bad"):
        c.cell.validate()
