"""Derivation reports: one cell's BPTT, step by step, as LaTeX (and PDF through :mod:`.pdf`).

The report prints the very expressions the generated kernel executes: every equation comes
from the cell's :class:`~symbptt.derive.Derivation` through :mod:`symbptt.printers`, and the
final summary lists exactly the kernel's backward statements (``Adjoint.expr``). This module
builds plain data (strings of LaTeX mathematics, in a deterministic order); the prose is
per-language template text (``templates/lang_<lang>.j2``) and the layout is
``templates/report.tex.j2``, so the mathematics is shared by every language.

Two entry points for the command line:

* :func:`report_tex` (pure): the .tex text of one derivation;
* :func:`write_report`: writes the .tex atomically and, if asked, compiles the PDF.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import sympy as sp
from sympy import HadamardProduct, MatAdd, MatrixSymbol

from . import ops
from .cell import Cell, Equation, prev_name, step_name
from .derive import Adjoint, Derivation, derive
from .notation import Notation, canonical, escape_tex, latex_printer
from .printers import TextbookLatexPrinter, latex_terms
from .render import TEMPLATES, environment, text
from .report_figure import figure, inline_printed
from .report_order import expanded, ordered
from .report_params import entry_row, weight_blocks
from .report_steps import (
    calculus_label,
    calculus_rows,
    entrywise_rows,
    names_table,
    softmax_rows,
    variant_context,
)

#: Languages a report can be written in (prose per language, mathematics shared).
LANGS = ("en", "es")

#: Sections of every report, in order; their titles are ``titles`` in ``lang_<lang>.j2``.
SECTIONS = ("forward", "symbols", "diagram", "loss", "backward", "parameters", "truncated",
            "plot", "summary")

#: A displayed line longer than this (in visible characters, see :func:`visible_length`)
#: is broken between the terms of its sum.
LINE_WIDTH = 58

#: The random instance of the gradient-norm plot: sequence length, sizes, seed.
PLOT_T = 50
PLOT_DIMS = {"n_x": 8, "n_h": 16, "n_y": 5}
PLOT_SEED = 2024


class TemplateError(ValueError):
    """A report template that cannot be rendered; the message names the template and line."""


# --------------------------------------------------------------------------------------
# Equation layout
# --------------------------------------------------------------------------------------


def visible_length(latex: str) -> int:
    """Roughly how many characters a LaTeX formula shows (for deciding where to break).

    Sizing and font commands show nothing, other control words one glyph; subscripts and
    superscripts count half, since they are set small.
    """
    s = re.sub(r"\\(left|right|mathbf|boldsymbol|operatorname|mathrm|tilde|hat|bar|,|!|quad)"
               r"(?![a-zA-Z])", "", latex)
    small = sum(len(m) for m in re.findall(r"[_^]\{([^{}]*)\}", s))
    s = re.sub(r"\\[a-zA-Z]+", "x", s)
    s = re.sub(r"[{}\s_^]", "", s)
    return len(s) - small // 2


def pack(pieces: list[str], width: int = LINE_WIDTH, first_width: int | None = None) -> list[str]:
    """Greedily group the signed terms of a sum into lines no wider than ``width``."""
    lines: list[str] = []
    limit = width if first_width is None else first_width
    for piece in pieces:
        if lines and visible_length(lines[-1] + piece) <= limit:
            lines[-1] += " " + piece
        else:
            if lines:
                limit = width
            lines.append(piece)
    return lines


def rows(lhs: str, pieces: list[str], *, label: str | None = None, prefix: str = "",
         note: str = "") -> list[str]:
    """The rows of one ``align`` equation ``lhs = pieces``, long sums broken across lines.

    The first row carries ``lhs &=``; continuation rows start with ``&\\quad``. Only the last
    row is numbered (with ``label``); ``note`` goes to its right (an ``\\eqref`` or text).
    """
    lines = pack(pieces, first_width=LINE_WIDTH - visible_length(lhs) // 2)
    out = []
    for i, line in enumerate(lines):
        head = rf"{lhs} &= {prefix}" if i == 0 else r"&\quad "
        body = head + line
        last = i == len(lines) - 1
        if last and note:
            body += rf" && {note}"
        body += rf" \label{{{label}}}" if last and label else r" \nonumber"
        out.append(body)
    return out


def cont_rows(pieces: list[str], *, label: str | None = None, note: str = "") -> list[str]:
    """Rows continuing an equation (``&= …``), broken like :func:`rows`."""
    return [r.replace(" &= ", "&= ", 1) for r in rows("", pieces, label=label, note=note)]


def compact(latex: str) -> str:
    """``∂L/∂W`` with a slash, so that lists of gradients keep one line per row."""
    match = re.fullmatch(r"\\frac\{\\partial L\}\{(.*)\}", latex)
    return rf"\partial L / {match.group(1)}" if match else latex


def label_of(kind: str, name: str) -> str:
    """A LaTeX label for an equation: letters and digits only, stable across runs."""
    return f"eq:{kind}:{re.sub(r'[^A-Za-z0-9]', '-', name)}"


# --------------------------------------------------------------------------------------
# Pieces of the context
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Printers:
    """The LaTeX printers of one derivation: at step t and one step later (t+1)."""

    now: TextbookLatexPrinter
    next: TextbookLatexPrinter

    @classmethod
    def of(cls, derivation: Derivation) -> Printers:
        return cls(latex_printer(derivation), latex_printer(derivation, shift=1))

    def sym(self, name: str) -> str:
        return self.now.symbol_latex(name)

    def expr(self, expr) -> str:
        return self.now.doprint(expr)

    def terms(self, expr) -> list[str]:
        return latex_terms(self.now, expr)


def shown_forward(derivation: Derivation) -> list[Equation]:
    """Forward equations a reader needs: named pre-activations and the cell's own values.

    Stacks and products the lowering named print as their own definition (``[h_{t−1}; x_t]``),
    so an equation for them would read ``[h; x] = [h; x]``; those are left out.
    """
    return [e for e in derivation.forward if not e.auto or e.name.startswith("a_")]


def shape_latex(p: Printers, shape) -> str:
    """A shape as ``n_{h} \\times m``."""
    def side(n) -> str:
        text = p.expr(sp.sympify(n))
        return rf"({text})" if isinstance(sp.sympify(n), sp.Add) else text

    return rf"{side(shape[0])} \times {side(shape[1])}"


def forward_context(d: Derivation, p: Printers) -> dict:
    """The step's forward equations, numbered, with labels the backward section cites."""
    eqs = []
    for e in shown_forward(d):
        eqs.extend(rows(p.sym(e.name), forward_terms(d, p, e.expr), label=label_of("fwd", e.name)))
    return {"rows": eqs}


