"""Generated kernels of many cells (every built-in one, and cells with two states, nested
nonlinearities, a stack multiplied by two weights): the forward is the cell's own equations
run on explicit matrices, the backward is central differences of that forward, full and
truncated; and the layout the kernel is planned on has the properties its module promises.

These tests came from a mutation run over the kernel planner (symbptt/kernels/layout.py,
forward.py, backward.py; tools/mutation.py): they reach it through kernel_module, without
the slow Hypothesis cells.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import sympy as sp

from symbptt import Cell, exp, fdcheck, log, odot, ops, relu, sigmoid, softmax, stack, tanh
from symbptt.arith import times_ones
from symbptt.codegen import kernel_module
from symbptt.derive import derive
from symbptt.kernels.layout import Layout, Row, in_place_name
from symbptt.loader import load
from symbptt.ops import BATCH
from symbptt.proof import ExplicitProblem, NumpyBackend, dimension_values, run_forward
from tests.test_mutation_derive import (
    finishes_in_time,  # noqa: F401 - the same time limit
    two_state_cell,
)
from tests.test_mutation_graph import nested_cell
from tests.test_mutation_rewrite import stacked_cell

TOLERANCE = 1e-6
BUILT_IN = ["rnn", "gru", "lstm", "mgu", "indrnn", "lstm_peephole", "gru_torch", "lstm_torch"]


def linear_update_cell() -> Cell:
    """An update with weight products and no activation (h = W·x + f ⊙ h_prev), and one
    operand multiplied by two weights in one sum (U·h_prev + V·h_prev)."""
    cell = Cell("linear_update", "h = W·x + f ⊙ h_prev; f = σ(U·h_prev + V·h_prev + b)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    U, V, W = cell.weight("U", n_h, n_h), cell.weight("V", n_h, n_h), cell.weight("W", n_h, n_x)
    f = cell.let("f", sigmoid(U @ h_prev + V @ h_prev + cell.bias("b", n_h)))
    cell.update("h", W @ x + odot(f, h_prev))
    return cell


def log_softmax_cell() -> Cell:
    """A gate whose backward reads its pre-activation (log: δu = δl / u), so its rows must not
    be overwritten; a softmax gate (no in-place function); a tanh gate after them."""
    cell = Cell("log_softmax", "l = log(W·x + 10), s = softmax(U·h_prev), g = tanh(V·h_prev + Q·x)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, Q = cell.weight("W", n_h, n_x), cell.weight("Q", n_h, n_x)
    U, V = cell.weight("U", n_h, n_h), cell.weight("V", n_h, n_h)
    l = cell.let("l", log(W @ x + times_ones(10, (n_h, BATCH))))
    s = cell.let("s", softmax(U @ h_prev))
    g = cell.let("g", tanh(V @ h_prev + Q @ x))
    cell.update("h", odot(g, h_prev) + odot(s, l))
    return cell


def interleaved_cell() -> Cell:
    """Gates declared so that neither their operands nor their activations are adjacent."""
    cell = Cell("interleaved", "σ(h_prev), relu(x), σ(h_prev, x), tanh(h_prev)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)

    def w(name, cols):
        return cell.weight(name, n_h, cols)

    g1 = cell.let("g1", sigmoid(w("W1", n_h) @ h_prev + cell.bias("b1", n_h)))
    g2 = cell.let("g2", relu(w("W2", n_x) @ x))
    g3 = cell.let("g3", sigmoid(w("W3", n_h) @ h_prev + w("W4", n_x) @ x + cell.bias("b3", n_h)))
    g4 = cell.let("g4", tanh(w("W5", n_h) @ h_prev))
    cell.update("h", odot(g1, h_prev) + odot(g2, g3) + g4)
    return cell


N_H = sp.Symbol("n_h", integer=True, positive=True)


def many_gates_cell() -> Cell:
    """Eight gates alternating between x and h_prev: too many to reorder."""
    cell = Cell("many", "eight gates")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    total = h_prev
    for k in range(8):
        fn, operand = (sigmoid, h_prev) if k % 2 else (tanh, x)
        g = cell.let(f"g{k}", fn(cell.weight(f"W{k}", n_h, operand.shape[0]) @ operand))
        total = total + g
    cell.update("h", total)
    return cell


def clashing_cell() -> Cell:
    """Names a kernel would give its own variables: C, n_t, W_h_prev, W_xt, W_xt_2."""
    cell = Cell("clashing", "declares C, n_t, W_h_prev, W_xt and W_xt_2")
    n_x, n_t = cell.dims("n_x", "n_t")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_t)
    C, W = cell.weight("C", n_t, n_t), cell.weight("W_h_prev", n_t, n_t)
    A, B = cell.weight("W_xt", n_t, n_x), cell.weight("W_xt_2", n_t, n_x)
    g = cell.let("g", sigmoid(C @ h_prev + A @ x))
    cell.update("h", odot(g, tanh(W @ h_prev + B @ x)) + odot(1 - g, h_prev))
    return cell


CUSTOM = {"two_states": two_state_cell, "interleaved": interleaved_cell, "many": many_gates_cell,
          "clashing": clashing_cell, "nested": nested_cell, "stacked": stacked_cell,
          "linear_update": linear_update_cell, "log_softmax": log_softmax_cell}


@functools.cache
def cell_and_kernel(name):
    cell = CUSTOM[name]() if name in CUSTOM else load(name)
    return cell, kernel_module(cell)


def reference_outputs(cell, problem, dims, m):
    """Every output at every step, from the cell's own equations on explicit matrices."""
    T = problem.x.shape[2]
    explicit = ExplicitProblem(problem.parameters, [{cell.inputs[0]: problem.x[:, :, t]} for t in range(T)],
                               problem.initial_states, [{} for _ in range(T)])
    steps = run_forward(cell, cell.equations, explicit, NumpyBackend(),
                        dimension_values(cell, {**dims, "m": m}))
    return {o: np.stack([env[o] for env in steps], axis=2) for o in list(cell.states) + list(cell.readouts)}


