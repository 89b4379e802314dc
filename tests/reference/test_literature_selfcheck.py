"""Self-check of the hand-written IndRNN and peephole LSTM against central differences.

Only NumPy and the reference modules are used (never symbptt): each reference's backward
must match central differences of L = Σ upstream ⊙ outputs, with fixed random upstream
arrays, for every parameter, the input and the initial states, in float64.
"""

import numpy as np
import pytest

from . import indrnn_handwritten, lstm_peephole_handwritten

N_X, N_H, N_Y = 3, 4, 2
EPS = 1e-6


def run(name, params, x, states):
    if name == "indrnn":
        return indrnn_handwritten.forward(x, states["h"], params)
    return lstm_peephole_handwritten.forward(x, states["h"], states["c"], params)


REFERENCES = {"indrnn": (indrnn_handwritten, ("h",)),
              "lstm_peephole": (lstm_peephole_handwritten, ("h", "c"))}


def problem(name, m, T, seed=0):
    module, states = REFERENCES[name]
    rng = np.random.default_rng(seed)
    params = module.init_parameters(N_X, N_H, N_Y, rng)
    x = rng.standard_normal((N_X, m, T))
    initial = {s: 0.5 * rng.standard_normal((N_H, m)) for s in states}
    outputs, _ = run(name, params, x, initial)
    upstream = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    return params, x, initial, upstream


def numerical(name, params, x, initial, upstream):
    def loss():
        outputs, _ = run(name, params, x, initial)
        return sum(float(np.sum(upstream[k] * v)) for k, v in outputs.items())

    arrays = {"d" + k: v for k, v in params.items()}
    arrays["dx"] = x
    arrays.update({f"d{s}0": v for s, v in initial.items()})
    grads = {}
    for key, a in arrays.items():
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + EPS
            plus = loss()
            a[idx] = old - EPS
            minus = loss()
            a[idx] = old
            g[idx] = (plus - minus) / (2 * EPS)
        grads[key] = g
    return grads


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("m,T", [(1, 1), (3, 4)])
def test_reference_backward_matches_finite_differences(name, m, T):
    params, x, initial, upstream = problem(name, m, T)
    _, caches = run(name, params, x, initial)
    analytic = REFERENCES[name][0].backward(upstream, caches)
    numeric = numerical(name, params, x, initial, upstream)
    assert set(analytic) == set(numeric)
    for key, value in numeric.items():
        assert analytic[key].shape == value.shape, key
        scale = max(float(np.max(np.abs(value))), 1e-8)
        assert float(np.max(np.abs(analytic[key] - value))) / scale <= 1e-6, key
