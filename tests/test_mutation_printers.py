"""The code and LaTeX printers (symbptt/printers.py) on the expressions a sampled mutation run
found untested: a compound base of an elementwise power, a negated sum or product inside a sum, a sum
whose every term is negative, renamed scalar symbols, and constants such as π and √2 (which
the kernel used to print as names it does not define). Each printed form is evaluated, or read
back with the hand-derivation parser, and compared with the expression's own value.

These tests came from ``tools/mutation.py symbptt/printers.py --sample 40``.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy import HadamardPower, MatAdd, MatMul, MatrixSymbol

from symbptt import Cell, fdcheck, handcheck, tanh
from symbptt.codegen import kernel_module
from symbptt.printers import NumPyPrinter, TextbookLatexPrinter, TorchPrinter, latex_terms, numpy_code
from tests.test_mutation_ops import SYMBOLS, _code_namespace, evaluate, values

A, B, C = SYMBOLS["A"], SYMBOLS["B"], SYMBOLS["C"]
A2 = MatrixSymbol("E", 3, 4)  # same shape as A and C

EXPRESSIONS = [
    ("power_of_a_sum", HadamardPower(MatAdd(A, C), 2)),
    ("power_of_a_negation", HadamardPower(MatMul(-1, A), 3)),
    ("negated_sum_in_a_sum", MatAdd(C, MatMul(-1, MatAdd(A, A2)))),
    ("all_terms_negative", MatAdd(MatMul(-1, A), MatMul(-2, C))),
    ("negated_sum_first", MatAdd(MatMul(-1, MatAdd(A, A2)), MatMul(-1, C))),
    ("negated_product_in_a_sum", MatAdd(SYMBOLS["B"], MatMul(-1, SYMBOLS["W"], A))),
    ("pi_and_root_two", MatAdd(MatMul(sp.pi, A), MatMul(sp.sqrt(2), C), MatMul(-sp.E, A2))),
]


@pytest.mark.parametrize(("name", "expr"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_printed_code_computes_the_value(name, expr):
    env = values(5)
    code = NumPyPrinter().doprint(expr)
    assert np.allclose(eval(code, _code_namespace(), dict(env)), evaluate(expr, env)), code


#: What the hand-derivation parser reads (not ``^{\odot k}``, not ``\pi``).
PARSED = [e for e in EXPRESSIONS if e[0] not in ("power_of_a_sum", "power_of_a_negation", "pi_and_root_two")]


@pytest.mark.parametrize(("name", "expr"), PARSED, ids=[e[0] for e in PARSED])
def test_printed_latex_and_its_pieces_read_back_as_the_value(name, expr):
    env = values(6)
    printer = TextbookLatexPrinter(lambda s: s)
    for written in (printer.doprint(expr), " ".join(latex_terms(printer, expr))):
        parsed = handcheck.parse_latex(written, handcheck.Resolver(SYMBOLS))
        assert np.allclose(evaluate(parsed, env), evaluate(expr, env)), f"{written!r} read as {parsed}"


def test_scalar_and_matrix_symbols_are_renamed():
    s = sp.Symbol("s")
    code = numpy_code(MatAdd(MatMul(s, A), C), {"s": "scale", "A": "a", "C": "c"})
    a, c = np.arange(12.0).reshape(3, 4), np.ones((3, 4))
    assert np.allclose(eval(code, {}, {"scale": 2.5, "a": a, "c": c}), 2.5 * a + c), code
    torch_code = TorchPrinter({"s": "scale"}).doprint(MatMul(s, A))
    assert eval(torch_code, {}, {"scale": 3.0, "A": a}).tolist() == (3.0 * a).tolist()


def test_a_cell_with_constant_coefficients_gets_a_working_kernel():
    """sqrt(2)·W x + π h_prev: the kernel's forward is that, and its backward its gradient."""
    cell = Cell("constants", "Coefficients SymPy prints as calls and names.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W = cell.weight("W", n_h, n_x, "weights")
    cell.update("h", tanh(sp.sqrt(2) * (W @ x) + sp.pi * h_prev))
    kernel = kernel_module(cell)
    rng = np.random.default_rng(0)
    parameters = kernel.init_parameters({"n_x": 3, "n_h": 4}, rng)
    xs = rng.normal(size=(3, 2, 2))
    outputs, _ = kernel.forward(parameters, xs)
    h1 = np.tanh(np.sqrt(2) * parameters["W"] @ xs[:, :, 0])
    h2 = np.tanh(np.sqrt(2) * parameters["W"] @ xs[:, :, 1] + np.pi * h1)
    assert np.allclose(outputs["h"], np.stack([h1, h2], axis=2))
    assert max(fdcheck.check(kernel, m=2, T=3).values()) < 1e-6


def test_a_negated_sum_keeps_its_parentheses_in_latex():
    """−(A + B) printed without them would read −A + B: another matrix."""
    import sympy as sp
    from sympy import MatrixSymbol

    from symbptt.printers import TextbookLatexPrinter

    A, B = MatrixSymbol("A", 2, 2), MatrixSymbol("B", 2, 2)
    printer = TextbookLatexPrinter(lambda name: name)
    assert printer.doprint(sp.MatMul(-1, A + B, evaluate=False)) == r"-\left(A + B\right)"
    assert printer.doprint(sp.MatMul(-1, sp.MatMul(-2, A, evaluate=False), evaluate=False)) == r"-\left(-2 A\right)"


def test_array_code_renames_symbols():
    from sympy import MatrixSymbol

    from symbptt.printers import array_code

    A, B = MatrixSymbol("A", 2, 2), MatrixSymbol("B", 2, 2)
    assert array_code(A + B, {"A": "a_1"}) == "a_1 + B"
    assert array_code(A + B) == "A + B"
