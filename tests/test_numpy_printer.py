"""The NumPy and docstring printers, with exact strings."""

import pytest
from sympy import MatrixSymbol

from symbptt import exp, log, odot, one_minus, relu, sigmoid, softmax, stack, tanh
from symbptt.ops import BATCH, BatchSum, Broadcast, FeatureSum, RowSlice, matmul, scale
from symbptt.printers import numpy_code
from symbptt.render import text

n = 3
W = MatrixSymbol("Wz", n, 2 * n)
z, h, x = (MatrixSymbol(s, n, BATCH) for s in ("z", "h_prev", "xt"))
b = MatrixSymbol("bz", n, 1)
hx = MatrixSymbol("h_prev_xt", 2 * n, BATCH)

CASES = [
    (matmul(W, stack(h, x)) + Broadcast(b), "Wz @ np.concatenate((h_prev, xt)) + bz",
     "Wz·[h_prev; xt] + bz"),
    (sigmoid(z), "sigmoid(z)", "σ(z)"),
    (tanh(z), "np.tanh(z)", "tanh(z)"),
    (relu(z), "relu(z)", "relu(z)"),
    (exp(z), "np.exp(z)", "exp(z)"),
    (log(z), "np.log(z)", "log(z)"),
    (softmax(z), "softmax(z)", "softmax(z)"),
    (odot(z, one_minus(z)), "z * (1 - z)", "z ⊙ (1 - z)"),
    (odot(h, z) - odot(h, x), "h_prev * z - h_prev * xt", "h_prev ⊙ z - h_prev ⊙ xt"),
    (scale(-1, odot(z, h)), "-(z * h_prev)", "-(z ⊙ h_prev)"),
    (matmul(W.T, z), "Wz.T @ z", "Wzᵀ·z"),
    (odot(matmul(W.T, z), hx), "(Wz.T @ z) * h_prev_xt", "(Wzᵀ·z) ⊙ h_prev_xt"),
    (RowSlice(matmul(W.T, z), 0, n), "(Wz.T @ z)[:3]", "(Wzᵀ·z)[0:3]"),
    (RowSlice(matmul(W.T, z), n, 2 * n), "(Wz.T @ z)[3:]", "(Wzᵀ·z)[3:6]"),
    (BatchSum(odot(z, h)), "(z * h_prev).sum(axis=1, keepdims=True)", "rowsum(z ⊙ h_prev)"),
    (FeatureSum(odot(z, h)), "(z * h_prev).sum(axis=0, keepdims=True)", "colsum(z ⊙ h_prev)"),
]


@pytest.mark.parametrize("expr,code,doc", CASES, ids=[c[1] for c in CASES])
def test_numpy_and_text(expr, code, doc):
    assert numpy_code(expr) == code
    assert text(expr) == doc


def test_names_are_mapped():
    assert numpy_code(odot(z, h), {"z": "z_all"}) == "z_all * h_prev"
