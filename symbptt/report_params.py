"""Every parameter's gradient entry by entry, and the blocks of a weight that reads a stack.

A report derives one weight's and one bias's gradient in full (:mod:`symbptt.report_steps`);
this module gives every other parameter the same entry-wise line, so that each gradient of
the list visibly follows from the rule ``∂L/∂W_ij = Σ_t Σ_n [δa]_{in} [u]_{jn}``:

* :func:`entry_row`: one parameter's gradient entry by entry (weights, biases, per-unit
  vectors), labelled ``eq:ent:…`` (the round-trip check skips entry-wise lines);
* :func:`weight_blocks`: a weight that multiplies a stack ``[h_{t−1}; x_t]`` split into the
  blocks that act on each part (``W_z = [U_z  W_{xz}]``), and the slices of the stack's
  gradient written with those blocks, labelled ``eq:blk:…``.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import HadamardProduct, MatMul, MatrixSymbol, Transpose

from . import ops
from .derive import Adjoint, Derivation

_SUMS = r"\sum\nolimits_{t=1}^{T} \sum\nolimits_{n=1}^{m} "


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", name)


def _entry(printer, expr, index: str) -> str:
    """``[expr]_{index}`` (brackets only around a composite expression)."""
    text = printer.doprint(expr)
    return rf"\left[{text}\right]_{{{index}}}"


def _term_entries(printer, term) -> str | None:
    """One term of a parameter's per-step gradient, entry by entry (None: no rule for it)."""
    if isinstance(term, MatMul):
        factors = [f for f in term.args if f.is_Matrix]
        if len(factors) == 2 and isinstance(factors[1], Transpose):
            return rf"{_entry(printer, factors[0], 'in')}\, {_entry(printer, factors[1].arg, 'jn')}"
    if isinstance(term, ops.BatchSum):
        inner = term.args[0]
        if isinstance(inner, HadamardProduct):
            return r"\, ".join(_entry(printer, f, "in") for f in inner.args)
        return _entry(printer, inner, "in")
    return None


def entry_row(d: Derivation, printer, a: Adjoint) -> str:
    """``[∂L/∂P]_{ij} = Σ_t Σ_n …`` for one parameter, or "" when a term has no entry rule."""
    if not a.terms:
        return ""
    entries = [_term_entries(printer, t.expr) for t in a.terms]
    parts = [p for p in entries if p is not None]
    if len(parts) < len(entries):
        return ""
    body = " + ".join(parts)
    if len(parts) > 1:
        body = rf"\Bigl({body}\Bigr)"
    weight = d.cell.symbols[a.target].role == "weight"
    index = "ij" if weight else "i"
    lhs = rf"\left[\partial L / \partial {printer.symbol_latex(a.target)}\right]_{{{index}}}"
    return rf"{lhs} &= {_SUMS}{body} \label{{eq:ent:p-{_label(a.target)}}}"


# --------------------------------------------------------------------------------------
# Blocks of weights that multiply a stack
# --------------------------------------------------------------------------------------


def _stack_users(d: Derivation) -> dict[str, list[Adjoint]]:
    """For each stack the derivation named, the weights whose gradient is ``δa · stackᵀ``."""
    stacks = {e.name for e in d.forward if e.auto and isinstance(e.expr, ops.Stack)}
    users: dict[str, list[Adjoint]] = {}
    for a in d.parameters:
        for t in a.terms:
            factors = [f for f in t.expr.args if getattr(f, "is_Matrix", False)] \
                if isinstance(t.expr, MatMul) else []
            if len(factors) == 2 and isinstance(factors[1], Transpose) \
                    and getattr(factors[1].arg, "name", None) in stacks:
                users.setdefault(factors[1].arg.name, []).append(a)
    return users


def _block_name(d: Derivation, printer, weight: str, part, k: int) -> str:
    """A block's LaTeX: ``U_z`` for the recurrent part, ``W_{xz}`` for an input, else ``W_z^{(k)}``."""
    base = printer.symbol_latex(weight)
    match = re.fullmatch(r"\\mathbf\{W\}_\{(.+)\}", base)
    names = {s.name for s in part.atoms(MatrixSymbol)}
    recurrent = any(n.endswith("_prev") for n in names) or any(
        n in d.cell.states or n.endswith("_prev") for e in d.forward if e.name in names
        for n in (s.name for s in e.expr.atoms(MatrixSymbol)))
    inputs = {f"{i}t" for i in d.cell.inputs}
    if match and names <= inputs and len(names) == 1:
        letter = next(iter(names))[:-1]
        return rf"\mathbf{{W}}_{{{letter}{match.group(1)}}}"
    if match and recurrent and not names & inputs:
        return rf"\mathbf{{U}}_{{{match.group(1)}}}"
    return rf"{base}^{{({k + 1})}}"


def weight_blocks(d: Derivation, printer) -> list[dict]:
    """Each stack's weights split into blocks, and its gradient's slices through them.

    Returns one entry per stack: ``splits`` (``W_z = [U_z  W_{xz}]`` and what each block
    multiplies) and ``rows`` (``[δu_t]_{1:n_h} = U_zᵀ δa_{z,t} + U_rᵀ δa_{r,t}``).
    """
    out = []
    forward = {e.name: e for e in d.forward}
    for stack, users in _stack_users(d).items():
        parts = forward[stack].expr.args
        starts = [sp.Integer(0)]
        for part in parts:
            starts.append(starts[-1] + part.shape[0])
        splits, rows, names = [], [], {}
        taken = {printer.symbol_latex(q.name) for q in d.cell.parameters}
        for a in users:
            names[a.target] = [_block_name(d, printer, a.target, part, k) for k, part in enumerate(parts)]
            if len(set(names[a.target])) != len(parts) or set(names[a.target]) & taken:
                return []
            splits.append(rf"{printer.symbol_latex(a.target)} &= \bigl[\, "
                          + r" \;\; ".join(names[a.target]) + r" \,\bigr] \label{eq:blk:" + _label(a.target) + "}")
        delta = printer.doprint(MatrixSymbol(f"d{stack}", *forward[stack].expr.shape))
        for k, part in enumerate(parts):
            lo, hi = printer.doprint(starts[k] + 1), printer.doprint(starts[k + 1])
            terms = " + ".join(rf"{names[a.target][k]}^{{\top}} {printer.doprint(_pre_delta(a))}"
                               for a in users)
            rows.append(rf"\left[{delta}\right]_{{{lo}:{hi}}} &= {terms} "
                        rf"\label{{eq:blk:{_label(stack)}-{k + 1}}}")
        out.append({"stack": printer.doprint(MatrixSymbol(stack, *forward[stack].expr.shape)),
                    "parts": [printer.doprint(p) for p in parts], "splits": splits, "rows": rows,
                    "products": _products(printer, users, names, parts)})
    return out


def _pre_delta(a: Adjoint):
    """The δa of a weight's gradient ``δa · uᵀ``."""
    return next(f for f in a.terms[0].expr.args if getattr(f, "is_Matrix", False))


def _products(printer, users: list[Adjoint], names: dict, parts) -> str:
    """``W_z u_t = U_z h_{t−1} + W_{xz} x_t`` for the first weight (what the blocks mean)."""
    a = users[0]
    stack = a.terms[0].expr.args[-1].arg
    rhs = " + ".join(f"{names[a.target][k]} {printer.doprint(p)}" for k, p in enumerate(parts))
    return rf"{printer.symbol_latex(a.target)} {printer.doprint(stack)} = {rhs}"


__all__ = ["entry_row", "weight_blocks"]