def forward_terms(d: Derivation, p: Printers, expr) -> list[str]:
    """A forward sum's terms in the order the cell file writes them (SymPy's without source)."""
    if not isinstance(expr, MatAdd):
        return p.terms(expr)
    sums = [written for sums in d.cell.term_order.values() for written in sums]
    terms = ordered(expr.args, sums, lambda t: canonical(expanded(d, t)))
    if terms == list(expr.args):
        return p.terms(expr)
    pieces = [p.expr(t) for t in terms]
    return [pieces[0], *signed(pieces[1:])]


def symbol_rows(d: Derivation, p: Printers) -> list[dict]:
    """One row per symbol of the report: its LaTeX, shape and what it means.

    ``meaning`` is the cell's own English text (templates translate known phrases);
    ``kind`` lets a template phrase generated meanings (pre-activations, targets) itself.
    """
    cell = d.cell
    out = []

    def add(latex: str, shape, kind: str, meaning: str = "", of: str = "") -> None:
        out.append({"latex": latex, "shape": shape_latex(p, shape), "kind": kind,
                    "meaning": meaning, "of": of})

    for sym in cell.by_role("input"):
        add(p.sym(sym.name), sym.shape, "input", sym.meaning)
    for sym in cell.by_role("state"):
        add(p.sym(sym.name), sym.shape, "previous", sym.meaning)
    for sym in cell.parameters:
        add(p.sym(sym.name), sym.shape, sym.role, sym.meaning)
    for e in shown_forward(d):
        shape = ops.shape_of(e.expr)
        if e.name.startswith("a_") and e.auto:
            target = e.name[2:]
            add(p.sym(e.name), shape, "preactivation", of=p.sym(target) if target in
                {q.name for q in d.forward} else escape_tex(target))
        elif e.kind == "update":
            add(p.sym(e.name), shape, "next", e.meaning or cell.symbols[prev_name(e.name)].meaning)
        else:
            add(p.sym(e.name), shape, "readout" if e.kind == "readout" else "intermediate", e.meaning)
    for latex, meaning, expr in inline_printed(d).values():
        add(rf"{latex}_{{t}}", ops.shape_of(expr), "printed", meaning, of=p.expr(expr))
    for name in cell.readouts:
        shape = ops.shape_of(d.equation(name).expr)
        add(target_latex(name), shape, "target", of=p.sym(name))
    for state, sym in d.incoming.items():
        if state in cell.states:
            add(p.expr(sym), sym.shape, "incoming", of=p.sym(state))
    return out


