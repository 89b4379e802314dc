"""The checker's diagnoses, function by function: the error measure and its tolerance, which
usual mistake an array's shape or values reveal, which local holds the right value, how a
time loop loses the carried gradient, and the mistaken reference kernels.

These tests came from a mutation run over ``symbptt/check_diagnose.py`` (tools/mutation.py):
each one kills mutants that the end-to-end tests of test_check.py let through.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

from symbptt import check_diagnose as diagnose

RNG = np.random.default_rng(3)


# -- the error measure and the tolerance ----------------------------------------------------


def test_relative_error_is_the_largest_difference_over_the_largest_magnitude():
    assert diagnose.relative_error(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == 0.5
    # magnitudes, not signed values: the scale of [-4, 1] is 4, and the difference is |−2 − (−4)|
    assert diagnose.relative_error(np.array([-2.0, 1.0]), np.array([-4.0, 1.0])) == 0.5
    assert diagnose.relative_error(np.array([-4.0, 3.0]), np.array([-4.0, 1.0])) == 0.5
    # an expected array of zeros is measured against 1e-8, so any real difference is huge
    assert diagnose.relative_error(np.array([1e-9, 0.0]), np.zeros(2)) == pytest.approx(0.1)
    assert diagnose.relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_close_means_same_shape_and_below_the_tolerance():
    expected = np.array([0.0, 1.0])
    assert diagnose.TOLERANCE == 1e-7
    assert diagnose.close(np.array([0.5e-7, 1.0]), expected)
    assert not diagnose.close(np.array([1e-7, 1.0]), expected)  # at the tolerance: not equal
    assert not diagnose.close(np.array([2e-7, 1.0]), expected)
    assert not diagnose.close(expected.reshape(2, 1), expected)  # same values, another shape
    assert diagnose.close(expected.copy(), expected)


# -- evidence from the array alone -----------------------------------------------------------


def test_a_transposed_array_is_named_and_a_merely_reversed_shape_is_not():
    expected = RNG.standard_normal((4, 7))
    assert diagnose.shape_diagnosis(expected.T.copy(), expected) == (
        "transposed: it equals the expected array's transpose (the product's factors swapped)")
    other = RNG.standard_normal((7, 4))
    assert diagnose.shape_diagnosis(other, expected) is None


def test_right_values_in_the_wrong_shape_ask_for_keepdims():
    expected = RNG.standard_normal((4, 1))
    assert diagnose.shape_diagnosis(expected.reshape(4), expected) == (
        "right values, wrong shape: reshape or keepdims=True missing ((4,) for (4, 1))")
    assert diagnose.shape_diagnosis(RNG.standard_normal(4), expected) is None


@pytest.mark.parametrize("keepdims", [True, False])
def test_a_bias_summed_over_the_wrong_axis(keepdims):
    per_example = RNG.standard_normal((4, 5))
    expected = per_example.sum(axis=1, keepdims=True)
    got = per_example.sum(axis=0, keepdims=keepdims)  # (1, 5) or (5,)
    assert diagnose.shape_diagnosis(got, expected) == (
        "sum over the wrong axis: a bias gradient sums over the batch (axis=1, keepdims=True)")


def test_a_wrong_total_or_the_right_row_count_is_no_wrong_axis():
    per_example = RNG.standard_normal((4, 5))
    expected = per_example.sum(axis=1, keepdims=True)
    got = per_example.sum(axis=0)
    got[0] += 1e-5 * abs(expected.sum())
    assert diagnose.shape_diagnosis(got, expected) is None
    # the same total, spread over as many rows as expected: not a sum over the wrong axis
    same_rows = np.repeat(expected / 2, 2, axis=1)
    assert diagnose.shape_diagnosis(same_rows, expected) is None
    # not a bias (more than one column expected): never a wrong axis
    assert diagnose.shape_diagnosis(per_example.sum(axis=0), per_example[:, :2]) is None


def test_a_small_bias_total_is_compared_relative_to_itself():
    expected = np.array([[1e-3], [0.0], [0.0]])
    got = np.array([1e-3 + 1e-8, 0.0])  # 1e-5 off, relative to the total 1e-3
    assert diagnose.shape_diagnosis(got, expected) is None
    assert diagnose.shape_diagnosis(np.array([1e-3, 0.0]), expected) is not None


def test_value_diagnoses():
    expected = RNG.standard_normal((3, 3))
    assert diagnose.value_diagnosis(np.zeros((3, 3)), expected, {}) == (
        "left at zeros: the array is all zeros (initialised and never filled)")
    assert diagnose.value_diagnosis(-expected, expected, {}) == "sign flip: it equals minus the expected array"
    assert diagnose.value_diagnosis(expected.T.copy(), expected, {}) == (
        "transposed: it equals the expected array's transpose (the product's factors swapped)")
    other = RNG.standard_normal((3, 3))
    assert diagnose.value_diagnosis(other.copy(), expected, {"dWz": other}) == (
        "holds the value expected under 'dWz' (keys or variables swapped)")
    assert diagnose.value_diagnosis(RNG.standard_normal((3, 3)), expected, {"dWz": other}) is None
    assert diagnose.value_diagnosis(expected * 1.01, expected, {}) is None


def test_value_diagnoses_of_rectangular_and_scaled_arrays():
    expected = RNG.standard_normal((2, 3))
    assert diagnose.value_diagnosis(-expected, expected, {}) == "sign flip: it equals minus the expected array"
    assert diagnose.value_diagnosis(2 * expected, expected, {}) is None
    assert diagnose.value_diagnosis(-2 * expected, expected, {}) is None
    # a square array equal to the expected one's transpose only when transposed the other way
    square = RNG.standard_normal((3, 3))
    assert diagnose.value_diagnosis(square, square.T.copy(), {}) is not None
    assert diagnose.value_diagnosis(square * 0, np.zeros((3, 3)) + 1, {}).startswith("left at zeros")


def test_the_local_holding_the_expected_value():
    expected = RNG.standard_normal((4, 1))
    returned = np.zeros((4, 1))
    local_values = {"acc": expected.copy(), "dbz_sum": expected.copy(), "other": RNG.standard_normal((4, 1)),
                    "text": "dbz", "flat": expected.reshape(4), "returned": returned}
    assert diagnose.local_holding("dbz", expected, local_values, returned) == "dbz_sum"
    assert diagnose.local_holding("acc", expected, local_values, returned) == "acc"
    assert diagnose.local_holding("dbz", expected, {"other": local_values["other"]}, returned) is None
    # the returned array itself is not a hint, even when it holds the value
    assert diagnose.local_holding("dbz", expected, {"dbz": expected}, expected) is None
    # an integer array holding the value counts; a boolean or complex one does not
    ints = np.array([[1], [2], [3]])
    assert diagnose.local_holding("x", ints.astype(float), {"k": ints.copy()}, returned) == "k"
    assert diagnose.local_holding("x", ints.astype(float), {"k": ints.astype(complex)}, returned) is None
    ones = np.ones((2, 1))
    assert diagnose.local_holding("x", ones, {"b": ones.astype(bool)}, returned) is None
    # an expected value of zeros is held by every zero array: no hint
    assert diagnose.local_holding("x", np.zeros((2, 1)), {"z": np.zeros((2, 1))}, returned) is None


# -- evidence from the person's source -------------------------------------------------------


def _function(source: str) -> ast.FunctionDef:
    return ast.parse(source).body[0]


FROZEN = """
def rnn_backward(dh, caches):
    da_prevt = np.zeros((4, 5))
    dc_next = np.zeros((4, 5))
    for t in reversed(range(3)):
        grads = step(dh[:, :, t] + da_prevt, dc_next, caches[t])
        dx = grads["dx"]
    return dx
