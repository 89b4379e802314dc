"""symbptt: derive, explain and verify backpropagation through time for recurrent cells.

A cell's equations are written once with the vocabulary below; :func:`derive` gives its
BPTT gradients, the printers and templates turn them into NumPy kernels and LaTeX reports.
"""

from __future__ import annotations

from sympy.matrices.expressions.matexpr import MatrixExpr

from .cell import Cell, CellError
from .derive import Derivation, derive
from .ops import Exp, Log, Relu, Sigmoid, Softmax, Stack, Tanh, hadamard, one_minus

__all__ = [
    "Cell",
    "CellError",
    "Derivation",
    "derive",
    "exp",
    "log",
    "odot",
    "one_minus",
    "relu",
    "sigmoid",
    "softmax",
    "stack",
    "tanh",
]


def sigmoid(u: MatrixExpr) -> MatrixExpr:
    """Elementwise logistic sigmoid σ(u)."""
    return Sigmoid(u)


def tanh(u: MatrixExpr) -> MatrixExpr:
    """Elementwise hyperbolic tangent."""
    return Tanh(u)


def relu(u: MatrixExpr) -> MatrixExpr:
    """Elementwise max(u, 0)."""
    return Relu(u)


def exp(u: MatrixExpr) -> MatrixExpr:
    """Elementwise exponential."""
    return Exp(u)


def log(u: MatrixExpr) -> MatrixExpr:
    """Elementwise natural logarithm."""
    return Log(u)


def softmax(u: MatrixExpr) -> MatrixExpr:
    """Softmax over the feature axis (each column sums to one)."""
    return Softmax(u)


def stack(*parts: MatrixExpr) -> MatrixExpr:
    """Row concatenation [a; b; …]."""
    return Stack(*parts)


def odot(*factors: MatrixExpr) -> MatrixExpr:
    """Elementwise (Hadamard) product a ⊙ b ⊙ …."""
    return hadamard(*factors)
