"""Symbolic proof of the engine: derived BPTT gradients equal ``sympy.diff`` of the loss.

For small concrete sizes (n_x = n_h = n_y = 2, m = 1, T = 3 by default) every parameter
entry, every input entry and every initial state entry becomes a scalar SymPy symbol, and so
does every entry of the upstream gradients. The cell's forward equations are evaluated on
these explicit matrices for T steps, giving the scalar loss

    L = Σ_t Σ_outputs upstream_t ⊙ output_t.

The derived backward (the derivation's adjoints and per-step parameter contributions,
carried back through every step: full BPTT) is evaluated on the same explicit matrices, and
each entry is compared with ``sympy.diff(L, symbol)``. The comparison is exact: the
difference must simplify to zero, not merely be small at a few points.

How the difference is simplified, and why it is both exact and fast:

* every declared pointwise operation f (σ, tanh, eᵘ, softplus, …; see :mod:`symbptt.ops`)
  becomes an opaque SymPy function (:func:`scalar_function`) whose derivative is the one
  its declaration gives, written with its own value as the VJP rule writes it (σ' = σ(1 − σ),
  softplus' = 1 − e^(−softplus)). That declared derivative is itself checked, once per
  operation, against ``sympy.diff`` of the operation's SymPy definition
  (:func:`check_derivative`); so the proof handles any operation whose derivative its
  declaration gives, and assumes nothing of a VJP rule under test;
* SymPy's own ``exp`` would merge eᵃ·eᵇ into eᵃ⁺ᵇ; the opaque eᵘ keeps every factor;
* every function application is taken whole, as an atom. Both sides
  are built from the very same forward values, so the atoms agree syntactically, and each
  side is a rational function of the atoms and the scalar symbols. They are expanded into
  SymPy's sparse polynomials (:class:`PolynomialView`), divisors first as generators of
  their own, then, where that is not enough, in the field of fractions; equal there means
  equal for every value of the symbols.

Cost: the expanded polynomials grow fast with T (a GRU's ∂L/∂Wz entry has about 4 000
terms at T = 2 and a million at T = 3), so gated cells are best proved at T = 2 (which
still carries a gradient from step 2 back to step 1); :func:`symbptt.verify.proof_steps`
chooses T by the size of the cell.

This module also holds the small evaluator that runs a cell's equations on explicit
matrices with a pluggable backend (SymPy here, PyTorch in :mod:`symbptt.torch_oracle`,
NumPy-like floats in :mod:`symbptt.handcheck`), so every oracle walks the same nodes.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
from mpmath.libmp import prec_to_dps
from sympy import MatrixSymbol, OneMatrix, ZeroMatrix

from . import ops
from .cell import Cell, Equation, prev_name, step_name
from .derive import Derivation, adjoint_name, derive
from .loader import load
from .ops import BATCH, EvaluationError

#: Default sizes of the proof: every dimension 2, one batch column.
DEFAULT_SIZES: dict[str, int] = {"n_x": 2, "n_h": 2, "n_y": 2, "m": 1}


# --------------------------------------------------------------------------------------
# Backends: what each operation means on explicit matrices
# --------------------------------------------------------------------------------------


class Backend:
    """Explicit-matrix operations of one array library.

    The interface: ``matmul add hadamard transpose ones zeros scale``, ``apply(op, a)`` for a
    declared function (σ, softmax, …: the declaration's evaluator named by ``evaluator``),
    the structural ``stack row_slice broadcast feature_sum batch_sum``, and ``total`` (sum
    of entries) where a loss is formed.
    """

    #: The attribute of an operation's declaration this backend calls (``numpy_eval``, …).
    evaluator = ""

    def apply(self, op: type[ops.Node], a):
        """``op`` applied to ``a`` with the evaluator its declaration gives for this backend."""
        fn = getattr(op, self.evaluator, None)
        if fn is None:
            raise EvaluationError(f"operation {op.op_name} declares no {self.evaluator} "
                                  f"evaluator in symbptt/ops.py")
        return fn(a)

    def matmul(self, a, b):
        return a @ b

    def add(self, a, b):
        return a + b

    def hadamard(self, a, b):
        return a * b

    def transpose(self, a):
        return a.T

    def scale(self, coeff, a):  # pragma: no cover - interface
        raise NotImplementedError

    def ones(self, rows: int, cols: int):  # pragma: no cover - interface
        raise NotImplementedError

    def zeros(self, rows: int, cols: int):  # pragma: no cover - interface
        raise NotImplementedError

    def stack(self, parts):  # pragma: no cover - interface
        raise NotImplementedError

    def row_slice(self, a, start: int, stop: int):  # pragma: no cover - interface
        raise NotImplementedError

    def broadcast(self, column, cols: int):  # pragma: no cover - interface
        raise NotImplementedError

    def feature_sum(self, a):  # pragma: no cover - interface
        raise NotImplementedError

    def batch_sum(self, a):  # pragma: no cover - interface
        raise NotImplementedError

    def total(self, a):  # pragma: no cover - interface
        raise NotImplementedError


class OperationFunction(sp.Function):
    """A declared pointwise operation f as an opaque SymPy function of one scalar.

    Its derivative is the one the declaration gives (:func:`scalar_derivative`), written
    with f's own value where the VJP rule reuses it; ``definition()`` is the operation's
    SymPy definition, used for numbers and for :func:`check_derivative`.
    """

    operation: type[ops.Node] = ops.Pointwise

    def fdiff(self, argindex: int = 1):
        return scalar_derivative(self.operation, self.args[0])

    def definition(self) -> sp.Expr:
        return self.operation.sympy_scalar(self.args[0])

    def _eval_evalf(self, prec):
        return self.definition().evalf(prec_to_dps(prec))


@functools.cache
def scalar_function(op: type[ops.Node]) -> type[OperationFunction]:
    """The opaque SymPy function of one pointwise operation (one class per operation)."""
    if getattr(op, "sympy_scalar", None) is None:
        raise EvaluationError(f"operation {op.op_name} declares no SymPy definition "
                              f"(sympy_scalar) in symbptt/ops.py")
    return type(op.op_name, (OperationFunction,), {"operation": op})


@functools.cache
def _derivative_template(op: type[ops.Node]) -> tuple[sp.Dummy, sp.Expr]:
    """f'(u) for a dummy u, from the declared ``derivative`` evaluated on 1×1 matrices."""
    u, n = sp.Dummy("u"), sp.Dummy("n")
    operand, value = MatrixSymbol("__u__", n, BATCH), MatrixSymbol("__y__", n, BATCH)
    f = scalar_function(op)  # type: ignore[arg-type]  # a class is Hashable: python/mypy#11470
    env = {"__u__": sp.Matrix([[u]]), "__y__": sp.Matrix([[f(u)]])}
    evaluate = Evaluator(SympyBackend(), {n: 1, BATCH: 1}, env)
    return u, evaluate(op(operand).derivative(value))[0, 0]


def scalar_derivative(op: type[ops.Node], arg: sp.Expr) -> sp.Expr:
    """The declared derivative of ``op`` at ``arg``, in the proof's atoms."""
    u, template = _derivative_template(op)  # type: ignore[arg-type]  # Hashable: python/mypy#11470
    return template.xreplace({u: arg})


#: Where :func:`check_derivative` compares values when SymPy cannot simplify the difference
#: to zero (piecewise functions): on both sides of 0, away from kinks at 0.
SAMPLE_POINTS = (-2.7, -1.3, -0.6, -0.2, 0.3, 0.8, 1.6, 3.1)


def _definitions(expr: sp.Expr) -> sp.Expr:
    """Every opaque operation in ``expr`` replaced by its SymPy definition."""
    return expr.replace(lambda e: isinstance(e, OperationFunction), lambda e: e.definition())


@functools.cache
def check_derivative(op: type[ops.Node]) -> str:
    """"" when ``op``'s declared derivative is d/du of its definition, else what is wrong.

    Exact when SymPy simplifies the difference to zero; otherwise (piecewise functions such
    as relu and elu) the two agree to 25 digits at every point of :data:`SAMPLE_POINTS`.
    """
    u = sp.Symbol("u", real=True)
    try:
        declared = _definitions(scalar_derivative(op, u))
        true = sp.diff(op.sympy_scalar(u), u)
    except Exception as err:  # noqa: BLE001 - a declaration that cannot be used is a verdict
        return f"operation {getattr(op, 'op_name', op)}: derivative unusable ({err})"
    if sp.simplify(declared - true) == 0:
        return ""
    for point in SAMPLE_POINTS:
        at = {u: sp.Float(point, 30)}
        a, b = complex(declared.evalf(30, subs=at)), complex(true.evalf(30, subs=at))
        if abs(a - b) > 1e-25 * (1 + abs(b)):
            return (f"operation {op.op_name}: the declared derivative {declared} is not "
                    f"d/du of its definition, {true} (they differ at u = {point})")
    return ""


class SympyBackend(Backend):
    """Explicit ``sympy.Matrix`` values; each pointwise operation as its opaque function."""

    def apply(self, op: type[ops.Node], a):
        """Pointwise operations as atoms, other elementwise ones by their scalar definition,
        softmax by its own matrix rule."""
        if issubclass(op, ops.Pointwise):
            return a.applyfunc(scalar_function(op))  # type: ignore[arg-type]  # python/mypy#11470
        if getattr(op, "sympy_scalar", None) is not None:
            return a.applyfunc(op.sympy_scalar)
        if getattr(op, "sympy_matrix", None) is not None:
            return op.sympy_matrix(self, a)
        raise EvaluationError(f"operation {op.op_name} declares no SymPy evaluator in "
                              f"symbptt/ops.py")

    def hadamard(self, a, b):
        return a.multiply_elementwise(b)

    def ones(self, rows: int, cols: int):
        return sp.ones(rows, cols)

    def zeros(self, rows: int, cols: int):
        return sp.zeros(rows, cols)

    def scale(self, coeff, a):
        return coeff * a

    def stack(self, parts):
        return sp.Matrix.vstack(*parts)

    def row_slice(self, a, start: int, stop: int):
        return a[start:stop, :]

    def broadcast(self, column, cols: int):
        return sp.Matrix.hstack(*([column] * cols))

    def feature_sum(self, a):
        return sp.ones(a.rows, 1) * (sp.ones(1, a.rows) * a)

    def batch_sum(self, a):
        return a * sp.ones(a.cols, 1)


class NumpyBackend(Backend):
    """Explicit float64 NumPy matrices, for the numeric comparison and counterexamples."""

    evaluator = "numpy_eval"

    def ones(self, rows: int, cols: int):
        return np.ones((rows, cols))

    def zeros(self, rows: int, cols: int):
        return np.zeros((rows, cols))

    def scale(self, coeff, a):
        return float(coeff) * a

    def stack(self, parts):
        return np.concatenate(list(parts))

    def row_slice(self, a, start: int, stop: int):
        return a[start:stop]

    def broadcast(self, column, cols: int):
        return np.repeat(column, cols, axis=1)

    def feature_sum(self, a):
        return np.repeat(a.sum(axis=0, keepdims=True), a.shape[0], axis=0)

    def batch_sum(self, a):
        return a.sum(axis=1, keepdims=True)

    def total(self, a):
        return float(a.sum())


# --------------------------------------------------------------------------------------
# The evaluator: each operation's own rule, as :mod:`symbptt.ops` declares it
# --------------------------------------------------------------------------------------


def concrete(size, dims: Mapping[sp.Symbol, int]) -> int:
    """A symbolic size (``n_h + n_x``) as an int for the given dimension values."""
    value = sp.sympify(size).subs(dims)
    if not value.is_Integer:
        raise EvaluationError(f"size {size} is not fixed by the dimensions {dict(dims)}")
    return int(value)


@dataclass
class Evaluator:
    """Evaluates matrix expressions of a cell on explicit values with one backend."""

    backend: Backend
    dims: Mapping[sp.Symbol, int]
    env: dict[str, Any] = field(default_factory=dict)

    def __call__(self, expr) -> Any:
        if isinstance(expr, MatrixSymbol):
            if expr.name not in self.env:
                raise EvaluationError(f"no value for {expr.name}")
            return self.env[expr.name]
        if isinstance(expr, OneMatrix):
            return self.backend.ones(*self._shape(expr))
        if isinstance(expr, ZeroMatrix):
            return self.backend.zeros(*self._shape(expr))
        return ops.evaluate(expr, self)

    def size(self, dim) -> int:
        """A symbolic size as an int for this evaluator's dimension values."""
        return concrete(dim, self.dims)

    def _shape(self, expr) -> tuple[int, int]:
        return self.size(expr.shape[0]), self.size(expr.shape[1])


# --------------------------------------------------------------------------------------
# Running a cell over a sequence on explicit values
# --------------------------------------------------------------------------------------


@dataclass
class ExplicitProblem:
    """Explicit values of one instance: per-step inputs, initial states, upstream gradients.

    ``inputs[t]`` maps an input name (``x``) to its value at step t; ``upstream[t]`` maps
    an output name (a state or readout) to the loss's gradient with respect to it at t.
    """

    parameters: dict[str, Any]
    inputs: list[dict[str, Any]]
    initial_states: dict[str, Any]
    upstream: list[dict[str, Any]]

    @property
    def T(self) -> int:
        return len(self.inputs)


def dimension_values(cell: Cell, sizes: Mapping[str, int] | None = None) -> dict[sp.Symbol, int]:
    """Every dimension symbol of the cell (and the batch ``m``) mapped to a concrete size."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    values = {sym: int(sizes.get(name, 2)) for name, sym in cell.dimensions.items()}
    values[BATCH] = int(sizes["m"])
    return values


def resolve_cell(spec: str | Path | Cell) -> Cell:
    """A :class:`Cell` from a built-in name, a cell file or a cell."""
    return spec if isinstance(spec, Cell) else load(spec)


def output_names(cell: Cell) -> list[str]:
    """Outputs of a step in the kernel's order: states, then readouts."""
    return list(cell.states) + list(cell.readouts)


def output_shape(cell: Cell, name: str, dims) -> tuple[int, int]:
    """Concrete shape of a state or readout."""
    sym = cell.symbols.get(prev_name(name)) or cell.symbols[name]
    return concrete(sym.shape[0], dims), concrete(sym.shape[1], dims)


def run_forward(cell: Cell, equations: list[Equation], problem: ExplicitProblem,
                backend: Backend, dims, detach: Callable | None = None,
                truncate: int | None = None) -> list[dict]:
    """Evaluate a cell's step equations for every step; one environment per step.

    ``equations`` are the cell's own (``cell.equations``) or the lowered ones of a
    derivation (``derivation.forward``, which the derived backward refers to). Each
    environment maps parameters, ``h_prev``/``xt`` and every equation's name to its value
    at that step. With ``detach`` and ``truncate=k`` the states entering every k-th step
    (k, 2k, …) are passed through ``detach`` (PyTorch's truncated BPTT).
    """
    states = dict(problem.initial_states)
    steps = []
    for t in range(problem.T):
        if detach is not None and truncate and t > 0 and t % truncate == 0:
            states = {s: detach(v) for s, v in states.items()}
        env = dict(problem.parameters)
        env.update({prev_name(s): states[s] for s in cell.states})
        env.update({step_name(i): problem.inputs[t][i] for i in cell.inputs})
        evaluate = Evaluator(backend, dims, env)
        for eq in equations:
            env[eq.name] = evaluate(eq.expr)
        states = {s: env[s] for s in cell.states}
        steps.append(env)
    return steps


def loss(steps: list[dict], problem: ExplicitProblem, backend: Backend):
    """L = Σ_t Σ_outputs Σ upstream_t ⊙ output_t (a backend scalar)."""
    total = 0
    for t, env in enumerate(steps):
        for name, g in problem.upstream[t].items():
            total = total + backend.total(backend.hadamard(g, env[name]))
    return total


def run_backward(derivation: Derivation, steps: list[dict], problem: ExplicitProblem,
                 backend: Backend, dims, truncate: int | None = None) -> dict[str, Any]:
    """The derived backward on explicit values: gradients in the kernel's key format.

    Loops over the steps in reverse, evaluates every adjoint of the step in the derived
    order, carries the previous states' adjoints to step t−1 (cut at every k-th step with
    ``truncate=k``) and sums the parameters' per-step contributions.
    """
    cell = derivation.cell
    carry = {s: backend.zeros(*output_shape(cell, s, dims)) for s in cell.states}
    totals: dict[str, Any] = {}
    inputs: dict[str, list] = {i: [None] * problem.T for i in cell.inputs}
    for t in reversed(range(problem.T)):
        env = dict(steps[t])
        for name, sym in derivation.incoming.items():
            up = problem.upstream[t].get(name)
            if up is None:
                up = backend.zeros(*output_shape(cell, name, dims))
            env[sym.name] = backend.add(up, carry[name]) if name in carry else up
        evaluate = Evaluator(backend, dims, env)
        for adj in derivation.backward:
            env[adj.symbol.name] = evaluate(adj.expr)
        for adj in derivation.parameters:
            value = evaluate(adj.expr)
            totals[adj.symbol.name] = (backend.add(totals[adj.symbol.name], value)
                                       if adj.symbol.name in totals else value)
        for i in cell.inputs:
            inputs[i][t] = env[adjoint_name(step_name(i))]
        cut = truncate is not None and t > 0 and t % truncate == 0
        carry = {s: (backend.zeros(*output_shape(cell, s, dims)) if cut
                     else env[adjoint_name(prev_name(s))]) for s in cell.states}
    gradients = dict(totals)
    for i in cell.inputs:
        gradients[adjoint_name(i)] = inputs[i]
    for s in cell.states:
        gradients[f"d{s}0"] = carry[s]
    return gradients


# --------------------------------------------------------------------------------------
# The proof
# --------------------------------------------------------------------------------------


def symbol_matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """A matrix of scalar symbols ``name[i,j]``."""
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}[{i},{j}]", real=True))


