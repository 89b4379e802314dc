"""Vanilla RNN forward and backward pass: the course notebook's code with its bugs fixed.

Conventions (as in the notebook): batch in columns and time on the last axis, so ``x`` is
``(n_x, m, T)``, ``h0`` is ``(n_h, m)`` and biases are ``(n, 1)``.

    h_t = tanh(Whx x_t + Whh h_{t-1} + bh)
    y_t = softmax(Wyh h_t + by)

Every change to the notebook's code is marked with a ``# FIX:`` comment.
"""

import numpy as np


# FIX: the notebook calls softmax() without defining it; softmax over axis 0 (the classes),
# shifted by the column maximum for numerical stability.
def softmax(z):
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def init_parameters(n_x, n_h, n_y, rng):
    """Random float64 parameters (normal * 0.5) with the notebook's keys and shapes."""
    shapes = {
        "Whx": (n_h, n_x),
        "Whh": (n_h, n_h),
        "bh": (n_h, 1),
        "Wyh": (n_y, n_h),
        "by": (n_y, 1),
    }
    return {k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()}


# Forward pass


def rnn_one_step_forward(xt, h_prev, parameters):
    Whx = parameters["Whx"]
    Whh = parameters["Whh"]
    Wyh = parameters["Wyh"]
    bh = parameters["bh"]
    by = parameters["by"]

    # forward pass
    h_next = np.tanh(np.dot(Whx, xt) + np.dot(Whh, h_prev) + bh)
    yt_hat = softmax(np.dot(Wyh, h_next) + by)

    cache = (h_next, h_prev, xt, parameters)

    return h_next, yt_hat, cache


def rnn_forward(x, h0, parameters):
    caches = []

    _, m, T_x = x.shape
    n_y, n_h = parameters["Wyh"].shape

    H = np.zeros((n_h, m, T_x))
    Yt_hat = np.zeros((n_y, m, T_x))

    h_next = h0

    for t in range(T_x):
        h_next, yt_hat, cache = rnn_one_step_forward(x[:, :, t], h_next, parameters)
        H[:, :, t] = h_next
        # FIX: the notebook wrote into the undefined name `Yt_ha`; the array is `Yt_hat`.
        Yt_hat[:, :, t] = yt_hat
        caches.append(cache)

    caches = (caches, x)
    return H, Yt_hat, caches


# Backward pass (full BPTT: the gradient reaching h_{t-1} is carried back to step t-1)


def rnn_one_step_backward(dh_next, cache):
    (h_next, h_prev, xt, parameters) = cache
    Whx = parameters["Whx"]
    Whh = parameters["Whh"]

    # gradients
    dtanh = (1 - h_next**2) * dh_next  # dL/da, a = Whx x + Whh h_prev + bh
    dWhx = np.dot(dtanh, xt.T)
    dWhh = np.dot(dtanh, h_prev.T)
    dbh = np.sum(dtanh, axis=1, keepdims=True)

    # inputs
    dxt = np.dot(Whx.T, dtanh)
    dh_prev = np.dot(Whh.T, dtanh)

    # FIX: the notebook stored the undefined name `dWh` under "dWhh" and used the key "dba"
    # instead of "dbh".
    gradients = {"dxt": dxt, "dh_prev": dh_prev, "dWhx": dWhx, "dWhh": dWhh, "dbh": dbh}

    return gradients


def rnn_backward(dh, caches):
    (caches, x) = caches

    n_h, m, T_x = dh.shape
    n_x = x.shape[0]

    # initialise the gradients
    dx = np.zeros((n_x, m, T_x))
    dWhx = np.zeros((n_h, n_x))
    # FIX: the notebook initialised `dWh` but accumulated into the undefined `dWhh`.
    dWhh = np.zeros((n_h, n_h))
    dbh = np.zeros((n_h, 1))
    dh_prevt = np.zeros((n_h, m))

    # loop over the time steps, last to first
    for t in reversed(range(T_x)):
        gradients = rnn_one_step_backward(dh[:, :, t] + dh_prevt, caches[t])

        dxt, dh_prevt = gradients["dxt"], gradients["dh_prev"]
        dWhxt, dWhht, dbht = gradients["dWhx"], gradients["dWhh"], gradients["dbh"]

        dx[:, :, t] = dxt
        dWhx += dWhxt
        dWhh += dWhht
        dbh += dbht

    # base case
    # FIX: the notebook stored the result in `da0` and returned `dh0`, which was still zeros;
    # dh0 is the gradient carried out of the first step.
    dh0 = dh_prevt
    gradients = {"dx": dx, "dh0": dh0, "dWhx": dWhx, "dWhh": dWhh, "dbh": dbh}

    return gradients


# Generic entry point with the readout's gradients (not in the notebook)


def rnn_backward_full(dH, dY, caches):
    """Full BPTT given dL/dH (n_h, m, T) and dL/dY (n_y, m, T), Y being the softmax output.

    Returns every parameter's gradient (readout included), "dx" and "dh0".
    """
    step_caches = caches[0]
    parameters = step_caches[0][3]
    Wyh = parameters["Wyh"]
    by = parameters["by"]
    n_y, n_h = Wyh.shape

    dH_total = np.array(dH, dtype=np.float64, copy=True)
    dWyh = np.zeros((n_y, n_h))
    dby = np.zeros((n_y, 1))
    for t, cache in enumerate(step_caches):
        h_next = cache[0]
        yt_hat = softmax(np.dot(Wyh, h_next) + by)  # recomputed: the cache does not keep it
        dyt = dY[:, :, t]
        # softmax VJP: da = y * (dy - sum(y * dy))
        da = yt_hat * (dyt - np.sum(yt_hat * dyt, axis=0, keepdims=True))
        dWyh += np.dot(da, h_next.T)
        dby += np.sum(da, axis=1, keepdims=True)
        dH_total[:, :, t] += np.dot(Wyh.T, da)

    gradients = rnn_backward(dH_total, caches)
    gradients["dWyh"] = dWyh
    gradients["dby"] = dby
    return gradients
