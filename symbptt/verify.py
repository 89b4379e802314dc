"""``symbptt verify CELL``: every independent check of one cell's gradients, as one table.

The checks, each against the generated NumPy kernel's ``backward``:

* finite differences: central differences of L = Σ upstream ⊙ outputs, full BPTT and
  truncated BPTT (truncate=2), relative error ≤ 1e-6;
* symbolic proof (:mod:`symbptt.proof`): each derived gradient equals ``sympy.diff`` of the
  scalar loss exactly, at small sizes. It runs in a child process under a time limit
  (:data:`PROOF_TIMEOUT`), and only for cells of at most :data:`PROOF_MAX_EQUATIONS`
  equations and :data:`PROOF_MAX_PARAMETERS` parameters; a larger cell, or one that runs
  out of time, gets a skipped row saying so, and a symbolic check of every operation's
  declared derivative instead (:func:`symbptt.proof.check_derivative`), beside the
  numerical checks below, which every cell gets;
* PyTorch autograd (:mod:`symbptt.torch_oracle`): the cell's equations transcribed into
  torch, full and truncated, relative error ≤ 1e-10; skipped, with the reason, where
  PyTorch cannot be imported;
* the derived equations evaluated directly in NumPy (:func:`derived_gradients`), full and
  truncated, relative error ≤ 1e-10: when the other checks fail and this one passes, the
  derivation is right and the code generator is wrong (and the other way round).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import sympy as sp

from . import fdcheck, ops, proof, torch_oracle
from .cell import Cell
from .codegen import kernel_module
from .derive import derive
from .limited import run_limited

#: Tolerances: differences lose about half the digits; torch and the kernel compute the
#: same float64 operations in a different order.
FD_TOLERANCE = 1e-6
TORCH_TOLERANCE = 1e-10
TRUNCATE = 2
#: The exact proof's limits: sizes of cell it is tried on, and seconds it may take.
PROOF_MAX_EQUATIONS = 40
PROOF_MAX_PARAMETERS = 40
PROOF_TIMEOUT = 300.0


@dataclass(frozen=True)
class Row:
    """One line of the table: which check, which gradient key, the result, and the verdict.

    ``ok`` is None for a check that was skipped (the result says why).
    """

    check: str
    key: str
    result: str
    ok: bool | None


def proof_steps(cell: Cell) -> int:
    """Steps of the symbolic proof: T = 3 for a small cell, T = 2 for a larger one.

    The expanded polynomials grow quickly with T (a GRU's ∂L/∂Wz entry has about a million
    terms at T = 3, 4 000 at T = 2); T = 2 still checks the carry from step t+1 to step t,
    and full simplification of every entry stays within a minute.
    """
    nonlinear = sum(1 for eq in derive(cell).forward if getattr(eq.expr, "is_nonlinear", False))
    return 3 if nonlinear <= 2 else 2


def _error_rows(check: str, errors: dict[str, float], tolerance: float) -> list[Row]:
    return [Row(check, key, f"{err:.1e}", err <= tolerance) for key, err in errors.items()]


#: What a guarded check returns (its rows, or None for a proof that ran out of time).
_Result = TypeVar("_Result")


def _guarded(check: str, run: Callable[[], _Result]) -> _Result | list[Row]:
    """Run one check; an exception becomes a failed row naming it instead of a crash."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - a check that cannot run is a verdict
        return [Row(check, "-", f"raised {type(err).__name__}: {err}", False)]


def finite_difference_rows(kernel, truncate: int | None) -> list[Row]:
    """Relative errors against central differences (m = 2, T = 4)."""
    name = "finite differences" + (f" (truncate={truncate})" if truncate else " (full)")
    return _guarded(name, lambda: _error_rows(
        name, fdcheck.check(kernel, m=2, T=4, truncate=truncate), FD_TOLERANCE))


def proof_rows(cell: Cell, T: int | None = None, timeout: float = PROOF_TIMEOUT) -> list[Row]:
    """One row per key: proved exactly, or where the derived entry differs; for a cell
    too large or too slow for the exact proof, a skipped row saying so and one row per
    operation whose derivative was checked symbolically instead."""
    too_large = _too_large(cell)
    if too_large:
        return [Row("symbolic proof", "-", f"skipped: {too_large}", None)] + operation_rows(cell)
    T = T or proof_steps(cell)
    name = f"symbolic proof (T={T})"
    rows = _guarded(name, lambda: _in_child(lambda: _prove(cell, T, name), timeout))
    if rows is None:
        return [Row(name, "-", f"skipped: not finished within {timeout:g} s (see --proof-timeout)",
                    None)] + operation_rows(cell)
    return rows


def _too_large(cell: Cell) -> str:
    equations, parameters = len(derive(cell).forward), len(cell.parameters)
    if equations <= PROOF_MAX_EQUATIONS and parameters <= PROOF_MAX_PARAMETERS:
        return ""
    return (f"the cell has {equations} equations and {parameters} parameters; the exact proof "
            f"is tried up to {PROOF_MAX_EQUATIONS} and {PROOF_MAX_PARAMETERS}")


def _prove(cell: Cell, T: int, name: str) -> list[Row]:
    return [Row(name, r.key, f"exact, {r.entries} entries" if r.proved else r.counterexample,
                r.proved) for r in proof.prove_keys(cell, T=T)]