def target_latex(readout: str) -> str:
    """The ground truth a readout ŷ is compared with: **y**_t (one-hot labels)."""
    letter = readout[0]
    rest = readout[1:].replace("_", "")
    return rf"\mathbf{{{letter}}}_{{{rest + ',' if rest else ''}t}}"


# --------------------------------------------------------------------------------------
# Backward: chain rule term by term
# --------------------------------------------------------------------------------------


def _adjoint_symbols(d: Derivation, p: Printers) -> dict[str, str]:
    """LaTeX of the adjoint of every value that receives one (δz, ε for bare next states)."""
    out = {name: p.expr(sym) for name, sym in d.incoming.items()}
    out.update({a.target: p.expr(a.symbol) for a in d.backward})
    return out


def _via_note(d: Derivation, p: Printers, via: str) -> str:
    """Where a term comes from: the number of the forward equation using the value."""
    if any(e.name == via for e in shown_forward(d)):
        return rf"\eqref{{{label_of('fwd', via)}}}"
    return rf"${p.sym(via)}$"


def _chain_factor(d: Derivation, p: Printers, adj: dict[str, str], target: str, via: str) -> str:
    """One use's chain-rule factor: ``δv ⊙ f'(u)`` for an activation, else ``(∂v/∂u)ᵀ δv``."""
    expr = d.equation(via).expr
    u = p.sym(target)
    if isinstance(expr, ops.Pointwise) and getattr(expr.arg, "name", None) == target:
        return rf"{adj[via]} \odot {expr.latex_name}'\!\left({u}\right)"
    v = p.sym(via)
    return rf"\left(\frac{{\partial {v}}}{{\partial {u}}}\right)^{{\!\top}} {adj[via]}"


def _activation(d: Derivation, p: Printers, adj: dict[str, str], a: Adjoint) -> dict | None:
    """For a value fed to an activation: its derivative, expanded, in terms of the operand.

    Returns the scalar identity (``dσ(u)/du = σ(u)(1 − σ(u))``) and the term with the
    derivative written in the operand (``δz ⊙ σ(a_z) ⊙ (1 − σ(a_z))``); the simplified
    form in forward values is the term itself, as the kernel computes it.
    """
    for term in a.terms:
        node = d.equation(term.via).expr
        if isinstance(node, ops.Pointwise) and getattr(node.arg, "name", None) == a.target:
            expanded = ops.hadamard(MatrixSymbol("__G__", *node.shape), node.derivative(node))
            body = p.expr(expanded).replace(r"\mathrm{\_\_G\_\_}", adj[term.via])
            return {
                "name": node.latex_name,
                "identity": rf"\frac{{d\,{node.latex_name}(u)}}{{du}} = {node.latex_derivative}",
                "expanded": body,
                "value": p.sym(term.via),
                "reuses": _reuses_output(node, term.via),
                "term": term,
            }
    return None


def _reuses_output(node: ops.Pointwise, name: str) -> bool:
    """True when the activation's derivative is written with its own output (σ, tanh, exp)."""
    out = MatrixSymbol(name, *node.shape)
    return name in {s.name for s in node.derivative(out).atoms(MatrixSymbol)}


def _softmax(d: Derivation, p: Printers, a: Adjoint) -> dict | None:
    """Softmax followed by cross-entropy: the general term and its collapse to ŷ − y."""
    for term in a.terms:
        eq = d.equation(term.via)
        if isinstance(eq.expr, ops.Softmax) and eq.kind == "readout":
            yhat = p.sym(eq.name)
            y = target_latex(eq.name)
            dy = p.expr(d.incoming[eq.name])
            return {"yhat": yhat, "y": y, "dy": dy, "delta": p.expr(a.symbol), "a": p.sym(a.target),
                    **softmax_rows(yhat, y, p.sym(a.target), dy)}
    return None