def symbolic_problem(derivation: Derivation, dims, T: int) -> ExplicitProblem:
    """Every parameter, input, initial state and upstream entry a scalar symbol."""
    cell = derivation.cell
    parameters = {p.name: symbol_matrix(p.name, concrete(p.shape[0], dims),
                                        concrete(p.shape[1], dims)) for p in cell.parameters}
    inputs = []
    upstream = []
    for t in range(T):
        inputs.append({i: symbol_matrix(f"{i}{t + 1}", *_input_shape(cell, i, dims))
                       for i in cell.inputs})
        upstream.append({o: symbol_matrix(f"g_{o}{t + 1}", *output_shape(cell, o, dims))
                         for o in output_names(cell)})
    initial = {s: symbol_matrix(f"{s}0", *output_shape(cell, s, dims)) for s in cell.states}
    return ExplicitProblem(parameters, inputs, initial, upstream)


def _input_shape(cell: Cell, name: str, dims) -> tuple[int, int]:
    sym = cell.symbols[step_name(name)]
    return concrete(sym.shape[0], dims), concrete(sym.shape[1], dims)


class _SympyScalars(SympyBackend):
    """The SymPy backend plus the sum of a matrix's entries (for the loss)."""

    def total(self, a):
        return sum(a)


_ATOMS = (sp.Function, sp.Max)


