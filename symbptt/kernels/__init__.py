"""Fast sequence kernels from a derivation, as a pipeline of data:

derivation → :mod:`~symbptt.kernels.rewrite` (split weight-times-stack products) →
:mod:`~symbptt.kernels.layout` (loop, readouts, stacked rows) →
:mod:`~symbptt.kernels.forward` and :mod:`~symbptt.kernels.backward` (statements,
:mod:`~symbptt.kernels.code`) → :mod:`~symbptt.kernels.array_printer` (code lines of one
array library: NumPy, CuPy or PyTorch, see :mod:`symbptt.array_module`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..derive import Derivation
from .backward import Backward, BackwardPlanner
from .forward import Forward, ForwardPlanner
from .layout import Layout


@dataclass
class KernelPlan:
    """Everything a kernel runs, as statements: the layout, the forward and the backward."""

    layout: Layout
    forward: Forward
    backward: Backward


def plan_kernel(derivation: Derivation) -> KernelPlan:
    """Plan the sequence kernel of a derived cell."""
    layout = Layout(derivation)
    forward = ForwardPlanner(layout).plan()
    backward = BackwardPlanner(layout, forward).plan()
    return KernelPlan(layout, forward, backward)


__all__ = ["KernelPlan", "plan_kernel"]
