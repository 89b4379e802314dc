"""Kernels: a derivation rendered through the template of an array library.

``templates/numpy_kernel.py.j2`` prints NumPy kernels (and CuPy ones: the same text with
``import cupy as np``); ``templates/torch_kernel.py.j2`` prints kernels on ``torch.Tensor``
with the same interface. The library is an :class:`~symbptt.array_module.ArrayModule`
or its name (``"numpy"``, ``"cupy"``, ``"torch"``). ``backend="numba"`` prints the NumPy
kernel with its time loops compiled by Numba (:mod:`symbptt.kernels.fused`); ``"auto"`` is
``"numba"`` where numba is installed, else ``"numpy"``.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

from .array_module import NUMPY, TORCH, ArrayModule, array_module
from .cell import Cell
from .derive import Derivation, derive
from .loader import load, resolve, source_label
from .render import environment, kernel_context

#: The backends a NumPy kernel can be printed for: its plain loops, or compiled by Numba.
BACKENDS = ("numpy", "numba", "auto")


def resolve_backend(backend: str, module: str | ArrayModule = NUMPY) -> str:
    """``"numpy"`` or ``"numba"``: ``"auto"`` is numba where it is installed (and the module
    is NumPy's); numba with another array library is a ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    numpy_module = array_module(module) is NUMPY
    if backend == "auto":
        return "numba" if numpy_module and importlib.util.find_spec("numba") else "numpy"
    if backend == "numba" and not numpy_module:
        raise ValueError(f"the numba backend compiles NumPy kernels; module "
                         f"{array_module(module).name!r} has none")
    return backend


def kernel_text(derivation: Derivation, source: str = "", module: str | ArrayModule = NUMPY,
                backend: str = "numpy") -> str:
    """The generated module's text for one cell and array library (same cell, same bytes);
    ``backend="numba"``: the NumPy kernel with its loops compiled (see :func:`resolve_backend`)."""
    module = array_module(module)
    template = environment().get_template(module.template)
    text = template.render(**kernel_context(derivation, source, module))
    if resolve_backend(backend, module) == "numba":
        from .kernels.fused import fused_kernel

        text = fused_kernel(text, derivation)
    return text


def numpy_kernel(derivation: Derivation, source: str = "") -> str:
    """The NumPy kernel's module text for one cell (same cell, same bytes)."""
    return kernel_text(derivation, source, NUMPY)


def torch_kernel(derivation: Derivation, source: str = "") -> str:
    """The PyTorch kernel's module text: the NumPy kernel's interface on ``torch.Tensor``
    (any device, float32 or float64), computed with torch operations only."""
    return kernel_text(derivation, source, TORCH)


def kernel_module(spec: str | Path | Cell, name: str | None = None,
                  module: str | ArrayModule = NUMPY, backend: str = "numpy") -> types.ModuleType:
    """Derive a cell (built-in name, file path or :class:`Cell`), generate its kernel for an
    array library (``module``: ``"numpy"``, ``"cupy"`` or ``"torch"``), import it.

    The module is built from the generated text without touching ``generated/``, so tests
    and tools can drive any cell, including one that is not built in. Importing a CuPy or
    PyTorch kernel imports that library. ``backend``: ``"numpy"``, ``"numba"`` or ``"auto"``
    (see :func:`resolve_backend`).
    """
    module = array_module(module)
    if isinstance(spec, Cell):
        cell, source = spec, f"<cell {spec.name}>"
    else:
        path = resolve(str(spec))
        cell, source = load(path), source_label(path)
    backend = resolve_backend(backend, module)
    code = kernel_text(derive(cell), source, module, backend)
    suffix = ("" if module is NUMPY else f"_{module.name}") + ("_numba" if backend == "numba" else "")
    kernel = types.ModuleType(name or f"symbptt_kernel_{cell.name}{suffix}")
    kernel.__file__ = f"<generated{suffix.replace('_', ' ')} kernel of {cell.name}>"
    exec(compile(code, kernel.__file__, "exec"), kernel.__dict__)  # noqa: S102 - our own generated text
    return kernel