def step_context(d: Derivation, p: Printers, adj: dict[str, str], a: Adjoint, via: str) -> dict:
    """One adjoint derived as a student writes it: chain rule, terms, activation, result.

    Rows: the chain rule with one factor per equation using the value; the terms, one per
    use (a value used twice in one equation gives two terms), each with the equation it
    comes from; the activation's derivative expanded in its operand; the simplified result,
    exactly the kernel's statement. A row equal to the one before it is left out.
    """
    lhs = p.expr(a.symbol)
    incoming = [p.expr(a.incoming)] if a.incoming is not None else []
    vias = list(dict.fromkeys(t.via for t in a.terms))
    chain = incoming + [_chain_factor(d, p, adj, a.target, v) for v in vias]
    out = rows(lhs, [chain[0], *signed(chain[1:])] if chain else [r"\mathbf{0}"])
    notes = [rf"\text{{{via} {_via_note(d, p, t.via)}}}" for t in a.terms]
    if len(a.terms) > 1:
        uses = incoming + [p.expr(t.expr) for t in a.terms]
        use_notes = [""] * len(incoming) + notes
        for i, (use, note) in enumerate(zip(uses, use_notes)):
            piece = use if i == 0 else signed([use])[0]
            head = "&= " if i == 0 else r"&\quad "
            out.append(head + piece + (f" && {note}" if note else "") + r" \nonumber")
    activation = _activation(d, p, adj, a)
    if activation:
        parts = incoming + [activation["expanded"] if t is activation["term"] else p.expr(t.expr)
                            for t in a.terms]
        out += cont_rows([parts[0], *signed(parts[1:])])
    single_note = notes[0] if len(a.terms) == 1 else ""
    out += cont_rows(p.terms(a.expr), label=label_of("bwd", a.target), note=single_note)
    if activation:
        activation = {k: v for k, v in activation.items() if k != "term"}
    if activation:
        activation["label"] = calculus_label(activation["name"])
    return {"target": a.target, "latex": p.sym(a.target), "delta": lhs, "rows": _dedupe(out),
            "shape": shape_latex(p, a.symbol.shape), "activation": activation,
            "softmax": _softmax(d, p, a), **_meaning_of(d, a.target)}


def _dedupe(out: list[str]) -> list[str]:
    r"""Drop a row whose right-hand side the next ``&=`` row repeats.

    The later row is the one kept (it may carry the equation's label), under the earlier
    row's left-hand side when that row was the first. Equal terms of one sum (``&\quad +``
    rows, a value used twice the same way) are all kept.
    """
    kept: list[str] = []
    for row in out:
        if kept and "&=" in row and _rhs(kept[-1]) == _rhs(row):
            previous = kept.pop()
            lhs = previous.split("&=", 1)[0]
            row = lhs + row[row.index("&="):] if lhs.strip() else row
        kept.append(row)
    return kept


def _rhs(row: str) -> str:
    body = row.split("&=", 1)[-1] if "&=" in row else row.replace(r"&\quad", "", 1)
    body = re.sub(r"\\label\{[^}]*\}|\\nonumber|&&.*$", "", body)
    return body.strip()


def _meaning_of(d: Derivation, name: str) -> dict:
    """What a value is, for a template to phrase: a kind and the cell's English meaning."""
    cell = d.cell
    if name in {prev_name(s) for s in cell.states}:
        return {"kind": "previous", "meaning": cell.symbols[name].meaning}
    if name in {step_name(i) for i in cell.inputs}:
        return {"kind": "input", "meaning": cell.symbols[name].meaning}
    eq = d.equation(name)
    if eq.auto and name.startswith("a_"):
        return {"kind": "preactivation", "meaning": ""}
    if eq.auto:
        return {"kind": "auxiliary", "meaning": ""}
    if eq.kind == "update":
        return {"kind": "next", "meaning": eq.meaning or cell.symbols[prev_name(name)].meaning}
    return {"kind": "intermediate", "meaning": eq.meaning}


def parameter_context(d: Derivation, p: Printers) -> list[dict]:
    """Each parameter's gradient as a sum over time of its per-step contribution."""
    out = []
    sum_t = r"\sum\nolimits_{t=1}^{T} "
    for a in d.parameters:
        if not a.terms:
            body = rows(compact(p.expr(a.symbol)), [r"\mathbf{0}"], label=label_of("par", a.target))
        else:
            pieces = p.terms(a.expr)
            if len(pieces) > 1:
                pieces = [r"\Big(" + pieces[0]] + pieces[1:-1] + [pieces[-1] + r"\Big)"]
            body = rows(compact(p.expr(a.symbol)), pieces, prefix=sum_t, label=label_of("par", a.target))
        role = d.cell.symbols[a.target].role
        out.append({"name": escape_tex(a.target), "latex": p.sym(a.target), "role": role,
                    "rows": body, "entry": entry_row(d, p.now, a)})
    return out


