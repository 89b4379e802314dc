"""Kernels: a derivation rendered through the template of an array library.

``templates/numpy_kernel.py.j2`` prints NumPy kernels (and CuPy ones: the same text with
``import cupy as np``); ``templates/torch_kernel.py.j2`` prints kernels on ``torch.Tensor``
with the same interface. The library is an :class:`~symbptt.array_module.ArrayModule`
or its name (``"numpy"``, ``"cupy"``, ``"torch"``).
"""

from __future__ import annotations

import types
from pathlib import Path

from .array_module import NUMPY, TORCH, ArrayModule, array_module
from .cell import Cell
from .derive import Derivation, derive
from .loader import load, resolve, source_label
from .render import environment, kernel_context


def kernel_text(derivation: Derivation, source: str = "", module: str | ArrayModule = NUMPY) -> str:
    """The generated module's text for one cell and array library (same cell, same bytes)."""
    module = array_module(module)
    template = environment().get_template(module.template)
    return template.render(**kernel_context(derivation, source, module))


def numpy_kernel(derivation: Derivation, source: str = "") -> str:
    """The NumPy kernel's module text for one cell (same cell, same bytes)."""
    return kernel_text(derivation, source, NUMPY)


def torch_kernel(derivation: Derivation, source: str = "") -> str:
    """The PyTorch kernel's module text: the NumPy kernel's interface on ``torch.Tensor``
    (any device, float32 or float64), computed with torch operations only."""
    return kernel_text(derivation, source, TORCH)


def kernel_module(spec: str | Path | Cell, name: str | None = None,
                  module: str | ArrayModule = NUMPY) -> types.ModuleType:
    """Derive a cell (built-in name, file path or :class:`Cell`), generate its kernel for an
    array library (``module``: ``"numpy"``, ``"cupy"`` or ``"torch"``), import it.

    The module is built from the generated text without touching ``generated/``, so tests
    and tools can drive any cell, including one that is not built in. Importing a CuPy or
    PyTorch kernel imports that library.
    """
    module = array_module(module)
    if isinstance(spec, Cell):
        cell, source = spec, f"<cell {spec.name}>"
    else:
        path = resolve(str(spec))
        cell, source = load(path), source_label(path)
    code = kernel_text(derive(cell), source, module)
    suffix = "" if module is NUMPY else f"_{module.name}"
    kernel = types.ModuleType(name or f"symbptt_kernel_{cell.name}{suffix}")
    kernel.__file__ = f"<generated{suffix.replace('_', ' ')} kernel of {cell.name}>"
    exec(compile(code, kernel.__file__, "exec"), kernel.__dict__)  # noqa: S102 - our own generated text
    return kernel
