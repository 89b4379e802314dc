"""Central finite differences against a generated kernel's backward, for any cell.

The loss is L = Σ_outputs Σ upstream ⊙ output with fixed random ``upstream`` arrays, so its
gradient with respect to every output is exactly ``upstream``. Each parameter, input and
initial state entry is perturbed by ±eps and L re-evaluated with the kernel's own forward.

Truncated BPTT (``truncate=k``) is the gradient of the loss in which the states entering each
chunk of k steps are constants: the finite-difference loss runs the chunks one by one, each
starting from the unperturbed run's states, exactly as a detached PyTorch state behaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class Problem:
    """One random instance of a cell: sizes, parameters, inputs, initial states, upstream."""

    parameters: dict
    x: np.ndarray
    initial_states: dict
    upstream: dict


def dims_for(kernel: ModuleType, sizes: dict | None = None) -> dict[str, int]:
    """Distinct small sizes for the kernel's dimensions (n_h ≠ n_x ≠ n_y shows transposes)."""
    defaults = {"n_x": 3, "n_h": 4, "n_y": 2}
    out = {}
    for k, d in enumerate(kernel.DIMS):
        out[d] = int((sizes or {}).get(d, defaults.get(d, 3 + k)))
    return out


def random_problem(kernel: ModuleType, dims: dict, m: int, T: int, seed: int = 0,
                   dtype=np.float64) -> Problem:
    """A random instance with nonzero initial states and upstream for every output."""
    rng = np.random.default_rng(seed)
    parameters = kernel.init_parameters(dims, rng, dtype)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows[kernel.INPUTS[0]], m, T)).astype(dtype)
    initial = {s: (0.5 * rng.standard_normal((rows[s], m))).astype(dtype) for s in kernel.STATES}
    outputs, _ = kernel.forward(parameters, x, initial)
    upstream = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in outputs.items()}
    return Problem(parameters, x, initial, upstream)


def loss(kernel: ModuleType, problem: Problem, parameters=None, x=None, initial=None,
         truncate: int | None = None, reference_states: dict | None = None) -> float:
    """L = Σ upstream ⊙ outputs; with ``truncate``, each chunk starts from fixed states."""
    parameters = problem.parameters if parameters is None else parameters
    x = problem.x if x is None else x
    initial = problem.initial_states if initial is None else initial
    T = x.shape[2]
    if truncate is None:
        outputs, _ = kernel.forward(parameters, x, initial)
        return float(sum(np.sum(problem.upstream[k] * v) for k, v in outputs.items()))
    total = 0.0
    for start in range(0, T, truncate):
        stop = min(T, start + truncate)
        if start == 0:
            states = initial
        else:
            if reference_states is None:
                raise ValueError("loss: truncate needs reference_states (the unperturbed run's states)")
            states = {s: reference_states[s][:, :, start - 1] for s in kernel.STATES}
        outputs, _ = kernel.forward(parameters, x[:, :, start:stop], states)
        total += float(sum(np.sum(problem.upstream[k][:, :, start:stop] * v)
                           for k, v in outputs.items()))
    return total


def numerical_gradients(kernel: ModuleType, problem: Problem, truncate: int | None = None,
                        eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences of :func:`loss` for every parameter, x and initial state."""
    reference_states = None
    if truncate is not None:
        outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
        reference_states = {s: outputs[s] for s in kernel.STATES}

    def f(parameters=None, x=None, initial=None):
        return loss(kernel, problem, parameters, x, initial, truncate, reference_states)

    def diff(array, evaluate):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            old = array[index]
            array[index] = old + eps
            up = evaluate()
            array[index] = old - eps
            down = evaluate()
            array[index] = old
            grad[index] = (up - down) / (2 * eps)
        return grad

    out = {}
    params = {k: v.copy() for k, v in problem.parameters.items()}
    for name, array in params.items():
        out["d" + name] = diff(array, lambda: f(parameters=params))
    x = problem.x.copy()
    out["dx"] = diff(x, lambda: f(x=x))
    initial = {k: v.copy() for k, v in problem.initial_states.items()}
    for s, array in initial.items():
        out[f"d{s}0"] = diff(array, lambda: f(initial=initial))
    return out


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a − n| / max(max |n|, 1e-8): one number per gradient, scale-free; infinite when
    either holds a NaN or an infinity (a NaN compares false with any tolerance, so it must
    never reach one)."""
    if not numeric.size:
        return 0.0
    if not (np.all(np.isfinite(analytic)) and np.all(np.isfinite(numeric))):
        return float("inf")
    scale = max(float(np.max(np.abs(numeric))), 1e-8)
    return float(np.max(np.abs(analytic - numeric))) / scale


def _instance(kernel: ModuleType, m: int, T: int, truncate: int | None, seed: int,
              sizes: dict | None) -> tuple[Problem, dict]:
    """A random problem and the kernel's own gradients on it."""
    problem = random_problem(kernel, dims_for(kernel, sizes), m, T, seed)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    return problem, kernel.backward(cache, problem.upstream, truncate=truncate)


def _require(expected: dict, analytic: dict) -> None:
    missing = sorted(set(expected) - set(analytic))
    if missing:
        raise KeyError(f"backward() lacks gradient(s) {', '.join(missing)}")


def compare(kernel: ModuleType, expected_gradients, m: int = 2, T: int = 3,
            truncate: int | None = None, seed: int = 0,
            sizes: dict | None = None) -> dict[str, float]:
    """Relative error of the kernel's backward against ``expected_gradients(problem)``, per key.

    The one place where a kernel meets an oracle: finite differences here, PyTorch autograd
    in :mod:`symbptt.torch_oracle`.
    """
    problem, analytic = _instance(kernel, m, T, truncate, seed, sizes)
    expected = expected_gradients(problem)
    _require(expected, analytic)
    return {k: relative_error(analytic[k], expected[k]) for k in expected}


#: Step sizes tried in turn by :func:`check` while a gradient's error is above tolerance.
STEPS = (1e-6, 1e-5, 1e-4)


def check(kernel: ModuleType, m: int = 2, T: int = 3, truncate: int | None = None, seed: int = 0,
          sizes: dict | None = None, tolerance: float = 1e-6) -> dict[str, float]:
    """Relative error of every gradient the kernel's backward returns, against differences.

    While some gradient's error is above ``tolerance``, the differences are taken again with
    the next, larger step of :data:`STEPS`, and each gradient keeps its smallest error: a
    gradient small next to the loss (a saturated log∘σ, a deep composition) leaves round-off
    near 1e-6 at the smallest step, which a larger step avoids, while a wrong gradient stays
    wrong at every step (a relative mistake of 1e-5 is still 1e-5 at eps = 1e-4, where the
    differences' own error is about 1e-8).
    """
    problem, analytic = _instance(kernel, m, T, truncate, seed, sizes)
    errors: dict[str, float] = {}
    for eps in STEPS:
        numeric = numerical_gradients(kernel, problem, truncate, eps=eps)
        _require(numeric, analytic)
        for k in numeric:
            errors[k] = min(errors.get(k, float("inf")), relative_error(analytic[k], numeric[k]))
        if max(errors.values(), default=0.0) <= tolerance:
            break
    return errors
