"""IndRNN forward and backward pass written by hand in plain NumPy (no symbptt).

Li, Li, Cook, Zhu & Gao (2018), "Independently Recurrent Neural Network (IndRNN)". Batch in
columns, time on the last axis: ``x`` is ``(n_x, m, T)``, ``h0`` is ``(n_h, m)``, vectors
and biases are ``(n, 1)``.

    a_t = W x_t + u * h_{t-1} + b           u: one recurrent weight per unit
    h_t = relu(a_t)
    y_t = softmax(Wy h_t + by)

Hand derivation of one step, given dh = dL/dh_t (from y_t, from step t+1 and from H):

    da = dh * 1[a > 0]
    dW = da x^T         du = sum_batch(da * h_prev)         db = sum_batch(da)
    dx = W^T da         dh_prev = da * u                    (no matrix: each unit alone)
"""

import numpy as np


def softmax(z):
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def init_parameters(n_x, n_h, n_y, rng):
    """Random float64 parameters with the cell's keys and shapes (|u| < 1)."""
    return {
        "W": rng.standard_normal((n_h, n_x)) / np.sqrt(n_x),
        "u": rng.uniform(-1.0, 1.0, (n_h, 1)),
        "b": 0.1 * rng.standard_normal((n_h, 1)),
        "Wy": rng.standard_normal((n_y, n_h)) / np.sqrt(n_h),
        "by": 0.1 * rng.standard_normal((n_y, 1)),
    }


def forward(x, h0, parameters):
    """Outputs {"h": H, "y": Y}, each (n, m, T), and the caches of every step."""
    W, u, b = parameters["W"], parameters["u"], parameters["b"]
    Wy, by = parameters["Wy"], parameters["by"]
    n_h, (n_y, m, T) = h0.shape[0], (Wy.shape[0], x.shape[1], x.shape[2])
    H, Y = np.zeros((n_h, m, T)), np.zeros((n_y, m, T))
    h, caches = h0, []
    for t in range(T):
        h_prev = h
        a = W @ x[:, :, t] + u * h_prev + b
        h = np.maximum(a, 0.0)
        y = softmax(Wy @ h + by)
        H[:, :, t], Y[:, :, t] = h, y
        caches.append((x[:, :, t], h_prev, a, h, y))
    return {"h": H, "y": Y}, (caches, parameters)


def backward(upstream, caches):
    """Full BPTT of L = sum(dH * H) + sum(dY * Y); returns every gradient, dx and dh0."""
    caches, parameters = caches
    W, u, Wy = parameters["W"], parameters["u"], parameters["Wy"]
    dH, dY = upstream["h"], upstream["y"]
    grads = {k: np.zeros_like(v) for k, v in parameters.items()}
    dx = np.zeros((W.shape[1],) + dH.shape[1:])
    dh_next = np.zeros(dH.shape[:2])
    for t in reversed(range(len(caches))):
        xt, h_prev, a, h, y = caches[t]
        dy = dY[:, :, t]
        da_y = y * (dy - np.sum(y * dy, axis=0, keepdims=True))  # softmax VJP
        grads["Wy"] += da_y @ h.T
        grads["by"] += np.sum(da_y, axis=1, keepdims=True)
        dh = dH[:, :, t] + dh_next + Wy.T @ da_y
        da = dh * (a > 0)  # relu'
        grads["W"] += da @ xt.T
        grads["u"] += np.sum(da * h_prev, axis=1, keepdims=True)
        grads["b"] += np.sum(da, axis=1, keepdims=True)
        dx[:, :, t] = W.T @ da
        dh_next = da * u
    out = {"d" + k: v for k, v in grads.items()}
    out["dx"], out["dh0"] = dx, dh_next
    return out
