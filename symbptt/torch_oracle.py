"""An independent oracle: a cell's equations transcribed into PyTorch and run with autograd.

The cell's own step equations (``cell.equations``, not the lowered ones the derivation
uses) are walked node by node with float64 tensors; PyTorch's autograd then gives the
gradients of L = Σ upstream ⊙ outputs, in the kernel's key format (``dWz``, …, ``dx``,
``dh0``, ``dc0``). Nothing of symbptt's derivation is used, so an agreement with the
generated kernel to 1e-10 is strong evidence that both are right.

Truncated BPTT (``truncate=k``) detaches the states entering steps k, 2k, …, which is
how PyTorch users truncate and what the kernels' ``backward(..., truncate=k)`` computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .cell import Cell, prev_name, step_name
from .fdcheck import Problem
from .proof import Backend, ExplicitProblem, concrete, dimension_values, loss, resolve_cell, run_forward

try:  # PyTorch is optional: the oracle is skipped where it is missing
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None  # type: ignore[assignment]


def available() -> bool:
    """Whether PyTorch can be imported here."""
    return torch is not None


class TorchBackend(Backend):
    """Explicit matrices as float64 torch tensors (autograd records every operation).

    Each declared function (σ, softmax, …) runs as its declaration's ``torch_eval`` says.
    """

    evaluator = "torch_eval"

    def ones(self, rows: int, cols: int):
        return torch.ones(rows, cols, dtype=torch.float64)

    def zeros(self, rows: int, cols: int):
        return torch.zeros(rows, cols, dtype=torch.float64)

    def scale(self, coeff, a):
        return float(coeff) * a

    def stack(self, parts):
        return torch.cat(list(parts), dim=0)

    def row_slice(self, a, start: int, stop: int):
        return a[start:stop]

    def broadcast(self, column, cols: int):
        return column.expand(-1, cols)

    def feature_sum(self, a):
        return a.sum(dim=0, keepdim=True).expand_as(a)

    def batch_sum(self, a):
        return a.sum(dim=1, keepdim=True)

    def total(self, a):
        return a.sum()


def _leaf(array: np.ndarray):
    """A float64 leaf tensor that records its gradient."""
    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=torch.float64,
                        requires_grad=True)


def _explicit(cell: Cell, problem: Problem, dims) -> tuple[ExplicitProblem, dict[str, Any]]:
    """The problem as tensors; also the leaves whose gradients are returned, by key."""
    parameters = {k: _leaf(v) for k, v in problem.parameters.items()}
    x = _leaf(problem.x)
    m, T = problem.x.shape[1], problem.x.shape[2]
    initial = {}
    for s in cell.states:
        start = problem.initial_states.get(s)
        if start is None:
            start = np.zeros((concrete(cell.symbols[prev_name(s)].shape[0], dims), m))
        initial[s] = _leaf(start)
    outputs = list(cell.states) + list(cell.readouts)
    upstream = [{o: torch.tensor(problem.upstream[o][:, :, t], dtype=torch.float64)
                 for o in outputs if o in problem.upstream} for t in range(T)]
    inputs = [{cell.inputs[0]: x[:, :, t]} for t in range(T)]
    leaves = {"d" + k: v for k, v in parameters.items()}
    leaves["d" + cell.inputs[0]] = x
    leaves.update({f"d{s}0": v for s, v in initial.items()})
    return ExplicitProblem(parameters, inputs, initial, upstream), leaves


def dims_of(cell: Cell, problem: Problem) -> dict:
    """Dimension values read off the shapes of the parameters, the input and the states."""
    if len(cell.inputs) != 1:
        raise ValueError(f"cell {cell.name}: the oracle drives cells with one input, "
                         f"not {len(cell.inputs)}")
    pairs = [(p.shape, problem.parameters[p.name].shape) for p in cell.parameters]
    pairs.append((cell.symbols[step_name(cell.inputs[0])].shape, problem.x.shape[:2]))
    pairs += [(cell.symbols[prev_name(s)].shape, v.shape)
              for s, v in problem.initial_states.items() if prev_name(s) in cell.symbols]
    sizes = {"m": int(problem.x.shape[1])}
    for symbolic, actual in pairs:
        for dim, size in zip(symbolic, actual):
            if getattr(dim, "is_Symbol", False):
                sizes[str(dim)] = int(size)
    missing = [d for d in cell.dimensions if d not in sizes]
    if missing:
        raise ValueError(f"cell {cell.name}: no parameter or input has dimension "
                         f"{', '.join(missing)} as a whole side, so its size is unknown")
    return dimension_values(cell, sizes)


def gradients(cell: str | Path | Cell, problem: Problem,
              truncate: int | None = None) -> dict[str, np.ndarray]:
    """PyTorch autograd's gradients of L = Σ upstream ⊙ outputs, in the kernel's keys."""
    if torch is None:
        raise ImportError("PyTorch is not installed; the torch oracle needs it")
    cell = resolve_cell(cell)
    dims = dims_of(cell, problem)
    explicit, leaves = _explicit(cell, problem, dims)
    backend = TorchBackend()
    steps = run_forward(cell, cell.equations, explicit, backend, dims,
                        detach=lambda v: v.detach(), truncate=truncate)
    total = loss(steps, explicit, backend)
    total.backward()
    return {key: (leaf.grad.numpy().copy() if leaf.grad is not None
                  else np.zeros(tuple(leaf.shape))) for key, leaf in leaves.items()}


def compare_with_kernel(kernel, cell: str | Path | Cell, m: int = 2, T: int = 4,
                        truncate: int | None = None, seed: int = 0,
                        sizes: dict | None = None) -> dict[str, float]:
    """Relative error of the kernel's backward against the oracle, per gradient key."""
    from .fdcheck import compare

    return compare(kernel, lambda problem: gradients(cell, problem, truncate), m, T, truncate,
                   seed, sizes)


__all__ = ["TorchBackend", "available", "compare_with_kernel", "gradients"]
