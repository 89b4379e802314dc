"""Generated rnn, lstm, gru against the hand-written references (which import nothing of ours).

Forward outputs and every gradient, one step and the whole sequence, through the notebook's
function names and through the generic interface; float64, relative error ≤ 1e-10.
"""

import numpy as np
import pytest

from tests.reference import gru_handwritten, lstm_notebook, rnn_notebook

REFERENCES = {"rnn": rnn_notebook, "lstm": lstm_notebook, "gru": gru_handwritten}
SHAPES = [(1, 1), (1, 5), (4, 1), (3, 6)]  # (m, T)
N_X, N_H, N_Y = 3, 5, 2  # all different, so a transposed gradient cannot pass


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-12)


def setup(name, m, T, seed=0):
    rng = np.random.default_rng(seed)
    params = REFERENCES[name].init_parameters(N_X, N_H, N_Y, rng)
    x = rng.standard_normal((N_X, m, T))
    h0 = rng.standard_normal((N_H, m))
    return rng, params, x, h0


def run_reference(name, x, h0, params):
    ref = REFERENCES[name]
    out = getattr(ref, f"{name}_forward")(x, h0, params)
    if name == "lstm":
        H, Y, C, caches = out
        return {"h": H, "y": Y, "c": C}, caches
    H, Y, caches = out
    return {"h": H, "y": Y}, caches


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("m,T", SHAPES)
def test_generic_interface(kernels, name, m, T):
    rng, params, x, h0 = setup(name, m, T)
    expected, caches = run_reference(name, x, h0, params)
    outputs, cache = kernels[name].forward(params, x, {"h": h0})
    for key in expected:
        assert rel(outputs[key], expected[key]) <= 1e-10, key
    dH, dY = rng.standard_normal(expected["h"].shape), rng.standard_normal(expected["y"].shape)
    ref_grads = getattr(REFERENCES[name], f"{name}_backward_full")(dH, dY, caches)
    grads = kernels[name].backward(cache, {"h": dH, "y": dY})
    assert set(ref_grads) <= set(grads)
    for key, value in ref_grads.items():
        assert rel(grads[key], value) <= 1e-10, key


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("m,T", SHAPES)
def test_notebook_interface(kernels, name, m, T):
    rng, params, x, h0 = setup(name, m, T, seed=1)
    kernel, ref = kernels[name], REFERENCES[name]
    expected = getattr(ref, f"{name}_forward")(x, h0, params)
    got = getattr(kernel, f"{name}_forward")(x, h0, params)
    assert len(got) == len(expected)
    for a, b in zip(got[:-1], expected[:-1]):
        assert rel(a, b) <= 1e-10
    dH = rng.standard_normal(expected[0].shape)
    ref_grads = getattr(ref, f"{name}_backward")(dH, expected[-1])
    grads = getattr(kernel, f"{name}_backward")(dH, got[-1])
    assert set(grads) == set(ref_grads)
    for key in ref_grads:
        assert rel(grads[key], ref_grads[key]) <= 1e-10, key


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("m", [1, 4])
def test_one_step(kernels, name, m):
    rng, params, x, h0 = setup(name, m, 1, seed=2)
    kernel, ref = kernels[name], REFERENCES[name]
    xt = x[:, :, 0]
    states = [h0] + ([rng.standard_normal((N_H, m))] if name == "lstm" else [])
    expected = getattr(ref, f"{name}_one_step_forward")(xt, *states, params)
    got = getattr(kernel, f"{name}_one_step_forward")(xt, *states, params)
    for a, b in zip(got[:-1], expected[:-1]):
        assert rel(a, b) <= 1e-10
    incoming = [rng.standard_normal((N_H, m)) for _ in states]
    ref_grads = getattr(ref, f"{name}_one_step_backward")(*incoming, expected[-1])
    grads = getattr(kernel, f"{name}_one_step_backward")(*incoming, got[-1])
    assert set(grads) == set(ref_grads)
    for key in ref_grads:
        assert rel(grads[key], ref_grads[key]) <= 1e-10, key