def _is_atom(expr) -> bool:
    """Leaves of the polynomial view: symbols and function applications, taken whole."""
    return expr.is_Symbol or isinstance(expr, _ATOMS)


def _generators(expressions) -> list:
    """The generators of the polynomial view: atoms, and ``1/b`` for every divisor b."""
    found: dict = {}
    seen: set = set()
    stack = list(expressions)
    while stack:
        expr = stack.pop()
        if expr in seen or expr.is_Number:
            continue
        seen.add(expr)
        if _is_atom(expr):
            found.setdefault(expr, None)
        elif expr.is_Pow and expr.exp.is_Integer:
            if expr.exp < 0:
                found.setdefault(sp.Pow(expr.base, -1, evaluate=False), None)
            stack.append(expr.base)  # a divisor's atoms are generators of the fraction field too
        elif expr.is_Add or expr.is_Mul:
            stack.extend(expr.args)
        else:
            found.setdefault(expr, None)
    return sorted(found, key=sp.default_sort_key)


def _convert(expr, algebra, index: dict, memo: dict, inverse: Callable):
    """``expr`` as an element of ``algebra`` (a polynomial ring or a fraction field).

    ``index`` maps generators to their position; ``inverse(base, k)`` gives ``base**-k``
    (a generator of its own in the ring, a true quotient in the field).
    """
    hit = memo.get(expr)
    if hit is not None:
        return hit
    if expr.is_Number:
        value = algebra(sp.QQ.from_sympy(expr))
    elif expr in index:
        value = algebra.gens[index[expr]]
    elif expr.is_Pow and expr.exp.is_Integer and expr.exp < 0:
        value = inverse(expr.base, int(-expr.exp))
    elif expr.is_Pow and expr.exp.is_Integer:
        value = _convert(expr.base, algebra, index, memo, inverse) ** int(expr.exp)
    elif expr.is_Add:
        value = algebra.zero
        for a in expr.args:
            value = value + _convert(a, algebra, index, memo, inverse)
    elif expr.is_Mul:
        value = algebra.one
        for a in expr.args:
            value = value * _convert(a, algebra, index, memo, inverse)
    else:  # pragma: no cover - every other node is a generator
        raise EvaluationError(f"no polynomial view of {expr}")
    memo[expr] = value
    return value


