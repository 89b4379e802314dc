"""symbptt: derive, explain and verify backpropagation through time for recurrent cells.

A cell's equations are written once with the vocabulary below; :func:`derive` gives its
BPTT gradients, the printers and templates turn them into NumPy kernels and LaTeX reports.
:func:`load_cell`, :func:`kernel_source` and :func:`load_kernel` (see :mod:`symbptt.api`)
get a cell and its kernel from Python; they are imported on first use, so that
``import symbptt`` stays light for cell files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sympy.matrices.expressions.matexpr import MatrixExpr

from . import ops
from .cell import Cell, CellError
from .derive import Derivation, derive
from .ops import Stack, hadamard, one_minus

if TYPE_CHECKING:
    from .api import adjoint_names, builtin_names, kernel_source, load_cell, load_kernel

#: The package's version; pyproject.toml reads it from here ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

#: The Python API of symbptt.api, imported on first use (see __getattr__).
_API = ("adjoint_names", "builtin_names", "kernel_source", "load_cell", "load_kernel")

__all__ = [
    "Cell",
    "CellError",
    "Derivation",
    "__version__",
    "adjoint_names",
    "builtin_names",
    "derive",
    "kernel_source",
    "load_cell",
    "load_kernel",
    "odot",
    "one_minus",
    "stack",
]
__all__ += list(ops.FUNCTIONS)


def __getattr__(name: str) -> Any:
    """``symbptt.kernel_source`` and the rest of :mod:`symbptt.api`, imported when first
    asked for (the code generator and jinja2 are not needed to write a cell)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'symbptt' has no attribute {name!r}")


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