# --------------------------------------------------------------------------------------
# Loss and BPTT, truncation
# --------------------------------------------------------------------------------------


def signed(pieces: list[str]) -> list[str]:
    """Pieces of a sum that follows another term, each with its sign (``+ a``, ``- b``).

    Every piece gets one: a chain of three or more uses once printed the later ones side by
    side, which read as a product (issue 9); the report round-trip test now catches that.
    """
    out = []
    for piece in pieces:
        if piece.startswith(("+ ", "- ")):
            out.append(piece)
        elif piece.startswith("-"):
            out.append(f"- {piece[1:].lstrip()}")
        else:
            out.append(f"+ {piece}")
    return out


def carry_latex(p: Printers, state: str) -> str:
    """The part of ∂L/∂s_t that flows back through step t+1: δ^{(t+1)}s_t (step t+1's carry)."""
    return p.next.symbol_latex(f"d{prev_name(state)}")


def direct_latex(state: str, time: str = "t") -> str:
    """The gradient of a loss placed directly on a state's output (``g_{h,t}``)."""
    return rf"\mathbf{{g}}_{{{state},{time}}}"


def recursion_context(d: Derivation, p: Printers) -> list[dict]:
    """For each state: what arrives at it from outside the step, written out one step later.

    ε_{s,t} = g_{s,t} + δs_t^{(t+1)}, where the carry δs_t^{(t+1)} is step t+1's equation for
    δs_{t−1} with every time index moved on by one (printed by the shifted printer).
    """
    out = []
    carries = {a.target: a for a in d.carries}
    for state in d.cell.states:
        carry = carries[prev_name(state)]
        eps = p.expr(d.incoming[state])
        rows_ = [rf"{eps} &= {direct_latex(state)} + {carry_latex(p, state)} \nonumber"]
        rows_ += rows(carry_latex(p, state), latex_terms(p.next, carry.expr),
                      label=label_of("rec", state))
        out.append({
            "state": state, "latex": p.sym(state), "eps": eps, "direct": direct_latex(state),
            "carry": carry_latex(p, state), "rows": rows_,
            "last": rf"{eps.replace(',t}', ',T}')} = {direct_latex(state, 'T')}",
            "label": label_of("rec", state),
        })
    return out


def loss_context(d: Derivation, p: Printers) -> dict:
    """The loss, what δh_t collects, and where each incoming gradient comes from."""
    cell = d.cell
    readouts = [{"latex": p.sym(r), "y": target_latex(r), "delta": p.expr(d.incoming[r]),
                 "loss": rf"L_t = -\mathbf{{1}}^{{\top}}\left({target_latex(r)} \odot "
                         rf"\log {p.sym(r)}\right)\mathbf{{1}}"}
                for r in cell.readouts]
    totals = []
    by_target = {a.target: a for a in d.backward}
    for state in cell.states:
        a = by_target.get(state)
        eps = p.expr(d.incoming[state])
        if a is not None:
            totals.append({"latex": p.sym(state), "rows": rows(p.expr(a.symbol), p.terms(a.expr)),
                           "collects": True})
        else:
            totals.append({"latex": p.sym(state),
                           "rows": [rf"\delta {p.sym(state)} &= {eps} \nonumber"],
                           "collects": False})
    return {"readouts": readouts, "totals": totals, "recursion": recursion_context(d, p)}


def truncation_context(d: Derivation, p: Printers) -> dict:
    """What truncated BPTT zeroes: the carries of the recursion at every k-th step."""
    cut = [rf"{r['eps']} &= {r['direct']} + \mathbb{{1}}[t \bmod k \neq 0]\,{r['carry']}"
           rf" \label{{{label_of('cut', r['state'])}}}" for r in recursion_context(d, p)]
    return {"cut": cut, "has_c": "c" in d.cell.states}


# --------------------------------------------------------------------------------------
# Gradient-norm plot
# --------------------------------------------------------------------------------------


