"""A state that overwrites its own pre-activation keeps it in its own buffer (issue 13).

In the plain RNN, h = tanh(a_h) is the only reader of a_h and the backward never reads a_h
(tanh' comes from h), so the planner writes a_h into h_seq[t + 1] and tanh overwrites it
there: no separate buffer of T steps. Where something else reads the pre-activation (a
readout, the backward), the rows keep a buffer of their own. The numbers are checked against
finite differences either way.
"""

import numpy as np
import pytest

from symbptt import Cell, softplus, tanh
from symbptt.api import load_cell
from symbptt.codegen import kernel_module
from symbptt.derive import derive
from symbptt.fdcheck import check
from symbptt.kernels.layout import Layout


def _run(k, m=3, T=5, seed=0):
    rng = np.random.default_rng(seed)
    dims = {d: 4 + i for i, d in enumerate(k.DIMS)}
    params = k.init_parameters(dims, rng)
    x = rng.standard_normal((k.rows(dims)["x"], m, T))
    return k.forward(params, x)


def _cell(name, activation, extra_reader=False):
    cell = Cell(name, "a one-state cell for the buffer-sharing tests")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    W = cell.weight("W", n_h, n_x)
    U = cell.weight("U", n_h, n_h)
    b = cell.bias("b", n_h)
    a = cell.let("a", W @ x + U @ h_prev + b)
    cell.update("h", activation(a))
    if extra_reader:
        V = cell.weight("V", n_h, n_h)
        cell.readout("y", V @ a)
    return cell


@pytest.mark.parametrize("name", ["rnn", "indrnn"])
def test_builtin_pre_activation_lives_in_the_state_buffer(name):
    assert Layout(derive(load_cell(name))).rows_in_state == "h"
    k = kernel_module(name)
    outputs, cache = _run(k)
    assert np.shares_memory(cache["gates_seq"], cache["h_seq"])
    np.testing.assert_array_equal(outputs["h"], cache["h_seq"][1:].transpose(1, 2, 0))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gated_cells_keep_their_own_rows(name):
    assert Layout(derive(load_cell(name))).rows_in_state is None
    _, cache = _run(kernel_module(name))
    assert not np.shares_memory(cache["gates_seq"], cache["h_seq"])


@pytest.mark.parametrize("activation, extra, shared", [
    (tanh, False, True),       # the plain case: shared
    (softplus, False, True),   # softplus' derivative is written with its output: shared
    (tanh, True, False),       # a readout reads a: a keeps its rows
])
def test_sharing_only_where_nothing_else_reads_the_rows(activation, extra, shared):
    cell = _cell(f"share_{activation.__name__}_{extra}".lower(), activation, extra)
    assert (Layout(derive(cell)).rows_in_state == "h") is shared
    k = kernel_module(cell)
    errors = check(k, m=2, T=4)
    assert max(errors.values()) < 1e-6, errors
    errors = check(k, m=2, T=4, truncate=2)
    assert max(errors.values()) < 1e-6, errors


def test_no_sharing_where_the_backward_reads_the_pre_activation():
    """log's derivative is 1/u: the backward reads a, which h = log(a) would overwrite."""
    from symbptt import log

    assert Layout(derive(_cell("share_log", log))).rows_in_state is None


def test_an_affine_update_reads_the_stacked_weights_blocks():
    """h = W·[h_prev; x] + b written straight into h: W's column blocks (W[:, :n_h] for
    h_prev, W[:, n_h:] for x) are spelled through the planner's names, not left as the split
    weights' own names, which no kernel variable holds."""
    from symbptt import stack

    cell = Cell("linear_stacked", "an affine update on the stacked state and input")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    W = cell.weight("W", n_h, n_h + n_x)
    b = cell.bias("b", n_h)
    cell.update("h", W @ stack(h_prev, x) + b)
    k = kernel_module(cell)
    errors = check(k, m=2, T=4)
    assert max(errors.values()) < 1e-6, errors


def test_a_readout_only_a_weight_gradient_reads_is_cached():
    """z = U·y with y = V·h computed after the loop: dU = dz·yᵀ reads y, which no adjoint
    reads (dy = Uᵀ·dz), so forward must keep y's steps in its cache for the backward."""
    cell = Cell("readout_of_readout", "a readout read only by another readout's weight gradient")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    W = cell.weight("W", n_h, n_x)
    U_h = cell.weight("U_h", n_h, n_h)
    V = cell.weight("V", n_y, n_h)
    U = cell.weight("U", n_y, n_y)
    h = cell.update("h", tanh(W @ x + U_h @ h_prev))
    y = cell.let("y", V @ h)
    cell.readout("z", U @ y)
    k = kernel_module(cell)
    errors = check(k, m=2, T=4)
    assert max(errors.values()) < 1e-6, errors
