"""The derivation on its own (no kernel): its adjoints, run on explicit NumPy matrices, are the
gradients of the loss that central differences of the cell's own equations give.

These tests came from a mutation run over ``symbptt/derive.py`` (tools/mutation.py): the
kernel tests reach the derivation only through generated code, so a derivation that is
right for every built-in cell but wrong for a corner (a readout left out, an adjoint's
bookkeeping, a shared subexpression) needs a check of its own.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from sympy import MatrixSymbol, ZeroMatrix

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh
from symbptt.cell import prev_name, step_name
from symbptt.derive import Adjoint, Term, adjoint_name, derive, share_common
from symbptt.loader import load
from symbptt.proof import (
    ExplicitProblem,
    NumpyBackend,
    concrete,
    dimension_values,
    loss,
    run_backward,
    run_forward,
)

BACKEND = NumpyBackend()
#: Every test here takes well under a second; one still running after this long is stuck.
LIMIT_S = 20


@pytest.fixture(autouse=True)
def finishes_in_time():
    """A derivation of a small cell ends: a test still running after LIMIT_S seconds fails
    (a derivation that never stops sharing subexpressions, a name search that never ends)."""

    def stuck(signum, frame):
        raise TimeoutError(f"still running after {LIMIT_S} s: the derivation does not end")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
SIZES = {"n_x": 2, "n_h": 3, "n_y": 2, "m": 2}


def explicit_problem(cell: Cell, T: int = 3, seed: int = 0, sizes=None, outputs=None):
    """Random parameters, inputs, initial states and upstream gradients for every output
    (or only those named in ``outputs``)."""
    dims = dimension_values(cell, {**SIZES, **(sizes or {})})
    rng = np.random.default_rng(seed)

    def draw(shape):
        return 0.5 * rng.standard_normal(tuple(concrete(d, dims) for d in shape))

    parameters = {p.name: draw(p.shape) for p in cell.parameters}
    inputs = [{i: draw(cell.symbols[step_name(i)].shape) for i in cell.inputs} for _ in range(T)]
    initial = {s: draw(cell.symbols[prev_name(s)].shape) for s in cell.states}
    names = list(cell.states) + list(cell.readouts) if outputs is None else outputs
    shapes = {e.name: e.expr.shape for e in cell.equations}
    upstream = [{o: draw(shapes[o]) for o in names} for _ in range(T)]
    return ExplicitProblem(parameters, inputs, initial, upstream), dims


def derived(derivation, problem, dims, truncate=None):
    """The derivation's gradients on explicit values (forward: the lowered equations)."""
    steps = run_forward(derivation.cell, derivation.forward, problem, BACKEND, dims)
    return run_backward(derivation, steps, problem, BACKEND, dims, truncate=truncate)


def numerical(cell: Cell, problem: ExplicitProblem, dims, eps: float = 1e-6):
    """Central differences of L = Σ upstream ⊙ outputs, the cell's own equations run forward."""

    def total():
        return loss(run_forward(cell, cell.equations, problem, BACKEND, dims), problem, BACKEND)

    def diff(array):
        out = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            keep = array[index]
            array[index] = keep + eps
            up = total()
            array[index] = keep - eps
            down = total()
            array[index] = keep
            out[index] = (up - down) / (2 * eps)
        return out

    grads = {adjoint_name(k): diff(v) for k, v in problem.parameters.items()}
    for i in cell.inputs:
        grads[adjoint_name(i)] = [diff(step[i]) for step in problem.inputs]
    for s in cell.states:
        grads[f"d{s}0"] = diff(problem.initial_states[s])
    return grads


def assert_gradients_match(cell: Cell, got: dict, expected: dict, tolerance: float = 1e-7):
    assert set(expected) <= set(got), sorted(set(expected) - set(got))
    for key, value in expected.items():
        g = got[key]
        pairs = zip(g, value) if isinstance(value, list) else [(g, value)]
        for a, b in pairs:
            a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
            assert a.shape == b.shape, (cell.name, key, a.shape, b.shape)
            scale = max(float(np.max(np.abs(b))), 1e-3)
            assert float(np.max(np.abs(a - b))) <= tolerance * scale, (cell.name, key, a, b)


# -- the derivation against finite differences of the cell's own equations ------------------


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "mgu", "indrnn"])
def test_derived_gradients_of_built_in_cells_match_differences(name):
    cell = load(name)
    problem, dims = explicit_problem(cell)
    assert_gradients_match(cell, derived(derive(cell), problem, dims), numerical(cell, problem, dims))