class PolynomialView:
    """Exact comparison of expressions as polynomials (or fractions) over one set of atoms.

    The atoms are the scalar symbols and every function application, taken whole. First the
    fast test: a ring whose generators are the atoms and ``1/b`` for every divisor b, with
    products expanded in SymPy's sparse polynomial arithmetic (far faster than ``expand``
    on expression trees, and shared subexpressions are converted once). A difference that
    is the zero polynomial there is zero for every value of the symbols (substituting
    values is a ring homomorphism). When that test fails, the exact one: the field of
    fractions over the atoms alone, where ``b · (1/b) = 1`` holds too (log σ(u) has
    derivative σ'(u)/σ(u), which the derived side writes already cancelled).
    """

    def __init__(self, expressions: list):
        gens = _generators(expressions) or [sp.Dummy("unused")]
        self.ring = sp.polys.rings.PolyRing([sp.Dummy(f"g{k}") for k in range(len(gens))], sp.QQ)
        self.index = {g: k for k, g in enumerate(gens)}
        self.memo: dict = {}
        self.atoms = [g for g in gens if not (g.is_Pow and g.exp == -1)]
        self.field = None
        self.field_index: dict = {}
        self.field_memo: dict = {}
        self.values: dict | None = None
        self.numeric_memo: dict = {}

    def polynomial(self, expr):
        """``expr`` as a ring element (divisors as generators of their own)."""
        inv = self.ring.gens

        def inverse(base, k):
            return inv[self.index[sp.Pow(base, -1, evaluate=False)]] ** k

        return _convert(sp.sympify(expr), self.ring, self.index, self.memo, inverse)

    def fraction(self, expr):
        """``expr`` as an element of the field of fractions over the atoms."""
        if self.field is None:
            symbols = [sp.Dummy(f"a{k}") for k in range(max(len(self.atoms), 1))]
            self.field = sp.polys.fields.FracField(symbols, sp.QQ)
            self.field_index = {g: k for k, g in enumerate(self.atoms)}

        def inverse(base, k):
            return self.field.one / self.fraction(base) ** k

        return _convert(sp.sympify(expr), self.field, self.field_index, self.field_memo, inverse)

    def equal(self, left, right) -> bool:
        """Whether ``left − right`` is identically zero.

        Between the two exact tests, a cheap refutation: values that differ clearly at one
        random point prove the expressions different, and spare the fraction field.
        """
        if self.polynomial(left) == self.polynomial(right):
            return True
        if len(self.atoms) == len(self.index):  # no divisors: the ring test is exact
            return False
        a, b = self.numeric(left), self.numeric(right)
        if abs(a - b) > 1e-6 * (abs(a) + abs(b) + 1):
            return False
        return self.fraction(left) == self.fraction(right)

    def numeric(self, expr) -> float:
        """``expr`` at one fixed random point (symbols uniform in [−1, 1])."""
        if self.values is None:
            rng = random.Random(0)
            symbols = sorted(set().union(*[g.free_symbols for g in self.index]), key=str)
            self.values = {symbol: rng.uniform(-1, 1) for symbol in symbols}
        return _numeric_value(sp.sympify(expr), self.values, self.numeric_memo)