def keep_gates(d: Derivation) -> list[dict]:
    """Sigmoid gates that weigh a previous state inside its own update (``z ⊙ h_{t−1}``).

    They open the additive path through time that lets gated cells keep a gradient alive;
    each entry names the state, the gate and the biases of the gate's pre-activation.
    """
    sigmoids = {e.name: e for e in d.forward if isinstance(e.expr, ops.Sigmoid)}
    found = []
    for eq in d.forward:
        if eq.kind != "update":
            continue
        terms = eq.expr.args if isinstance(eq.expr, MatAdd) else (eq.expr,)
        for term in terms:
            if not isinstance(term, HadamardProduct) or len(term.args) != 2:
                continue
            names = [getattr(f, "name", None) for f in term.args]
            if prev_name(eq.name) not in names:
                continue
            gate = names[1 - names.index(prev_name(eq.name))]
            if gate in sigmoids:
                pre = d.equation(sigmoids[gate].expr.arg.name).expr
                biases = sorted(b.column.name for b in pre.atoms(ops.Broadcast)
                                if d.cell.symbols[b.column.name].role == "bias")  # not a vector
                found.append({"state": eq.name, "gate": gate, "biases": biases})
    return found


def plot_state(cell: Cell) -> str:
    """The state whose gradient norm is plotted: ``h`` when the cell has one."""
    return "h" if "h" in cell.states else cell.states[0]


def gradient_norms(cell: Cell, steps: int = PLOT_T, seed: int = PLOT_SEED,
                   open_biases: dict[str, float] | None = None) -> list[float]:
    """‖δh_t‖ (Frobenius) for t = 0 … steps−1 on a random instance, loss at the last step only.

    The generated kernel gives ∂L/∂h_t as ``dh0`` of the same cell run from step t+1 with
    the states the full run had at t, so each point is computed by the kernel itself.
    The loss is the cross-entropy of the last readout against a random class (or, for a
    cell without readout, a fixed random linear function of the last hidden state).
    ``open_biases`` adds a constant to named biases (a gate held open), same instance else.
    """
    from .codegen import kernel_module

    kernel = kernel_module(cell)
    rng = np.random.default_rng(seed)
    dims = {k: PLOT_DIMS.get(k, 8) for k in kernel.DIMS}
    params = kernel.init_parameters(dims, rng)
    for name, shift in (open_biases or {}).items():
        params[name] = params[name] + shift
    n = kernel.rows(dims)
    x = rng.standard_normal((n[kernel.INPUTS[0]], 1, steps))
    outputs, _ = kernel.forward(params, x)
    upstream_last = _last_step_gradient(kernel, n, outputs, rng, plot_state(cell))
    norms = []
    for start in range(steps):
        init = {s: outputs[s][:, :, start - 1] for s in kernel.STATES} if start else {}
        out, cache = kernel.forward(params, x[:, :, start:], init)
        upstream = {}
        for name, g in upstream_last.items():
            full = np.zeros_like(out[name])
            full[:, :, -1] = g
            upstream[name] = full
        grads = kernel.backward(cache, upstream)
        norms.append(float(np.linalg.norm(grads[f"d{plot_state(cell)}0"])))
    return norms


def _last_step_gradient(kernel, n: dict, outputs: dict, rng, state: str) -> dict[str, np.ndarray]:
    """The loss's gradient at the last step: −y/ŷ (cross-entropy) or a random direction on h."""
    if kernel.READOUTS:
        name = kernel.READOUTS[0]
        yhat = outputs[name][:, :, -1]
        target = np.zeros_like(yhat)
        target[rng.integers(n[name]), 0] = 1.0
        return {name: -target / yhat}
    g = rng.standard_normal((n[state], 1))
    return {state: g / np.linalg.norm(g)}


#: Total bias added to a keeping gate for the plot's second curve: σ(3) ≈ 0.95.
OPEN_GATE_BIAS = 3.0


def curve(norms: list[float]) -> dict:
    """One curve of the plot: its coordinates and the numbers its reading quotes."""
    floor = 1e-300
    first, last = max(norms[0], floor), max(norms[-1], floor)
    per_step = (first / last) ** (1 / (len(norms) - 1))
    trend = "vanish" if per_step < 0.98 else "explode" if per_step > 1.02 else "steady"
    tenfold = math.log(10) / abs(math.log(per_step)) if trend != "steady" else 0.0
    return {"coords": " ".join(f"({t},{max(v, floor):.4e})" for t, v in enumerate(norms)),
            "per_step": f"{per_step:.3f}", "tenfold": f"{tenfold:.1f}", "trend": trend,
            "latex_first": _sci(first), "latex_last": _sci(last)}


