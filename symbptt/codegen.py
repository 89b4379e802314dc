"""NumPy kernels: a derivation rendered through ``templates/numpy_kernel.py.j2``."""

from __future__ import annotations

from .derive import Derivation
from .render import environment, kernel_context


def numpy_kernel(derivation: Derivation, source: str = "") -> str:
    """The generated module's text for one cell (same cell, same bytes)."""
    template = environment().get_template("numpy_kernel.py.j2")
    return template.render(**kernel_context(derivation, source))