def _numeric_value(expr, values: dict, memo: dict) -> float:
    """``expr`` as a float, each shared subexpression evaluated once."""
    hit = memo.get(expr)
    if hit is not None:
        return hit
    if expr.is_Number:
        value = float(expr)
    elif expr.is_Symbol:
        value = values[expr]
    elif expr.is_Add:
        value = math.fsum(_numeric_value(a, values, memo) for a in expr.args)
    elif expr.is_Mul:
        value = math.prod(_numeric_value(a, values, memo) for a in expr.args)
    elif expr.is_Pow:
        value = _numeric_value(expr.base, values, memo) ** _numeric_value(expr.exp, values, memo)
    elif isinstance(expr, sp.Max):
        value = max(_numeric_value(a, values, memo) for a in expr.args)
    elif isinstance(expr, OperationFunction):
        value = float(expr.operation.numpy_eval(np.float64(_numeric_value(expr.args[0], values, memo))))
    elif isinstance(expr, sp.Function):
        args = [sp.Float(_numeric_value(a, values, memo)) for a in expr.args]
        value = float(expr.func(*args).evalf())
    else:
        value = float(expr.evalf(subs=values))
    memo[expr] = value
    return value


def difference_is_zero(difference: sp.Expr) -> bool:
    """True when ``difference`` is identically zero (see :class:`PolynomialView`)."""
    return PolynomialView([difference]).equal(difference, 0)


