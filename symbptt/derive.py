"""Reverse-mode derivation of one step of a cell, and what it means for a whole sequence.

The whole idea in one sweep: walk the lowered equations backwards; the adjoint of a value
is the sum of what flows into it from every place it is used (one :class:`Term` each);
each operation's VJP rule (:mod:`symbptt.ops`) turns a node's adjoint into its operands'.

Inputs of one step's backward are the gradients arriving from outside the step: for each
state ``s``, ``ds_next`` (from the loss at this step and from step t+1) and for each readout
``y``, ``dy``. Outputs are the adjoints of every intermediate, of the previous states
(``dh_prev``: the carry into step t−1), of the step's inputs (``dxt``) and each parameter's
contribution at this step; over a sequence the parameter gradients are these contributions
summed over time (and, inside each contribution, over the batch).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace

from sympy import MatrixSymbol, ZeroMatrix, preorder_traversal
from sympy.matrices.expressions.matexpr import MatrixExpr

from . import ops
from .cell import Cell, Equation, prev_name, step_name
from .graph import is_simple, lower


@dataclass(frozen=True)
class Term:
    """One contribution to an adjoint: ``expr`` flows in through equation ``via``."""

    expr: MatrixExpr
    via: str


@dataclass(frozen=True)
class Adjoint:
    """``symbol = incoming + Σ terms``: the adjoint (gradient of L) of the value ``target``."""

    target: str
    symbol: MatrixSymbol
    terms: tuple[Term, ...]
    incoming: MatrixSymbol | None = None

    @property
    def expr(self) -> MatrixExpr:
        parts = ([self.incoming] if self.incoming is not None else []) + [t.expr for t in self.terms]
        if not parts:
            return ZeroMatrix(*self.symbol.shape)
        return ops.add(*parts)


def adjoint_name(name: str) -> str:
    """``z`` → ``dz``: the adjoint's name in code (δz in reports)."""
    return f"d{name}"


@dataclass
class Derivation:
    """One cell's derived step: forward equations and the backward statements."""

    cell: Cell
    forward: list[Equation]
    #: Adjoints in the order they are computed: intermediates in reverse, then the
    #: previous states (the carry) and the inputs.
    backward: list[Adjoint]
    #: Each parameter's gradient contribution at one step (sum over time outside).
    parameters: list[Adjoint]
    #: Symbols of the gradients entering a step from outside (``dh_next``, ``dy``).
    incoming: dict[str, MatrixSymbol] = field(default_factory=dict)

    @property
    def carries(self) -> list[Adjoint]:
        """Adjoints of the previous states: what flows back to step t−1."""
        names = {prev_name(s) for s in self.cell.states}
        return [a for a in self.backward if a.target in names]

    @property
    def input_adjoints(self) -> list[Adjoint]:
        names = {step_name(i) for i in self.cell.inputs}
        return [a for a in self.backward if a.target in names]

    @property
    def intermediate_adjoints(self) -> list[Adjoint]:
        done = {a.target for a in self.carries + self.input_adjoints}
        return [a for a in self.backward if a.target not in done]

    def inlined(self) -> Derivation:
        """The same derivation with every ``shared_k`` written out where it is used: each
        adjoint as the chain rule gives it, for a reader (the kernels compute it once)."""
        shared = {a.symbol: a.expr for a in self.backward if a.terms and a.terms[0].via == SHARED}
        if not shared:
            return self

        def inline(expr):
            for _ in shared:  # a shared_k may use an earlier one
                expr = expr.xreplace(shared)
            return expr

        backward = [Adjoint(a.target, a.symbol, tuple(Term(inline(t.expr), t.via) for t in a.terms),
                            a.incoming) for a in self.backward if a.symbol not in shared]
        return replace(self, backward=backward)

    def equation(self, name: str) -> Equation:
        return next(e for e in self.forward if e.name == name)

    def _repr_latex_(self) -> str:
        """The adjoints as a notebook shows them: as the report prints them, no ``shared_k``."""
        from .notation import derivation_latex

        return derivation_latex(self.inlined())


def _without_readouts(forward: list[Equation]) -> list[Equation]:
    """The equations a next state depends on (readouts and what feeds only them dropped)."""
    needed: set[str] = set()
    kept = []
    for eq in reversed(forward):
        if eq.kind == "update" or eq.name in needed:
            kept.append(eq)
            needed |= {s.name for s in eq.expr.atoms(MatrixSymbol)}
    return kept[::-1]