def two_state_cell() -> Cell:
    """Two states read by each other, a readout of each, shared gate products."""
    cell = Cell("two_states", "c and h read each other; y reads both")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x = cell.input("x", n_x)
    h_prev, c_prev = cell.state("h", n_h), cell.state("c", n_h)
    W = cell.weight("W", n_h, n_h + n_x)
    U = cell.weight("U", n_h, n_h)
    b = cell.bias("b", n_h)
    g = cell.let("g", sigmoid(W @ stack(h_prev, x) + b))
    c = cell.update("c", odot(g, c_prev) + odot(1 - g, tanh(U @ h_prev)))
    h = cell.update("h", odot(g, tanh(c)))
    V = cell.weight("V", n_y, n_h)
    cell.readout("y", softmax(V @ h + V @ c))
    return cell


def test_two_states_and_a_readout_reading_both_match_differences():
    cell = two_state_cell()
    problem, dims = explicit_problem(cell)
    assert_gradients_match(cell, derived(derive(cell), problem, dims), numerical(cell, problem, dims))


def test_truncated_backward_cuts_the_carry():
    cell = load("gru")
    problem, dims = explicit_problem(cell, T=4)
    full = derived(derive(cell), problem, dims)
    cut = derived(derive(cell), problem, dims, truncate=2)
    # Step 3's input gradient does not depend on the cut; step 0's does.
    assert np.allclose(full["dx"][3], cut["dx"][3])
    assert not np.allclose(full["dx"][0], cut["dx"][0])


# -- the derivation without readouts (the notebook's one-step backward, and reports) --------


def test_without_readouts_the_step_sees_only_the_next_states_gradients():
    cell = two_state_cell()
    d = derive(cell, include_readouts=False)
    assert [e.name for e in d.forward if e.kind == "readout"] == []
    assert set(d.incoming) == {"h", "c"}
    assert {s.name for s in d.incoming.values()} == {"dh_next", "dc_next"}
    assert "y" not in {e.name for e in d.forward}
    # What only the readout reads is gone too (its pre-activation), what the states need stays.
    full = derive(cell)
    kept = {e.name for e in d.forward}
    assert kept < {e.name for e in full.forward}
    assert {"g", "c", "h"} <= kept
    assert all("y" not in e.name for e in d.forward), [e.name for e in d.forward]
    # The readout weight gets no contribution; the others are still right.
    assert {p.target: p.terms for p in d.parameters}["V"] == ()
    problem, dims = explicit_problem(cell, outputs=["h", "c"])
    assert_gradients_match(cell, derived(d, problem, dims), numerical(cell, problem, dims))


def test_readout_feeding_another_equation_is_refused():
    cell = Cell("reads_readout", "a readout read by a later equation")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    y = cell.readout("y", tanh(cell.weight("W", n_h, n_x) @ x))
    cell.update("h", odot(y, h_prev))
    with pytest.raises(ValueError, match="^readout y is used by another equation of the step$"):
        derive(cell)


# -- the adjoints' bookkeeping ------------------------------------------------------------------


def test_adjoints_are_grouped_as_carries_inputs_and_intermediates():
    d = derive(load("lstm"))
    assert [a.target for a in d.carries] == ["h_prev", "c_prev"]
    assert [a.symbol.name for a in d.carries] == ["dh_prev", "dc_prev"]
    assert [a.target for a in d.input_adjoints] == ["xt"]
    assert [a.symbol.name for a in d.input_adjoints] == ["dxt"]
    # Each adjoint has the shape of its value: (rows, m).
    for a in d.carries + d.input_adjoints:
        assert a.symbol.shape == d.cell.symbols[a.target].shape, a.target
    middle = [a.target for a in d.intermediate_adjoints]
    assert "h_prev" not in middle and "xt" not in middle and "c" in middle
    # Intermediates are computed in reverse order of the forward equations.
    order = [e.name for e in d.forward]
    named = [t for t in middle if t in order]
    assert named == sorted(named, key=order.index, reverse=True)
    # The carries and the input come last, in the order the cell file declares them.
    assert [a.target for a in d.backward[-3:]] == ["xt", "h_prev", "c_prev"]
    assert d.equation("c").kind == "update"
    with pytest.raises(StopIteration):
        d.equation("nope")


def test_incoming_gradients_are_named_and_ordered_as_the_outputs():
    d = derive(load("lstm"))
    # In the order of the equations that compute them (the LSTM updates c before h).
    assert list(d.incoming) == ["c", "h", "y"]
    assert [s.name for s in d.incoming.values()] == ["dc_next", "dh_next", "dy"]
    # A state's own adjoint starts from what arrives (from the loss and from step t+1).
    dc = next(a for a in d.backward if a.target == "c")
    assert dc.incoming == d.incoming["c"]
    assert dc.symbol.name == "dc"