@pytest.mark.parametrize("name", BUILT_IN + list(CUSTOM))
@pytest.mark.parametrize("m, T, truncate", [(2, 3, None), (3, 4, 2), (1, 1, None)])
def test_kernel_forward_is_the_equations_and_backward_matches_differences(name, m, T, truncate):
    cell, kernel = cell_and_kernel(name)
    dims = fdcheck.dims_for(kernel)
    problem = fdcheck.random_problem(kernel, dims, m, T, seed=3)
    outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    expected = reference_outputs(cell, problem, dims, m)
    assert set(outputs) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    errors = fdcheck.check(kernel, m=m, T=T, truncate=truncate, seed=3)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (name, worst, errors[worst])


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_float32_kernel_agrees_with_float64(name):
    kernel = kernel_module(load(name))
    dims = fdcheck.dims_for(kernel)
    p64 = fdcheck.random_problem(kernel, dims, 2, 4, seed=1)
    p32 = fdcheck.random_problem(kernel, dims, 2, 4, seed=1, dtype=np.float32)
    out64, cache64 = kernel.forward(p64.parameters, p64.x, p64.initial_states)
    out32, cache32 = kernel.forward(p32.parameters, p32.x, p32.initial_states)
    g64 = kernel.backward(cache64, p64.upstream)
    g32 = kernel.backward(cache32, p32.upstream)
    for key in out64:
        assert out32[key].dtype == np.float32
        np.testing.assert_allclose(out32[key], out64[key], rtol=1e-4, atol=1e-5)
    for key in g64:
        assert g32[key].dtype == np.float32, key
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-3, atol=1e-4, err_msg=key)


# -- the layout's promises ----------------------------------------------------------------------


