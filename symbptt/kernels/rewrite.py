"""Rewriting a cell for speed before it is planned: weight-times-stack products are split.

``W·[h_prev; xt]`` is ``W[:, :n_h]·h_prev + W[:, n_h:]·xt``. Where a stack only ever
multiplies weights (each used once), the stack is never built: the weight is split into
column blocks, and the split cell is derived again, so its backward is the derivation's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol

from .. import ops
from ..cell import Cell, Equation, Symbol
from ..derive import Derivation, derive


def terms_of(expr) -> tuple:
    """The terms of a sum (one term for anything else)."""
    return expr.args if isinstance(expr, MatAdd) else (expr,)


def uses(expr, name: str) -> int:
    """How often the symbol ``name`` occurs in ``expr``."""
    return sum(1 for node in sp.preorder_traversal(expr)
               if isinstance(node, MatrixSymbol) and node.name == name)


def names_in(expr) -> set[str]:
    """The names of the matrix symbols in ``expr``."""
    return {s.name for s in expr.atoms(MatrixSymbol)}


def product(term, weights: set[str]):
    """(weight, operand) for a term ``W·v`` (W one of ``weights``, v a symbol), else None."""
    if not isinstance(term, MatMul):
        return None
    coeff, factors = ops._matmul_split(term)
    if coeff != 1 or len(factors) != 2:
        return None
    w, v = factors
    if isinstance(w, MatrixSymbol) and w.name in weights and isinstance(v, MatrixSymbol):
        return w, v
    return None


@dataclass
class Block:
    """A column block of a split weight: ``weight[:, lo:hi]``, multiplying ``operand``."""

    weight: str
    lo: sp.Expr
    hi: sp.Expr
    operand: str


@dataclass
class Split:
    """The cell with its weight-times-stack products split by column blocks."""

    cell: Cell
    derivation: Derivation
    #: block weight name -> its column block of the original weight
    blocks: dict[str, Block] = field(default_factory=dict)
    #: original weight -> its block names, in column order
    split_weights: dict[str, list[str]] = field(default_factory=dict)


def _eliminable_stacks(derivation: Derivation, weights: set[str]) -> dict[str, tuple]:
    """Stacks whose every use is ``W·stack`` with a weight used nowhere else."""
    forward = derivation.forward
    weight_uses = {w: sum(uses(e.expr, w) for e in forward) for w in weights}
    found = {}
    for eq in forward:
        if not (isinstance(eq.expr, ops.Stack) and eq.kind == "let"):
            continue
        total = sum(uses(e.expr, eq.name) for e in forward)
        products = [product(t, weights) for e in forward for t in terms_of(e.expr)]
        as_operand = [pv[0].name for pv in products
                      if pv and pv[1].name == eq.name and weight_uses[pv[0].name] == 1]
        if total and len(as_operand) == total and all(isinstance(p, MatrixSymbol)
                                                      for p in eq.expr.args):
            found[eq.name] = (eq, as_operand)
    return found


def _block_name(weight: str, part: str, taken: set[str]) -> str:
    name, k = f"{weight}_{part}", 2
    while name in taken:
        name, k = f"{weight}_{part}_{k}", k + 1
    taken.add(name)
    return name


def _split_weights(split: Split, eliminable: dict, taken: set[str]) -> dict:
    """Block names for every weight that multiplies an eliminable stack; the replacement
    terms of each (weight, stack) product."""
    replace = {}
    for name, (eq, ws) in eliminable.items():
        for w in ws:
            wsym = split.cell.symbols[w]
            blocks = []
            for part, (lo, hi) in zip(eq.expr.args, eq.expr.offsets()):
                bname = _block_name(w, part.name, taken)
                split.blocks[bname] = Block(w, lo, hi, part.name)
                blocks.append(MatMul(MatrixSymbol(bname, wsym.shape[0], hi - lo), part))
            split.split_weights[w] = [b for b, v in split.blocks.items() if v.weight == w]
            replace[(w, name)] = blocks
    return replace


def _rewritten(cell: Cell, split: Split, forward, eliminable, replace, weights) -> Cell:
    new = Cell(cell.name, cell.doc)
    new.dimensions = dict(cell.dimensions)
    for key, sym in cell.symbols.items():
        for b in split.split_weights.get(key, [key]):
            block = split.blocks.get(b)
            new.symbols[b] = sym if block is None else Symbol(
                b, "weight", (sym.shape[0], block.hi - block.lo))
    for e in forward:
        if e.name in eliminable:
            continue
        expr = e.expr
        keys = [(pv[0].name, pv[1].name) if pv else None
                for pv in (product(t, weights) for t in terms_of(expr))]
        if any(k in replace for k in keys):
            expr = ops.add(*[x for t, k in zip(terms_of(expr), keys) for x in replace.get(k, [t])])
        new.equations.append(Equation(e.name, expr, e.kind, e.meaning, e.latex, e.auto))
        if e.kind in ("let", "readout") and e.name not in new.symbols:
            new.symbols[e.name] = Symbol(e.name, "intermediate", ops.shape_of(expr))
    return new


def split_cell(derivation: Derivation) -> Split:
    """Rewrite ``W·[a; b]`` as ``W_a·a + W_b·b`` wherever a stack only multiplies weights."""
    cell = derivation.cell
    weights = {p.name for p in cell.parameters if p.role == "weight"}
    split = Split(cell, derivation)
    eliminable = _eliminable_stacks(derivation, weights)
    if not eliminable:
        return split
    taken = set(cell.symbols) | {e.name for e in derivation.forward}
    replace = _split_weights(split, eliminable, taken)
    split.cell = _rewritten(cell, split, derivation.forward, eliminable, replace, weights)
    split.derivation = derive(split.cell)
    return split
