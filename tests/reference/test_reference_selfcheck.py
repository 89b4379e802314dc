"""Self-check of the hand-written reference cells against central finite differences.

Each reference's backward is compared, array by array, with central differences of
L = sum(dH * H) + sum(dY * Y) (+ sum(dC * C) for the LSTM) in float64, dH, dY, dC being
fixed random arrays. Only NumPy and the reference modules are used (never symbptt).
"""

import numpy as np
import pytest

from . import gru_handwritten, lstm_notebook, rnn_notebook

N_X, N_H, N_Y = 3, 4, 2
EPS = 1e-6
RTOL = 1e-6


def _rnn_run(p, x, h0, c0):
    H, Y, caches = rnn_notebook.rnn_forward(x, h0, p)
    return H, Y, None, caches


def _lstm_run(p, x, h0, c0):
    return lstm_notebook.lstm_forward(x, h0, p, c0=c0)


def _gru_run(p, x, h0, c0):
    H, Y, caches = gru_handwritten.gru_forward(x, h0, p)
    return H, Y, None, caches


# name: (module, forward runner, backward_full, notebook backward, recurrent keys, has c)
CELLS = {
    "rnn": (rnn_notebook, _rnn_run, rnn_notebook.rnn_backward_full,
            rnn_notebook.rnn_backward, ("Whx", "Whh", "bh"), False),
    "lstm": (lstm_notebook, _lstm_run, lstm_notebook.lstm_backward_full,
             lstm_notebook.lstm_backward,
             ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo"), True),
    "gru": (gru_handwritten, _gru_run, gru_handwritten.gru_backward_full,
            gru_handwritten.gru_backward, ("Wz", "bz", "Wr", "br", "Wh", "bh"), False),
}


def _setup(name, m, T, seed=0):
    module, _, _, _, _, has_c = CELLS[name]
    rng = np.random.default_rng(seed)
    p = module.init_parameters(N_X, N_H, N_Y, rng)
    x = rng.standard_normal((N_X, m, T))
    h0 = 0.5 * rng.standard_normal((N_H, m))
    c0 = 0.5 * rng.standard_normal((N_H, m)) if has_c else None
    dH = rng.standard_normal((N_H, m, T))
    dY = rng.standard_normal((N_Y, m, T))
    dC = rng.standard_normal((N_H, m, T)) if has_c else None
    return p, x, h0, c0, dH, dY, dC


def _numerical_gradients(loss, arrays):
    """Central differences of loss() with respect to every array in `arrays` (in place)."""
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


def _assert_close(analytic, numeric, key):
    assert analytic.shape == numeric.shape, key
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    err = np.linalg.norm(analytic - numeric)
    if scale < 1e-12:
        assert err < 1e-10, key
    else:
        assert err / scale <= RTOL, f"{key}: relative error {err / scale:.3e}"


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_backward_full_matches_finite_differences(name, m, T):
    _, run, backward_full, _, _, has_c = CELLS[name]
    p, x, h0, c0, dH, dY, dC = _setup(name, m, T)

    def loss():
        H, Y, C, _ = run(p, x, h0, c0)
        value = np.sum(dH * H) + np.sum(dY * Y)
        if has_c:
            value += np.sum(dC * C)
        return value

    _, _, _, caches = run(p, x, h0, c0)
    if has_c:
        grads = backward_full(dH, dY, caches, dC=dC)
    else:
        grads = backward_full(dH, dY, caches)

    arrays = {"d" + k: v for k, v in p.items()}
    arrays["dx"] = x
    arrays["dh0"] = h0
    if has_c:
        arrays["dc0"] = c0
    assert set(grads) == set(arrays)

    numeric = _numerical_gradients(loss, arrays)
    for key in arrays:
        _assert_close(grads[key], numeric[key], key)


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_notebook_backward_matches_finite_differences(name, m, T):
    """The notebook-style backward(dh, caches): gradient of sum(dH * H), full BPTT, c0 = 0."""
    _, run, _, backward, keys, _ = CELLS[name]
    p, x, h0, _, dH, _, _ = _setup(name, m, T, seed=1)

    def loss():
        H, _, _, _ = run(p, x, h0, None)
        return np.sum(dH * H)

    _, _, _, caches = run(p, x, h0, None)
    grads = backward(dH, caches)

    arrays = {"d" + k: p[k] for k in keys}
    arrays["dx"] = x
    arrays["dh0"] = h0
    assert set(grads) == set(arrays)

    numeric = _numerical_gradients(loss, arrays)
    for key in arrays:
        _assert_close(grads[key], numeric[key], key)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_forward_shapes_and_softmax(name):
    _, run, _, _, _, has_c = CELLS[name]
    p, x, h0, c0, _, _, _ = _setup(name, 3, 4)
    H, Y, C, caches = run(p, x, h0, c0)
    assert H.shape == (N_H, 3, 4)
    assert Y.shape == (N_Y, 3, 4)
    if has_c:
        assert C.shape == (N_H, 3, 4)
    np.testing.assert_allclose(Y.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    step_caches, x_cached = caches
    assert len(step_caches) == 4
    assert x_cached is x


def test_lstm_default_c0_is_zeros():
    p, x, h0, _, _, _, _ = _setup("lstm", 3, 4)
    H_default, _, C_default, _ = lstm_notebook.lstm_forward(x, h0, p)
    H_zero, _, C_zero, _ = lstm_notebook.lstm_forward(x, h0, p, c0=np.zeros((N_H, 3)))
    np.testing.assert_array_equal(H_default, H_zero)
    np.testing.assert_array_equal(C_default, C_zero)


def test_softmax_is_stable():
    z = np.array([[1000.0, -1000.0], [1001.0, -1001.0]])
    for module in (rnn_notebook, lstm_notebook, gru_handwritten):
        s = module.softmax(z)
        assert np.all(np.isfinite(s))
        np.testing.assert_allclose(s.sum(axis=0), 1.0)