@dataclass
class ProofResult:
    """The verdict for one gradient key, and the first entry that differs when not proved."""

    key: str
    proved: bool
    entries: int
    seconds: float
    counterexample: str = ""


def _flatten(value) -> list:
    """A gradient as a list of entries (an input's gradient is one matrix per step)."""
    if isinstance(value, list):
        return [e for m in value for e in m]
    return list(value)


def prove_keys(cell: Cell, sizes: Mapping[str, int] | None = None, T: int = 3,
               derivation: Derivation | None = None) -> list[ProofResult]:
    """The proof, one :class:`ProofResult` per gradient key (see :func:`prove`).

    ``derivation`` may be given (a perturbed one, for testing that the proof catches it).
    """
    derivation = derivation or derive(cell)
    dims = dimension_values(cell, sizes)
    backend = _SympyScalars()
    problem = symbolic_problem(derivation, dims, T)
    variables = _variables(cell, problem)
    wrong_rules = _derivative_problems(derivation)
    if wrong_rules:
        return [ProofResult(key, False, 0, 0.0, wrong_rules) for key in variables]
    steps = run_forward(cell, derivation.forward, problem, backend, dims)
    L = loss(steps, problem, backend)
    derived = run_backward(derivation, steps, problem, backend, dims)
    true = {key: [sp.diff(L, s) for s in _flatten(symbols)] for key, symbols in variables.items()}
    left = {key: _flatten(derived[key]) for key in variables}
    compare = PolynomialView([e for k in variables for e in left[k] + true[k]])
    results = []
    for key, symbols in variables.items():
        began = time.monotonic()
        verdicts = [compare.equal(a, b) for a, b in zip(left[key], true[key])]
        wrong = [str(s) for s, ok in zip(_flatten(symbols), verdicts) if not ok]
        note = f"differs at ∂L/∂{wrong[0]}" + (f" and {len(wrong) - 1} more" if len(wrong) > 1
                                               else "") if wrong else ""
        results.append(ProofResult(key, not wrong, len(verdicts), time.monotonic() - began, note))
    return results


