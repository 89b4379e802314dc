"""symbptt/proof.py: the NumPy backend's evaluation of operations, the forward with truncated
BPTT's detached states, the exact comparison through the fraction field, and the verdicts when
an operation's declared derivative is wrong.

These tests came from ``tools/mutation.py symbptt/proof.py --sample 40``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from symbptt import derive, ops, proof
from symbptt.loader import load

A = sp.MatrixSymbol("A", 3, 4)


def test_the_numpy_backend_evaluates_operations_as_numpy_does():
    value = np.random.default_rng(0).normal(size=(3, 4))
    evaluate = proof.Evaluator(proof.NumpyBackend(), {}, {"A": value})
    assert np.allclose(evaluate(ops.Tanh(A)), np.tanh(value))
    assert np.allclose(evaluate(ops.FeatureSum(A)), np.broadcast_to(value.sum(axis=0), (3, 4)))
    assert evaluate(ops.FeatureSum(A)).shape == (3, 4)


def test_truncation_detaches_the_states_entering_every_kth_step():
    """truncate=2 over 5 steps: the states entering steps 2 and 4 (0-based) go through detach."""
    cell = load("rnn")
    d = derive(cell)
    dims = proof.dimension_values(cell, {"n_x": 1, "n_h": 1, "n_y": 1})
    problem = proof.symbolic_problem(d, dims, 5)
    steps = proof.run_forward(cell, d.forward, problem, proof.SympyBackend(), dims,
                              detach=lambda v: v * 0, truncate=2)
    zeroed = [t for t, env in enumerate(steps) if env["h_prev"].is_zero_matrix]
    assert zeroed == [2, 4]


def test_a_fraction_equal_only_in_the_field_is_proved_zero():
    """x/(x−1) = 1 + 1/(x−1): different polynomials once 1/(x−1) is a generator of its own,
    equal as fractions; the numeric refutation must not evaluate at x = 1."""
    x = sp.Symbol("x", real=True)
    assert proof.difference_is_zero(x / (x - 1) - 1 - 1 / (x - 1))
    assert not proof.difference_is_zero(x / (x - 1) - 1 / (x - 1))
    assert not proof.difference_is_zero(1 / (x - 1) ** 2 - 2 / (x - 1))  # a squared divisor is not twice it
    assert proof.difference_is_zero(x / (x - 1) ** 2 - 1 / (x - 1) - 1 / (x - 1) ** 2)


def test_a_wrong_derivative_rule_fails_every_key_without_a_proof(monkeypatch):
    monkeypatch.setattr(proof, "check_derivative",
                        lambda op: f"{op.op_name}: declared derivative is wrong" if op is ops.Tanh else "")
    results = proof.prove_keys(load("rnn"), T=1)
    assert results and {r.key for r in results} == {"dWhx", "dWhh", "dbh", "dWyh", "dby", "dx", "dh0"}
    for r in results:
        assert (r.proved, r.entries, r.seconds, r.counterexample) == (False, 0, 0.0, "tanh: declared derivative is wrong")


def _doubled(derivation, name):
    """The derivation with the gradient ``name`` doubled: a wrong rule the proof must catch."""
    from dataclasses import replace

    from symbptt.derive import Term

    params = [replace(a, terms=tuple(Term(2 * t.expr, t.via) for t in a.terms)) if a.symbol.name == name else a
              for a in derivation.parameters]
    return replace(derivation, parameters=params)


def test_a_wrong_gradient_names_its_first_wrong_entry_and_how_many_more():
    cell = load("rnn")
    wrong = _doubled(derive(cell), "dbh")
    one = {r.key: r for r in proof.prove_keys(cell, {"n_x": 1, "n_h": 1, "n_y": 2, "m": 1}, T=1, derivation=wrong)}
    assert (one["dbh"].proved, one["dbh"].counterexample) == (False, "differs at ∂L/∂bh[0,0]")
    assert all(r.proved for k, r in one.items() if k != "dbh")
    three = {r.key: r for r in proof.prove_keys(cell, {"n_x": 1, "n_h": 3, "n_y": 2, "m": 1}, T=1, derivation=wrong)}
    assert three["dbh"].counterexample == "differs at ∂L/∂bh[0,0] and 2 more"


def test_an_operation_without_a_sympy_evaluator_is_named():
    class Undeclared(ops.Node):  # neither pointwise nor with a SymPy rule
        op_name = "undeclared_op"


    with pytest.raises(proof.EvaluationError, match=r"^operation undeclared_op declares no SymPy evaluator in "
                                                    r"symbptt/ops\.py$"):
        proof.SympyBackend().apply(Undeclared, sp.Matrix([[1]]))


def test_the_truncated_backward_on_explicit_values_matches_the_kernels():
    """run_backward(truncate=k) cuts the carried adjoints where the kernel does, for a cell
    with two states of its own shape (the lstm's h and c), and the cut changes the result."""
    from symbptt import fdcheck, load_kernel, verify

    cell, kernel = load("lstm"), load_kernel("lstm")
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 5, seed=3)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    full = verify.derived_gradients(cell, problem, None)
    for truncate in (2, 3):
        expected = kernel.backward(cache, problem.upstream, truncate=truncate)
        got = verify.derived_gradients(cell, problem, truncate)
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert np.allclose(got[key], value, rtol=1e-10, atol=1e-12), (truncate, key)
        assert not np.allclose(got["dh0"], full["dh0"])


