"""The NumPy, PyTorch (and CuPy) and docstring printers, with exact strings."""

import pytest
from sympy import MatrixSymbol, ZeroMatrix

from symbptt import exp, log, odot, one_minus, relu, sigmoid, softmax, stack, tanh
from symbptt.ops import BATCH, BatchSum, Broadcast, FeatureSum, RowSlice, matmul, scale
from symbptt.printers import TorchPrinter, array_code, code_printer, numpy_code
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


TORCH_CASES = [
    (matmul(W, stack(h, x)) + Broadcast(b), "Wz @ torch.cat((h_prev, xt)) + bz"),
    (sigmoid(z), "torch.sigmoid(z)"),
    (tanh(z), "torch.tanh(z)"),
    (relu(z), "relu(z)"),
    (exp(z), "torch.exp(z)"),
    (log(z), "torch.log(z)"),
    (softmax(z), "softmax(z)"),
    (odot(z, one_minus(z)), "z * (1 - z)"),
    (matmul(W.T, z), "Wz.T @ z"),
    (RowSlice(matmul(W.T, z), n, 2 * n), "(Wz.T @ z)[3:]"),
    (BatchSum(odot(z, h)), "(z * h_prev).sum(dim=1, keepdim=True)"),
    (FeatureSum(odot(z, h)), "(z * h_prev).sum(dim=0, keepdim=True)"),
    (ZeroMatrix(n, BATCH), "torch.zeros((3, m), dtype=dtype, device=device)"),
]


@pytest.mark.parametrize("expr,code", TORCH_CASES, ids=[c[1] for c in TORCH_CASES])
def test_torch_printing(expr, code):
    assert array_code(expr, module="torch") == code
    assert isinstance(code_printer("torch"), TorchPrinter)


def test_cupy_prints_as_numpy():
    """CuPy is NumPy's printing; only the kernel's import line differs."""
    for expr, code, _ in CASES:
        assert array_code(expr, module="cupy") == code


def test_the_statement_printer_spells_each_library():
    from symbptt.kernels import code as c
    from symbptt.kernels.array_printer import ArrayPrinter

    numpy, torch = ArrayPrinter("numpy"), ArrayPrinter("torch")
    statements = [c.MatMulInto(c.View("prod"), c.Transposed("x_seq", (1, 0, 2)), "h"),
                  c.ApplyInPlace("tanh", c.View("gates")),
                  c.MultiplyInto(c.View("h"), "a", "b"),
                  c.Assign(("W",), (c.Call("concat", ("a", "b"), (("axis", "1"),)),)),
                  c.Assign(("g",), (c.Call("rowsum", ("d",)),)),
                  c.Assign(("s",), (c.Call("copy", ("d",)),))]
    assert numpy.lines(statements) == [
        "np.matmul(x_seq.transpose(1, 0, 2), h, out=prod)", "np.tanh(gates, out=gates)",
        "np.multiply(a, b, out=h)", "W = np.concatenate((a, b), axis=1)",
        "g = d.sum(axis=1, keepdims=True)", "s = d.copy()"]
    assert torch.lines(statements) == [
        "torch.matmul(x_seq.permute(1, 0, 2), h, out=prod)", "torch.tanh(gates, out=gates)",
        "torch.mul(a, b, out=h)", "W = torch.cat((a, b), dim=1)",
        "g = d.sum(dim=1, keepdim=True)", "s = d.clone()"]
