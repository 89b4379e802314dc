"""The softmax readout's cross-entropy loss: its upstream, through the softmax, is ŷ − y."""

import numpy as np
import pytest


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_cross_entropy_gradient_is_y_hat_minus_y(kernels, name):
    kernel = kernels[name]
    rng = np.random.default_rng(3)
    dims = {"n_x": 3, "n_h": 4, "n_y": 5}
    params = kernel.init_parameters(dims, rng)
    m, T = 2, 4
    x = rng.standard_normal((3, m, T))
    labels = np.eye(5)[:, rng.integers(0, 5, size=(m, T))]  # one-hot, (n_y, m, T)
    outputs, cache = kernel.forward(params, x)
    y_hat = outputs["y"]
    grads = kernel.backward(cache, {"y": kernel.cross_entropy_upstream(y_hat, labels)})
    # Through the softmax the upstream becomes ŷ − y: the readout bias collects its sum.
    np.testing.assert_allclose(grads["dby"][:, 0], (y_hat - labels).sum(axis=(1, 2)), rtol=1e-10)

    def loss(p):
        return kernel.cross_entropy(kernel.forward(p, x)[0]["y"], labels)

    readout_weight = "Wyh" if name == "rnn" else "Wy"
    for key in (readout_weight, next(iter(kernel.PARAMETERS))):
        index = (0, 1)
        eps = 1e-6
        up = {k: v.copy() for k, v in params.items()}
        down = {k: v.copy() for k, v in params.items()}
        up[key][index] += eps
        down[key][index] -= eps
        numeric = (loss(up) - loss(down)) / (2 * eps)
        assert abs(grads["d" + key][index] - numeric) <= 1e-6 * max(1.0, abs(numeric))