def test_lstm_layout_stacks_every_gate_in_one_buffer_with_adjacent_operand_rows():
    layout = Layout(derive(load("lstm")))
    assert [r.name for r in layout.rows] == sorted((r.name for r in layout.rows),
                                                   key=[r.name for r in layout.rows].index)
    assert {r.name for r in layout.rows} == {"a_f", "a_i", "a_c_tilde", "a_o"}
    # Each operand's rows form one run (one product per operand and step).
    for operand, members in layout.groups.items():
        assert len(layout.runs(members)) == 1, operand
    for operand, members in layout.static_groups.items():
        assert len(layout.runs(members)) == 1, operand
    assert set(layout.groups) == {"h_prev"} and set(layout.static_groups) == {"xt"}
    # Rows start where the previous ones stop; the buffer holds all of them.
    start = 0
    for r in layout.rows:
        assert r.start == start
        start = r.stop
    assert layout.total == start
    # σ gates are activated in place with their ½ folded in: one tanh family.
    assert {r.name: (r.act_kind, r.half, r.family) for r in layout.rows} == {
        "a_f": ("sigmoid", True, "tanh"), "a_i": ("sigmoid", True, "tanh"),
        "a_c_tilde": ("tanh", False, "tanh"), "a_o": ("sigmoid", True, "tanh")}
    # The readout runs after the loop.
    assert [e.name for e in layout.readout_part] == ["a_y", "y"]
    assert {"Wf", "bf", "Wo"} <= layout.covered or {"Wf_h_prev", "bf"} <= layout.covered


def test_a_row_without_an_in_place_activation_says_so():
    row = Row("a_z", sp.Symbol("n_h"))
    assert row.family == "" and row.stop == row.rows
    with pytest.raises(ValueError, match="^row a_z has no in-place activation$"):
        _ = row.activation


def test_only_a_function_with_an_out_argument_is_applied_in_place():
    u = sp.MatrixSymbol("u", 2, 3)
    assert in_place_name(ops.Tanh(u)) == "tanh" and in_place_name(ops.Sigmoid(u)) == "sigmoid"
    assert in_place_name(ops.Softmax(u)) is None  # not pointwise
    assert in_place_name(u) is None

    class NoOut(ops.Pointwise):  # a declared function whose kernel callable has no out=
        op_name = "no_out"

    assert in_place_name(NoOut(u)) is None


def test_every_affine_gate_gets_rows_and_only_safe_ones_are_overwritten():
    layout = Layout(derive(log_softmax_cell()))
    rows = {r.name: r for r in layout.rows}
    # Rows for products with the input only, with a state only, and with both.
    assert set(rows) == {"a_l", "a_s", "a_g"}
    assert rows["a_l"].static == [("W", "xt")] and rows["a_l"].dynamic == []
    assert rows["a_s"].dynamic == [("U", "h_prev")] and rows["a_s"].static == []
    # log's backward reads its operand: not overwritten; softmax has no in-place function;
    # tanh after them still is.
    assert rows["a_l"].act is None and rows["a_s"].act is None
    assert rows["a_g"].act is not None and rows["a_g"].act_kind == "tanh"
    assert layout.row == rows


def test_rows_are_reordered_so_operands_and_activations_are_adjacent():
    layout = Layout(derive(interleaved_cell()))
    # h_prev's rows (g1, g3, g4) and x's (g2, g3) are each one run; the σ rows (g3, g1) are
    # adjacent, and with tanh (σ halved) one family; among the orders that achieve this the
    # one closest to the declaration order.
    assert [r.name for r in layout.rows] == ["a_g2", "a_g3", "a_g1", "a_g4"]
    for members in list(layout.groups.values()) + list(layout.static_groups.values()):
        assert len(layout.runs(members)) == 1
    assert [m[0].name for m in layout.groups["h_prev"]] == ["a_g3", "a_g1", "a_g4"]
    assert [(r.name, w) for r, w in layout.static_groups["xt"]] == [("a_g2", "W2"), ("a_g3", "W4")]
    assert [r.family for r in layout.rows] == ["relu", "tanh", "tanh", "tanh"]


def test_more_than_seven_rows_keep_their_order():
    layout = Layout(derive(many_gates_cell()))
    assert [r.name for r in layout.rows] == [f"a_g{k}" for k in range(8)]
    # Each operand's rows are then four runs, each at its place in the operand's stacked weights.
    runs = layout.runs(layout.groups["h_prev"])
    assert [(run.group_start, run.start) for run in runs] == [
        (k * N_H, (2 * k + 1) * N_H) for k in range(4)]


