"""The kernel-plan printer (symbptt/kernels/array_printer.py) on its own: each value and
statement printed for NumPy and for PyTorch, run, and compared with what the plan means.

These tests came from a mutation run over ``symbptt/kernels/array_printer.py``
(tools/mutation.py). They build their own printers (``NUMPY_PRINTER`` is made at import).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symbptt import ops
from symbptt.array_module import CUPY, NUMPY, TORCH
from symbptt.kernels import code as c
from symbptt.kernels.array_printer import NUMPY_PRINTER, ArrayPrinter, printer_for

torch = pytest.importorskip("torch")

n_h = sp.Symbol("n_h", integer=True, positive=True)
RNG = np.random.default_rng(0)
A = RNG.normal(size=(6, 4))
B = RNG.normal(size=(2, 4))


def run(printer: ArrayPrinter, code: str, **arrays):
    """Evaluate printed code with NumPy arrays (or tensors for the PyTorch printer)."""
    if printer.module is TORCH:
        space = {"torch": torch, **{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                     for k, v in arrays.items()}}
    else:
        space = {"np": np, **arrays}
    value = eval(code, space)
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


PRINTERS = [pytest.param(NUMPY, id="numpy"), pytest.param(TORCH, id="torch")]


@pytest.mark.parametrize("module", PRINTERS)
def test_rows_select_the_rows_they_name(module):
    p = ArrayPrinter(module)
    cases = [(c.Rows(0, 6, 6), A), (c.Rows(2, 6, 6), A[2:]), (c.Rows(0, 3, 6), A[:3]), (c.Rows(1, 3, 6), A[1:3])]
    for rows, expected in cases:
        assert np.array_equal(run(p, p.value(c.View("A", (rows,))), A=A), expected), p.value(rows)
    # symbolic bounds: rows n_h … 2·n_h of a buffer of 3·n_h rows, for n_h = 2
    view = c.View("A", (c.Rows(n_h, 2 * n_h, 3 * n_h),))
    assert np.array_equal(run(p, p.value(view), A=A, n_h=2), A[2:4])
    assert p.value(c.View("A", (":", ":"))) == "A"
    assert np.array_equal(run(p, p.value(c.View("A", (c.Name("t"), ":"))), A=A, t=1), A[1])


@pytest.mark.parametrize("module", PRINTERS)
def test_concatenation_along_rows_and_columns(module):
    p = ArrayPrinter(module)
    rows = p.value(c.Call("concat", ("A", "B")))
    assert np.array_equal(run(p, rows, A=A, B=B), np.concatenate((A, B)))
    cols = p.value(c.Call("concat", ("A", "C"), (("axis", "1"),)))
    C = RNG.normal(size=(6, 3))
    assert np.array_equal(run(p, cols, A=A, C=C), np.concatenate((A, C), axis=1))


@pytest.mark.parametrize("module", PRINTERS)
def test_operands_are_parenthesized_where_precedence_needs_it(module):
    p = ArrayPrinter(module)
    total = c.Sum(("A", "A"))
    assert np.allclose(run(p, p.value(c.Scaled("0.5", total)), A=A), 0.5 * (A + A))
    assert np.allclose(run(p, p.value(c.Scaled("0.5", c.Sum(("A", "A"), paren=True))), A=A), A)
    assert np.allclose(run(p, p.value(c.Scaled("2", c.View("A", (c.Rows(0, 2, 6),)))), A=A), 2 * A[:2])
    assert np.allclose(run(p, p.value(c.Scaled("2", c.Call("copy", ("A",)))), A=A), 2 * A)
    assert p.operand("A") == "A" and p.operand(c.Name("t")) == "t" and p.operand(c.Paren("a + b")) == "(a + b)"
    assert p.operand(c.Sum(("a", "b"))) == "(a + b)"
    assert p.operand(c.Sum(("a", "b"), paren=True)) == "(a + b)"
    assert p.operand(c.IsNone("a")) == "(a is None)"


@pytest.mark.parametrize("module", PRINTERS)
def test_functions_are_the_libraries_own(module):
    p = ArrayPrinter(module)
    for name, op in ops.FUNCTIONS.items():
        assert p.function(name) == module.function_name(op), name
    assert p.function("my_helper") == "my_helper"
    assert p.value(c.Call("my_helper", ("A", "B"), (("k", "1"),))) == "my_helper(A, B, k=1)"
    assert p.value(c.Call("my_helper")) == "my_helper()"


def test_printer_for_each_library():
    assert printer_for("numpy") is NUMPY_PRINTER and printer_for(NUMPY) is NUMPY_PRINTER
    assert printer_for("torch").module is TORCH and printer_for(CUPY).module is CUPY
    with pytest.raises(ValueError, match="unknown array module"):
        printer_for("jax")


@pytest.mark.parametrize("module", PRINTERS)
def test_statements_with_notes_and_blocks(module):
    p = ArrayPrinter(module)
    assert p.statement(c.Update(c.View("A"), "+", "B", "why")) == "A += B  # why"
    assert p.statement(c.Update(c.View("A"), "+", "B")) == "A += B"
    assert p.statement(c.Update(c.View("A"), "=", "B")) == "A[...] = B"
    block = c.When(c.Name("flag"), (c.Update(c.View("A"), "+", "B"), c.When(c.Name("other"), (
        c.Update(c.View("A"), "*", "2"),))))
    assert p.lines([block, c.Update(c.View("A"), "-", "B")]) == [
        "if flag:", "    A += B", "    if other:", "        A *= 2", "A -= B"]
    space = {"A": A.copy(), "B": B[:1].repeat(6, axis=0), "flag": True, "other": False}
    exec("\n".join(p.lines([block])), {}, space)  # noqa: S102 - the printed statements
    assert np.allclose(space["A"], A + B[:1])


@pytest.mark.parametrize("module", PRINTERS)
def test_sizes_print_as_code(module):
    p = ArrayPrinter(module)
    assert run(p, p.dim(2 * n_h + 1), n_h=3) == 7
    assert p.value(c.Dim(n_h)) == "n_h"
    assert p.value(c.Shape((c.Dim(n_h),))) == "(n_h,)"


@pytest.mark.parametrize("module", PRINTERS)
def test_each_call_role_computes_what_it_names(module):
    p = ArrayPrinter(module)
    T, m = 3, 2
    seq = RNG.normal(size=(4, T, m))  # an input as the kernel keeps it: (rows, T, m)
    steps = RNG.normal(size=(4, T * m))  # (rows, T·m)
    W = RNG.normal(size=(5, 4))

    def call(fn, *args, **kwargs):
        return p.value(c.Call(fn, args, tuple(kwargs.items())))

    assert np.allclose(run(p, call("matmul", "W", "S"), W=W, S=steps), W @ steps)
    assert np.array_equal(run(p, call("input_matrix", "x_seq"), x_seq=seq), seq.reshape(4, -1))
    back = run(p, call("reshape_steps", "S", "4"), S=steps, T=T, m=m)
    assert back.shape == (T, 4, m) and np.array_equal(back[1], steps[:, m:2 * m])
    assert np.allclose(run(p, call("rowsum", "S"), S=steps), steps.sum(axis=1, keepdims=True))
    assert np.array_equal(run(p, call("copy", "S"), S=steps), steps)
    assert run(p, call("chunk_len", "C"), C=2, T=T, t=2) == 1
    chunk = run(p, call("chunk_matrix", "B", "4", "n"), B=RNG.normal(size=(4, 3, m)), n=2)
    assert chunk.shape == (4, 2 * m)
    dtype = torch.float64 if module is TORCH else np.float64
    zeros = run(p, call("zeros", c.Shape((c.Dim(n_h), c.Name("m")))), n_h=3, m=m, dtype=dtype, device="cpu")
    assert zeros.shape == (3, m) and not zeros.any()
