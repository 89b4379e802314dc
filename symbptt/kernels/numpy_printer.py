"""The NumPy kernel's statement printer: :class:`~symbptt.kernels.array_printer.ArrayPrinter`
for NumPy, its methods as plain functions (``value(v)``, ``statement(s)``, ``lines(ss)``)."""

from __future__ import annotations

from .array_printer import NUMPY_PRINTER

value = NUMPY_PRINTER.value
statement = NUMPY_PRINTER.statement
lines = NUMPY_PRINTER.lines
dim = NUMPY_PRINTER.dim

__all__ = ["dim", "lines", "statement", "value"]
