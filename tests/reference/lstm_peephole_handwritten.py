"""Peephole LSTM forward and backward pass written by hand in plain NumPy (no symbptt).

Gers & Schmidhuber (2000), "Recurrent nets that time and count"; the equations as Graves
(2013) writes them, with the course notebook's stacked [h_prev; x]. Batch in columns, time
on the last axis: ``x`` is ``(n_x, m, T)``, states ``(n_h, m)``, vectors and biases ``(n, 1)``.

    i = sigmoid(Wi [h_prev; x] + p_i * c_prev + bi)       input gate, peeks at c_prev
    f = sigmoid(Wf [h_prev; x] + p_f * c_prev + bf)       forget gate, peeks at c_prev
    cc = tanh(Wc [h_prev; x] + bc)                        candidate
    c = f * c_prev + i * cc
    o = sigmoid(Wo [h_prev; x] + p_o * c + bo)            output gate, peeks at the new c
    h = o * tanh(c)
    y = softmax(Wy h + by)

Hand derivation of one step, given dh and dc (from the outputs and from step t+1):

    do = dh * tanh(c)                  da_o = do * o * (1 - o)
    dc_all = dc + dh * o * (1 - tanh(c)^2) + da_o * p_o       (c reaches h directly and via o)
    df = dc_all * c_prev   di = dc_all * cc   dcc = dc_all * i
    da_f = df * f (1 - f)  da_i = di * i (1 - i)  da_c = dcc * (1 - cc^2)
    dW{i,f,c,o} = da_{i,f,c,o} [h_prev; x]^T     db = sum_batch(da)
    dp_i = sum_batch(da_i * c_prev)   dp_f = sum_batch(da_f * c_prev)   dp_o = sum_batch(da_o * c)
    d[h_prev; x] = Wi^T da_i + Wf^T da_f + Wc^T da_c + Wo^T da_o
    dc_prev = dc_all * f + da_i * p_i + da_f * p_f
"""

import numpy as np

GATES = ("i", "f", "c", "o")


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def init_parameters(n_x, n_h, n_y, rng):
    """Random float64 parameters with the cell's keys and shapes."""
    p = {}
    for g in GATES:
        p["W" + g] = rng.standard_normal((n_h, n_h + n_x)) / np.sqrt(n_h + n_x)
        p["b" + g] = 0.1 * rng.standard_normal((n_h, 1))
    for g in ("i", "f", "o"):
        p["p_" + g] = rng.uniform(-1.0, 1.0, (n_h, 1))
    p["Wy"] = rng.standard_normal((n_y, n_h)) / np.sqrt(n_h)
    p["by"] = 0.1 * rng.standard_normal((n_y, 1))
    return p


def one_step(xt, h_prev, c_prev, p):
    """One step: h, c, y and what the backward pass needs."""
    concat = np.concatenate((h_prev, xt), axis=0)
    i = sigmoid(p["Wi"] @ concat + p["p_i"] * c_prev + p["bi"])
    f = sigmoid(p["Wf"] @ concat + p["p_f"] * c_prev + p["bf"])
    cc = np.tanh(p["Wc"] @ concat + p["bc"])
    c = f * c_prev + i * cc
    o = sigmoid(p["Wo"] @ concat + p["p_o"] * c + p["bo"])
    h = o * np.tanh(c)
    y = softmax(p["Wy"] @ h + p["by"])
    return h, c, y, (concat, c_prev, i, f, cc, c, o, h, y)


def forward(x, h0, c0, parameters):
    """Outputs {"h": H, "c": C, "y": Y}, each (n, m, T), and the caches of every step."""
    n_h, (m, T) = h0.shape[0], x.shape[1:]
    n_y = parameters["Wy"].shape[0]
    H, C, Y = np.zeros((n_h, m, T)), np.zeros((n_h, m, T)), np.zeros((n_y, m, T))
    h, c, caches = h0, c0, []
    for t in range(T):
        h, c, y, cache = one_step(x[:, :, t], h, c, parameters)
        H[:, :, t], C[:, :, t], Y[:, :, t] = h, c, y
        caches.append(cache)
    return {"h": H, "c": C, "y": Y}, (caches, parameters)


def backward(upstream, caches):
    """Full BPTT of L = sum(dH * H) + sum(dC * C) + sum(dY * Y): every gradient, dx, dh0, dc0."""
    caches, p = caches
    dH, dC, dY = upstream["h"], upstream["c"], upstream["y"]
    n_h = dH.shape[0]
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros((p["Wi"].shape[1] - n_h,) + dH.shape[1:])
    dh_next, dc_next = np.zeros(dH.shape[:2]), np.zeros(dH.shape[:2])
    for t in reversed(range(len(caches))):
        concat, c_prev, i, f, cc, c, o, h, y = caches[t]
        dy = dY[:, :, t]
        da_y = y * (dy - np.sum(y * dy, axis=0, keepdims=True))  # softmax VJP
        grads["Wy"] += da_y @ h.T
        grads["by"] += np.sum(da_y, axis=1, keepdims=True)
        dh = dH[:, :, t] + dh_next + p["Wy"].T @ da_y
        tc = np.tanh(c)
        da = {"o": dh * tc * o * (1 - o)}
        dc = dC[:, :, t] + dc_next + dh * o * (1 - tc**2) + da["o"] * p["p_o"]
        da["f"] = dc * c_prev * f * (1 - f)
        da["i"] = dc * cc * i * (1 - i)
        da["c"] = dc * i * (1 - cc**2)
        dconcat = np.zeros_like(concat)
        for g in GATES:
            grads["W" + g] += da[g] @ concat.T
            grads["b" + g] += np.sum(da[g], axis=1, keepdims=True)
            dconcat += p["W" + g].T @ da[g]
        grads["p_i"] += np.sum(da["i"] * c_prev, axis=1, keepdims=True)
        grads["p_f"] += np.sum(da["f"] * c_prev, axis=1, keepdims=True)
        grads["p_o"] += np.sum(da["o"] * c, axis=1, keepdims=True)
        dh_next, dx[:, :, t] = dconcat[:n_h], dconcat[n_h:]
        dc_next = dc * f + da["i"] * p["p_i"] + da["f"] * p["p_f"]
    out = {"d" + k: v for k, v in grads.items()}
    out["dx"], out["dh0"], out["dc0"] = dx, dh_next, dc_next
    return out