def test_adjoint_without_contributions_is_zero():
    cell = Cell("unused_state", "h_prev does not reach h")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x))
    d = derive(cell)
    (carry,) = d.carries
    assert carry.terms == () and carry.incoming is None
    assert carry.expr == ZeroMatrix(*carry.symbol.shape)
    problem, dims = explicit_problem(cell)
    assert np.array_equal(derived(d, problem, dims)["dh0"], np.zeros((3, 2)))


def test_adjoint_expression_is_incoming_plus_terms():
    s = MatrixSymbol("s", 2, 2)
    a, b, up = MatrixSymbol("a", 2, 2), MatrixSymbol("b", 2, 2), MatrixSymbol("ds_next", 2, 2)
    assert set(Adjoint("s", s, (Term(a, "x"), Term(b, "y"))).expr.args) == {a, b}
    assert set(Adjoint("s", s, (Term(a, "x"),), up).expr.args) == {up, a}
    assert Adjoint("s", s, (), up).expr == up


# -- shared subexpressions ---------------------------------------------------------------------


def test_a_repeated_subexpression_is_computed_once_before_its_first_use():
    a, b, c = (MatrixSymbol(n, 2, 2) for n in "abc")
    big = odot(a, tanh(b))
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(c, "q"),)),
                Adjoint("q", MatrixSymbol("dq", 2, 2), (Term(c @ big, "r"),)),
                Adjoint("r", MatrixSymbol("dr", 2, 2), (Term(a @ big, "s"),))]
    shared = share_common(adjoints)
    assert [x.target for x in shared] == ["p", "shared_1", "q", "r"]
    s1 = shared[1]
    assert s1.symbol == MatrixSymbol("shared_1", 2, 2) and s1.terms == (Term(big, "shared"),)
    assert shared[2].terms == (Term(c @ MatrixSymbol("shared_1", 2, 2), "r"),)
    assert shared[3].terms == (Term(a @ MatrixSymbol("shared_1", 2, 2), "s"),)
    # Nothing repeated: unchanged.
    assert share_common(adjoints[:2]) == adjoints[:2]


def test_the_largest_repeated_subexpression_is_shared_first():
    a, b, c = (MatrixSymbol(n, 2, 2) for n in "abc")
    inner = tanh(b)
    outer = odot(a, inner)
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(c @ outer, "x"),)),
                Adjoint("q", MatrixSymbol("dq", 2, 2), (Term(b @ outer, "y"), Term(a @ inner, "z")))]
    shared = share_common(adjoints)
    names = [x.target for x in shared]
    # The larger a ⊙ tanh(b) first (shared_1), then tanh(b) which it and a later term repeat.
    assert names == ["shared_2", "shared_1", "p", "q"]
    by = {x.target: x for x in shared}
    assert by["shared_1"].terms[0].expr == odot(a, MatrixSymbol("shared_2", 2, 2))
    assert by["shared_2"].terms[0].expr == inner
    assert by["p"].terms[0].expr == c @ MatrixSymbol("shared_1", 2, 2)
    assert by["q"].terms == (Term(b @ MatrixSymbol("shared_1", 2, 2), "y"),
                             Term(a @ MatrixSymbol("shared_2", 2, 2), "z"))
    assert by["q"].incoming is None and by["q"].symbol.name == "dq"


def test_adjoint_names():
    assert adjoint_name("h_prev") == "dh_prev"
    d = derive(load("rnn"))
    assert [p.symbol.name for p in d.parameters] == ["dWhx", "dWhh", "dbh", "dWyh", "dby"]
    assert [p.target for p in d.parameters] == ["Whx", "Whh", "bh", "Wyh", "by"]
    assert d._repr_latex_().startswith("$")


def test_terms_from_the_readouts_are_not_shared_with_the_loop():
    # y reads h and c through one weight V: δh and δc both receive Vᵀ·δa_y from the readout.
    # A kernel computes the readout's terms for every step before its loop, so they must
    # stay whole (a shared_k is computed inside the loop, after they are needed).
    d = derive(two_state_cell())
    assert not any(a.target.startswith("shared_") for a in d.backward), [a.target for a in d.backward]
    by = {a.target: a for a in d.backward}
    assert [str(t.expr) for t in by["h"].terms if t.via == "a_y"] == ["V.T*da_y"]
    assert [str(t.expr) for t in by["c"].terms if t.via == "a_y"] == ["V.T*da_y"]
    # Without that restriction the same product would be shared.
    a, W, c = MatrixSymbol("a", 2, 2), MatrixSymbol("W", 2, 2), MatrixSymbol("c", 2, 2)
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(W.T @ a, "y"), Term(c, "q"))),
                Adjoint("r", MatrixSymbol("dr", 2, 2), (Term(W.T @ a, "y"),))]
    assert [x.target for x in share_common(adjoints)] == ["shared_1", "p", "r"]
    assert share_common(adjoints, {"y"}) == adjoints


