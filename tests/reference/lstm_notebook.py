"""LSTM forward and backward pass: the course notebook's code with its bugs fixed.

Conventions (as in the notebook): batch in columns and time on the last axis, so ``x`` is
``(n_x, m, T)``, ``h0`` is ``(n_h, m)`` and biases are ``(n, 1)``; ``concat = [h_prev; x_t]``
stacks ``h_prev`` first.

    f_t = sigmoid(Wf concat + bf)
    i_t = sigmoid(Wi concat + bi)
    cc_t = tanh(Wc concat + bc)
    c_t = f_t * c_{t-1} + i_t * cc_t
    o_t = sigmoid(Wo concat + bo)
    h_t = o_t * tanh(c_t)
    y_t = softmax(Wy h_t + by)

Every change to the notebook's code is marked with a ``# FIX:`` comment.
"""

import numpy as np


# FIX: the notebook calls sigmoid() without defining it.
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# FIX: the notebook calls softmax() without defining it; softmax over axis 0 (the classes),
# shifted by the column maximum for numerical stability.
def softmax(z):
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def init_parameters(n_x, n_h, n_y, rng):
    """Random float64 parameters (normal * 0.5) with the notebook's keys and shapes."""
    shapes = {}
    for g in ("f", "i", "c", "o"):
        shapes["W" + g] = (n_h, n_h + n_x)
        shapes["b" + g] = (n_h, 1)
    shapes["Wy"] = (n_y, n_h)
    shapes["by"] = (n_y, 1)
    return {k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()}


# Forward pass


def lstm_one_step_forward(xt, h_prev, c_prev, parameters):
    Wf = parameters["Wf"]
    bf = parameters["bf"]
    Wi = parameters["Wi"]
    bi = parameters["bi"]
    Wc = parameters["Wc"]
    bc = parameters["bc"]
    Wo = parameters["Wo"]
    bo = parameters["bo"]
    Wy = parameters["Wy"]
    by = parameters["by"]

    # dimensions of xt and Wy
    n_x, m = xt.shape
    n_h = Wy.shape[1]

    # concatenation of h_prev and xt
    concat = np.zeros((n_h + n_x, m))
    concat[:n_h, :] = h_prev
    concat[n_h:, :] = xt

    # forget gate
    ft = sigmoid(np.dot(Wf, concat) + bf)
    # input gate
    it = sigmoid(np.dot(Wi, concat) + bi)
    # candidate cell memory
    cct = np.tanh(np.dot(Wc, concat) + bc)
    # the new memory
    c_next = ft * c_prev + it * cct
    # output gate
    ot = sigmoid(np.dot(Wo, concat) + bo)
    # new hidden state
    h_next = ot * np.tanh(c_next)

    # the predicted y
    yt_hat = softmax(np.dot(Wy, h_next) + by)

    cache = (h_next, c_next, h_prev, c_prev, ft, it, cct, ot, xt, parameters)

    return h_next, c_next, yt_hat, cache


def lstm_forward(x, h0, parameters, c0=None):
    # c0 is an optional extension of the notebook's signature; the notebook starts at zeros.
    caches = []

    _, m, T_x = x.shape
    n_y, n_h = parameters["Wy"].shape

    H = np.zeros((n_h, m, T_x))
    C = np.zeros((n_h, m, T_x))
    Y = np.zeros((n_y, m, T_x))

    h_next = h0
    c_next = np.zeros(h_next.shape) if c0 is None else c0

    for t in range(T_x):
        # FIX: the notebook called the undefined `lstm_cell_forward`; the one-step function is
        # `lstm_one_step_forward`.
        h_next, c_next, yt, cache = lstm_one_step_forward(x[:, :, t], h_next, c_next, parameters)

        H[:, :, t] = h_next
        Y[:, :, t] = yt
        C[:, :, t] = c_next
        caches.append(cache)

    caches = (caches, x)

    return H, Y, C, caches


# Backward pass (full BPTT: dh_prev and dc_prev are carried back to the previous step)


