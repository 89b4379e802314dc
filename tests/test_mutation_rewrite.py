"""Splitting ``W·[a; b]`` into column blocks (symbptt/kernels/rewrite.py): which stacks are
split, the blocks' names and column ranges, and that the split cell's gradients, put back
together block by block, are the original cell's.

These tests came from a mutation run over ``symbptt/kernels/rewrite.py`` (tools/mutation.py).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import MatrixSymbol

from symbptt import Cell, odot, sigmoid, stack, tanh
from symbptt.derive import derive
from symbptt.kernels.rewrite import Block, names_in, product, split_cell, terms_of, uses
from symbptt.loader import load
from symbptt.proof import concrete
from tests.test_mutation_derive import (
    assert_gradients_match,
    derived,
    explicit_problem,
    finishes_in_time,  # noqa: F401 - the same time limit
    numerical,
)


def split_gradients(cell: Cell, seed: int = 0, sizes=None):
    """The split cell's derived gradients on the original cell's random instance, each split
    weight's blocks put back side by side; and central differences of the original cell."""
    split = split_cell(derive(cell))
    problem, dims = explicit_problem(cell, seed=seed, sizes=sizes)
    original = dict(problem.parameters)
    blocks = {}
    for name, block in split.blocks.items():
        lo, hi = concrete(block.lo, dims), concrete(block.hi, dims)
        blocks[name] = original[block.weight][:, lo:hi]
    problem.parameters.clear()
    problem.parameters.update({p.name: blocks[p.name] if p.name in blocks else original[p.name]
                               for p in split.cell.parameters})
    got = derived(split.derivation, problem, dims)
    for weight, names in split.split_weights.items():
        got["d" + weight] = np.hstack([got.pop("d" + n) for n in names])
    problem.parameters.clear()
    problem.parameters.update(original)
    return split, got, numerical(cell, problem, dims)


def test_gru_weights_are_split_by_the_rows_of_their_stacks():
    split, got, expected = split_gradients(load("gru"))
    n_h, n_x = sp.Symbol("n_h", integer=True, positive=True), sp.Symbol("n_x", integer=True, positive=True)
    assert split.blocks == {
        "Wz_h_prev": Block("Wz", 0, n_h, "h_prev"), "Wz_xt": Block("Wz", n_h, n_h + n_x, "xt"),
        "Wr_h_prev": Block("Wr", 0, n_h, "h_prev"), "Wr_xt": Block("Wr", n_h, n_h + n_x, "xt"),
        "Wh_h_prev_r": Block("Wh", 0, n_h, "h_prev_r"), "Wh_xt": Block("Wh", n_h, n_h + n_x, "xt"),
    }
    assert split.split_weights == {"Wz": ["Wz_h_prev", "Wz_xt"], "Wr": ["Wr_h_prev", "Wr_xt"],
                                   "Wh": ["Wh_h_prev_r", "Wh_xt"]}
    equations = {e.name: e for e in split.cell.equations}
    assert "h_prev_xt" not in equations and "h_prev_r_xt" not in equations
    assert {str(t) for t in terms_of(equations["a_h_tilde"].expr)} == {
        "Broadcast(bh, m)", "Wh_h_prev_r*h_prev_r", "Wh_xt*xt"}
    a_z = equations["a_z"].expr
    assert {str(t) for t in terms_of(a_z)} == {"Broadcast(bz, m)", "Wz_h_prev*h_prev", "Wz_xt*xt"}
    assert split.cell.symbols["Wz_xt"].shape == (n_h, n_x)
    assert split.cell.symbols["Wz_xt"].role == "weight"
    assert split.cell.symbols["a_z"].role == "intermediate"
    assert split.cell.symbols["y"].role == "readout"
    assert [p.name for p in split.cell.parameters][:2] == ["Wz_h_prev", "Wz_xt"]
    assert split.cell.name == "gru" and split.cell.dimensions == load("gru").dimensions
    assert [e.kind for e in split.cell.equations][-1] == "readout"
    assert all(e.auto == (e.name.startswith("a_") or e.name == "h_prev_r") for e in split.cell.equations)
    assert_gradients_match(split.cell, got, expected)


def test_lstm_split_gradients_match_differences():
    _, got, expected = split_gradients(load("lstm"), sizes={"n_x": 3, "n_h": 2})
    assert_gradients_match(load("lstm"), got, expected)


def test_nothing_to_split_leaves_the_cell_alone():
    d = derive(load("rnn"))
    split = split_cell(d)
    assert split.cell is d.cell and split.derivation is d
    assert split.blocks == {} and split.split_weights == {}