"""

UNUSED = """
def rnn_backward(dh, caches):
    da_carry = np.zeros((4, 5))
    for t in reversed(range(3)):
        grads = step(dh[:, :, t], caches[t])
        da_carry = grads["da_prev"]
    return grads
"""


def test_a_carry_passed_but_never_updated_is_named():
    assert diagnose.carry_in_loop(_function(FROZEN)) == (
        "in rnn_backward, da_prevt and dc_next are passed to the step call but never updated in the loop")
    one = FROZEN.replace(", dc_next, caches", ", caches")
    assert diagnose.carry_in_loop(_function(one)) == (
        "in rnn_backward, da_prevt is passed to the step call but never updated in the loop")


def test_a_carry_updated_but_never_passed_is_named():
    assert diagnose.carry_in_loop(_function(UNUSED)) == (
        "in rnn_backward, da_carry is updated in the loop but never passed to the step call")
    two = UNUSED.replace('    da_carry = np.zeros((4, 5))\n', '    da_carry = dc_prev = np.zeros((4, 5))\n').replace(
        '        da_carry = grads["da_prev"]\n', '        da_carry = dc_prev = grads["da_prev"]\n')
    assert diagnose.carry_in_loop(_function(two)) == (
        "in rnn_backward, da_carry and dc_prev are updated in the loop but never passed to the step call")


def test_a_right_loop_or_no_loop_says_nothing():
    right = UNUSED.replace("step(dh[:, :, t], caches[t])", "step(dh[:, :, t] + da_carry, caches[t])")
    assert diagnose.carry_in_loop(_function(right)) is None
    assert diagnose.carry_in_loop(_function("def f(x):\n    x_prev = x\n    return g(x_prev)\n")) is None
    # names without prev/carry/_next are not carries; range/len/reversed calls are not the step call
    other = FROZEN.replace("da_prevt", "acc").replace("dc_next", "dc")
    assert diagnose.carry_in_loop(_function(other)) is None
    in_range = "def f(n):\n    n_prev = n\n    for t in range(n_prev):\n        y = g(t)\n    return y\n"
    assert diagnose.carry_in_loop(_function(in_range)) is None


# -- the mistaken reference kernels -----------------------------------------------------------
# A diagnosis is a checked fact only if each mutant computes exactly the mistake its label names.

from symbptt import check


@pytest.fixture(autouse=True)
def _fresh_mutants():
    """Build the mutants anew in each test, as a fresh ``symbptt check`` run does."""
    diagnose.mutants.cache_clear()
    yield
    diagnose.mutants.cache_clear()


def _by_name(cell: str, prefix: str | None, states: tuple[str, ...]) -> dict[str, diagnose.Mutant]:
    return {m.name: m for m in diagnose.mutants(cell, prefix, states)}


def _setup(cell: str, m: int = 5, T: int = 3):
    kernel = check._kernel(cell)
    problem = check.make_problem(kernel, m, T, seed=1)
    return kernel, problem


def _spec(kernel, kind: str) -> check.Spec:
    return next(s for s in check.specs_for(kernel) if s.kind == kind)


def _steps(kernel, problem, carry: bool) -> dict[int, dict[str, np.ndarray]]:
    """The reference's one-step backward at each step of the notebook loop, the carried
    gradients passed back (``carry``) or zeros instead."""
    forward = _spec(kernel, "forward")
    _, (caches, _), _ = check.split_result(forward, getattr(kernel, forward.name)(*check.forward_args(forward,
                                                                                                      problem)))
    step = getattr(kernel, _spec(kernel, "step_backward").name)
    states = kernel.STATES
    carried = {s: np.zeros_like(problem.prev[s]) for s in states}
    out = {}
    for t in reversed(range(problem.T)):
        grads = step(problem.dh[:, :, t] + carried[states[0]], *[carried[s] for s in states[1:]], caches[t])
        if carry:
            carried = {s: grads[f"d{s}_prev"] for s in states}
        out[t] = grads
    return out


def test_the_mutants_of_the_gru_are_named_as_the_table_shows_them():
    names = [m.name for m in diagnose.mutants("gru", "gru", ("h",))]
    assert names == [
        "truncated BPTT",
        "contribution from step t+1 missing (dh_prev lacks dh_next * z)",
        "contribution from step t+1 missing (dh_prev lacks dh_prev_r * r)",
        "contribution from step t+1 missing (dh_prev lacks dh_prev_xt[:n_h])",
        "σ' and tanh' confused (r)", "σ' and tanh' confused (z)", "σ' and tanh' confused (h_tilde)",
        "gradient not accumulated over time (step t=0 only)",
        "gradient not accumulated over time (step t=T-1 only)",
    ]
    labels = _by_name("gru", "gru", ("h",))
    assert labels["truncated BPTT"].label == (
        "no gradient is carried back from step t+1 to step t: the numbers equal the reference's with the "
        "recurrence cut at every step (truncate=1)")
    assert labels["contribution from step t+1 missing (dh_prev lacks dh_next * z)"].label == (
        "dh_prev lacks the term dh_next * z, so that part of the gradient from step t+1 never reaches step t")
    assert labels["σ' and tanh' confused (z)"].label == (
        "the derivative through z = σ(·) is written as tanh' (1 − z²) instead of σ' z(1 − z)")
    assert labels["σ' and tanh' confused (h_tilde)"].label == (
        "the derivative through h_tilde = tanh(·) is written as σ' h_tilde(1 − h_tilde) instead of "
        "tanh' (1 − h_tilde²)")
    assert labels["gradient not accumulated over time (step t=0 only)"].label == (
        "the parameter gradient equals the first step's (t=0) alone: assigned, not added, in the loop")
    assert labels["gradient not accumulated over time (step t=T-1 only)"].label == (
        "the parameter gradient equals the last step's (t=T-1) alone: the steps before it are not added")


def test_the_mutants_of_the_lstm_and_of_a_cell_without_notebook_functions():
    lstm = _by_name("lstm", "lstm", ("h", "c"))
    assert list(lstm)[:3] == ["truncated BPTT", "contribution from step t+1 missing (dh_prev not carried)",
                              "contribution from step t+1 missing (dc_prev not carried)"]
    assert lstm["contribution from step t+1 missing (dc_prev not carried)"].label == (
        "dc_prev is never carried back, so the part of the gradient that reaches c from step t+1 is lost at "
        "every step")
    assert [n for n in lstm if n.startswith("σ'")] == [f"σ' and tanh' confused ({x})"
                                                       for x in ("f", "i", "o", "c_tilde", "tanh_c")]
    # the generic interface alone: no notebook loop, so no accumulation mutants
    assert list(_by_name("gru_torch", None, ("h",))) == [
        "truncated BPTT", "contribution from step t+1 missing (dh_prev lacks dh_next * z)",
        "contribution from step t+1 missing (dh_prev lacks dh_prev_gates)"]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_truncated_mutant_carries_nothing_back(cell):
    kernel, problem = _setup(cell)
    mutant = _by_name(cell, cell, tuple(kernel.STATES))["truncated BPTT"].module
    got = check.reference_outputs(mutant, _spec(kernel, "backward"), problem)
    steps = _steps(kernel, problem, carry=False)
    assert set(got) - {"dx", "dh0"}
    for key in set(got) - {"dx", "dh0"}:
        np.testing.assert_allclose(got[key], sum(g[key] for g in steps.values()), rtol=1e-12)
    for t in range(problem.T):
        np.testing.assert_allclose(got["dx"][:, :, t], steps[t]["dxt"], rtol=1e-12)
    np.testing.assert_allclose(got["dh0"], steps[0]["dh_prev"], rtol=1e-12)
    # the generic backward of the same mutant is the reference's with truncate=1
    generic = _spec(kernel, "generic_backward")
    _, cache = kernel.forward(problem.parameters, problem.x, dict(problem.prev))
    want = kernel.backward(cache, dict(problem.upstream), truncate=1)
    got = check.reference_outputs(mutant, generic, problem)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15)
    full = kernel.backward(cache, dict(problem.upstream))
    assert not np.allclose(got["dh0"], full["dh0"])


@pytest.mark.parametrize("which, step", [("t=0", 0), ("t=T-1", 2)])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_not_accumulated_mutants_keep_one_steps_gradient(cell, which, step):
    kernel, problem = _setup(cell)
    mutant = _by_name(cell, cell, tuple(kernel.STATES))[f"gradient not accumulated over time (step {which} only)"]
    got = check.reference_outputs(mutant.module, _spec(kernel, "backward"), problem)
    steps = _steps(kernel, problem, carry=True)
    assert set(got) - {"dx", "dh0"}
    for key in set(got) - {"dx", "dh0"}:
        np.testing.assert_allclose(got[key], steps[step][key], rtol=1e-12)
    # the carried gradients are untouched: dx and dh0 are right
    right = check.reference_outputs(kernel, _spec(kernel, "backward"), problem)
    np.testing.assert_allclose(got["dx"], right["dx"], rtol=1e-12)
    np.testing.assert_allclose(got["dh0"], right["dh0"], rtol=1e-12)


def _step_with_cache(kernel, problem):
    forward = _spec(kernel, "step_forward")
    _, cache, _ = check.split_result(forward, getattr(kernel, forward.name)(*check.forward_args(forward, problem)))
    return cache


def test_a_term_drop_mutant_lacks_exactly_that_term():
    kernel, problem = _setup("gru")
    mutants = _by_name("gru", "gru", ("h",))
    spec = _spec(kernel, "step_backward")
    right = check.reference_outputs(kernel, spec, problem)
    cache = _step_with_cache(kernel, problem)
    dh_next = problem.d_next["h"]
    got = check.reference_outputs(mutants["contribution from step t+1 missing (dh_prev lacks dh_next * z)"].module,
                                  spec, problem)
    np.testing.assert_allclose(right["dh_prev"] - got["dh_prev"], dh_next * cache["z"], rtol=1e-10, atol=1e-14)
    for key in right:
        if key != "dh_prev":
            np.testing.assert_array_equal(got[key], right[key])
    # the other drops leave out other terms, not this one
    other = check.reference_outputs(
        mutants["contribution from step t+1 missing (dh_prev lacks dh_prev_r * r)"].module, spec, problem)
    assert not np.allclose(right["dh_prev"] - other["dh_prev"], dh_next * cache["z"])


@pytest.mark.parametrize("cell, prefix", [("gru", "gru"), ("gru_torch", None), ("lstm", "lstm")])
def test_a_term_drop_mutant_changes_only_the_carried_gradient(cell, prefix):
    """At T=1 nothing is carried into another step: only dh0 (the gradient carried out) differs."""
    kernel, problem = _setup(cell, m=2, T=1)
    name = next(n for n in _by_name(cell, prefix, tuple(kernel.STATES)) if n.startswith("contribution"))
    mutant = _by_name(cell, prefix, tuple(kernel.STATES))[name].module
    got = check.reference_outputs(mutant, _spec(kernel, "generic_backward"), problem)
    right = check.reference_outputs(kernel, _spec(kernel, "generic_backward"), problem)
    assert not np.allclose(got["dh0"], right["dh0"])
    for key in right:
        if key not in ("dh0", "dc0"):
            np.testing.assert_allclose(got[key], right[key], rtol=1e-12, atol=1e-15)
    # and over three steps the mistake reaches the parameter gradients
    kernel, problem = _setup(cell)
    got = check.reference_outputs(mutant, _spec(kernel, "generic_backward"), problem)
    right = check.reference_outputs(kernel, _spec(kernel, "generic_backward"), problem)
    first = f"d{next(iter(kernel.PARAMETERS))}"
    assert not np.allclose(got[first], right[first])


def test_a_single_term_carry_dropped_is_zero():
    kernel, problem = _setup("rnn")
    mutant = _by_name("rnn", "rnn", ("h",))["contribution from step t+1 missing (dh_prev not carried)"].module
    got = check.reference_outputs(mutant, _spec(kernel, "step_backward"), problem)
    right = check.reference_outputs(kernel, _spec(kernel, "step_backward"), problem)
    assert np.any(right["dh_prev"])
    np.testing.assert_array_equal(got["dh_prev"], np.zeros_like(right["dh_prev"]))
    np.testing.assert_array_equal(got["dWhh"], right["dWhh"])


def test_the_derivative_swaps_compute_the_other_derivative():
    kernel, problem = _setup("rnn")
    cache = _step_with_cache(kernel, problem)
    dh, h = problem.d_next["h"], cache["h"]
    mutant = _by_name("rnn", "rnn", ("h",))["σ' and tanh' confused (h)"].module
    got = check.reference_outputs(mutant, _spec(kernel, "step_backward"), problem)
    np.testing.assert_allclose(got["dbh"], (dh * h * (1 - h)).sum(axis=1, keepdims=True), rtol=1e-12)

    kernel, problem = _setup("gru")
    cache = _step_with_cache(kernel, problem)
    dh, z = problem.d_next["h"], cache["z"]
    dz = dh * cache["h_prev"] - dh * cache["h_tilde"]
    mutants = _by_name("gru", "gru", ("h",))
    got = check.reference_outputs(mutants["σ' and tanh' confused (z)"].module, _spec(kernel, "step_backward"), problem)
    np.testing.assert_allclose(got["dbz"], (dz * (1 - z * z)).sum(axis=1, keepdims=True), rtol=1e-12)
    right = check.reference_outputs(kernel, _spec(kernel, "step_backward"), problem)
    np.testing.assert_array_equal(got["dbh"], right["dbh"])  # only z's derivative is swapped
    np.testing.assert_array_equal(got["dbr"], right["dbr"])


def test_kernel_source_is_the_generated_kernel():
    from symbptt.codegen import numpy_kernel
    from symbptt.derive import derive
    from symbptt.loader import load, resolve, source_label

    assert diagnose.kernel_source("gru") == numpy_kernel(derive(load(resolve("gru"))), source_label(resolve("gru")))


def test_only_the_step_call_counts_as_passing_a_carry():
    # reversed(), range() and len() around a carry do not pass it to the step
    for wrapper in ("reversed(range(len(n_prev)))", "reversed(n_prev)", "range(len(n_prev))"):
        source = f"def f(n):\n    n_prev = n\n    for t in {wrapper}:\n        y = g(t)\n    return y\n"
        assert diagnose.carry_in_loop(_function(source)) is None, wrapper
    # every call of the loop counts, not only the last one
    right = UNUSED.replace("step(dh[:, :, t], caches[t])", "step(dh[:, :, t] + da_carry, caches[t])").replace(
        '        da_carry = grads["da_prev"]\n', '        da_carry = grads["da_prev"]\n        log(t)\n')
    assert diagnose.carry_in_loop(_function(right)) is None


def test_only_a_bias_can_be_summed_over_the_wrong_axis():
    weights = RNG.standard_normal((2, 3))
    assert diagnose.shape_diagnosis(weights.sum(axis=0), weights) is None
    assert diagnose.shape_diagnosis(weights.sum(axis=0, keepdims=True), weights) is None