def _derivative_problems(derivation: Derivation) -> str:
    """Why the declared derivative of a pointwise operation the cell uses is wrong ("" if none)."""
    used: dict[type, None] = {}
    for eq in derivation.forward:
        used.update(dict.fromkeys(op for op in ops.operations(eq.expr)
                                  if issubclass(op, ops.Pointwise)))
    return "; ".join(p for p in (check_derivative(op) for op in used) if p)


def _variables(cell: Cell, problem: ExplicitProblem) -> dict[str, Any]:
    """The symbols each gradient key differentiates with respect to, in the kernel's order."""
    variables: dict[str, Any] = {adjoint_name(k): v for k, v in problem.parameters.items()}
    for i in cell.inputs:
        variables[adjoint_name(i)] = [problem.inputs[t][i] for t in range(problem.T)]
    for s in cell.states:
        variables[f"d{s}0"] = problem.initial_states[s]
    return variables


def prove(cell: Cell, sizes: Mapping[str, int] | None = None, T: int = 3,
          derivation: Derivation | None = None) -> dict[str, bool]:
    """Whether each derived gradient (``dWz``, …, ``dx``, ``dh0``) equals ∂L/∂· exactly.

    Sizes default to :data:`DEFAULT_SIZES` (every dimension 2, m = 1); T steps of full BPTT.
    """
    return {r.key: r.proved for r in prove_keys(cell, sizes, T, derivation)}


__all__ = [
    "DEFAULT_SIZES",
    "Backend",
    "EvaluationError",
    "Evaluator",
    "ExplicitProblem",
    "NumpyBackend",
    "OperationFunction",
    "PolynomialView",
    "ProofResult",
    "SympyBackend",
    "check_derivative",
    "concrete",
    "difference_is_zero",
    "dimension_values",
    "loss",
    "output_names",
    "output_shape",
    "prove",
    "prove_keys",
    "resolve_cell",
    "run_backward",
    "run_forward",
    "scalar_derivative",
    "scalar_function",
    "symbol_matrix",
    "symbolic_problem",
]
