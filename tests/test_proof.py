"""The symbolic proof: derived gradients equal sympy.diff of the scalar loss, exactly.

rnn is proved at T = 3 with every size 2. The gated cells' expanded polynomials grow about
a thousandfold from T = 2 to T = 3, so they are proved at T = 2 (which still carries a
gradient from step 2 back to step 1): gru_torch and lstm_torch at the default sizes; gru
and lstm, whose softmax readout is the costly part, once at T = 1 with every size 2 (the
whole step, readout included, with symbolic incoming gradients) and once at T = 2 with
n_x = 1 and n_y = 1 (the carry through time). Their full T = 2 proof at the default sizes
takes about 25 s each and runs with SYMBPTT_SLOW=1.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import sympy as sp

from symbptt import Cell, derive, exp, log, odot, relu, sigmoid, softmax, stack, tanh
from symbptt.derive import Term
from symbptt.loader import load
from symbptt.ops import hadamard
from symbptt.proof import PolynomialView, difference_is_zero, prove, prove_keys

slow = pytest.mark.skipif(os.environ.get("SYMBPTT_SLOW") != "1",
                          reason="slow symbolic proof; run with SYMBPTT_SLOW=1")

KEYS = {
    "rnn": ["dWhx", "dWhh", "dbh", "dWyh", "dby", "dx", "dh0"],
    "gru": ["dWz", "dbz", "dWr", "dbr", "dWh", "dbh", "dWy", "dby", "dx", "dh0"],
    "lstm": ["dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo", "dWy", "dby", "dx", "dh0",
             "dc0"],
}


def test_rnn_is_proved_at_three_steps():
    result = prove(load("rnn"), T=3)
    assert list(result) == KEYS["rnn"]
    assert all(result.values()), result


@pytest.mark.parametrize("name", ["gru_torch", "lstm_torch"])
def test_torch_cells_are_proved_at_two_steps(name):
    results = prove_keys(load(name), T=2)
    assert results and all(r.proved for r in results), [r for r in results if not r.proved]
    assert {"dx", "dh0"} <= {r.key for r in results}


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_notebook_cells_one_whole_step_is_proved(name):
    result = prove(load(name), T=1)
    assert list(result) == KEYS[name]
    assert all(result.values()), result


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_notebook_cells_carry_through_time_is_proved(name):
    result = prove(load(name), sizes={"n_x": 1, "n_h": 2, "n_y": 1}, T=2)
    assert all(result.values()), result


@slow
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_notebook_cells_are_proved_at_two_steps(name):
    result = prove(load(name), T=2)
    assert list(result) == KEYS[name]
    assert all(result.values()), result


def test_a_single_step_with_a_batch_of_two_is_proved():
    result = prove(load("gru"), sizes={"n_x": 1, "n_h": 2, "n_y": 2, "m": 2}, T=1)
    assert all(result.values()), result


def test_a_composed_cell_with_every_pointwise_function_is_proved():
    """relu, exp∘tanh, log∘σ, a gated stack and a softmax readout in one cell."""
    cell = Cell("composed", "every pointwise function of the DSL")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g = cell.let("g", exp(tanh(cell.weight("U", n_h, n_x) @ x + cell.weight("V", n_h, n_h) @ h_prev)))
    q = cell.let("q", log(sigmoid(cell.weight("W", n_h, n_h + n_x) @ stack(odot(g, h_prev), x))))
    r = cell.let("r", relu(cell.weight("R", n_h, n_x) @ x + cell.bias("b", n_h)))
    h = cell.update("h", odot(g, h_prev) + q + r)
    cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y)))
    result = prove(cell, sizes={"n_x": 1, "n_h": 1, "n_y": 2}, T=1)
    assert all(result.values()), result


def _perturbed(derivation, target: str, change):
    """A copy of the derivation with one adjoint's first term replaced by change(term)."""
    backward = []
    for adj in derivation.backward:
        if adj.target == target:
            first = adj.terms[0]
            adj = replace(adj, terms=(Term(change(first.expr), first.via), *adj.terms[1:]))
        backward.append(adj)
    return replace(derivation, backward=backward)


def test_a_wrong_activation_derivative_is_caught():
    cell = load("rnn")
    derivation = derive(cell)
    h = sp.MatrixSymbol("h", *derivation.equation("h").expr.shape)
    dh = next(a.symbol for a in derivation.backward if a.target == "h")
    # tanh' written as (1 - h) instead of (1 - h ⊙ h)
    wrong = _perturbed(derivation, "a_h", lambda _: hadamard(dh, sp.OneMatrix(*h.shape) - h))
    results = {r.key: r for r in prove_keys(cell, T=2, derivation=wrong)}
    assert not results["dWhx"].proved and "differs" in results["dWhx"].counterexample
    assert not results["dh0"].proved
    assert results["dWyh"].proved and results["dby"].proved  # the readout path is untouched


def test_a_sign_error_in_the_carry_is_caught():
    cell = load("gru")
    derivation = derive(cell)
    # δ[h_prev; xt] = Wrᵀ·δa_r + Wzᵀ·δa_z with the first term's sign flipped
    wrong = _perturbed(derivation, "h_prev_xt", lambda expr: -expr)
    result = prove(cell, T=1, derivation=wrong)
    assert not result["dx"] and not result["dh0"]
    assert all(result[k] for k in ("dWz", "dWr", "dWh", "dWy"))  # one step: nothing flows back
    result = prove(cell, sizes={"n_x": 1, "n_h": 1, "n_y": 1}, T=2, derivation=wrong)
    assert not result["dWz"] and not result["dWh"]  # two steps: the carry reaches them


def test_difference_is_zero_knows_the_activation_identities():
    u, v = sp.symbols("u v", real=True)
    sigma = (1 + sp.tanh(u / 2)) / 2
    assert difference_is_zero(sp.diff(sigma, u) - sigma * (1 - sigma))
    assert difference_is_zero(sp.diff(sp.tanh(u), u) - (1 - sp.tanh(u) ** 2))
    assert not difference_is_zero(sp.diff(sp.tanh(u), u) - (1 - sp.tanh(u)))
    assert not difference_is_zero(u * v - v)


def test_polynomial_view_handles_quotients():
    a, b = sp.symbols("a b", real=True)
    view = PolynomialView([a / (a + b), b / (a + b)])
    assert view.equal(a / (a + b) + b / (a + b) - b / (a + b), a / (a + b))
    assert not view.equal(a / (a + b), b / (a + b))