def test_kernel_names_avoid_the_cells_own():
    layout = Layout(derive(load("lstm")))
    assert (layout.buf, layout.dbuf) == ("gates", "dgates")
    assert layout.stacked == {"h_prev": "W_h_prev", "xt": "W_xt"}
    layout = Layout(derive(clashing_cell()))
    assert layout.stacked == {"h_prev": "W_h_prev_2", "xt": "W_xt_3"}  # W_xt, W_xt_2: the cell's
    assert layout.fresh("C") == "C_2" and layout.fresh("n_t") == "n_t_2"
    assert layout.fresh("W_xt") == "W_xt_4"  # W_xt_3 is the kernel's already
    assert layout.fresh("W_xt") == "W_xt_5"
    assert layout.fresh("dC") == "dC_2"  # the adjoint of the weight C
    assert layout.fresh("a_g") == "a_g_2"  # a lowered equation


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_the_cache_keeps_only_what_the_backward_reads(name):
    # The gates' pre-activations live in gates_seq, overwritten by their activations: no copy
    # of them is kept, and nothing of the readouts but the output.
    cell, kernel = cell_and_kernel(name)
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 3)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    assert not [k for k in cache if k.startswith("a_")], sorted(cache)
    layout = Layout(derive(cell))
    assert not [n for n in layout.needed if n in layout.row], sorted(layout.needed)


def three_operand_cell() -> Cell:
    """Seven gates on three operands with four activations, declared out of order: one order
    keeps every operand's rows and every activation's rows together (and its reverse)."""
    cell = Cell("three_operands", "gates on x, h_prev and c_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev, c_prev = cell.input("x", n_x), cell.state("h", n_h), cell.state("c", n_h)
    ten = times_ones(10, (n_h, BATCH))

    def gate(name, fn, operand):
        return cell.let(name, fn(cell.weight(f"W{name}", n_h, operand.shape[0]) @ operand))

    # The order that keeps everything together: G A B C D E F (or F E D C B A G).
    c = gate("C", relu, h_prev)
    f = cell.let("F", log(cell.weight("WF", n_h, n_h) @ c_prev + ten))
    a = gate("A", sigmoid, x)
    d = gate("D", exp, h_prev)
    b = gate("B", relu, x)
    e = gate("E", exp, c_prev)
    g = gate("G", tanh, x)
    cell.update("h", odot(a, h_prev) + odot(b, c) + odot(d, 0.1 * g))
    cell.update("c", odot(e, 0.1 * c_prev) + f)
    return cell


def test_rows_of_three_operands_and_four_activations_are_kept_together():
    layout = Layout(derive(three_operand_cell()))
    # Of the two orders that keep everything together, the one closer to the declaration order
    # (F was declared second, G last).
    assert [r.name[2:] for r in layout.rows] == ["F", "E", "D", "C", "B", "A", "G"]
    for members in list(layout.groups.values()) + list(layout.static_groups.values()):
        assert len(layout.runs(members)) == 1


def test_a_split_weight_keeps_its_name_from_the_kernels_own():
    # The weight W_h_prev multiplies [h_prev; x] and is split into column blocks; the kernel's
    # stacked weights for h_prev (its block and U) must not take the name W_h_prev.
    cell = Cell("split_clash", "W_h_prev·[h_prev; x] + U·h_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W_h_prev", n_h, n_h + n_x), cell.weight("U", n_h, n_h)
    g = cell.let("g", sigmoid(W @ stack(h_prev, x)))
    cell.update("h", odot(g, tanh(U @ h_prev)) + odot(1 - g, h_prev))
    assert Layout(derive(cell)).stacked["h_prev"] == "W_h_prev_2"
    errors = fdcheck.check(kernel_module(cell), m=2, T=3)
    assert max(errors.values()) <= TOLERANCE, errors


def test_two_tanh_gates_on_one_operand_with_a_split_weight_first():
    # h_prev's group: W's column block for h_prev (a view of W), then U; no σ rows, so the
    # forward stacks the two weights as they are.
    cell = Cell("tanh_pair", "tanh(W·[h_prev; x]) and tanh(U·h_prev)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g1 = cell.let("g1", tanh(cell.weight("W", n_h, n_h + n_x) @ stack(h_prev, x)))
    g2 = cell.let("g2", tanh(cell.weight("U", n_h, n_h) @ h_prev))
    cell.update("h", odot(g1, g2) + h_prev)
    layout = Layout(derive(cell))
    assert [w for _, w in layout.groups["h_prev"]] == ["W_h_prev", "U"]
    errors = fdcheck.check(kernel_module(cell), m=2, T=3)
    assert max(errors.values()) <= TOLERANCE, errors