def plot_context(d: Derivation, p: Printers) -> dict:
    """The plot's curves (random instance; same with the keeping gates held open)."""
    cell = d.cell
    base = curve(gradient_norms(cell))
    gates = keep_gates(d)
    opened = None
    if gates:
        shifts = {b: OPEN_GATE_BIAS / len(g["biases"]) for g in gates for b in g["biases"]}
        opened = curve(gradient_norms(cell, open_biases=shifts))
        opened.update({
            "gates": [{"gate": p.sym(g["gate"]), "state": p.sym(prev_name(g["state"])),
                       "biases": [p.sym(b) for b in g["biases"]]} for g in gates],
            "bias": f"{OPEN_GATE_BIAS:g}", "sigma": f"{1 / (1 + math.exp(-OPEN_GATE_BIAS)):.2f}",
        })
    notation = Notation(d)
    state = plot_state(cell)
    sym = {k: notation.value(state, time) for k, time in
           (("t", "t"), ("k", "k"), ("j", "j"), ("jm1", "j-1"), ("T", "T"))}
    return {"T": PLOT_T, "dims": dict(PLOT_DIMS), "seed": PLOT_SEED, **base, "open": opened,
            "sym": sym}


def _sci(value: float) -> str:
    """A number in LaTeX scientific notation with three significant digits."""
    mantissa, exponent = f"{value:.2e}".split("e")
    exp = int(exponent)
    return mantissa if exp == 0 else rf"{mantissa} \times 10^{{{exp}}}"


# --------------------------------------------------------------------------------------
# Summary: exactly the kernel's statements
# --------------------------------------------------------------------------------------


def summary_adjoints(d: Derivation) -> list[tuple[Adjoint, bool]]:
    """The backward statements the kernel executes, in its order; True marks Σ_t sums."""
    return [(a, False) for a in d.backward] + [(a, True) for a in d.parameters]


def summary_text(d: Derivation) -> list[str]:
    """The summary as the kernel's docstring writes it (``dz = dh ⊙ h_prev - …``)."""
    return [f"{a.symbol.name} = {'Σ_t ' if summed else ''}{text(a.expr)}"
            for a, summed in summary_adjoints(d)]


def summary_context(d: Derivation, p: Printers) -> list[str]:
    """The summary's rows: one numbered, possibly broken, equation per kernel statement."""
    out: list[str] = []
    for a, summed in summary_adjoints(d):
        if summed and not a.terms:
            out += rows(compact(p.expr(a.symbol)), [r"\mathbf{0}"], label=label_of("sum", a.symbol.name))
            continue
        pieces = p.terms(a.expr)
        if summed and len(pieces) > 1:
            pieces = [r"\Big(" + pieces[0]] + pieces[1:-1] + [pieces[-1] + r"\Big)"]
        out += rows(compact(p.expr(a.symbol)), pieces, prefix=r"\sum\nolimits_{t=1}^{T} " if summed else "",
                    label=label_of("sum", a.symbol.name))
    return out


# --------------------------------------------------------------------------------------
# Whole report
# --------------------------------------------------------------------------------------


def report_context(d: Derivation, lang: str = "en", source: str = "", via: str = "via") -> dict:
    """Everything ``templates/report.tex.j2`` prints for one derivation (plain data).

    ``via`` is the word that marks where a chain-rule term comes from (per language).
    """
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; choose one of {', '.join(LANGS)}")
    d = d.inlined()  # each adjoint as the chain rule gives it, no shared_k of the kernels
    p = Printers.of(d)
    adj = _adjoint_symbols(d, p)
    cell = d.cell
    return {
        "lang": lang,
        "cell": escape_tex(cell.name),
        "doc": cell.doc,
        "source": escape_tex(source),
        "sections": SECTIONS,
        "has_readout": bool(cell.readouts),
        "states": [{"name": s, "latex": p.sym(s), "prev": p.sym(prev_name(s))} for s in cell.states],
        "inputs": [{"name": i, "latex": p.sym(step_name(i))} for i in cell.inputs],
        "forward": forward_context(d, p),
        "symbols": symbol_rows(d, p),
        "diagram": figure(d, p.now),
        "diagram_back": figure(d, p.now, backward=True),
        "loss": loss_context(d, p),
        "steps": [step_context(d, p, adj, a, via) for a in d.intermediate_adjoints],
        "boundary": [step_context(d, p, adj, a, via) for a in d.carries + d.input_adjoints],
        "parameters": parameter_context(d, p),
        "calculus": calculus_rows(d),
        "entrywise": entrywise_rows(d, p.now),
        "blocks": weight_blocks(d, p.now),
        "names": [{**n, "latex": compact(n["latex"])} for n in names_table(d, p.now)],
        "variant": variant_context(d),
        "notebook_api": cell.notebook_api,
        "truncation": truncation_context(d, p),
        "plot": plot_context(d, p),
        "summary": summary_context(d, p),
    }


