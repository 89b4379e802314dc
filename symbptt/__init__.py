"""symbptt: derive, explain and verify backpropagation through time for recurrent cells.

A cell's equations are written once with the vocabulary below; :func:`derive` gives its
BPTT gradients, the printers and templates turn them into NumPy kernels and LaTeX reports.
"""

from __future__ import annotations

from sympy.matrices.expressions.matexpr import MatrixExpr

from . import ops
from .cell import Cell, CellError
from .derive import Derivation, derive
from .ops import Stack, hadamard, one_minus

__all__ = [
    "Cell",
    "CellError",
    "Derivation",
    "derive",
    "odot",
    "one_minus",
    "stack",
]
__all__ += list(ops.FUNCTIONS)


def _dsl_function(name: str, op: type):
    """The function a cell calls for one declared operation: ``sigmoid(u)`` is ``Sigmoid(u)``."""

    def apply(u: MatrixExpr) -> MatrixExpr:
        return op(u)

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = (op.__doc__ or name).strip().splitlines()[0]
    return apply


#: One function per operation declared in symbptt/ops.py (sigmoid, tanh, softplus, …).
globals().update({name: _dsl_function(name, op) for name, op in ops.FUNCTIONS.items()})


def stack(*parts: MatrixExpr) -> MatrixExpr:
    """Row concatenation [a; b; …]."""
    return Stack(*parts)


def odot(*factors: MatrixExpr) -> MatrixExpr:
    """Elementwise (Hadamard) product a ⊙ b ⊙ …."""
    return hadamard(*factors)