def lstm_one_step_backward(dh_next, dc_next, cache):
    # values from the cache
    (h_next, c_next, h_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache
    Wf = parameters["Wf"]
    Wi = parameters["Wi"]
    Wc = parameters["Wc"]
    Wo = parameters["Wo"]

    n_h = h_next.shape[0]

    # gate derivatives (with respect to each gate's pre-activation)
    # dos_t: output gate
    # dccs_t: candidate cell memory
    # dis_t: input gate
    # dfs_t: forget gate
    tanh_c = np.tanh(c_next)
    dc_total = dh_next * ot * (1 - tanh_c**2) + dc_next  # dL/dc_t, through h_t and c_{t+1}
    dos_t = dh_next * tanh_c * ot * (1 - ot)
    dccs_t = dc_total * it * (1 - cct**2)
    dis_t = dc_total * cct * (1 - it) * it
    dfs_t = dc_total * c_prev * ft * (1 - ft)

    # weight derivatives:
    # dW{f,i,c,o}: matrices of the forget (f), input (i), candidate (c) and output (o) gates
    # db{f,i,c,o}: their biases
    concat_T = np.hstack([h_prev.T, xt.T])
    dWf = np.dot(dfs_t, concat_T)
    dWi = np.dot(dis_t, concat_T)
    dWc = np.dot(dccs_t, concat_T)
    dWo = np.dot(dos_t, concat_T)
    dbf = np.sum(dfs_t, axis=1, keepdims=True)
    dbi = np.sum(dis_t, axis=1, keepdims=True)
    dbc = np.sum(dccs_t, axis=1, keepdims=True)
    dbo = np.sum(dos_t, axis=1, keepdims=True)

    dh_prev = np.dot(Wf[:, :n_h].T, dfs_t) + np.dot(Wc[:, :n_h].T, dccs_t)
    dh_prev += np.dot(Wi[:, :n_h].T, dis_t) + np.dot(Wo[:, :n_h].T, dos_t)

    dc_prev = dc_total * ft
    dxt = np.dot(Wf[:, n_h:].T, dfs_t) + np.dot(Wc[:, n_h:].T, dccs_t)
    dxt += np.dot(Wi[:, n_h:].T, dis_t) + np.dot(Wo[:, n_h:].T, dos_t)

    gradients = {"dxt": dxt, "dh_prev": dh_prev, "dc_prev": dc_prev,
                 "dWf": dWf, "dbf": dbf, "dWi": dWi, "dbi": dbi,
                 "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}

    return gradients


def _lstm_bptt(dh, dc, caches):
    """Full BPTT loop shared by lstm_backward and lstm_backward_full; dc may be None."""
    # values from the cache
    (caches, x) = caches

    n_h, m, T_x = dh.shape
    n_x = x.shape[0]

    # initialise the gradients
    dx = np.zeros((n_x, m, T_x))
    dh_prevt = np.zeros((n_h, m))
    dc_prevt = np.zeros((n_h, m))
    dWf = np.zeros((n_h, n_h + n_x))
    dWi = np.zeros((n_h, n_h + n_x))
    dWc = np.zeros((n_h, n_h + n_x))
    dWo = np.zeros((n_h, n_h + n_x))
    dbf = np.zeros((n_h, 1))
    dbi = np.zeros((n_h, 1))
    dbc = np.zeros((n_h, 1))
    dbo = np.zeros((n_h, 1))

    # loop over the time steps, last to first
    for t in reversed(range(T_x)):
        dc_in = dc_prevt if dc is None else dc[:, :, t] + dc_prevt
        # FIX: the notebook called the undefined `lstm_cell_backward`; the one-step function
        # is `lstm_one_step_backward`.
        gradients = lstm_one_step_backward(dh[:, :, t] + dh_prevt, dc_in, caches[t])

        # FIX: the notebook never read dh_prev and dc_prev back, so dh_prevt and dc_prevt
        # stayed zero (truncated BPTT); carry them to the previous step (full BPTT).
        dh_prevt = gradients["dh_prev"]
        dc_prevt = gradients["dc_prev"]

        dx[:, :, t] = gradients["dxt"]
        dWf += gradients["dWf"]
        dWi += gradients["dWi"]
        dWc += gradients["dWc"]
        dWo += gradients["dWo"]
        dbf += gradients["dbf"]
        dbi += gradients["dbi"]
        dbc += gradients["dbc"]
        dbo += gradients["dbo"]

    # FIX: dh0 is the dh_prev of the last backward step (t = 0), now including everything
    # carried back through time; dc0 likewise (used by lstm_backward_full).
    dh0 = dh_prevt
    dc0 = dc_prevt

    gradients = {"dx": dx, "dh0": dh0, "dWf": dWf, "dbf": dbf, "dWi": dWi, "dbi": dbi,
                 "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}

    return gradients, dc0


def lstm_backward(dh, caches):
    gradients, _ = _lstm_bptt(dh, None, caches)
    return gradients


# Generic entry point with the readout's gradients (not in the notebook)


def lstm_backward_full(dH, dY, caches, dC=None):
    """Full BPTT given dL/dH, dL/dY (Y being the softmax output) and optionally dL/dC.

    Returns every parameter's gradient (readout included), "dx", "dh0" and "dc0".
    """
    step_caches = caches[0]
    parameters = step_caches[0][9]
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
        dWy += np.dot(da, h_next.T)
        dby += np.sum(da, axis=1, keepdims=True)
        dH_total[:, :, t] += np.dot(Wy.T, da)

    gradients, dc0 = _lstm_bptt(dH_total, dC, caches)
    gradients["dc0"] = dc0
    gradients["dWy"] = dWy
    gradients["dby"] = dby
    return gradients
