"""Lowering (symbptt/graph.py): the names it gives the values a VJP rule reuses, which values
it leaves unnamed, and that the lowered equations still compute the cell.

The names are what reports print and kernels call their arrays; these tests came from a
mutation run over ``symbptt/graph.py`` (tools/mutation.py).
"""

from __future__ import annotations

import pytest
from sympy import MatrixSymbol, OneMatrix

from symbptt import Cell, exp, odot, relu, sigmoid, stack, tanh
from symbptt.derive import derive
from symbptt.graph import is_simple, lower
from symbptt.loader import load
from symbptt.ops import Broadcast
from tests.test_mutation_derive import (
    assert_gradients_match,
    derived,
    explicit_problem,
    finishes_in_time,  # noqa: F401 - the same time limit
    numerical,
)


def printed(expr) -> str:
    """The expression as SymPy prints it, a product's factors in name order (SymPy's own
    order of HadamardProduct factors can vary between runs)."""
    if type(expr).__name__ == "HadamardProduct":
        return f"HadamardProduct({', '.join(sorted(map(str, expr.args)))})"
    return str(expr)


def listing(cell: Cell) -> list[tuple]:
    return [(e.name, printed(e.expr), e.kind, e.auto, e.meaning) for e in lower(cell)]


def test_gru_lowers_to_named_stacks_pre_activations_and_operands():
    assert listing(load("gru")) == [
        ("h_prev_xt", "Stack(h_prev, xt)", "let", True, "stacked rows"),
        ("a_z", "Broadcast(bz, m) + Wz*h_prev_xt", "let", True, "pre-activation of z"),
        ("z", "Sigmoid(a_z)", "let", False, "update gate"),
        ("a_r", "Broadcast(br, m) + Wr*h_prev_xt", "let", True, "pre-activation of r"),
        ("r", "Sigmoid(a_r)", "let", False, "reset gate"),
        ("h_prev_r", "HadamardProduct(h_prev, r)", "let", True, "operand in h_tilde"),
        ("h_prev_r_xt", "Stack(h_prev_r, xt)", "let", True, "stacked rows"),
        ("a_h_tilde", "Broadcast(bh, m) + Wh*h_prev_r_xt", "let", True, "pre-activation of h_tilde"),
        ("h_tilde", "Tanh(a_h_tilde)", "let", False, "candidate state"),
        ("h", "HadamardProduct(1 - z, h_tilde) + HadamardProduct(h_prev, z)", "update", False, ""),
        ("a_y", "Broadcast(by, m) + Wy*h", "let", True, "pre-activation of y"),
        ("y", "Softmax(a_y)", "readout", False, "prediction"),
    ]


def test_lstm_gates_share_one_stack_and_tanh_of_c_gets_a_name():
    rows = listing(load("lstm"))
    assert [r[0] for r in rows].count("h_prev_xt") == 1
    assert ("tanh_c", "Tanh(c)", "let", True, "tanh of c") in rows
    assert ("h", "HadamardProduct(o, tanh_c)", "update", False, "") in rows


def nested_cell() -> Cell:
    cell = Cell("nested", "nested nonlinearities, a let named like a pre-activation")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h)
    a = cell.let("a_h", tanh(W @ x), "a let whose name a pre-activation would take")
    g = cell.let("g", odot(sigmoid(U @ h_prev + a), exp(tanh(U @ h_prev))))
    cell.update("h", relu(U.T @ odot(g, h_prev) + (1 - g)))
    return cell


def test_nested_nonlinearities_get_their_own_equations():
    assert listing(nested_cell()) == [
        ("a_a_h", "W*xt", "let", True, "pre-activation of a_h"),
        ("a_h", "Tanh(a_a_h)", "let", False, "a let whose name a pre-activation would take"),
        ("a_sigmoid_g", "U*h_prev + a_h", "let", True, "operand of sigmoid in g"),
        ("sigmoid_a_sigmoid_g", "Sigmoid(a_sigmoid_g)", "let", True, "sigmoid of a_sigmoid_g"),
        ("a_tanh_g", "U*h_prev", "let", True, "operand of tanh in g"),
        ("tanh_a_tanh_g", "Tanh(a_tanh_g)", "let", True, "tanh of a_tanh_g"),
        ("exp_tanh_a_tanh_g", "Exp(tanh_a_tanh_g)", "let", True, "exp of tanh_a_tanh_g"),
        ("g", "HadamardProduct(exp_tanh_a_tanh_g, sigmoid_a_sigmoid_g)", "let", False, ""),  # (sorted below)
        ("g_h_prev", "HadamardProduct(g, h_prev)", "let", True, "operand in h"),
        ("a_h_2", "1 + U.T*g_h_prev - g", "let", True, "pre-activation of h"),
        ("h", "Relu(a_h_2)", "update", False, ""),
    ]


