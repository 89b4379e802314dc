"""Array-code and LaTeX printers: SymPy's printers, taught our operations and a textbook's notation.

Our own nodes print themselves (``_numpycode`` / ``_latex`` in :mod:`symbptt.ops`); the
methods here cover SymPy's matrix classes, whose stock output does not suit (``numpy.dot``,
``\\circ``, ``-z + 1``). Nothing outside this module formats mathematics.

The code printer is one class for every array library, switched by its ``module`` (an
:class:`~symbptt.array_module.ArrayModule`, as SymPy's own ``NumPyPrinter`` switches on
``_module``): :class:`NumPyPrinter` prints NumPy (and CuPy), :class:`TorchPrinter` PyTorch.
Operators (``@``, ``*``, ``.T``, slicing) are Python's and the same in every library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, OneMatrix
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter

from .array_module import NUMPY, TORCH, ArrayModule, array_module


def _negative(term) -> tuple[bool, object]:
    """(True, x) for a term −x, else (False, term)."""
    if isinstance(term, MatMul):
        coeff = sp.Mul(*[a for a in term.args if not a.is_Matrix])
        if coeff.is_number and coeff.is_negative:
            rest = [a for a in term.args if a.is_Matrix]
            body = rest[0] if len(rest) == 1 else MatMul(*rest)
            return True, body if coeff == -1 else MatMul(-coeff, *rest)
    return False, term


def _ordered_terms(expr: MatAdd) -> list[tuple[bool, object]]:
    """Terms of a sum for printing: constants first, then positives, then negatives."""
    terms = [_negative(t) for t in expr.args]
    return ([t for t in terms if isinstance(t[1], OneMatrix)]
            + [t for t in terms if not t[0] and not isinstance(t[1], OneMatrix)]
            + [t for t in terms if t[0] and not isinstance(t[1], OneMatrix)])


_COMPOUND = (MatAdd, MatMul, HadamardProduct, sp.Add, sp.Mul)


class _MatrixPrinting:
    """Sums, products and elementwise products, shared by both printers."""

    plus, minus, one = " + ", " - ", "1"
    hadamard_sep = ""
    matmul_sep = ""
    scalar_sep = ""
    power_format = ""

    if TYPE_CHECKING:  # SymPy's printer, which every printer here also derives from, has it
        def doprint(self, expr: Any) -> str: ...
    neg = "-"

    def parenthesize_operand(self, expr) -> str:
        text = self.doprint(expr)
        if isinstance(expr, _COMPOUND) or text.startswith("-"):
            return self.paren(text)
        return text

    def paren(self, text: str) -> str:
        return f"({text})"

    def _print_OneMatrix(self, expr) -> str:
        return self.one

    def _print_MatAdd(self, expr) -> str:
        out = ""
        for i, (negative, term) in enumerate(_ordered_terms(expr)):
            text = self.parenthesize_operand(term) if isinstance(term, MatAdd) else self.doprint(term)
            if i == 0:
                out = (self.neg + self._factor(term) if negative else text)
            else:
                out += (self.minus if negative else self.plus) + (
                    self._factor(term) if negative else text)
        return out

    def _factor(self, term) -> str:
        return self.parenthesize_operand(term) if isinstance(term, (MatAdd, sp.Add)) else self.doprint(term)

    def _print_MatMul(self, expr) -> str:
        negative, body = _negative(expr)
        if negative:
            return self.neg + self.parenthesize_operand(body)
        coeff = [a for a in expr.args if not a.is_Matrix]
        factors = [self.parenthesize_operand(a) if isinstance(a, _COMPOUND) else self.doprint(a)
                   for a in expr.args if a.is_Matrix]
        text = self.matmul_sep.join(factors)
        if coeff:
            text = f"{self.doprint(sp.Mul(*coeff))}{self.scalar_sep}{text}"
        return text

    def _print_HadamardPower(self, expr) -> str:
        base, k = expr.args
        return self.power_format.format(base=self.parenthesize_operand(base) if isinstance(
            base, _COMPOUND) else self.doprint(base), k=self.doprint(k))

    def _print_HadamardProduct(self, expr) -> str:
        return self.hadamard_sep.join(
            self.parenthesize_operand(a) if isinstance(a, _COMPOUND) else self.doprint(a)
            for a in expr.args)


class NumPyPrinter(_MatrixPrinting, PythonCodePrinter):
    """Prints matrix expressions as NumPy code: ``Wz @ h_prev_xt + bz``, ``z * (1 - z)``.

    ``module`` (default: the class's) names the array library whose calls it prints.
    """

    printmethod = "_numpycode"
    power_format = "{base} ** {k}"
    hadamard_sep = " * "
    matmul_sep = " @ "
    scalar_sep = " * "
    module: ArrayModule = NUMPY

    def __init__(self, names: dict[str, str] | None = None, module: ArrayModule | None = None):
        super().__init__({"fully_qualified_modules": False})
        self.names = names or {}
        if module is not None:
            self.module = module

    def _print(self, expr, **kwargs) -> str:
        """A constant other than a plain number (π, √2, e, log 2) as its float value: SymPy
        spells it as a call or name (``sqrt(2)``, ``pi``) that a kernel does not define."""
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Rational and not expr.is_Float:
            value = complex(expr)
            if value.imag == 0 and math.isfinite(value.real):  # not ∞ or NaN: SymPy spells those
                return repr(value.real)
        return super()._print(expr, **kwargs)

    def _print_MatrixSymbol(self, expr) -> str:
        return self.names.get(expr.name, expr.name)

    def _print_Symbol(self, expr) -> str:
        return self.names.get(expr.name, expr.name)

    def _print_Transpose(self, expr) -> str:
        return f"{self.parenthesize_operand(expr.arg)}.T"

    def _print_ZeroMatrix(self, expr) -> str:
        return self.module.spell("zero_matrix", rows=self.doprint(expr.rows), cols=self.doprint(expr.cols))


class TorchPrinter(NumPyPrinter):
    """Prints matrix expressions as PyTorch code: ``torch.tanh(z)``, ``torch.cat((h, x))``."""

    module = TORCH


class TextbookLatexPrinter(_MatrixPrinting, LatexPrinter):
    """Prints matrix expressions in a textbook's notation: bold symbols, ⊙, ᵀ, time indices."""

    printmethod = "_latex"
    power_format = r"{base}^{{\odot {k}}}"
    hadamard_sep = r" \odot "
    matmul_sep = " "
    scalar_sep = " "
    one = r"\mathbf{1}"

    def __init__(self, symbol_latex: Callable[[str], str]):
        super().__init__({})
        self.symbol_latex = symbol_latex

    def paren(self, text: str) -> str:
        return rf"\left({text}\right)"

    def _print_MatrixSymbol(self, expr) -> str:
        return self.symbol_latex(expr.name)

    def _print_Transpose(self, expr) -> str:
        return rf"{self.parenthesize_operand(expr.arg)}^{{\top}}"

    def _print_ZeroMatrix(self, expr) -> str:
        return r"\mathbf{0}"

    def _print_MatMul(self, expr) -> str:
        """``−a ⊙ b`` without the parentheses a code printer needs: a sign binds loosely in print."""
        negative, body = _negative(expr)
        if negative:
            text = self.doprint(body)
            wrap = isinstance(body, (MatAdd, sp.Add)) or text.startswith("-")
            return self.neg + (self.paren(text) if wrap else text)
        return super()._print_MatMul(expr)


def numpy_code(expr, names: dict[str, str] | None = None) -> str:
    """``expr`` as a NumPy expression (symbols renamed through ``names``)."""
    return NumPyPrinter(names).doprint(expr)


def code_printer(module: str | ArrayModule = NUMPY, names: dict[str, str] | None = None) -> NumPyPrinter:
    """The expression printer for an array library (``"numpy"``, ``"cupy"``, ``"torch"``)."""
    module = array_module(module)
    printer = TorchPrinter if module is TORCH else NumPyPrinter
    return printer(names, module)


def array_code(expr, names: dict[str, str] | None = None, module: str | ArrayModule = NUMPY) -> str:
    """``expr`` as an expression of an array library (symbols renamed through ``names``)."""
    return code_printer(module, names).doprint(expr)


def latex_terms(printer: TextbookLatexPrinter, expr) -> list[str]:
    """The terms of a sum as printed, each after the first with its sign: ``["a", "+ b", "- c"]``.

    Reports break a long sum between these pieces; joined by spaces they equal
    ``printer.doprint(expr)``, so a broken equation shows exactly the same mathematics.
    """
    if not isinstance(expr, MatAdd):
        return [printer.doprint(expr)]
    pieces = []
    for i, (negative, term) in enumerate(_ordered_terms(expr)):
        text = printer._factor(term) if negative else (
            printer.parenthesize_operand(term) if isinstance(term, MatAdd) else printer.doprint(term))
        if i == 0:
            pieces.append(f"{printer.neg}{text}" if negative else text)
        else:
            pieces.append(f"{'-' if negative else '+'} {text}")
    return pieces