def _template_error(err: Exception, name: str) -> TemplateError:
    """A jinja2 error as ``<template>:<line>: <message>``."""
    if isinstance(err, jinja2.TemplateSyntaxError):
        where = f"{Path(err.filename or err.name or name).name}:{err.lineno}"
        return TemplateError(f"{where}: {err.message}")
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith(".j2")]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else name
    return TemplateError(f"{where}: {type(err).__name__}: {err}")


def translate(text: str, table: dict[str, str]) -> str:
    """A cell's English phrase in a report's language: exact entry, else longest prefix entry.

    Prefix entries end with a space (``"input weights of gate "``) and keep the rest of the
    phrase (the gate's letter); a phrase the table lacks stays as written.
    """
    if text in table:
        return table[text]
    prefixes = sorted((k for k in table if k.endswith(" ") and text.startswith(k)), key=len)
    return table[prefixes[-1]] + text[len(prefixes[-1]):] if prefixes else text


def report_environment(templates: Path | None = None) -> jinja2.Environment:
    """The templates' environment with the report's filters (``tex`` escapes, ``translate``)."""
    env = environment(templates or TEMPLATES)
    env.filters["tex"] = escape_tex
    env.filters["translate"] = translate
    return env


def report_tex(derivation: Derivation, lang: str = "en", source: str = "",
               templates: Path | None = None) -> str:
    """The report's LaTeX text (same derivation and language, same bytes).

    ``templates`` replaces the ``templates/`` directory (tests use it for broken templates).
    A template that cannot be rendered raises :class:`TemplateError` naming the file and line.
    """
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; choose one of {', '.join(LANGS)}")
    env = report_environment(templates)
    try:
        language: Any = env.get_template(f"lang_{lang}.j2").module  # the macros and sets of lang_*.j2
        words = language.words
        context = report_context(derivation, lang, source, via=words["via"])
        return env.get_template("report.tex.j2").render(**context)
    except jinja2.TemplateError as err:
        raise _template_error(err, "report.tex.j2") from None


def section_titles(lang: str = "en", templates: Path | None = None) -> dict[str, str]:
    """The titles of the report's sections in ``lang`` (as LaTeX source text)."""
    env = report_environment(templates)
    language: Any = env.get_template(f"lang_{lang}.j2").module
    return {k: str(v) for k, v in language.titles.items()}


def _derivation_of(spec) -> tuple[Derivation, str]:
    """A derivation and its source label from a Derivation, a Cell, a name or a path."""
    from .loader import load, resolve, source_label

    if isinstance(spec, Derivation):
        return spec, f"<cell {spec.cell.name}>"
    if isinstance(spec, Cell):
        return derive(spec), f"<cell {spec.name}>"
    path = resolve(str(spec))
    return derive(load(path)), source_label(path)


def write_atomic(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` through a temporary file and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(content)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_report(cell_spec_or_derivation, tex_path: str | Path, pdf_path: str | Path | None = None,
                 lang: str = "en", timeout: float = 120) -> Path:
    """Write a cell's report to ``tex_path`` and, if ``pdf_path`` is given, compile it there.

    ``cell_spec_or_derivation``: a built-in cell name (``"gru"``), a cell file's path, a
    :class:`Cell` or a :class:`Derivation`. The .tex is written atomically and kept even when
    LaTeX fails (:class:`~symbptt.pdf.LatexError`, naming the .tex line); a failed build
    never replaces an existing PDF. Returns the path of the last file written.
    """
    from .pdf import build_pdf

    derivation, source = _derivation_of(cell_spec_or_derivation)
    tex_path = Path(tex_path)
    write_atomic(tex_path, report_tex(derivation, lang, source))
    if pdf_path is None:
        return tex_path
    return build_pdf(tex_path, Path(pdf_path), timeout=timeout)


__all__ = ["LANGS", "SECTIONS", "TemplateError", "gradient_norms", "report_context", "report_tex",
           "section_titles", "summary_adjoints", "summary_text", "write_report"]
