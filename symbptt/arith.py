"""Numbers next to matrices in a cell's equations: ``1 + exp(u)``, ``2 - z``, ``z - 1``.

SymPy refuses a number plus a matrix (``TypeError: Mix of Matrix and Scalar symbols``). In a
cell a number c next to a matrix A means c times the all-ones matrix of A's shape, as
``1 - z`` already meant ``ones - z`` (:func:`symbptt.ops.one_minus`). :class:`NumberArithmetic`
gives that meaning to symbptt's own matrices: the named per-step values of a cell
(:class:`symbptt.cell.Var`) and every node of :mod:`symbptt.ops` (functions, stacks, broadcast
biases and vectors). A SymPy sum or product (``W @ x``) does not know it; the cell loader then
names the equation, the line and the fix.

It also turns NumPy's functions applied to such a matrix (``np.tanh(h_prev)``) into a
:class:`TypeError` that names the symbptt function to use instead. This module imports only
SymPy so that :mod:`symbptt.ops` can inherit from it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import sympy as sp
from sympy import MatAdd, MatMul, OneMatrix

#: NumPy functions a cell author reaches for, and what symbptt writes instead.
NUMPY_REPLACEMENTS = {
    "tanh": "tanh",
    "exp": "exp",
    "log": "log",
    "maximum": "relu (relu(u) is max(u, 0))",
    "fmax": "relu (relu(u) is max(u, 0))",
    "multiply": "odot (the elementwise product)",
    "matmul": "the @ operator",
    "dot": "the @ operator",
    "concatenate": "stack",
    "vstack": "stack",
    "add": "the + operator",
    "subtract": "the - operator",
    "negative": "the - operator",
    "true_divide": "a number divisor (h / 2) or log/exp",
    "divide": "a number divisor (h / 2) or log/exp",
}



def numpy_replacement(name: str, functions: Iterable[str] = ()) -> str:
    """The symbptt spelling of NumPy's ``name``, else symbptt's vocabulary (``functions``:
    the names of :data:`symbptt.ops.FUNCTIONS`, passed in since ops imports this module)."""
    if name in NUMPY_REPLACEMENTS:
        return NUMPY_REPLACEMENTS[name]
    names = ", ".join([*functions, "odot", "stack"]) if functions else "symbptt.ops.FUNCTIONS"
    return f"one of symbptt's functions ({names})"


def as_number(value) -> sp.Expr | None:
    """``value`` as a SymPy number when it is a plain number (3, 0.5, sp.Rational), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Number):
        return sp.sympify(value)
    if isinstance(value, sp.Expr) and not getattr(value, "is_Matrix", False) and value.is_number:
        return value
    return None


def times_ones(c: sp.Expr, shape) -> sp.Expr:
    """c times the all-ones matrix of ``shape`` (just the ones for c = 1)."""
    ones = OneMatrix(*shape)
    return ones if c == 1 else MatMul(c, ones)


class NumberArithmetic:
    """``c + A``, ``A + c``, ``c - A``, ``A - c`` for a number c: c means c times ones.

    Mixed into symbptt's matrix classes ahead of SymPy's ``MatrixExpr``; any other operand
    goes to SymPy unchanged.
    """

    __slots__ = ()

    def __add__(self, other):
        c = as_number(other)
        if c is None:
            return super().__add__(other)
        return self if c == 0 else MatAdd(self, times_ones(c, self.shape))

    def __radd__(self, other):
        c = as_number(other)
        if c is None:
            return super().__radd__(other)
        return self if c == 0 else MatAdd(times_ones(c, self.shape), self)

    def __sub__(self, other):
        c = as_number(other)
        if c is None:
            return super().__sub__(other)
        return self if c == 0 else MatAdd(self, times_ones(-c, self.shape))

    def __rsub__(self, other):
        c = as_number(other)
        if c is None:
            return super().__rsub__(other)
        negated = MatMul(-1, self)
        return negated if c == 0 else MatAdd(times_ones(c, self.shape), negated)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy computes on numbers; a cell's equations are symbolic: name the replacement."""
        name = getattr(ufunc, "__name__", str(ufunc))
        raise TypeError(f"np.{name} is NumPy's function on arrays of numbers and cannot act on "
                        f"the symbolic matrix {self}; use {numpy_replacement(name)} from symbptt")
