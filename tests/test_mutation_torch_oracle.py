"""The PyTorch oracle (symbptt/torch_oracle.py) against finite differences of the generated
kernel's forward, computed in each test: full and truncated BPTT of a cell with a readout, initial
states given or left at zero, the backend's matrix operations against NumPy, and the sizes it
reads off a problem (with the errors for what it cannot drive).

These tests came from ``tools/mutation.py symbptt/torch_oracle.py --sample 40``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symbptt import Cell, tanh
from symbptt import torch_oracle as oracle
from symbptt.codegen import kernel_module
from symbptt.fdcheck import Problem, dims_for, numerical_gradients, random_problem


def _close(expected: dict, actual: dict, tol: float = 1e-6) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].shape == value.shape, key
        scale = max(1.0, float(np.max(np.abs(value))))
        assert float(np.max(np.abs(actual[key] - value))) <= tol * scale, key


def test_the_oracle_is_available_here():
    assert oracle.available() is True


def test_the_backend_operations_match_numpy():
    backend = oracle.TorchBackend()
    ones, zeros = backend.ones(2, 3), backend.zeros(3, 1)
    assert ones.dtype == zeros.dtype == torch.float64
    assert np.array_equal(ones.numpy(), np.ones((2, 3))) and np.array_equal(zeros.numpy(), np.zeros((3, 1)))
    a = np.arange(6.0).reshape(2, 3) - 2.0
    t = torch.tensor(a)
    assert np.array_equal(backend.scale(2, t).numpy(), 2 * a)
    assert np.array_equal(backend.stack([t, 10 * t]).numpy(), np.vstack([a, 10 * a]))
    assert np.array_equal(backend.row_slice(backend.stack([t, 10 * t]), 1, 3).numpy(), np.vstack([a[1:], 10 * a[:1]]))
    column = torch.tensor([[1.0], [2.0]])
    assert np.array_equal(backend.broadcast(column, 3).numpy(), [[1.0] * 3, [2.0] * 3])
    assert np.array_equal(backend.feature_sum(t).numpy(), np.broadcast_to(a.sum(axis=0, keepdims=True), a.shape))
    assert np.array_equal(backend.batch_sum(t).numpy(), a.sum(axis=1, keepdims=True))
    assert float(backend.total(t)) == a.sum()
    assert oracle.TorchBackend.evaluator == "torch_eval"


def test_full_and_truncated_gradients_of_a_cell_with_a_readout_against_finite_differences():
    kernel = kernel_module("rnn")
    problem = random_problem(kernel, dims_for(kernel), m=2, T=4, seed=3)
    for truncate in (None, 2):
        grads = oracle.gradients("rnn", problem, truncate=truncate)
        _close(numerical_gradients(kernel, problem, truncate=truncate), grads)
        assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in grads.values())
    assert not np.allclose(oracle.gradients("rnn", problem, truncate=1)["dWhh"],
                           oracle.gradients("rnn", problem)["dWhh"])


def test_two_states_and_a_state_left_to_start_at_zero():
    kernel = kernel_module("lstm")
    problem = random_problem(kernel, dims_for(kernel), m=2, T=3, seed=1)
    _close(numerical_gradients(kernel, problem), oracle.gradients("lstm", problem))
    started = Problem(problem.parameters, problem.x, {"h": problem.initial_states["h"]}, problem.upstream)
    zero = Problem(problem.parameters, problem.x,
                   {"h": problem.initial_states["h"], "c": np.zeros_like(problem.initial_states["c"])},
                   problem.upstream)
    grads = oracle.gradients("lstm", started)
    _close(numerical_gradients(kernel, zero), grads)
    assert set(grads) >= {"dh0", "dc0", "dx"}


def test_the_gradient_of_a_leaf_the_loss_does_not_reach_is_zero():
    cell = Cell("ignores_its_state")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, _ = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x))
    kernel = kernel_module(cell)
    problem = random_problem(kernel, dims_for(kernel), m=2, T=2, seed=0)
    grads = oracle.gradients(cell, problem)
    assert np.array_equal(grads["dh0"], np.zeros_like(problem.initial_states["h"]))
    _close(numerical_gradients(kernel, problem), grads)


def test_compare_with_kernel_agrees_with_the_derived_backward():
    errors = oracle.compare_with_kernel(kernel_module("gru"), "gru", m=2, T=3, truncate=2, seed=4)
    assert set(errors) >= {"dWz", "dx", "dh0"} and max(errors.values()) < 1e-10


class _Recording:
    """A kernel that records the inputs its forward is given."""

    def __init__(self, kernel):
        self.kernel, self.inputs = kernel, []

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def forward(self, parameters, x, initial=None):
        self.inputs.append(x.copy())
        return self.kernel.forward(parameters, x, initial)


def test_compare_with_kernel_draws_the_problem_of_its_seed_and_sizes():
    kernel = kernel_module("rnn")
    recorded = _Recording(kernel)
    errors = oracle.compare_with_kernel(recorded, "rnn", m=3, T=2, seed=7, sizes={"n_x": 6})
    assert max(errors.values()) < 1e-10
    expected = random_problem(kernel, dims_for(kernel, {"n_x": 6}), m=3, T=2, seed=7).x
    assert recorded.inputs and all(np.array_equal(x, expected) for x in recorded.inputs)
    defaults = _Recording(kernel)
    oracle.compare_with_kernel(defaults, "rnn")
    assert {x.shape for x in defaults.inputs} == {(dims_for(kernel)["n_x"], 2, 4)}  # m = 2, T = 4


def test_the_sizes_are_read_off_the_problems_shapes():
    kernel = kernel_module("rnn")
    problem = random_problem(kernel, {"n_x": 5, "n_h": 3, "n_y": 2}, m=4, T=2)
    cell = oracle.resolve_cell("rnn")
    sizes = {str(k): v for k, v in oracle.dims_of(cell, problem).items()}
    assert sizes == {"n_x": 5, "n_h": 3, "n_y": 2, "m": 4}


def test_a_cell_with_two_inputs_or_a_size_that_is_no_whole_side_is_refused():
    two = Cell("two_inputs")
    n_u, n_h = two.dims("n_u", "n_h")
    u, v, _ = two.input("u", n_u), two.input("v", n_u), two.state("h", n_h)
    two.update("h", tanh(two.weight("W", n_h, n_u) @ u + two.weight("V", n_h, n_u) @ v))
    problem = Problem({}, np.zeros((2, 1, 1)), {}, {})
    with pytest.raises(ValueError, match="cell two_inputs: the oracle drives cells with one input, not 2"):
        oracle.dims_of(two, problem)
    odd = Cell("odd")
    n_h, k = odd.dims("n_h", "k")
    x, h_prev = odd.input("x", n_h + k), odd.state("h", n_h)
    odd.update("h", tanh(odd.weight("W", n_h, n_h + k) @ x + h_prev))
    problem = Problem({"W": np.zeros((2, 5))}, np.zeros((5, 1, 2)), {}, {})
    with pytest.raises(ValueError, match="cell odd: no parameter or input has dimension k as a whole side"):
        oracle.dims_of(odd, problem)
    problem = Problem({"W": np.zeros((2, 5))}, np.zeros((5, 1, 2)), {"h": np.zeros((2, 1))}, {})
    with pytest.raises(ValueError, match="dimension k as a whole side"):
        oracle.dims_of(odd, problem)


def test_without_torch_the_oracle_says_so(monkeypatch):
    kernel = kernel_module("rnn")
    problem = random_problem(kernel, dims_for(kernel), m=1, T=1)
    monkeypatch.setattr(oracle, "torch", None)
    assert oracle.available() is False
    with pytest.raises(ImportError, match="^PyTorch is not installed; the torch oracle needs it$"):
        oracle.gradients("rnn", problem)