def test_nested_cell_derivation_matches_differences():
    cell = nested_cell()
    problem, dims = explicit_problem(cell, sizes={"n_x": 3, "n_h": 3})
    assert_gradients_match(cell, derived(derive(cell), problem, dims), numerical(cell, problem, dims))


def test_a_taken_name_gets_the_next_free_number():
    cell = Cell("taken", "the names a_h and a_h_2 are declared")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h, n_x)
    a1 = cell.let("a_h", W @ x)
    a2 = cell.let("a_h_2", tanh(a1))
    cell.update("h", tanh(a2 + h_prev))
    names = [e.name for e in lower(cell)]
    assert names == ["a_h", "a_h_2", "a_h_3", "h"]


def test_compound_operands_of_products_are_named_once_and_parameters_are_not():
    cell = Cell("operands", "one compound operand used twice in products")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h)
    V = cell.weight("V", n_h, n_h)
    g = cell.let("g", sigmoid(W @ x))
    cell.update("h", tanh(U @ odot(g, h_prev) + V @ odot(g, h_prev)))
    rows = listing(cell)
    assert [r[0] for r in rows] == ["a_g", "g", "g_h_prev", "a_h", "h"]
    assert rows[2] == ("g_h_prev", "HadamardProduct(g, h_prev)", "let", True, "operand in h")
    assert rows[3][1] == "U*g_h_prev + V*g_h_prev"
    # A product of a per-step value with a compound operand: the operand gets a name.
    cell2 = Cell("stacked_product", "a stack of two computed values")
    n_x, n_h = cell2.dims("n_x", "n_h")
    x, h_prev = cell2.input("x", n_x), cell2.state("h", n_h)
    V = cell2.weight("V", n_h, n_h + n_x)
    s = cell2.let("s", tanh(cell2.weight("S", n_h, n_h) @ h_prev))
    cell2.update("h", tanh(V @ stack(odot(s, h_prev), x)))
    assert [e.name for e in lower(cell2)] == ["a_s", "s", "h_prev_s", "h_prev_s_xt", "a_h", "h"]


def test_stack_of_compound_parts_is_labelled_by_its_equation():
    cell = Cell("compound_stack", "a stack of a compound part")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    V = cell.weight("V", n_h, n_h + n_x)
    cell.update("h", tanh(V @ stack(tanh(h_prev) + h_prev, x)))
    names = [e.name for e in lower(cell)]
    # The compound part is "h_in" (named after its equation), the stack of the named parts
    # after them.
    assert names == ["tanh_h_prev", "h_in", "h_in_xt", "a_h", "h"], names


@pytest.mark.parametrize("expr, simple", [
    (MatrixSymbol("v", 2, 3), True),
    (OneMatrix(2, 3), True),
    (Broadcast(MatrixSymbol("b", 2, 1)), True),
    (MatrixSymbol("v", 2, 3).T, True),
    (-MatrixSymbol("v", 2, 3), True),
    (OneMatrix(2, 3) - MatrixSymbol("v", 2, 3), True),
    ((MatrixSymbol("v", 2, 3) + MatrixSymbol("w", 2, 3)).T, False),
    (MatrixSymbol("v", 2, 3) + MatrixSymbol("w", 2, 3), False),
    (OneMatrix(2, 3) - tanh(MatrixSymbol("v", 2, 3)), False),
    (OneMatrix(2, 3) + MatrixSymbol("v", 2, 3) + MatrixSymbol("w", 2, 3), False),
    (MatrixSymbol("W", 2, 2) * MatrixSymbol("v", 2, 3), False),
    (-tanh(MatrixSymbol("v", 2, 3)), False),
    (tanh(MatrixSymbol("v", 2, 3)), False),
])
def test_simple_values_are_the_cheap_ones(expr, simple):
    assert is_simple(expr) is simple


def test_a_fresh_name_avoids_declared_parameters_and_earlier_fresh_names():
    cell = Cell("collide", "a weight named like a pre-activation; two operands in one equation")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    A = cell.weight("a_h", n_h, n_x)
    U, V = cell.weight("U", n_h, n_h), cell.weight("V", n_h, n_h)
    g = cell.let("g", tanh(A @ x))
    # Two different compound operands of products in the equation of h: h_in, then h_in_2.
    cell.update("h", tanh(U @ (g + h_prev) + V @ (g - h_prev)))
    rows = listing(cell)
    assert [r[0] for r in rows] == ["a_g", "g", "h_in", "h_in_2", "a_h_2", "h"]
    assert rows[4][1] == "U*h_in + V*h_in_2"
    problem, dims = explicit_problem(cell)
    assert_gradients_match(cell, derived(derive(cell), problem, dims), numerical(cell, problem, dims))


def test_a_stack_with_a_part_that_is_not_a_symbol_is_named_after_its_equation():
    cell = Cell("one_minus_stack", "[1 - h_prev; x]")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_h + n_x) @ stack(1 - h_prev, x)))
    rows = listing(cell)
    assert [r[0] for r in rows] == ["h_in", "a_h", "h"]
    assert rows[0][4] == "stacked rows"
