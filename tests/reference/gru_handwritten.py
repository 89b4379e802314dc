"""GRU forward and backward pass written by hand, in the style of the course notebook.

This is the notebook's GRU exercise, answered with full BPTT. Conventions: batch in columns and
time on the last axis, so ``x`` is ``(n_x, m, T)``, ``h0`` is ``(n_h, m)`` and biases are
``(n, 1)``; ``[a; b]`` stacks rows, ``h_prev`` first.

    z_t = sigmoid(Wz [h_{t-1}; x_t] + bz)             update gate
    r_t = sigmoid(Wr [h_{t-1}; x_t] + br)             reset gate
    hh_t = tanh(Wh [r_t * h_{t-1}; x_t] + bh)         candidate state
    h_t = z_t * h_{t-1} + (1 - z_t) * hh_t
    y_t = softmax(Wy h_t + by)

Hand derivation of one step, given dh = dL/dh_t (from y_t, from later steps and from H):

    dz = dh * (h_prev - hh)                  dhh = dh * (1 - z)
    da_h = dhh * (1 - hh^2)                  (a_h: pre-activation of hh)
    dWh = da_h [r * h_prev; x]^T             dbh = sum_batch(da_h)
    d[r * h_prev; x] = Wh^T da_h             split into drh (first n_h rows) and dx part
    dr = drh * h_prev
    da_z = dz * z * (1 - z)                  da_r = dr * r * (1 - r)
    dWz = da_z [h_prev; x]^T                 dbz = sum_batch(da_z)
    dWr = da_r [h_prev; x]^T                 dbr = sum_batch(da_r)
    d[h_prev; x] = Wz^T da_z + Wr^T da_r
    dh_prev = dh * z + drh * r + (Wz^T da_z + Wr^T da_r)[:n_h]
    dx = Wh[:, n_h:]^T da_h + (Wz^T da_z + Wr^T da_r)[n_h:]
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    # softmax over axis 0 (the classes), shifted by the column maximum for stability
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def init_parameters(n_x, n_h, n_y, rng):
    """Random float64 parameters (normal * 0.5) with the GRU's keys and shapes."""
    shapes = {}
    for g in ("z", "r", "h"):
        shapes["W" + g] = (n_h, n_h + n_x)
        shapes["b" + g] = (n_h, 1)
    shapes["Wy"] = (n_y, n_h)
    shapes["by"] = (n_y, 1)
    return {k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()}


# Forward pass


def gru_one_step_forward(xt, h_prev, parameters):
    # parameters
    Wz = parameters["Wz"]
    bz = parameters["bz"]
    Wr = parameters["Wr"]
    br = parameters["br"]
    Wh = parameters["Wh"]
    bh = parameters["bh"]
    Wy = parameters["Wy"]
    by = parameters["by"]

    # dimensions of xt and Wy
    n_x, m = xt.shape
    n_h = Wy.shape[1]

    # concatenation of h_prev and xt
    concat = np.zeros((n_h + n_x, m))
    concat[:n_h, :] = h_prev
    concat[n_h:, :] = xt

    # update gate
    zt = sigmoid(np.dot(Wz, concat) + bz)
    # reset gate
    rt = sigmoid(np.dot(Wr, concat) + br)
    # candidate state, from the reset previous state
    concat_r = np.zeros((n_h + n_x, m))
    concat_r[:n_h, :] = rt * h_prev
    concat_r[n_h:, :] = xt
    hht = np.tanh(np.dot(Wh, concat_r) + bh)
    # new hidden state
    h_next = zt * h_prev + (1 - zt) * hht

    # the predicted y
    yt_hat = softmax(np.dot(Wy, h_next) + by)

    # stored for the backward pass
    cache = (h_next, h_prev, zt, rt, hht, xt, parameters)

    return h_next, yt_hat, cache


def gru_forward(x, h0, parameters):
    caches = []

    _, m, T_x = x.shape
    n_y, n_h = parameters["Wy"].shape

    H = np.zeros((n_h, m, T_x))
    Y = np.zeros((n_y, m, T_x))

    h_next = h0

    for t in range(T_x):
        h_next, yt, cache = gru_one_step_forward(x[:, :, t], h_next, parameters)

        H[:, :, t] = h_next
        Y[:, :, t] = yt
        caches.append(cache)

    caches = (caches, x)

    return H, Y, caches


# Backward pass (full BPTT)