def test_every_upstream_entry_of_the_symbolic_problem_is_its_own_named_symbol():
    """Shared upstream symbols would let a rule that mixes up two outputs' gradients (h's and
    y's, both n_h × m here) prove: each output, step and entry gets its own."""
    cell = load("rnn")
    dims = proof.dimension_values(cell, {"n_x": 1, "n_h": 2, "n_y": 2, "m": 1})
    problem = proof.symbolic_problem(derive(cell), dims, 2)
    entries = [e for step in problem.upstream for g in step.values() for e in g]
    assert len(entries) == 2 * 2 * 2 == len(set(entries))
    assert [str(e) for e in problem.upstream[1]["y"]] == ["g_y2[0,0]", "g_y2[1,0]"]


def test_a_power_that_is_not_an_integer_is_an_atom_of_the_polynomial_view():
    """√x (a power with exponent ½) is a generator of its own, like a function application.

    So the view is exact but not complete for such powers: SymPy writes √x·x as x^(3/2),
    another generator, and that difference is not proved zero (no built-in operation's
    SymPy rule makes a fractional power; an unproved key is reported, never a false proof)."""
    x, y = sp.Symbol("x", positive=True), sp.Symbol("y", real=True)
    assert proof.difference_is_zero(sp.sqrt(x) * (y + 1) - sp.sqrt(x) * y - sp.sqrt(x))
    assert not proof.difference_is_zero(sp.sqrt(x) - x)
    assert not proof.difference_is_zero(sp.sqrt(x) * (x + 1) - x ** sp.Rational(3, 2) - sp.sqrt(x))


def test_the_numeric_refutation_evaluates_max_and_library_functions():
    """Differences over a divisor that the ring test cannot settle are refuted at a random
    point: a relu's Max and SymPy's own functions (tanh, Heaviside) are evaluated there."""
    x = sp.Symbol("x", real=True)
    assert not proof.difference_is_zero(sp.Max(x, 0) / (x + 3) - x / (x + 3))
    assert not proof.difference_is_zero(sp.Max(x, 0, 2 * x) / (x + 3) - sp.Max(x, 0) / (x + 3) - 1 / (x + 3))
    assert not proof.difference_is_zero(sp.tanh(x) / (x + 3) - x / (x + 3))
    assert not proof.difference_is_zero(sp.Heaviside(x, 0) / (x + 3) - 1 / (x + 3))
    view = proof.PolynomialView([sp.Max(x, 0) / (x + 3), sp.tanh(x)])
    at = view.values[x] if view.values else None
    assert view.numeric(sp.Max(x, 0) + sp.tanh(x)) == pytest.approx(max(view.values[x], 0) + math.tanh(view.values[x]))
    assert at is None and set(view.values) == {x}


def test_a_divisor_whose_atoms_appear_nowhere_else_is_compared_in_the_fraction_field():
    """1/(x² − 1) = 1/((x − 1)(x + 1)): different generators of the ring, equal fractions;
    x appears only inside divisors, and the field still needs it as a generator."""
    x = sp.Symbol("x", real=True)
    assert proof.difference_is_zero(1 / (x ** 2 - 1) - 1 / ((x - 1) * (x + 1)))
    assert not proof.difference_is_zero(1 / (x ** 2 - 1) - 2 / ((x - 1) * (x + 1)))


def test_the_numeric_refutation_evaluates_a_power_with_a_symbolic_exponent():
    y = sp.Symbol("y", real=True)
    assert not proof.difference_is_zero(2 ** y / (y + 3) - 1 / (y + 3))
    view = proof.PolynomialView([2 ** y / (y + 3)])
    assert view.numeric(2 ** y) == pytest.approx(2 ** view.numeric(y))


def test_an_output_without_upstream_gradient_counts_as_a_zero_one():
    """The loss may read only some outputs: run_backward gives the others a zero upstream of
    their own shape, the same gradients as an explicit zero."""
    from symbptt import fdcheck, load_kernel

    cell, kernel = load("rnn"), load_kernel("rnn")
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 3, seed=5)
    derivation = derive(cell)
    dims = proof.dimension_values(cell, fdcheck.dims_for(kernel) | {"m": 2})
    explicit = proof.ExplicitProblem(
        dict(problem.parameters), [{"x": problem.x[:, :, t]} for t in range(3)],
        dict(problem.initial_states), [{"y": problem.upstream["y"][:, :, t]} for t in range(3)])
    backend = proof.NumpyBackend()
    steps = proof.run_forward(cell, derivation.forward, explicit, backend, dims)
    only_y = proof.run_backward(derivation, steps, explicit, backend, dims)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    expected = kernel.backward(cache, {**problem.upstream, "h": np.zeros_like(problem.upstream["h"])})
    assert set(expected) == set(only_y)
    for key, value in expected.items():
        got = np.stack(only_y[key], axis=2) if key == "dx" else only_y[key]
        assert np.allclose(got, value), key


def test_resolve_cell_passes_a_cell_through_and_loads_a_name():
    cell = load("rnn")
    assert proof.resolve_cell(cell) is cell
    assert proof.resolve_cell("gru").name == "gru"
