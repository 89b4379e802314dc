"""One row per operation: a tiny cell that uses it, its gradients against finite differences.

Every declared operation is also walked through every consumer, without a list, by
tests/test_operation_consumers.py; the rows here combine operations. Each row receives a fresh
cell with dimensions n_x, n_h, an input x and a state h, declares the parameters it needs
and returns the expression of the next state.
"""

import pytest

from symbptt import Cell, exp, fdcheck, log, odot, one_minus, relu, sigmoid, softmax, stack, tanh
from symbptt.codegen import kernel_module
from symbptt.ops import RowSlice


def affine(cell, n_x, n_h, x, h_prev, tag=""):
    W = cell.weight(f"W{tag}", n_h, n_x)
    U = cell.weight(f"U{tag}", n_h, n_h)
    b = cell.bias(f"b{tag}", n_h)
    return W @ x + U @ h_prev + b


def row_matmul(cell, n_x, n_h, x, h_prev):
    return tanh(affine(cell, n_x, n_h, x, h_prev))


def row_sigmoid(cell, n_x, n_h, x, h_prev):
    return sigmoid(affine(cell, n_x, n_h, x, h_prev))


def row_relu(cell, n_x, n_h, x, h_prev):
    u = affine(cell, n_x, n_h, x, h_prev)
    return relu(u) + 0.1 * tanh(u)


def row_exp(cell, n_x, n_h, x, h_prev):
    return 0.1 * exp(affine(cell, n_x, n_h, x, h_prev))


def row_log(cell, n_x, n_h, x, h_prev):
    u = affine(cell, n_x, n_h, x, h_prev)
    return log(exp(u) + exp(-u))


def row_hadamard(cell, n_x, n_h, x, h_prev):
    return odot(sigmoid(affine(cell, n_x, n_h, x, h_prev)), h_prev)


def row_one_minus(cell, n_x, n_h, x, h_prev):
    return odot(one_minus(sigmoid(affine(cell, n_x, n_h, x, h_prev))), tanh(h_prev))


def row_stack(cell, n_x, n_h, x, h_prev):
    V = cell.weight("V", n_h, n_h + n_x)
    return tanh(V @ stack(h_prev, x) + cell.bias("b", n_h))


def row_slice(cell, n_x, n_h, x, h_prev):
    V = cell.weight("V", n_h + n_h, n_h)
    both = tanh(V @ h_prev)
    return odot(RowSlice(both, 0, n_h), RowSlice(both, n_h, n_h + n_h)) + cell.weight("W", n_h, n_x) @ x


def row_transpose(cell, n_x, n_h, x, h_prev):
    return tanh(cell.weight("U", n_h, n_h).T @ h_prev + cell.weight("W", n_h, n_x) @ x)


def row_difference(cell, n_x, n_h, x, h_prev):
    u = affine(cell, n_x, n_h, x, h_prev)
    return tanh(u) - odot(h_prev, sigmoid(u))


def row_softmax(cell, n_x, n_h, x, h_prev):
    return softmax(affine(cell, n_x, n_h, x, h_prev))


ROWS = [row_matmul, row_sigmoid, row_relu, row_exp, row_log, row_hadamard, row_one_minus,
        row_stack, row_slice, row_transpose, row_difference, row_softmax]


def make_cell(row) -> Cell:
    cell = Cell(row.__name__[4:])
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    cell.update("h", row(cell, n_x, n_h, x, h_prev))
    return cell


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.__name__[4:])
@pytest.mark.parametrize("truncate", [None, 2])
def test_operation_gradients(row, truncate):
    kernel = kernel_module(make_cell(row))
    errors = fdcheck.check(kernel, m=2, T=4, truncate=truncate, sizes={"n_x": 3, "n_h": 4})
    assert max(errors.values()) <= 1e-6, errors


def test_shared_subexpressions_are_computed_once():
    """A compound subexpression used by two backward statements is named and computed once."""
    from sympy import MatrixSymbol

    from symbptt.derive import Adjoint, Term, share_common
    from symbptt.ops import BATCH, add, hadamard, matmul

    n = 3
    dz, h_prev, r, W = (MatrixSymbol(s, n, BATCH) for s in ("dz", "h_prev", "r", "W"))
    common = hadamard(dz, h_prev)
    backward = [
        Adjoint("z", dz, (Term(r, "h"),)),
        Adjoint("r", MatrixSymbol("dr", n, BATCH), (Term(add(common, r), "h"),)),
        Adjoint("h_prev", MatrixSymbol("dh_prev", n, BATCH), (Term(matmul(W.T, common), "h"),)),
    ]
    shared = share_common(backward)
    assert [a.symbol.name for a in shared] == ["dz", "shared_1", "dr", "dh_prev"]
    assert shared[1].expr == common
    assert all(common not in a.expr.atoms(type(common)) for a in shared[2:])


def test_input_with_another_name_is_still_x_at_the_interface():
    from symbptt import CellError

    cell = Cell("u_cell")
    n_u, n_h = cell.dims("n_u", "n_h")
    u, h_prev = cell.input("u", n_u), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_u) @ u + cell.weight("U", n_h, n_h) @ h_prev))
    errors = fdcheck.check(kernel_module(cell), m=2, T=3)
    assert "dx" in errors and max(errors.values()) <= 1e-6, errors

    two = Cell("two_inputs")
    n_u, n_h = two.dims("n_u", "n_h")
    u, v, h_prev = two.input("u", n_u), two.input("v", n_u), two.state("h", n_h)
    two.update("h", tanh(two.weight("W", n_h, n_u) @ u + two.weight("V", n_h, n_u) @ v
                         + two.weight("U", n_h, n_h) @ h_prev))
    with pytest.raises(CellError, match="one input sequence x; the cell declares 2"):
        kernel_module(two)
