"""The finite-difference checker itself: what it measures, on which instance, and that a
broken gradient (NaN, a wrong scale, a missing key) can never pass it.

These tests came from a mutation run over ``symbptt/fdcheck.py`` (tools/mutation.py): each
one kills mutants that the cell-by-cell tests in test_finite_differences.py let through.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from symbptt import fdcheck


def _fake(dims):
    return types.SimpleNamespace(DIMS=tuple(dims))


def test_default_sizes_are_the_documented_distinct_ones():
    assert fdcheck.dims_for(_fake(["n_x", "n_h", "n_y"])) == {"n_x": 3, "n_h": 4, "n_y": 2}
    # A dimension without a default gets 3 + its position: positive and distinct from its neighbours.
    assert fdcheck.dims_for(_fake(["n_x", "n_h", "n_a", "n_b"])) == {"n_x": 3, "n_h": 4, "n_a": 5, "n_b": 6}
    # The defaults go by name, not by position.
    assert fdcheck.dims_for(_fake(["n_h", "n_x"])) == {"n_h": 4, "n_x": 3}


def test_given_sizes_win_over_defaults():
    assert fdcheck.dims_for(_fake(["n_x", "n_h"]), {"n_x": 7, "n_h": 9}) == {"n_x": 7, "n_h": 9}
    assert fdcheck.dims_for(_fake(["n_x", "n_z"]), {"n_z": 11}) == {"n_x": 3, "n_z": 11}


def test_random_problem_is_reproducible_and_keeps_the_dtype(kernels):
    kernel = kernels["lstm"]
    dims = fdcheck.dims_for(kernel)
    a = fdcheck.random_problem(kernel, dims, m=3, T=4, seed=5)
    b = fdcheck.random_problem(kernel, dims, m=3, T=4, seed=5)
    c = fdcheck.random_problem(kernel, dims, m=3, T=4, seed=6)
    for name in a.parameters:
        assert np.array_equal(a.parameters[name], b.parameters[name])
    assert np.array_equal(a.x, b.x) and np.array_equal(a.upstream["h"], b.upstream["h"])
    assert np.array_equal(a.initial_states["c"], b.initial_states["c"])
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == (dims["n_x"], 3, 4)
    f32 = fdcheck.random_problem(kernel, dims, m=3, T=4, seed=5, dtype=np.float32)
    arrays = [f32.x, *f32.parameters.values(), *f32.initial_states.values(), *f32.upstream.values()]
    assert all(a.dtype == np.float32 for a in arrays)


def test_initial_states_are_small_and_nonzero(kernels):
    kernel = kernels["rnn"]
    problem = fdcheck.random_problem(kernel, {"n_x": 3, "n_h": 50, "n_y": 2}, m=40, T=1)
    h0 = problem.initial_states["h"]
    assert 0.4 < h0.std() < 0.6  # 0.5 · N(0, 1): inside tanh's useful range, never zero


def test_truncated_loss_is_the_sum_of_its_chunks(kernels):
    kernel = kernels["gru"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), m=2, T=5)
    outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    full = sum(float(np.sum(problem.upstream[k] * v)) for k, v in outputs.items())
    assert fdcheck.loss(kernel, problem) == pytest.approx(full, rel=1e-12)
    reference = {s: outputs[s] for s in kernel.STATES}
    # One chunk as long as the sequence is the full loss; chunks restarted from the reference
    # states reproduce it too (the forward values do not depend on where gradients are cut).
    assert fdcheck.loss(kernel, problem, truncate=5, reference_states=reference) == pytest.approx(full, rel=1e-12)
    assert fdcheck.loss(kernel, problem, truncate=2, reference_states=reference) == pytest.approx(full, rel=1e-12)
    with pytest.raises(ValueError, match="^loss: truncate needs reference_states"):
        fdcheck.loss(kernel, problem, truncate=2)


def test_relative_error_is_scale_free_and_never_hides_a_nan():
    numeric = np.array([1e-3, -2e-3])
    assert fdcheck.relative_error(numeric + np.array([1e-5, 0.0]), numeric) == pytest.approx(5e-3)
    assert fdcheck.relative_error(numeric, numeric) == 0.0
    assert fdcheck.relative_error(np.array([3e-9]), np.array([1e-9])) == pytest.approx(0.2)  # floor 1e-8
    assert fdcheck.relative_error(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
    assert fdcheck.relative_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])) == float("inf")
    assert fdcheck.relative_error(np.array([1.0]), np.array([np.inf])) == float("inf")


def test_numerical_gradients_restore_every_entry(kernels):
    kernel = kernels["rnn"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), m=2, T=2)
    before = {k: v.copy() for k, v in problem.parameters.items()}
    grads = fdcheck.numerical_gradients(kernel, problem)
    assert all(np.array_equal(before[k], problem.parameters[k]) for k in before)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    analytic = kernel.backward(cache, problem.upstream)
    assert max(fdcheck.relative_error(analytic[k], grads[k]) for k in grads) < 1e-6


def test_compare_uses_the_sizes_seed_and_shape_it_is_given(kernels):
    kernel = kernels["gru"]
    seen = []

    def oracle(problem):
        seen.append(problem)
        _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
        return kernel.backward(cache, problem.upstream)

    errors = fdcheck.compare(kernel, oracle, m=3, T=2, seed=4, sizes={"n_x": 5, "n_h": 6, "n_y": 2})
    assert set(errors) == {"d" + p for p in kernel.PARAMETERS} | {"dx", "dh0"}
    assert max(errors.values()) == 0.0
    assert seen[0].x.shape == (5, 3, 2) and seen[0].parameters["Wz"].shape == (6, 11)
    fdcheck.compare(kernel, oracle, m=3, T=2, seed=4, sizes={"n_x": 5, "n_h": 6, "n_y": 2})
    assert np.array_equal(seen[0].x, seen[1].x)  # the seed decides the instance


def test_compare_names_a_missing_gradient(kernels):
    kernel = kernels["rnn"]
    with pytest.raises(KeyError, match=r"backward\(\) lacks gradient\(s\) dfoo, dqux"):
        fdcheck.compare(kernel, lambda problem: {"dfoo": np.zeros(1), "dqux": np.zeros(1)})


def test_check_runs_on_the_instance_it_describes(kernels):
    kernel = kernels["rnn"]
    shapes = []

    def forward(parameters, x, initial_states=None):
        shapes.append(x.shape)
        return kernel.forward(parameters, x, initial_states)

    spy = types.SimpleNamespace(**{k: getattr(kernel, k) for k in dir(kernel) if not k.startswith("__")})
    spy.forward = forward
    a = fdcheck.check(spy, m=2, T=3, seed=1, sizes={"n_x": 2, "n_h": 5, "n_y": 3})
    assert shapes[0] == (2, 2, 3)
    b = fdcheck.check(spy, m=2, T=3, seed=1, sizes={"n_x": 2, "n_h": 5, "n_y": 3})
    assert a == b and max(a.values()) < 1e-6


def _spy(kernel, shift=0.0, wrong_key=None, factor=1.0):
    """The kernel with every output shifted by a constant (a large loss, the same gradients),
    and optionally one gradient entry scaled (a wrong gradient)."""
    spy = types.SimpleNamespace(**{k: getattr(kernel, k) for k in dir(kernel) if not k.startswith("__")})

    def forward(parameters, x, initial_states=None):
        outputs, cache = kernel.forward(parameters, x, initial_states)
        return {k: v + shift for k, v in outputs.items()}, cache

    def backward(cache, upstream, truncate=None):
        grads = dict(kernel.backward(cache, upstream, truncate=truncate))
        if wrong_key:
            grads[wrong_key] = grads[wrong_key].copy()
            grads[wrong_key].flat[0] *= factor
        return grads

    spy.forward, spy.backward = forward, backward
    return spy


def test_a_larger_step_clears_round_off_but_never_a_wrong_gradient(kernels):
    # A loss of about 1e5 next to gradients of about 1: at eps = 1e-6 round-off alone gives
    # a relative error of several 1e-6 (a false failure); check() measures again at 1e-5.
    large_loss = _spy(kernels["rnn"], shift=1e4)
    problem = fdcheck.random_problem(large_loss, fdcheck.dims_for(large_loss), 2, 3)
    _, cache = large_loss.forward(problem.parameters, problem.x, problem.initial_states)
    analytic = large_loss.backward(cache, problem.upstream)
    smallest_step = fdcheck.numerical_gradients(large_loss, problem, eps=1e-6)
    assert max(fdcheck.relative_error(analytic[k], smallest_step[k]) for k in analytic) > 1e-6
    assert max(fdcheck.check(large_loss).values()) < 1e-6
    # One entry wrong by 1e-5 (relative) stays wrong at every step, with or without round-off.
    for shift in (0.0, 1e4):
        wrong = _spy(kernels["rnn"], shift=shift, wrong_key="dWhh", factor=1 + 1e-5)
        errors = fdcheck.check(wrong)
        assert errors["dWhh"] > 1e-6, errors["dWhh"]
        assert max(v for k, v in errors.items() if k != "dWhh") < 1e-6


def test_check_measures_the_truncated_gradient_it_is_asked_for(kernels):
    """A backward that ignores ``truncate`` (full BPTT every time) must fail a truncated check,
    at every step size; the real kernel passes it."""
    kernel = kernels["gru"]
    assert max(fdcheck.check(kernel, m=2, T=5, truncate=2).values()) < 1e-6
    spy = _spy(kernel)
    spy.backward = lambda cache, upstream, truncate=None: kernel.backward(cache, upstream)
    errors = fdcheck.check(spy, m=2, T=5, truncate=2)
    assert errors["dx"] > 1e-3 and errors["dWz"] > 1e-3


def test_check_keeps_the_smallest_error_over_the_steps(kernels, monkeypatch):
    """Each gradient's error is the smallest over the steps tried, and steps stop once every
    error is within tolerance."""
    tried = []
    real = fdcheck.numerical_gradients

    def recording(kernel, problem, truncate=None, eps=1e-6):
        tried.append(eps)
        return real(kernel, problem, truncate, eps)

    monkeypatch.setattr(fdcheck, "numerical_gradients", recording)
    fdcheck.check(kernels["rnn"])
    assert tried == [1e-6]
    tried.clear()
    fdcheck.check(_spy(kernels["rnn"], shift=1e4))
    assert tried == [1e-6, 1e-5]
    tried.clear()
    wrong = fdcheck.check(_spy(kernels["rnn"], wrong_key="dWhh", factor=1 + 1e-5))
    assert tried == [1e-6, 1e-5, 1e-4] and 1e-6 < wrong["dWhh"] < 1e-5


def test_compare_honours_truncate_and_seed(kernels):
    kernel = kernels["gru"]
    cut = fdcheck.compare(kernel, lambda p: fdcheck.numerical_gradients(kernel, p, truncate=2),
                          m=2, T=5, truncate=2)
    assert max(cut.values()) < 1e-6  # the kernel's truncated gradients, not its full ones
    seen = []
    for seed in (4, 5):
        fdcheck.compare(kernel, lambda p: seen.append(p.x) or {}, seed=seed)
    assert not np.array_equal(seen[0], seen[1])


def test_each_gradient_keeps_its_smallest_error_over_the_steps(kernels, monkeypatch):
    """Steps go on while any gradient is off; a gradient exact at one step keeps that error
    even if a later step (taken for another gradient) is off for it."""
    kernel = kernels["rnn"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 3)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    exact = kernel.backward(cache, problem.upstream)
    off = {1e-6: {"dWhh"}, 1e-5: {"dWhx"}, 1e-4: {"dWhh", "dWhx"}}  # which keys each step gets wrong

    def crafted(kernel, problem, truncate=None, eps=1e-6):
        return {k: v * (1.001 if k in off[eps] else 1.0) for k, v in exact.items() if k.startswith("d")}

    monkeypatch.setattr(fdcheck, "numerical_gradients", crafted)
    errors = fdcheck.check(kernel)
    assert errors["dWhh"] == 0.0 and errors["dWhx"] == 0.0
