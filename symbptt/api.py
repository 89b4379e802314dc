"""The Python API in a few calls: a cell, its kernel's source, the kernel as a module, and
the names of its adjoints (what ``symbptt handcheck`` checks).

``symbptt`` re-exports these (``symbptt.kernel_source(cell)``); they wrap the loader and
the code generator so that a notebook or a training script needs neither
``symbptt.codegen`` nor ``generated/``::

    import symbptt

    cell = symbptt.load_cell("gru")          # a built-in name, a cell file, or a Cell
    source = symbptt.kernel_source(cell)     # the generated module's text
    gru = symbptt.load_kernel("gru")         # that text, imported (no file is written)
    outputs, cache = gru.forward(gru.init_parameters({"n_x": 3, "n_h": 4, "n_y": 3}), x)

Every call derives the cell afresh (a few hundred milliseconds for the built-in cells); keep
the module :func:`load_kernel` returns rather than calling it in a loop.
"""

from __future__ import annotations

import types
from pathlib import Path

from .array_module import ArrayModule
from .cell import Cell
from .codegen import kernel_module, kernel_text
from .derive import derive
from .loader import builtin_cells, load, resolve, source_label

__all__ = ["adjoint_names", "builtin_names", "kernel_source", "load_cell", "load_kernel"]

#: What the functions below accept as a cell.
CellSpec = str | Path | Cell


def builtin_names() -> list[str]:
    """The names of the built-in cells (``["gru", "gru_torch", "indrnn", …]``), sorted."""
    return [path.stem for path in builtin_cells()]


def load_cell(spec: CellSpec) -> Cell:
    """A :class:`Cell`: a built-in name (``"gru"``), the path of a cell file, or a Cell
    (returned as it is). A mistake in a file is a :class:`~symbptt.loader.LoadError` or
    :class:`~symbptt.cell.CellError` naming its file, line and equation."""
    return spec if isinstance(spec, Cell) else load(spec)


def kernel_source(spec: CellSpec, module: str | ArrayModule = "numpy", backend: str = "numpy") -> str:
    """The kernel's module text for a cell, as ``symbptt codegen`` prints it.

    The interface of that module is in ``docs/kernels.md``. A cell file's kernel names the
    file in its docstring; a Cell built in Python says it has no file. ``module`` is the
    array library: ``"numpy"`` (default), ``"cupy"`` or ``"torch"``; ``backend`` ``"numpy"``
    (default), ``"numba"`` (the loops compiled) or ``"auto"`` (numba where installed).
    """
    if isinstance(spec, Cell):
        return kernel_text(derive(spec), "", module, backend)
    path = resolve(str(spec))
    return kernel_text(derive(load(path)), source_label(path), module, backend)


def load_kernel(spec: CellSpec, name: str | None = None,
                module: str | ArrayModule = "numpy", backend: str = "numpy") -> types.ModuleType:
    """The cell's kernel, generated and imported as a module (nothing is written to disk):
    ``forward``, ``backward``, ``init_parameters``, … as ``docs/kernels.md`` describes.
    ``name`` is the module's ``__name__`` (default ``symbptt_kernel_<cell>``); ``module`` the
    array library it computes with: ``"numpy"`` (default), ``"cupy"`` or ``"torch"``
    (importing the kernel imports that library); ``backend``: ``"numpy"`` (default),
    ``"numba"`` (forward's loop and backward's steps compiled by Numba, docs/kernels.md) or
    ``"auto"`` (numba where it is installed, else numpy)."""
    return kernel_module(spec, name, module, backend)


def adjoint_names(spec: CellSpec) -> list[str]:
    """The gradients one step's derivation names, in its order: the step's values
    (``dh``, ``dz``, ``da_z`` for z's pre-activation, …, ``dxt``, ``dh_prev``), then the
    parameters' (``dWz``, ``dbz``, …). These are the targets of ``symbptt handcheck`` (also
    written ``\\delta a_z``, ``δa_z``); the gradients arriving from outside the step,
    ``dh_next`` and ``dy``, may be used on a right-hand side but are not targets."""
    derivation = derive(load_cell(spec)).inlined()  # shared_k is the kernels' name, no target
    return [a.symbol.name for a in derivation.backward + derivation.parameters]
