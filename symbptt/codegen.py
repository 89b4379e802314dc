"""NumPy kernels: a derivation rendered through ``templates/numpy_kernel.py.j2``."""

from __future__ import annotations

import types
from pathlib import Path

from .cell import Cell
from .derive import Derivation, derive
from .loader import load, resolve, source_label
from .render import environment, kernel_context


def numpy_kernel(derivation: Derivation, source: str = "") -> str:
    """The generated module's text for one cell (same cell, same bytes)."""
    template = environment().get_template("numpy_kernel.py.j2")
    return template.render(**kernel_context(derivation, source))


def kernel_module(spec: str | Path | Cell, name: str | None = None) -> types.ModuleType:
    """Derive a cell (built-in name, file path or :class:`Cell`), generate its kernel, import it.

    The module is built from the generated text without touching ``generated/``, so tests
    and tools can drive any cell, including one that is not built in.
    """
    if isinstance(spec, Cell):
        cell, source = spec, f"<cell {spec.name}>"
    else:
        path = resolve(str(spec))
        cell, source = load(path), source_label(path)
    code = numpy_kernel(derive(cell), source)
    module = types.ModuleType(name or f"symbptt_kernel_{cell.name}")
    module.__file__ = f"<generated kernel of {cell.name}>"
    exec(compile(code, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated text
    return module