def derive(cell: Cell, include_readouts: bool = True) -> Derivation:
    """Derive the step backward of ``cell`` by per-operation VJP rules.

    With ``include_readouts=False`` the readouts are left out, as in the notebook's
    one-step backward, whose only incoming gradients are those of the next states.
    """
    cell.validate()
    forward = lower(cell)
    if not include_readouts:
        forward = _without_readouts(forward)
    contributions: dict[str, list[Term]] = {}

    def walk(expr, G, out, via: str) -> None:
        if isinstance(expr, MatrixSymbol):
            contributions.setdefault(expr.name, []).append(Term(G, via))
            return
        if ops.is_leaf(expr):
            return
        for arg, grad in zip(expr.args, ops.vjp(expr, out, G)):
            if grad is not None and getattr(arg, "is_Matrix", False):
                walk(arg, grad, None, via)

    backward: list[Adjoint] = []
    incoming: dict[str, MatrixSymbol] = {}
    for eq in reversed(forward):
        var = MatrixSymbol(eq.name, *ops.shape_of(eq.expr))
        terms = tuple(contributions.get(eq.name, ()))
        if eq.kind == "readout":
            G = incoming[eq.name] = MatrixSymbol(adjoint_name(eq.name), *var.shape)
            if terms:
                raise ValueError(f"readout {eq.name} is used by another equation of the step")
        elif eq.kind == "update":
            arriving = incoming[eq.name] = MatrixSymbol(adjoint_name(eq.name) + "_next", *var.shape)
            if terms:
                G = MatrixSymbol(adjoint_name(eq.name), *var.shape)
                backward.append(Adjoint(eq.name, G, terms, arriving))
            else:
                G = arriving
        else:
            if not terms:
                continue  # nothing depends on it: its adjoint is zero
            G = MatrixSymbol(adjoint_name(eq.name), *var.shape)
            backward.append(Adjoint(eq.name, G, terms))
        walk(eq.expr, G, var, eq.name)

    for sym in cell.by_role("state", "input"):
        shape = (sym.shape[0], sym.shape[1])
        backward.append(Adjoint(sym.name, MatrixSymbol(adjoint_name(sym.name), *shape),
                                tuple(contributions.get(sym.name, ()))))
    parameters = [
        Adjoint(p.name, MatrixSymbol(adjoint_name(p.name), *p.shape),
                tuple(contributions.get(p.name, ())))
        for p in cell.parameters
    ]
    incoming = dict(reversed(list(incoming.items())))
    outside = {e.name for e in forward} - {e.name for e in _without_readouts(forward)}
    return Derivation(cell, forward, share_common(backward, outside), parameters, incoming)


def _compound_counts(backward: list[Adjoint], apart: AbstractSet[str]) -> dict:
    counts: dict = {}
    for adjoint in backward:
        for term in adjoint.terms:
            if term.via in apart:
                continue
            for node in preorder_traversal(term.expr):
                if getattr(node, "is_Matrix", False) and not is_simple(node):
                    counts[node] = counts.get(node, 0) + 1
    return counts


#: The ``via`` of a ``shared_k``'s one term: no equation, a subexpression computed once.
SHARED = "shared"


def share_common(backward: list[Adjoint], apart: set[str] | frozenset[str] = frozenset()) -> list[Adjoint]:
    """Compute a subexpression used more than once in a step's backward only once.

    The largest repeated subexpression (ties: first met) becomes ``shared_k``, computed just
    before the first statement that uses it; repeat until nothing compound repeats. Terms that
    flow in through an equation of ``apart`` (the readouts and what only they read, which a
    kernel runs for every step at once before its loop) are left whole: a ``shared_k`` is
    computed inside the loop, too late for them.
    """
    k = 0
    while True:
        counts = _compound_counts(backward, apart)
        repeated = [e for e, n in counts.items() if n > 1]
        if not repeated:
            return backward
        common = max(repeated, key=lambda e: (sum(1 for _ in preorder_traversal(e)), -list(counts).index(e)))
        k += 1
        symbol = MatrixSymbol(f"shared_{k}", *ops.shape_of(common))
        first = next(i for i, a in enumerate(backward)
                     if any(node == common for t in a.terms if t.via not in apart
                            for node in preorder_traversal(t.expr)))
        replaced = [Adjoint(a.target, a.symbol,
                            tuple(t if t.via in apart else Term(t.expr.xreplace({common: symbol}), t.via)
                                  for t in a.terms),
                            a.incoming) for a in backward]
        shared = Adjoint(symbol.name, symbol, (Term(common, SHARED),))
        backward = replaced[:first] + [shared] + replaced[first:]