def test_loop_terms_after_a_readout_term_are_still_shared():
    a, W, b = MatrixSymbol("a", 2, 2), MatrixSymbol("W", 2, 2), MatrixSymbol("b", 2, 2)
    inner = W @ tanh(b)
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(W.T @ a, "y"), Term(inner, "q"))),
                Adjoint("r", MatrixSymbol("dr", 2, 2), (Term(W.T @ a, "y"), Term(odot(inner, a), "s"))),
                Adjoint("u", MatrixSymbol("du", 2, 2), (Term(odot(inner, b), "y"),))]
    shared = share_common(adjoints, {"y"})
    assert [x.target for x in shared] == ["shared_1", "p", "r", "u"]
    assert shared[3] == adjoints[2]  # a readout's term keeps the expression whole
    assert shared[0].terms == (Term(inner, "shared"),)
    s1 = MatrixSymbol("shared_1", 2, 2)
    assert shared[1].terms == (Term(W.T @ a, "y"), Term(s1, "q"))
    assert shared[2].terms == (Term(W.T @ a, "y"), Term(odot(s1, a), "s"))


def test_sharing_order_is_largest_first_then_first_met():
    a, b, c, W = (MatrixSymbol(n, 2, 2) for n in ("a", "b", "c", "W"))
    inner, outer = tanh(b), odot(a, tanh(b))
    # tanh(b) is met first and repeats more often, but a ⊙ tanh(b) is larger: shared first.
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(W @ inner, "x"),)),
                Adjoint("q", MatrixSymbol("dq", 2, 2), (Term(c @ outer, "y"),)),
                Adjoint("r", MatrixSymbol("dr", 2, 2), (Term(W @ outer, "z"),))]
    by = {x.target: x for x in share_common(adjoints)}
    assert by["shared_1"].terms[0].expr == odot(a, MatrixSymbol("shared_2", 2, 2))
    assert by["shared_2"].terms[0].expr == inner
    # Two repeated subexpressions of one size: the one met first is shared_1.
    adjoints = [Adjoint("p", MatrixSymbol("dp", 2, 2), (Term(W @ tanh(a), "x"), Term(W @ tanh(b), "y"))),
                Adjoint("q", MatrixSymbol("dq", 2, 2), (Term(c @ tanh(a), "x"), Term(c @ tanh(b), "y")))]
    by = {x.target: x for x in share_common(adjoints)}
    assert by["shared_1"].terms[0].expr == tanh(a)
    assert by["shared_2"].terms[0].expr == tanh(b)


def shared_in_the_loop_cell() -> Cell:
    """δp and δq are both δc ⊙ g (shared); c's own adjoint starts from δc_next. Numbers
    next to matrices (1 - g, q - 1, 0.5 · h) and an intermediate nothing reads."""
    cell = Cell("shared_loop", "c = g ⊙ p + g ⊙ (q - 1); h = tanh(c) + 0.5 h_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev, c_prev = cell.input("x", n_x), cell.state("h", n_h), cell.state("c", n_h)
    W, U, V = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h), cell.weight("V", n_h, n_h)
    g = cell.let("g", sigmoid(U @ h_prev))
    p = cell.let("p", tanh(W @ x))
    cell.let("unused", tanh(V @ c_prev))  # nothing reads it: V's gradient is zero
    q = cell.let("q", tanh(U @ c_prev))
    c = cell.update("c", odot(g, p) + odot(g, q - 1) + odot(1 - g, c_prev))
    cell.update("h", tanh(c) + 0.5 * h_prev)
    return cell


def test_a_shared_subexpression_inside_the_loop_keeps_the_incoming_gradient():
    cell = shared_in_the_loop_cell()
    d = derive(cell)
    assert any(a.target.startswith("shared_") for a in d.backward)
    dc = next(a for a in d.backward if a.target == "c")
    assert dc.incoming == d.incoming["c"]
    assert "unused" not in {a.target for a in d.backward}
    problem, dims = explicit_problem(cell)
    got = derived(d, problem, dims)
    assert np.array_equal(got["dV"], np.zeros_like(problem.parameters["V"]))
    assert_gradients_match(cell, got, numerical(cell, problem, dims))