def operation_rows(cell: Cell) -> list[Row]:
    """Each operation the cell uses: its declared derivative against d/du of its definition."""
    declared = set(ops.FUNCTIONS.values())
    used = sorted({type(node) for eq in derive(cell).forward for node in sp.preorder_traversal(eq.expr)
                   if type(node) in declared}, key=lambda op: op.op_name)
    rows = []
    for op in used:
        if getattr(op, "sympy_scalar", None) is None:  # softmax: not elementwise, no d/du
            rows.append(Row("derivative rule (symbolic)", op.op_name, "skipped: not elementwise "
                            "(no scalar definition); checked by the differences above", None))
            continue
        problem = proof.check_derivative(op)  # type: ignore[arg-type]  # a class is Hashable: python/mypy#11470
        rows.append(Row("derivative rule (symbolic)", op.op_name, problem or "d/du of its definition",
                        not problem))
    return rows


def _in_child(work: Callable[[], list[Row]], timeout: float) -> list[Row] | None:
    """``work()`` run in a forked child process; None when it did not finish in time. No
    memory limit: the time limit bounds the proof, and a limit on address space would also
    count what the parent has mapped (PyTorch reserves gigabytes it never touches)."""
    outcome = run_limited(work, timeout, memory_bytes=None)
    if outcome.status == "too slow":
        return None
    if outcome.status != "ok":
        raise RuntimeError(f"the proof's process: {outcome.status}: {outcome.message}")
    return outcome.value


def torch_rows(kernel, cell: Cell, truncate: int | None) -> list[Row]:
    """Relative errors against PyTorch autograd, or one skipped row when torch is missing."""
    name = "torch autograd" + (f" (truncate={truncate})" if truncate else " (full)")
    if not torch_oracle.available():
        return [Row(name, "-", "skipped: PyTorch cannot be imported", None)]
    return _guarded(name, lambda: _error_rows(
        name, torch_oracle.compare_with_kernel(kernel, cell, m=2, T=4, truncate=truncate),
        TORCH_TOLERANCE))


def derived_gradients(cell: Cell, problem: fdcheck.Problem,
                      truncate: int | None = None) -> dict[str, np.ndarray]:
    """The derivation's own adjoint equations, evaluated step by step on NumPy arrays."""
    derivation = derive(cell)
    dims = torch_oracle.dims_of(cell, problem)
    T = problem.x.shape[2]
    initial = {s: problem.initial_states.get(s) for s in cell.states}
    for s, value in initial.items():
        if value is None:
            initial[s] = np.zeros(proof.output_shape(cell, s, dims))
    explicit = proof.ExplicitProblem(
        dict(problem.parameters), [{cell.inputs[0]: problem.x[:, :, t]} for t in range(T)],
        initial, [{o: g[:, :, t] for o, g in problem.upstream.items()} for t in range(T)])
    backend = proof.NumpyBackend()
    steps = proof.run_forward(cell, derivation.forward, explicit, backend, dims)
    gradients = proof.run_backward(derivation, steps, explicit, backend, dims, truncate)
    key = "d" + cell.inputs[0]
    gradients[key] = np.stack(gradients[key], axis=2)
    return gradients


def derivation_rows(kernel, cell: Cell, truncate: int | None) -> list[Row]:
    """Relative errors of the kernel against the derived equations evaluated directly."""
    name = "derived equations (NumPy)" + (f" (truncate={truncate})" if truncate else " (full)")

    def run() -> list[Row]:
        problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 4, seed=1)
        _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
        analytic = kernel.backward(cache, problem.upstream, truncate=truncate)
        expected = derived_gradients(cell, problem, truncate)
        errors = {k: fdcheck.relative_error(analytic[k], v) for k, v in expected.items()}
        return _error_rows(name, errors, TORCH_TOLERANCE)

    return _guarded(name, run)


def verify(cell_spec: str | Path | Cell, prove_T: int | None = None, prove: bool = True,
           proof_timeout: float = PROOF_TIMEOUT) -> list[Row]:
    """Every check of one cell (built-in name, cell file or :class:`Cell`), as table rows.

    ``prove=False`` replaces the exact proof by the symbolic check of each operation's rule.
    """
    cell = proof.resolve_cell(cell_spec)
    kernel = kernel_module(cell)
    rows = finite_difference_rows(kernel, None)
    rows += finite_difference_rows(kernel, TRUNCATE)
    if prove:
        rows += proof_rows(cell, prove_T, proof_timeout)
    else:
        rows += [Row("symbolic proof", "-", "skipped: --skip-proof", None)] + operation_rows(cell)
    rows += torch_rows(kernel, cell, None)
    rows += torch_rows(kernel, cell, TRUNCATE)
    rows += derivation_rows(kernel, cell, None)
    rows += derivation_rows(kernel, cell, TRUNCATE)
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table with a verdict column."""
    verdicts = {True: "ok", False: "FAIL", None: "skipped"}
    lines = [("check", "key", "result", "verdict")]
    lines += [(r.check, r.key, r.result, verdicts[r.ok]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def main(cell_spec: str | Path | Cell, prove: bool = True, proof_timeout: float = PROOF_TIMEOUT) -> int:
    """Print the table for one cell; exit status 0 when no check failed."""
    began = time.monotonic()
    rows = verify(cell_spec, prove=prove, proof_timeout=proof_timeout)
    print(format_table(rows))
    failed = [r for r in rows if r.ok is False]
    name = getattr(cell_spec, "name", cell_spec)
    print(f"\n{name}: {len(rows) - len(failed)} of {len(rows)} rows ok or skipped, "
          f"{len(failed)} failed ({time.monotonic() - began:.1f} s)")
    return 1 if failed else 0


__all__ = ["Row", "format_table", "main", "proof_steps", "verify"]