def stacked_cell(share_weight: bool = False, taken: bool = False) -> Cell:
    cell = Cell("stacked", "one stack multiplied by two weights")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h, n_h + n_x)
    V = W if share_weight else cell.weight("V", n_h, n_h + n_x)
    if taken:
        cell.weight("W_xt", n_h, n_h)
    u = stack(h_prev, x)
    g = cell.let("g", sigmoid(W @ u))
    rest = odot(g, h_prev)
    if taken:
        rest = rest + cell.weight("W_xt", n_h, n_h) @ h_prev
    cell.update("h", tanh(V @ u + h_prev) + rest)
    return cell


def test_a_stack_multiplied_by_two_weights_splits_both():
    split, got, expected = split_gradients(stacked_cell())
    assert split.split_weights == {"W": ["W_h_prev", "W_xt"], "V": ["V_h_prev", "V_xt"]}
    assert_gradients_match(split.cell, got, expected)


def test_a_weight_used_twice_keeps_its_stack():
    split = split_cell(derive(stacked_cell(share_weight=True)))
    assert split.blocks == {}
    assert "h_prev_xt" in {e.name for e in split.derivation.forward}


def test_a_block_name_already_taken_gets_a_number():
    split, got, expected = split_gradients(stacked_cell(taken=True))
    assert split.split_weights["W"] == ["W_h_prev", "W_xt_2"]
    assert split.blocks["W_xt_2"].weight == "W" and split.blocks["W_xt_2"].operand == "xt"
    n_h = sp.Symbol("n_h", integer=True, positive=True)
    assert split.cell.symbols["W_xt"].shape == (n_h, n_h)  # the declared one, untouched
    assert_gradients_match(split.cell, got, expected)


def test_a_stack_that_is_also_used_another_way_is_kept():
    cell = Cell("kept", "the stack is also an operand of a stacked readout-free sum")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h + n_x, n_h + n_x)
    u = stack(h_prev, x)
    s = cell.let("s", tanh(W @ u) + u)  # the stack is a term of a sum, not only W·u
    R = cell.weight("R", n_h, n_h + n_x)
    cell.update("h", tanh(R @ s))
    split = split_cell(derive(cell))
    assert split.blocks == {}


def test_term_helpers():
    a, b = MatrixSymbol("a", 2, 2), MatrixSymbol("b", 2, 2)
    W = MatrixSymbol("W", 2, 2)
    assert terms_of(a + b) == (a + b).args and terms_of(a) == (a,)
    assert uses(W @ a + b, "a") == 1
    assert uses(W @ a + a, "a") == 2 and uses(W @ a, "b") == 0
    assert names_in(W @ a + b) == {"W", "a", "b"}
    assert product(W @ a, {"W"}) == (W, a)
    assert product(W @ a, {"V"}) is None
    assert product(2 * (W @ a), {"W"}) is None
    assert product(W @ W @ a, {"W"}) is None
    assert product(a + b, {"W"}) is None
    assert product(W @ (a + b), {"W"}) is None


def test_block_names_count_up_past_every_taken_one():
    cell = Cell("taken_twice", "the names W_xt and W_xt_2 are both declared")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h, n_h + n_x)
    A, B = cell.weight("W_xt", n_h, n_h), cell.weight("W_xt_2", n_h, n_h)
    cell.update("h", tanh(W @ stack(h_prev, x) + A @ h_prev + B @ h_prev))
    split, got, expected = split_gradients(cell)
    assert split.split_weights["W"] == ["W_h_prev", "W_xt_3"]
    assert_gradients_match(split.cell, got, expected)


def test_two_weights_whose_block_names_would_coincide_get_distinct_ones():
    # W's block for the part g_xt and W_g's block for the part xt are both "W_g_xt".
    cell = Cell("coincide", "W·[g_xt; h_prev] and W_g·[h_prev; xt]")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, W_g = cell.weight("W", n_h, 2 * n_h), cell.weight("W_g", n_h, n_h + n_x)
    g_xt = cell.let("g_xt", tanh(W_g @ stack(h_prev, x)))
    cell.update("h", tanh(W @ stack(g_xt, h_prev)))
    split, got, expected = split_gradients(cell)
    names = [b for blocks in split.split_weights.values() for b in blocks]
    assert len(set(names)) == len(names) == 4, names
    assert sorted(names) == ["W_g_h_prev", "W_g_xt", "W_g_xt_2", "W_h_prev"]
    assert_gradients_match(split.cell, got, expected)
