"""The statements a kernel is made of, as data: what the planner emits and a printer prints.

A kernel section (set-up, loop body, after the loop) is a list of :data:`Statement`. Values
on the right-hand side are small expression trees (:data:`Value`): views of named arrays
with symbolic row ranges, SymPy matrix expressions over those views, matrix products,
calls and sums. Nothing here knows a library's spelling: :mod:`symbptt.kernels.array_printer`
turns the same plan into NumPy, CuPy or PyTorch code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Rows ``lo:hi`` of an axis of ``total`` rows; prints as ``:`` when it is all of them."""

    lo: sp.Expr
    hi: sp.Expr
    total: sp.Expr


@dataclass(frozen=True)
class Dim:
    """A size, as a symbolic expression of the cell's dimensions (``2*n_h``)."""

    expr: sp.Expr


@dataclass(frozen=True)
class Name:
    """A variable of the kernel (``dtype``, ``t``, ``h_seq``), or a literal index (``t + 1``)."""

    name: str


@dataclass(frozen=True)
class View:
    """``base[index…]``: an array, one step of a sequence buffer, a range of rows.

    Index items are names (``t``), :class:`Rows`, or ``":"``; trailing full slices are
    dropped, and a view of the whole array prints as its name.
    """

    base: str
    index: tuple = ()

    def rows(self, lo, hi, total) -> View:
        """The same view with one more axis: rows lo:hi of total."""
        return View(self.base, self.index + (Rows(sp.sympify(lo), sp.sympify(hi), sp.sympify(total)),))


@dataclass(frozen=True)
class Math:
    """A SymPy matrix expression whose symbols print as the given values (or their names)."""

    expr: sp.Basic
    names: tuple = ()  # ((symbol name, Value), …), sorted
    #: printed as an operand (parenthesized unless atomic)
    operand: bool = False

    @staticmethod
    def of(expr, names: dict | None = None, operand: bool = False) -> Math:
        return Math(expr, tuple(sorted((names or {}).items(), key=lambda kv: kv[0])), operand)


@dataclass(frozen=True)
class Product:
    """The matrix product ``a·b`` (``aᵀ·b`` when ``transpose_a``, ``a·bᵀ`` when ``transpose_b``)."""

    a: object
    b: object
    transpose_a: bool = False
    transpose_b: bool = False


@dataclass(frozen=True)
class Paren:
    """``(a)``: a value used as the operand of a method."""

    a: object


@dataclass(frozen=True)
class IsNone:
    """True when the optional array ``a`` is missing."""

    a: object


@dataclass(frozen=True)
class Not:
    """Logical negation of a flag."""

    a: object


@dataclass(frozen=True)
class TruncationCut:
    """True at a step where truncated BPTT stops the gradient: a multiple of ``truncate``."""


@dataclass(frozen=True)
class Transposed:
    """``a`` with its axes permuted (``axes`` of the underlying library's transpose)."""

    a: object
    axes: tuple = ()


@dataclass(frozen=True)
class Sum:
    """``a + b + …`` (in parentheses with ``paren``)."""

    terms: tuple
    paren: bool = False


@dataclass(frozen=True)
class Scaled:
    """``coeff · a`` for a number coeff (the halved σ rows)."""

    coeff: object
    a: object


@dataclass(frozen=True)
class Call:
    """A call of one of the kernel's own helpers or of the array library (by role name).

    ``fn`` is a role the printer maps to a spelling: ``concat`` (rows), ``concat_cols``,
    ``zeros``, ``empty``, ``workspace``, ``matmul``, ``flat``, ``upstream``, ``reshape_steps``
    (a (rows, T·m) matrix as a (T, rows, m) view), ``rowsum`` (over batch and steps),
    ``copy``, … (see :class:`~symbptt.kernels.array_printer.ArrayPrinter`).
    """

    fn: str
    args: tuple = ()
    kwargs: tuple = ()


@dataclass(frozen=True)
class IfElse:
    """``then if condition else otherwise``."""

    then: object
    condition: object
    otherwise: object


@dataclass(frozen=True)
class StepRange:
    """Steps ``first … first + count`` of a (T, rows, m) buffer's leading axis."""

    first: object
    count: object


@dataclass(frozen=True)
class StepColumns:
    """The columns of steps ``first … first + count`` in a (rows, T·m) matrix."""

    first: object
    count: object


@dataclass(frozen=True)
class ChunkSlot:
    """Where step t sits in its chunk of ``size`` steps (its column of the chunk's buffer)."""

    size: object


@dataclass(frozen=True)
class ChunkStart:
    """True at the first step of a chunk of ``size`` steps (the last one the backward visits)."""

    size: object


@dataclass(frozen=True)
class Shape:
    """An array shape: a tuple of sizes (:class:`Dim` or :class:`Name`)."""

    dims: tuple


Value = (Rows | Dim | Name | View | Math | Product | Paren | IsNone | Not | TruncationCut | Transposed
         | Sum | Scaled | Call | IfElse | StepRange | StepColumns | ChunkSlot | ChunkStart | Shape | str)

# --------------------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment:
    """A line of explanation (usually the equation the next statements implement); ``{}`` in
    the text stand for ``values``, printed as the kernel spells them."""

    text: str
    values: tuple = ()


@dataclass(frozen=True)
class Assign:
    """``target = value`` (several targets and values for a tuple assignment); a note ends
    the line as a comment. With ``chain``, ``target = chain = value``."""

    targets: tuple
    values: tuple
    note: str = ""
    chain: object = None


@dataclass(frozen=True)
class Update:
    """An elementwise update of an existing array: ``target op= value`` (op one of
    ``= + - *``; ``=`` writes into the array, it does not rebind the name)."""

    target: View
    op: str
    value: object
    note: str = ""


@dataclass(frozen=True)
class MatMulInto:
    """The matrix product a·b written into the existing array ``out``."""

    out: View
    a: object
    b: object


@dataclass(frozen=True)
class ApplyInPlace:
    """An elementwise function applied to rows, overwriting them: ``f(v, out=v)``; or, with
    ``source``, ``f(source, out=target)``. ``fn`` is the operation's ``op_name`` (``tanh``);
    the printer spells it for its library."""

    fn: str
    target: View
    source: object = None


@dataclass(frozen=True)
class MultiplyInto:
    """``out = a ⊙ b`` written into the existing array ``out``."""

    out: View
    a: object
    b: object


@dataclass(frozen=True)
class When:
    """Statements that run only when ``condition`` holds (a chunk of steps is complete)."""

    condition: object
    body: tuple


@dataclass(frozen=True)
class Release:
    """``del`` of arrays no later statement reads, so that their memory is freed early."""

    names: tuple
    note: str = ""


@dataclass(frozen=True)
class ForChunks:
    """Statements run once per chunk of ``size`` steps, first chunk first; ``t`` is the
    chunk's first step."""

    size: object
    body: tuple


Statement = (Comment | Assign | Update | MatMulInto | ApplyInPlace | MultiplyInto | When | ForChunks
             | Release)


def assign(target: str, value, note: str = "") -> Assign:
    """``target = value``."""
    return Assign((target,), (value,), note)


@dataclass
class Section:
    """Statements of one part of a kernel, and the names they define."""

    statements: list = field(default_factory=list)

    def add(self, *statements) -> None:
        self.statements.extend(statements)