def gru_one_step_backward(dh_next, cache):
    # values from the cache
    (h_next, h_prev, zt, rt, hht, xt, parameters) = cache
    Wz = parameters["Wz"]
    Wr = parameters["Wr"]
    Wh = parameters["Wh"]

    n_h = h_next.shape[0]

    # h = z * h_prev + (1 - z) * hh
    dzt = dh_next * (h_prev - hht)  # dL/dz = dh * (h_prev - hh)
    dhht = dh_next * (1 - zt)  # dL/dhh = dh * (1 - z)

    # hh = tanh(a_h), a_h = Wh [r * h_prev; x] + bh
    dahs_t = dhht * (1 - hht**2)  # dL/da_h = dhh * (1 - hh^2)
    # z = sigmoid(a_z)
    dzs_t = dzt * zt * (1 - zt)  # dL/da_z = dz * z * (1 - z)

    # a_h's inputs: d[r * h_prev; x] = Wh^T da_h
    drh = np.dot(Wh[:, :n_h].T, dahs_t)  # dL/d(r * h_prev)
    drt = drh * h_prev  # dL/dr = d(r * h_prev) * h_prev
    # r = sigmoid(a_r)
    drs_t = drt * rt * (1 - rt)  # dL/da_r = dr * r * (1 - r)

    # weight derivatives:
    # dW{z,r,h}: matrices of the update (z) and reset (r) gates and of the candidate (h)
    # db{z,r,h}: their biases
    concat_T = np.hstack([h_prev.T, xt.T])  # [h_prev; x]^T
    concat_r_T = np.hstack([(rt * h_prev).T, xt.T])  # [r * h_prev; x]^T
    dWz = np.dot(dzs_t, concat_T)  # dWz = da_z [h_prev; x]^T
    dWr = np.dot(drs_t, concat_T)  # dWr = da_r [h_prev; x]^T
    dWh = np.dot(dahs_t, concat_r_T)  # dWh = da_h [r * h_prev; x]^T
    dbz = np.sum(dzs_t, axis=1, keepdims=True)  # dbz = sum over the batch of da_z
    dbr = np.sum(drs_t, axis=1, keepdims=True)  # dbr = sum over the batch of da_r
    dbh = np.sum(dahs_t, axis=1, keepdims=True)  # dbh = sum over the batch of da_h

    # derivative of h_prev: directly (z * h_prev), through r * h_prev, through the gates
    dh_prev = dh_next * zt  # dh * z
    dh_prev += drh * rt  # d(r * h_prev) * r
    dh_prev += np.dot(Wz[:, :n_h].T, dzs_t) + np.dot(Wr[:, :n_h].T, drs_t)  # via a_z, a_r

    # derivative of xt: through the candidate and through the gates
    dxt = np.dot(Wh[:, n_h:].T, dahs_t)  # via a_h
    dxt += np.dot(Wz[:, n_h:].T, dzs_t) + np.dot(Wr[:, n_h:].T, drs_t)  # via a_z, a_r

    gradients = {"dxt": dxt, "dh_prev": dh_prev,
                 "dWz": dWz, "dbz": dbz, "dWr": dWr, "dbr": dbr,
                 "dWh": dWh, "dbh": dbh}

    return gradients


def gru_backward(dh, caches):
    # values from the cache
    (caches, x) = caches

    n_h, m, T_x = dh.shape
    n_x = x.shape[0]

    # initialise the gradients
    dx = np.zeros((n_x, m, T_x))
    dh_prevt = np.zeros((n_h, m))
    dWz = np.zeros((n_h, n_h + n_x))
    dWr = np.zeros((n_h, n_h + n_x))
    dWh = np.zeros((n_h, n_h + n_x))
    dbz = np.zeros((n_h, 1))
    dbr = np.zeros((n_h, 1))
    dbh = np.zeros((n_h, 1))

    # loop over the time steps, last to first; dh_prev is carried back (full BPTT)
    for t in reversed(range(T_x)):
        gradients = gru_one_step_backward(dh[:, :, t] + dh_prevt, caches[t])
        dh_prevt = gradients["dh_prev"]

        dx[:, :, t] = gradients["dxt"]
        dWz += gradients["dWz"]
        dWr += gradients["dWr"]
        dWh += gradients["dWh"]
        dbz += gradients["dbz"]
        dbr += gradients["dbr"]
        dbh += gradients["dbh"]

    # the gradient carried out of the first step
    dh0 = dh_prevt

    gradients = {"dx": dx, "dh0": dh0,
                 "dWz": dWz, "dbz": dbz, "dWr": dWr, "dbr": dbr,
                 "dWh": dWh, "dbh": dbh}

    return gradients


# Generic entry point with the readout's gradients


def gru_backward_full(dH, dY, caches):
    """Full BPTT given dL/dH (n_h, m, T) and dL/dY (n_y, m, T), Y being the softmax output.

    Returns every parameter's gradient (readout included), "dx" and "dh0".
    """
    step_caches = caches[0]
    parameters = step_caches[0][6]
    Wy = parameters["Wy"]
    by = parameters["by"]
    n_y, n_h = Wy.shape

    dH_total = np.array(dH, dtype=np.float64, copy=True)
    dWy = np.zeros((n_y, n_h))
    dby = np.zeros((n_y, 1))
    for t, cache in enumerate(step_caches):
        h_next = cache[0]
        yt_hat = softmax(np.dot(Wy, h_next) + by)  # recomputed: the cache does not keep it
        dyt = dY[:, :, t]
        # softmax VJP: da = y * (dy - sum(y * dy))
        da = yt_hat * (dyt - np.sum(yt_hat * dyt, axis=0, keepdims=True))
        dWy += np.dot(da, h_next.T)  # dWy = da h^T
        dby += np.sum(da, axis=1, keepdims=True)  # dby = sum over the batch of da
        dH_total[:, :, t] += np.dot(Wy.T, da)  # dh = Wy^T da

    gradients = gru_backward(dH_total, caches)
    gradients["dWy"] = dWy
    gradients["dby"] = dby
    return gradients
