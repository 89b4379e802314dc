"""The execution plan of a sequence kernel: which work runs before, inside and after the loop.

A step's equations are written for one time step; run naively, every matrix product is a
small product per step and every elementwise operation a separate pass. The plan rearranges
the same arithmetic, decided from the cell's graph (no cell is special):

* **Split stacks.** ``W·[h_prev; xt]`` is ``W[:, :n_h]·h_prev + W[:, n_h:]·xt``: a stack that
  only ever multiplies weights is never built; the weight is split by column blocks. The
  split cell is derived again (:func:`split_cell`), so its backward is the derivation's own.
* **Stacked pre-activations.** Every affine equation of the loop (``a = Σ W·v + b + rest``)
  gets rows in one buffer ``gates_seq`` (T, rows, m). Products with a per-step input and
  the biases are computed for all T steps at once before the loop (one batched product);
  products that share an operand inside a step (all gates against ``h_prev``) are one GEMM
  per step, against the weights stacked once before the loop. Rows are ordered so that each
  shared operand's rows, and each activation's, are adjacent.
* **In place.** An activation whose pre-activation is needed by nothing else overwrites its
  rows, several gates in one call; σ(u) = (1 + tanh(u/2))/2 with the ½ folded into the σ
  rows' weights and biases, so one tanh activates σ and tanh rows together. In the backward,
  σ' and tanh' multiply all their rows at once (``dgates[:3*n_h] *= σ(1 - σ)``).
* **Readouts after the loop.** Equations no state depends on (``y = softmax(Wy·h + by)``)
  run once over all T·m columns after the forward loop; their backward runs once before the
  backward loop, and what they send back to the states is added to the states' upstream.
* **Backward.** One step's stacked adjoints ``dgates`` are written in a reused buffer; the
  recurrent operand's adjoint is one GEMM against them per step; they are stored as
  (rows, T, m), so the input's adjoint and every weight gradient are one product over all
  steps and the batch after the loop, and the bias gradients one reduction.
* **Layout.** Values of a step are contiguous slabs (time first), because NumPy's
  elementwise passes over strided rows are several times slower; inputs and the stored
  adjoints are (rows, T, m), which is a (rows, T·m) matrix without a copy.

Everything here returns plain strings in a deterministic order (the same cell renders to
the same bytes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from . import ops
from .cell import Cell, Equation, Symbol, prev_name, step_name
from .derive import Derivation, derive
from .printers import NumPyPrinter

#: Elementwise functions the plan runs in place on stacked rows (name in the generated code).
INPLACE = {ops.Sigmoid: "sigmoid", ops.Tanh: "np.tanh", ops.Relu: "relu", ops.Exp: "np.exp"}


def dim(expr) -> str:
    return NumPyPrinter().doprint(sp.sympify(expr))


def terms_of(expr) -> tuple:
    return expr.args if isinstance(expr, MatAdd) else (expr,)


def uses(expr, name: str) -> int:
    """How often the symbol ``name`` occurs in ``expr``."""
    return sum(1 for node in sp.preorder_traversal(expr)
               if isinstance(node, MatrixSymbol) and node.name == name)


def names_in(expr) -> set[str]:
    return {s.name for s in expr.atoms(MatrixSymbol)}


# --------------------------------------------------------------------------------------
# Splitting stacks
# --------------------------------------------------------------------------------------


@dataclass
class Split:
    """The cell with its weight-times-stack products split by column blocks."""

    cell: Cell
    derivation: Derivation
    #: block weight name -> (original weight, first column, last column + 1, operand name)
    blocks: dict[str, tuple[str, sp.Expr, sp.Expr, str]] = field(default_factory=dict)
    #: original weight -> its block names, in column order
    split_weights: dict[str, list[str]] = field(default_factory=dict)


def _product(term, weights: set[str]):
    """(weight, operand) for a term ``W·v`` (W a weight, v a symbol), else None."""
    if not isinstance(term, MatMul):
        return None
    coeff, factors = ops._matmul_split(term)
    if coeff != 1 or len(factors) != 2:
        return None
    w, v = factors
    if isinstance(w, MatrixSymbol) and w.name in weights and isinstance(v, MatrixSymbol):
        return w, v
    return None


def split_cell(derivation: Derivation) -> Split:
    """Rewrite ``W·[a; b]`` as ``W_a·a + W_b·b`` wherever a stack only multiplies weights."""
    cell = derivation.cell
    forward = derivation.forward
    weights = {p.name for p in cell.parameters if p.role == "weight"}
    weight_uses = {w: sum(uses(e.expr, w) for e in forward) for w in weights}
    taken = set(cell.symbols) | {e.name for e in forward}
    split = Split(cell, derivation)

    stacks = {e.name: e for e in forward if isinstance(e.expr, ops.Stack) and e.kind == "let"}
    eliminable = {}
    for name, eq in stacks.items():
        total = sum(uses(e.expr, name) for e in forward)
        as_operand = []
        for e in forward:
            for t in terms_of(e.expr):
                pv = _product(t, weights)
                if pv and pv[1].name == name and weight_uses[pv[0].name] == 1:
                    as_operand.append(pv[0].name)
        parts_ok = all(isinstance(p, MatrixSymbol) for p in eq.expr.args)
        if total and len(as_operand) == total and parts_ok:
            eliminable[name] = (eq, as_operand)
    if not eliminable:
        split.derivation = derivation
        return split

    replace = {}
    for name, (eq, ws) in eliminable.items():
        for w in ws:
            wsym = cell.symbols[w]
            blocks = []
            for part, (lo, hi) in zip(eq.expr.args, eq.expr.offsets()):
                bname = f"{w}_{part.name}"
                k = 2
                while bname in taken:
                    bname, k = f"{w}_{part.name}_{k}", k + 1
                taken.add(bname)
                split.blocks[bname] = (w, lo, hi, part.name)
                blocks.append(MatMul(MatrixSymbol(bname, wsym.shape[0], hi - lo), part))
            split.split_weights[w] = [b for b, v in split.blocks.items() if v[0] == w]
            replace[(w, name)] = blocks

    new = Cell(cell.name, cell.doc)
    new.dimensions = dict(cell.dimensions)
    for key, sym in cell.symbols.items():
        if key in split.split_weights:
            for b in split.split_weights[key]:
                w, lo, hi, _ = split.blocks[b]
                new.symbols[b] = Symbol(b, "weight", (sym.shape[0], hi - lo))
        else:
            new.symbols[key] = sym
    for e in forward:
        if e.name in eliminable:
            continue
        expr = e.expr
        keys = [(pv[0].name, pv[1].name) if pv else None
                for pv in (_product(t, weights) for t in terms_of(expr))]
        if any(k in replace for k in keys):
            out = []
            for t, k in zip(terms_of(expr), keys):
                out.extend(replace.get(k, [t]))
            expr = ops.add(*out)
        new.equations.append(Equation(e.name, expr, e.kind, e.meaning, e.latex, e.auto))
        if e.kind in ("let", "readout") and e.name not in new.symbols:
            new.symbols[e.name] = Symbol(e.name, "intermediate", ops.shape_of(expr))
    split.cell = new
    split.derivation = derive(new)
    return split


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One affine equation of the loop with rows in the stacked buffer."""

    name: str
    rows: sp.Expr
    static: list  # [(weight, operand)] products with a per-step input
    dynamic: list  # [(weight, operand)] products with a value of the step
    biases: list  # bias names
    rest: list  # other terms (printed in the loop)
    start: sp.Expr = sp.S.Zero
    act: object = None  # the activation equation that reads only this row, if in place
    act_kind: str = ""
    #: σ computed as (1 + tanh(u/2))/2 with the ½ folded into the row's weights and biases
    half: bool = False

    @property
    def family(self) -> str:
        """Rows of one family are activated by one call (σ with halved rows joins tanh)."""
        return "np.tanh" if self.half else self.act_kind


class Plan:
    """Where every statement of the kernel runs; see the module docstring."""

    def __init__(self, derivation: Derivation):
        self.original = derivation
        self.split = split_cell(derivation)
        self.d = self.split.derivation
        self.cell = self.split.cell
        cell = self.cell
        self.states = cell.states
        self.inputs = cell.inputs
        self.prev_of = {prev_name(s): s for s in self.states}
        self.step_of = {step_name(i): i for i in self.inputs}
        self.params = {p.name for p in cell.parameters}
        self.weights = {p.name for p in cell.parameters if p.role == "weight"}
        self.biases = {p.name for p in cell.parameters if p.role == "bias"}
        self.forward = self.d.forward
        self.eq = {e.name: e for e in self.forward}
        self.names = {b: f"{w}[:, {self._slice(lo, hi, w)}]"
                      for b, (w, lo, hi, _) in self.split.blocks.items()}
        self._loop_and_readout()
        self._rows()

    def _slice(self, lo, hi, w) -> str:
        cols = self.original.cell.symbols[w].shape[1]
        a = "" if ops.same_dim(lo, 0) else dim(lo)
        b = "" if ops.same_dim(hi, cols) else dim(hi)
        return f"{a}:{b}"

    # -- classification ------------------------------------------------------------------

    def _loop_and_readout(self) -> None:
        needed: set[str] = set()
        loop = []
        for e in reversed(self.forward):
            if e.kind == "update" or e.name in needed:
                loop.append(e.name)
                needed |= names_in(e.expr)
        self.loop = [e for e in self.forward if e.name in set(loop)]
        self.readout_part = [e for e in self.forward if e.name not in set(loop)]
        self.readout_names = {e.name for e in self.readout_part}

    def _rows(self) -> None:
        weight_uses = {w: sum(uses(e.expr, w) for e in self.forward) for w in self.weights}
        rows = []
        for e in self.loop:
            if e.kind != "let" or ops.is_nonlinear(e.expr) or isinstance(e.expr, ops.Stack):
                continue
            r = Row(e.name, ops.shape_of(e.expr)[0], [], [], [], [])
            seen = set()
            for t in terms_of(e.expr):
                pv = _product(t, self.weights)
                if pv and weight_uses[pv[0].name] == 1 and pv[1].name not in seen:
                    seen.add(pv[1].name)
                    (r.static if pv[1].name in self.step_of else r.dynamic).append(
                        (pv[0].name, pv[1].name))
                elif (isinstance(t, ops.Broadcast) and isinstance(t.column, MatrixSymbol)
                      and t.column.name in self.biases):
                    r.biases.append(t.column.name)
                else:
                    r.rest.append(t)
            if r.static or r.dynamic:
                rows.append(r)
        # An activation overwrites its pre-activation's rows when nothing else reads it.
        backward_names = set()
        for a in self.d.backward + self.d.parameters:
            backward_names |= names_in(a.expr)
        for r in rows:
            users = [e for e in self.forward if uses(e.expr, r.name)]
            if (len(users) == 1 and users[0].kind == "let" and type(users[0].expr) in INPLACE
                    and isinstance(users[0].expr.arg, MatrixSymbol)
                    and users[0].expr.arg.name == r.name
                    and r.name not in backward_names):
                r.act, r.act_kind = users[0], INPLACE[type(users[0].expr)]
                r.half = r.act_kind == "sigmoid" and not r.rest
        self.rows = self._order(rows)
        start = sp.Integer(0)
        for r in self.rows:
            r.start, start = start, start + r.rows
        self.total = start
        self.row = {r.name: r for r in self.rows}
        self.groups = self._groups("dynamic")
        self.static_groups = self._groups("static")

    def _order(self, rows: list[Row]) -> list[Row]:
        """Rows ordered so each shared operand's rows and each activation's rows are adjacent."""
        if len(rows) > 7:
            return rows
        operands = sorted({v for r in rows for _, v in r.static + r.dynamic})

        def runs(order, member) -> int:
            flags = [member(r) for r in order]
            return sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))

        def cost(order):
            split_groups = sum(runs(order, lambda r, v=v: any(o == v for _, o in r.static + r.dynamic))
                               for v in operands)
            kinds = sorted({r.act_kind for r in order if r.act_kind})
            families = sorted({r.family for r in order if r.act_kind})
            split_acts = sum(runs(order, lambda r, k=k: r.family == k) for k in families) + sum(
                runs(order, lambda r, k=k: r.act_kind == k) for k in kinds)
            return (split_groups, split_acts, [rows.index(r) for r in order])

        return list(min(itertools.permutations(rows), key=cost))

    def _groups(self, kind: str) -> dict[str, list[tuple[Row, str]]]:
        """Operand -> [(row, weight)] in row order: one stacked product per operand."""
        groups: dict[str, list[tuple[Row, str]]] = {}
        for r in self.rows:
            for w, v in getattr(r, kind):
                groups.setdefault(v, []).append((r, w))
        return groups

    def runs(self, members: list[tuple[Row, str]]) -> list[tuple[list, sp.Expr, sp.Expr]]:
        """Contiguous stretches of a group's rows: [(members, start in group, start in buffer)]."""
        out, gstart = [], sp.Integer(0)
        for r, w in members:
            if out and ops.same_dim(out[-1][2] + sum((m[0].rows for m in out[-1][0]), sp.Integer(0)), r.start):
                out[-1][0].append((r, w))
            else:
                out.append(([(r, w)], gstart, r.start))
            gstart = gstart + r.rows
        return out

    # -- helpers for printing ------------------------------------------------------------

    def fresh(self, base: str) -> str:
        taken = set(self.original.cell.symbols) | set(self.cell.symbols) | {
            e.name for e in self.original.forward + self.forward} | {
            a.symbol.name for a in self.d.backward + self.d.parameters} | getattr(self, "_taken", set())
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        self._taken = getattr(self, "_taken", set()) | {name}
        return name

    def rows_code(self, start, stop, total=None) -> str:
        total = self.total if total is None else total
        lo = "" if ops.same_dim(start, 0) else dim(start)
        hi = "" if ops.same_dim(stop, total) else dim(stop)
        return f"{lo}:{hi}"

    def sub(self, name: str, start, stop) -> str:
        """``name[start:stop]`` of the stacked rows, or ``name`` itself for all of them."""
        sl = self.rows_code(start, stop)
        return name if sl == ":" else f"{name}[{sl}]"

    def sub3(self, name: str, start, stop) -> str:
        """Rows start:stop of a (T, rows, m) sequence buffer, every step."""
        sl = self.rows_code(start, stop)
        return name if sl == ":" else f"{name}[:, {sl}]"

    def rsub(self, name: str, r: Row) -> str:
        """The rows of ``r`` in a one-step buffer (``gates[n_h:2*n_h]``), or all of it."""
        return self.sub(name, r.start, r.start + r.rows)

    def row_slice(self, r: Row) -> str:
        return self.rows_code(r.start, r.start + r.rows)

    def wcode(self, w: str) -> str:
        return self.names.get(w, w)

    def code(self, expr, names: dict[str, str] | None = None) -> str:
        from .printers import numpy_code

        return numpy_code(expr, {**self.names, **(names or {})})

    def text(self, expr) -> str:
        from .render import text

        return text(expr)

    def emit_into(self, target: str, expr, names=None) -> list[str]:
        """Statements that write ``expr`` into the existing array ``target``, fewest passes."""
        from .printers import _ordered_terms

        def c(e):
            return self.code(e, names)

        def paren(e):
            return NumPyPrinter({**self.names, **(names or {})}).parenthesize_operand(e)
        if type(expr) in INPLACE:
            return [f"{INPLACE[type(expr)]}({c(expr.arg)}, out={target})"]
        if isinstance(expr, HadamardProduct):
            first, second, *more = expr.args
            return ([f"np.multiply({c(first)}, {c(second)}, out={target})"]
                    + [f"{target} *= {paren(f)}" for f in more])
        if isinstance(expr, MatAdd):
            terms = _ordered_terms(expr)
            if not terms[0][0] and not isinstance(terms[0][1], sp.OneMatrix):
                lines = self.emit_into(target, terms[0][1], names)
                for negative, t in terms[1:]:
                    lines.append(f"{target} {'-=' if negative else '+='} {c(t)}")
                return lines
        return [f"{target}[...] = {c(expr)}"]

    # -- what the backward needs from the forward --------------------------------------------

    def analyse(self) -> None:
        d = self.d
        self.buf = self.fresh("gates")
        self.dbuf = self.fresh("dgates")
        self.stacked = {}  # operand -> its stacked weights (a name, or one weight's code)
        self.fstacked = {}  # the same in forward, where σ rows are halved
        for v, members in list(self.static_groups.items()) + list(self.groups.items()):
            name = self.fresh(f"W_{v}")
            self.stacked[v] = name if len(members) > 1 else self.wcode(members[0][1])
            self.fstacked[v] = name if len(members) > 1 or members[0][0].half else self.wcode(members[0][1])
        # Grouped product terms in the backward: (via row, weight) -> operand.
        self.grouped = {(r.name, w): v for v, ms in self.groups.items() for r, w in ms}
        self.grouped_static = {(r.name, w): v for v, ms in self.static_groups.items() for r, w in ms}
        # Parameters whose gradient comes from the stacked products / the stacked rowsum.
        occurrences = {p: sum(uses(e.expr, p) for e in self.forward) for p in self.params}
        in_rows = {}
        for r in self.rows:
            for w, _ in r.static + r.dynamic:
                in_rows[w] = in_rows.get(w, 0) + 1
            for b in r.biases:
                in_rows[b] = in_rows.get(b, 0) + 1
        self.covered = {p for p in self.params if occurrences[p] and in_rows.get(p, 0) == occurrences[p]}
        # Forward values the backward reads (besides the stacked rows).
        needed = set()
        for a in d.backward:
            if a.target not in self.readout_names:
                needed |= names_in(a.expr)
        for a in d.parameters:
            if a.target not in self.covered:
                needed |= names_in(a.expr)
        for v in self.groups:
            needed.add(v)
        for e in self.readout_part:
            needed |= names_in(e.expr)
        for a in d.backward:
            if a.target in self.readout_names:
                needed |= names_in(a.expr)
        forward_names = {e.name for e in self.forward}
        self.needed = needed & forward_names
        self.loop_names = {e.name for e in self.loop}

    def seq_view(self, name: str, t: str = "t") -> str:
        if name in self.prev_of:
            return f"{self.prev_of[name]}_seq[{t}]"
        if name in self.states:
            return f"{name}_seq[{t} + 1]"
        if name in self.step_of:
            return f"{self.step_of[name]}_seq[:, {t}]"  # inputs are kept as (rows, T, m)
        return f"{name}_seq[{t}]"

    def flat(self, name: str, defined: dict, lines: list) -> str:
        """``name`` at every step as one (rows, T·m) matrix, copied once per sequence buffer.

        A state's buffer holds T + 1 steps; its one copy serves both s (columns m:) and
        s_prev (all but the last m columns).
        """
        if name in self.prev_of or name in self.states:
            s = self.prev_of.get(name, name)
            if f"{s}_flat" not in defined:
                defined[f"{s}_flat"] = True
                lines.append(f"{s}_flat = _flat({s}_seq)  # (rows, (T + 1)·m)")
            return f"{s}_flat[:, :-m]" if name in self.prev_of else f"{s}_flat[:, m:]"
        if name in self.step_of:  # an input, kept as (rows, T, m): a view
            return f"{self.step_of[name]}_seq.reshape({self.step_of[name]}_seq.shape[0], -1)"
        var = f"{name}_all"
        if var not in defined:
            defined[var] = True
            lines.append(f"{var} = _flat({name}_seq)")
        return var

    def bias_code(self, rows: list[Row]) -> str:
        parts = []
        for r in rows:
            if not r.biases:
                parts.append(f"np.zeros(({dim(r.rows)}, 1), dtype)")
            elif len(r.biases) == 1:
                parts.append(("0.5 * " if r.half else "") + r.biases[0])
            else:
                parts.append(("0.5 * " if r.half else "") + "(" + " + ".join(r.biases) + ")")
        return parts[0] if len(parts) == 1 else "np.concatenate((" + ", ".join(parts) + "))"

    # -- forward ---------------------------------------------------------------------------

    def forward_code(self) -> dict:
        self.analyse()
        setup, loop, after = [], [], []
        buf, K = self.buf, self.total
        stored_rows = {}
        referenced: set[str] = set()
        if self.rows:
            setup.append(f"# The step's affine equations, stacked as the rows [{'; '.join(r.name for r in self.rows)}]")
            setup.append(f"# of {buf}_seq; their products with the per-step input and their biases are")
            setup.append("# computed for every step at once, before the loop.")
            if any(r.half for r in self.rows):
                setup.append("# σ(u) = (1 + tanh(u/2)) / 2: the σ rows' weights and biases are halved here,")
                setup.append("# so that one tanh activates the σ and tanh rows of a step together.")
            for v, members in list(self.static_groups.items()) + list(self.groups.items()):
                ws = [("0.5 * " if r.half else "") + self.wcode(w) for r, w in members]
                if len(members) > 1:
                    setup.append(f"{self.fstacked[v]} = np.concatenate(({', '.join(ws)}))  # weights of every product with {v}")
                elif self.fstacked[v] != ws[0]:
                    setup.append(f"{self.fstacked[v]} = {ws[0]}")
            setup.append(f"{buf}_seq = _workspace(\"{buf}_seq\", (T, {dim(K)}, m), dtype)")
            covered = [False] * len(self.rows)
            first = True
            for v, members in self.static_groups.items():
                for ms, gstart, start in self.runs(members):
                    stop = start + sum((r.rows for r, _ in ms), sp.Integer(0))
                    w = self.fstacked[v]
                    if len(ms) != len(members):
                        gstop = gstart + sum((r.rows for r, _ in ms), sp.Integer(0))
                        w = f"{w}[{self.rows_code(gstart, gstop, sum((r.rows for r, _ in members), sp.Integer(0)))}]"
                    eqs = ", ".join(r.name for r, _ in ms)
                    if first:
                        setup.append(f"# {eqs}: products with {v}")
                        setup.append(f"np.matmul({w}, {self.step_of[v]}_seq.transpose(1, 0, 2), out={self.sub3(buf + '_seq', start, stop)})")
                        for r, _ in ms:
                            covered[self.rows.index(r)] = True
                    else:
                        setup.append(f"{self.sub3(buf + '_seq', start, stop)} += np.matmul({w}, {self.step_of[v]}_seq.transpose(1, 0, 2))")
                first = False
            # Rows the first product did not write start from their biases; the others add them.
            i = 0
            while i < len(self.rows):
                j = i
                while j < len(self.rows) and covered[j] == covered[i]:
                    j += 1
                block = self.rows[i:j]
                sl = self.sub3(buf + "_seq", block[0].start, block[-1].start + block[-1].rows)
                if covered[i]:
                    if any(r.biases for r in block):
                        setup.append(f"{sl} += {self.bias_code(block)}  # biases")
                else:
                    setup.append(f"{sl}{'' if '[' in sl else '[...]'} = {self.bias_code(block)}  # biases")
                i = j
            for v, members in self.groups.items():
                setup.append(f"prod_{v} = np.empty(({dim(sum((r.rows for r, _ in members), sp.Integer(0)))}, m), dtype)  # per-step products with {v}")
            for r in self.rows:
                value = r.act.name if r.act is not None else r.name
                stored_rows[value] = self.sub3(f"{buf}_seq", r.start, r.start + r.rows)

        # Sequence buffers of stored values that are not stacked rows.
        stored = [e for e in self.loop if e.name in self.needed and e.kind == "let"
                  and e.name not in stored_rows]
        self.stored_rows = stored_rows
        self.stored = stored

        emitted, activated, complete = set(), set(), set()
        body = []

        def ready(r: Row) -> bool:
            return all(v in emitted for _, v in r.dynamic) and (not r.rest or r.name in complete)

        for e in self.loop:
            if e.name in self.row:
                r = self.row[e.name]
                for _, v in r.dynamic:
                    if v in emitted:
                        continue
                    emitted.add(v)
                    members = self.groups[v]
                    referenced.add(v)
                    eqs = ", ".join(m.name for m, _ in members)
                    ws = "; ".join(("½" if m.half else "") + self.wcode(w) for m, w in members)
                    body.append(f"# {eqs} += [{ws}]·{v}: one product" if len(members) > 1
                                else f"# {eqs} += {ws}·{v}")
                    body.append(f"np.matmul({self.fstacked[v]}, {v}, out=prod_{v})")
                    gtotal = sum((m.rows for m, _ in members), sp.Integer(0))
                    for ms, gstart, start in self.runs(members):
                        n = sum((m.rows for m, _ in ms), sp.Integer(0))
                        target = buf if ops.same_dim(n, K) else f"{buf}[{self.rows_code(start, start + n)}]"
                        src = f"prod_{v}" if ops.same_dim(n, gtotal) else f"prod_{v}[{self.rows_code(gstart, gstart + n, gtotal)}]"
                        body.append(f"{target} += {src}")
                for t in r.rest:
                    referenced |= names_in(t)
                    body.append(f"# {r.name} += {self.text(t)}")
                    body.append(f"{self.rsub(buf, r)} += {self.code(t)}")
                complete.add(r.name)
                if r.act is None and any(uses(x.expr, r.name) for x in self.loop):
                    body.append(f"{r.name} = {self.rsub(buf, r)}")
                continue
            owner = next((r for r in self.rows if r.act is not None and r.act.name == e.name), None)
            if owner is not None:
                if e.name in activated:
                    continue
                i = self.rows.index(owner)
                lo = hi = i

                def ok(k, owner=owner, activated=activated):
                    x = self.rows[k]
                    return (x.act is not None and x.family == owner.family
                            and x.act.name not in activated and ready(x))
                while lo > 0 and ok(lo - 1):
                    lo -= 1
                while hi + 1 < len(self.rows) and ok(hi + 1):
                    hi += 1
                run = self.rows[lo:hi + 1]
                target = self.sub(buf, run[0].start, run[-1].start + run[-1].rows)
                body.append("# " + ", ".join(f"{x.act.name} = {self.text(x.act.expr)}" for x in run))
                body.append(f"{owner.family}({target}, out={target})")
                k = 0
                while k < len(run):
                    if not run[k].half:
                        k += 1
                        continue
                    j = k
                    while j < len(run) and run[j].half:
                        j += 1
                    sig = self.sub(buf, run[k].start, run[j - 1].start + run[j - 1].rows)
                    body.append(f"{sig} *= 0.5  # σ rows: (1 + tanh(u/2)) / 2")
                    body.append(f"{sig} += 0.5")
                    k = j
                later = [x for x in run if any(uses(y.expr, x.act.name) for y in self.loop)]
                if later:
                    body.append(", ".join(x.act.name for x in later) + " = "
                                + ", ".join(self.rsub(buf, x) for x in later))
                activated |= {x.act.name for x in run}
                continue
            referenced |= names_in(e.expr)
            body.append(f"# {e.name} = {self.text(e.expr)}")
            if e.kind == "update" or e.name in {s.name for s in stored}:
                view = f"{e.name}_seq[t + 1]" if e.kind == "update" else f"{e.name}_seq[t]"
                body.append(f"{e.name} = {view}")
                body.extend(self.emit_into(e.name, e.expr))
            else:
                body.append(f"{e.name} = {self.code(e.expr)}")
        loads = [f"{n} = {self.seq_view(n)}" for n in
                 [step_name(i) for i in self.inputs] + [prev_name(s) for s in self.states]
                 if n in referenced]
        if self.rows:
            loads.append(f"{buf} = {buf}_seq[t]")
        loop = loads + body

        # Readouts (and what only they need) for every step at once, after the loop.
        names = {}
        if self.readout_part:
            after.append("# Readouts of every step at once (T·m columns), after the loop.")
            self.fwd_flats = {}
            for n in sorted(set().union(*[names_in(e.expr) for e in self.readout_part]) & self.loop_names
                            | (set().union(*[names_in(e.expr) for e in self.readout_part])
                               & (set(self.prev_of) | set(self.step_of)))):
                names[n] = self.flat(n, self.fwd_flats, after)
            for e in self.readout_part:
                names[e.name] = f"{e.name}_all"
                after.append(f"# {e.name} = {self.text(e.expr)}")
                after.append(f"{e.name}_all = {self.code(e.expr, names)}")
            for e in self.readout_part:
                if e.kind == "readout":
                    after.append(f"{e.name}_seq = {e.name}_all.reshape({dim(ops.shape_of(e.expr)[0])}, T, m).transpose(1, 0, 2)")
        read_back = set()
        for a in self.d.backward:
            read_back |= names_in(a.expr)
        for a in self.d.parameters:
            if a.target not in self.covered:
                read_back |= names_in(a.expr)
        self.readout_cached = [e.name for e in self.readout_part if e.name in read_back]
        cache = list(getattr(self, "fwd_flats", {})) + ([f"{buf}_seq"] if self.rows else []) + [f"{n}_seq" for n in stored_rows] + [f"{e.name}_seq" for e in stored] + [
            f"{n}_all" for n in self.readout_cached]
        views = [f"{n}_seq = {code}" for n, code in stored_rows.items() if n in self.needed]
        cache = [c for c in cache if not (c.endswith("_seq") and c[:-4] in stored_rows
                                          and c[:-4] not in self.needed)]
        return {"setup": setup, "loop": loop, "after": views + after,
                "stored": [{"name": e.name, "rows": dim(ops.shape_of(e.expr)[0])} for e in stored],
                "cache": cache}

    # -- backward --------------------------------------------------------------------------

    def backward_code(self) -> dict:
        d, buf, dbuf, K = self.d, self.buf, self.dbuf, self.total
        setup, loop, after = [], [], []
        adjoint_names = {a.symbol.name for a in d.backward} | {s.name for s in d.incoming.values()}
        row_adjoint = {}
        for a in d.backward:
            if a.target in self.row:
                row_adjoint[a.symbol.name] = self.row[a.target]

        # Readouts' backward for every step at once, before the loop.
        ro_adjoints = [a for a in d.backward if a.target in self.readout_names]
        names = {}
        defined = dict(getattr(self, "fwd_flats", {}))  # flat copies the forward made
        ro_into = {}  # loop value -> its adjoint's terms that come from the readouts
        for a in d.backward:
            if a.target in self.readout_names:
                continue
            ts = [t for t in a.terms if t.via in self.readout_names]
            if ts:
                ro_into[a.target] = ts
        if ro_adjoints or ro_into:
            setup.append("# The readouts' backward for every step at once, before the loop.")
            refs = set()
            for a in ro_adjoints:
                refs |= names_in(a.expr)
            for ts in ro_into.values():
                for t in ts:
                    refs |= names_in(t.expr)
            for n in sorted(refs):
                if n in self.readout_names:
                    names[n] = f"{n}_all"  # cached by the forward
                elif n in {s.name for s in d.incoming.values()}:
                    names[n] = f"{n}_all"  # the upstream gradient, (rows, T·m)
                elif n in self.eq or n in self.prev_of or n in self.step_of or n in self.states:
                    names[n] = self.flat(n, defined, setup)
            for a in ro_adjoints:
                names[a.symbol.name] = f"{a.symbol.name}_all"
                setup.append(f"# {a.symbol.name} = {self.text(a.expr)}")
                setup.append(f"{a.symbol.name}_all = {self.code(a.expr, names)}")
        extra_terms = {}  # loop value -> symbol added to its adjoint inside the loop
        state_plus = {}  # state -> what the readouts add to its upstream gradient
        for target, ts in ro_into.items():
            sym = next(a.symbol for a in d.backward if a.target == target)
            total = ops.add(*[t.expr for t in ts])
            rows = dim(sym.shape[0])
            setup.append(f"# {sym.name} += {self.text(total)}  (from the readouts)")
            if target in self.states:
                state_plus[target] = f"({self.code(total, names)}).reshape({rows}, T, m).transpose(1, 0, 2)"
            else:
                name = f"{sym.name}_ro"
                setup.append(f"{name}_seq = ({self.code(total, names)}).reshape({rows}, T, m).transpose(1, 0, 2)")
                extra_terms[target] = MatrixSymbol(f"{name}_seq[t]", *sym.shape)

        # The states' upstream gradients, (T, rows, m); None where the loss ignores a state.
        for st in self.states:
            rows = dim(self.cell.symbols[prev_name(st)].shape[0])
            plus = f", plus={state_plus[st]}" if st in state_plus else ""
            setup.append(f"d{st}_up = _upstream(upstream, \"{st}\", {rows}, m, T, dtype{plus})")
        if self.rows:
            for v, members in list(self.groups.items()) + list(self.static_groups.items()):
                if len(members) > 1:
                    ws = ", ".join(self.wcode(w) for _, w in members)
                    setup.append(f"{self.stacked[v]} = np.concatenate(({ws}))  # weights of every product with {v}")
            setup.append(f"{dbuf} = _workspace(\"{dbuf}\", ({dim(K)}, m), dtype)  # adjoints of one step's rows of {buf}_seq")
            setup.append(f"{dbuf}_seq = _workspace(\"{dbuf}_seq\", ({dim(K)}, T, m), dtype)  # ... of every step, rows first")
        # Adjoints kept for parameters whose gradient is not a stacked product.
        fallback = [a for a in d.parameters if a.target not in self.covered]
        readout_incoming = {sym.name for name, sym in d.incoming.items() if name in self.readout_names}
        kept = [n for n in sorted(set().union(set(), *[names_in(a.expr) for a in fallback]))
                if n in adjoint_names and n not in row_adjoint and n not in readout_incoming
                and n not in {a.symbol.name for a in ro_adjoints}]
        for n in kept:
            rows = next((a.symbol.shape[0] for a in d.backward if a.symbol.name == n), None)
            if rows is None:
                rows = next(s.shape[0] for s in d.incoming.values() if s.name == n)
            setup.append(f"{n}_seq = np.empty((T, {dim(rows)}, m), dtype)")
        for s in self.states:
            rows = dim(self.cell.symbols[prev_name(s)].shape[0])
            setup.append(f"d{s}_carry = np.zeros(({rows}, m), dtype)  # gradient flowing back from step t+1")

        body, referenced = [], set()
        incoming_lines = []
        for name, sym in d.incoming.items():
            if name in self.states:
                value = f"d{name}_carry if d{name}_up is None else d{name}_up[t] + d{name}_carry"
                line = f"{sym.name} = {value}"
                if sym.name in kept:
                    line = f"{sym.name} = {sym.name}_seq[t] = ({value})"
                incoming_lines.append(line)
        if self.rows:
            missing = [r for r in self.rows if r.name not in {a.target for a in d.backward}]
            for r in missing:
                incoming_lines.append(f"{self.rsub(dbuf, r)} = 0  # nothing depends on {r.name}")
        carries = {}
        input_rest = {}
        # Rows activated in place: the activation's adjoint (df) is written into the row of
        # dgates, and σ' or tanh' multiplies several rows at once (da_f = df ⊙ f ⊙ (1 - f)).
        by_target = {a.target: a for a in d.backward}
        batched = {}
        for r in self.rows:
            out_adj, row_adj = by_target.get(r.act.name) if r.act else None, by_target.get(r.name)
            if (out_adj is not None and row_adj is not None and len(row_adj.terms) == 1
                    and row_adj.terms[0].via == r.act.name and row_adj.incoming is None):
                batched[r.act.name] = r
                batched[r.name] = r
        pending: list[Row] = []
        uses_gates = False

        def flush(need=None):
            nonlocal uses_gates
            todo = [r for r in pending if need is None or by_target[r.name].symbol.name in need]
            if not todo:
                return
            # Flushing a row flushes its whole run (adjacent pending rows of the same function).
            todo = sorted(pending, key=lambda r: self.rows.index(r))
            k = 0
            while k < len(todo):
                j = k + 1
                while (j < len(todo) and todo[j].act_kind == todo[k].act_kind
                       and self.rows.index(todo[j]) == self.rows.index(todo[j - 1]) + 1):
                    j += 1
                run = todo[k:j]
                lo, hi = run[0].start, run[-1].start + run[-1].rows
                out = MatrixSymbol("__run__", hi - lo, ops.BATCH)
                deriv = type(run[0].act.expr)(out).derivative(out)
                body.append("# " + ", ".join(f"{by_target[r.name].symbol.name} = "
                                             f"{self.text(by_target[r.name].expr)}" for r in run))
                body.append(f"{self.sub(dbuf, lo, hi)} *= "
                            f"{self.code(deriv, {'__run__': self.sub(buf, lo, hi)})}")
                uses_gates = True
                k = j
            for r in todo:
                name = by_target[r.name].symbol.name
                if need and name in need:
                    body.append(f"{name} = {self.rsub(dbuf, r)}")
            pending.clear()

        for a in d.backward:
            if a.target in self.readout_names:
                continue
            if a.target in batched and a.target == batched[a.target].name:
                pending.append(batched[a.target])
                continue
            if a.target in batched:
                r = batched[a.target]
                body.append(f"# {a.symbol.name} = {self.text(a.expr)}")
                body.append(f"{a.symbol.name} = {self.rsub(dbuf, r)}")
                body.extend(self.emit_into(a.symbol.name, a.expr))
                referenced |= names_in(a.expr)
                continue
            grouped_terms = [t for t in a.terms if self._grouped(t, a.target, self.grouped)]
            static_terms = [t for t in a.terms if self._grouped(t, a.target, self.grouped_static)]
            rest = [t for t in a.terms if t not in grouped_terms and t not in static_terms
                    and t.via not in self.readout_names]
            flush(set().union(set(), *[names_in(t.expr) for t in rest]))
            parts = ([a.incoming] if a.incoming is not None else []) + [t.expr for t in rest]
            if a.target in extra_terms:
                parts.append(extra_terms[a.target])
            if grouped_terms:
                flush()
                v = a.target
                members = self.groups[v]
                gname = f"{a.symbol.name}_{buf}"
                gtotal = sum((r.rows for r, _ in members), sp.Integer(0))
                pieces = []
                for ms, gstart, start in self.runs(members):
                    n = sum((r.rows for r, _ in ms), sp.Integer(0))
                    w = self.stacked[v] if ops.same_dim(n, gtotal) else \
                        f"{self.stacked[v]}[{self.rows_code(gstart, gstart + n, gtotal)}]"
                    src = dbuf if ops.same_dim(n, K) else f"{dbuf}[{self.rows_code(start, start + n)}]"
                    pieces.append(f"{w}.T @ {src}")
                body.append(f"# {gname} = " + " + ".join(self.text(t.expr) for t in grouped_terms)
                            + (": one product" if len(grouped_terms) > 1 else ""))
                body.append(f"{gname} = " + " + ".join(pieces))
                parts.append(MatrixSymbol(gname, *a.symbol.shape))
            if a.target in self.step_of:
                if parts:
                    input_rest[a.target] = ops.add(*parts)
                    referenced |= names_in(input_rest[a.target])
                continue
            expr = ops.add(*parts) if parts else sp.ZeroMatrix(*a.symbol.shape)
            referenced |= names_in(expr)
            if a.target in self.prev_of:
                carries[a.target] = (a, expr)
                continue
            body.append(f"# {a.symbol.name} = {self.text(expr)}")
            if a.symbol.name in row_adjoint:
                r = row_adjoint[a.symbol.name]
                body.append(f"{a.symbol.name} = {self.rsub(dbuf, r)}")
                body.extend(self.emit_into(a.symbol.name, expr))
            elif a.symbol.name in kept:
                body.append(f"{a.symbol.name} = {a.symbol.name}_seq[t]")
                body.extend(self.emit_into(a.symbol.name, expr))
            else:
                body.append(f"{a.symbol.name} = {self.code(expr)}")
        flush()
        if self.rows:
            body.append(f"{dbuf}_seq[:, t] = {dbuf}")
        if uses_gates:
            incoming_lines.insert(0, f"{buf} = {buf}_seq[t]")
        for i in self.inputs:
            if step_name(i) in input_rest:
                body.append(f"# d{step_name(i)} (the part not through the stacked products)")
                body.append(f"d{i}_rest_seq[t] = {self.code(input_rest[step_name(i)])}")
                setup.append(f"d{i}_rest_seq = np.empty((T, {dim(self.cell.symbols[step_name(i)].shape[0])}, m), dtype)")
        body.append("cut = truncate is not None and t > 0 and t % truncate == 0")
        for s in self.states:
            a, expr = carries[prev_name(s)]
            rows = dim(a.symbol.shape[0])
            body.append(f"# {a.symbol.name} = {self.text(expr)}")
            body.append(f"d{s}_carry = {self.code(expr)} if not cut else np.zeros(({rows}, m), dtype)")
        fwd = {e.name for e in self.forward} | set(self.prev_of) | set(self.step_of) | set(self.states)
        loads = [f"{n} = {self.seq_view(n)}" for n in sorted(referenced & fwd)
                 if n not in adjoint_names]
        loop = loads + incoming_lines + body

        # After the loop: products over every step and the batch.
        after.append("# Products over every step and the whole batch.")
        flats = {}

        def flat(n):
            if n not in flats:
                flats[n] = f"{n}_all"
                if n in self.readout_names or n in readout_incoming:
                    pass  # every step at once: cached by the forward, or the upstream gradient
                elif n in row_adjoint:
                    after.append(f"{n}_all = {self.rsub(dbuf + '_all', row_adjoint[n])}")
                elif n in kept or n in self.stored_rows or n in {
                        e.name for e in self.stored} or n in fwd:
                    flats[n] = self.flat(n, defined, after)
            return flats[n]

        if self.rows:
            after.append(f"{dbuf}_all = {dbuf}_seq.reshape({dim(K)}, T * m)")
        for i in self.inputs:
            xt = step_name(i)
            pieces = []
            if self.static_groups.get(xt):
                members = self.static_groups[xt]
                gtotal = sum((r.rows for r, _ in members), sp.Integer(0))
                for ms, gstart, start in self.runs(members):
                    n = sum((r.rows for r, _ in ms), sp.Integer(0))
                    w = self.stacked[xt] if ops.same_dim(n, gtotal) else \
                        f"{self.stacked[xt]}[{self.rows_code(gstart, gstart + n, gtotal)}]"
                    src = f"{dbuf}_all" if ops.same_dim(n, K) else f"{dbuf}_all[{self.rows_code(start, start + n)}]"
                    pieces.append(f"{w}.T @ {src}")
                after.append(f"# d{xt} = " + " + ".join(
                    f"{w}ᵀ·d{r.name}" for r, w in members) + ", every step at once")
            if xt in input_rest:
                pieces.append(f"_flat(d{i}_rest_seq)")
            rows = dim(self.cell.symbols[xt].shape[0])
            after.append(f"d{i}_all = " + (" + ".join(pieces) if pieces else f"np.zeros(({rows}, T * m), dtype)"))
        # Gradients of the stacked weights: one product per operand (and contiguous rows).
        block = {}
        for v, members in list(self.static_groups.items()) + list(self.groups.items()):
            runs = self.runs(members)
            for k, (ms, gstart, start) in enumerate(runs):
                n = sum((r.rows for r, _ in ms), sp.Integer(0))
                name = f"d{self.stacked[v]}" if len(runs) == 1 and not "[" in self.stacked[v] and \
                    self.stacked[v] not in self.params else f"dW_{v}" + (f"_{k + 1}" if len(runs) > 1 else "")
                src = f"{dbuf}_all" if ops.same_dim(n, K) else f"{dbuf}_all[{self.rows_code(start, start + n)}]"
                after.append(f"{name} = {src} @ {flat(v)}.T  # " + ", ".join(
                    f"d{w}" for _, w in ms) + f" = Σ_t d(row)·{v}ᵀ")
                off = start
                for r, w in ms:
                    if len(ms) == 1:
                        block[w] = name
                    else:
                        block[w] = f"{name}[{self.rows_code(off - start, off - start + r.rows, n)}]"
                    off = off + r.rows
        if any(b in self.covered for r in self.rows for b in r.biases):
            after.append(f"d{buf}_bias = {dbuf}_all.sum(axis=1, keepdims=True)  # every row's Σ over steps and batch")
        used_slices = set()
        grads = []
        all_names = {}
        for a in fallback:
            for n in sorted(names_in(a.expr)):
                if n not in self.params:
                    all_names[n] = flat(n) if n not in {x.symbol.name for x in ro_adjoints} else f"{n}_all"
        ga = {a.target: a for a in d.parameters}

        def grad_code(p: str) -> str:
            if p in block:
                return block[p]
            if p in self.covered and p in self.biases:
                parts = []
                for r in self.rows:
                    if p in r.biases:
                        sl = self.rsub(f"d{buf}_bias", r)
                        parts.append(sl + (".copy()" if sl in used_slices else ""))
                        used_slices.add(sl)
                return " + ".join(parts)
            a = ga[p]
            if not a.terms:
                return f"np.zeros(({dim(a.symbol.shape[0])}, {dim(a.symbol.shape[1])}), dtype)"
            return self.code(a.expr, all_names)

        original = {a.target: a for a in self.original.parameters}
        for p in self.original.cell.parameters:
            if p.name in self.split.split_weights:
                code = "np.concatenate((" + ", ".join(grad_code(b) for b in self.split.split_weights[p.name]) + "), axis=1)"
            else:
                code = grad_code(p.name)
            grads.append({"key": f"d{p.name}", "code": code,
                          "comment": f"d{p.name} = Σ_t {self.text(original[p.name].expr)}"})
        return {"setup": setup, "loop": loop, "after": after, "grads": grads}

    def _grouped(self, term, target: str, table) -> bool:
        """A term ``Wᵀ·da`` of ``target``'s adjoint that a stacked product computes."""
        if term.via not in self.row or not isinstance(term.expr, MatMul):
            return False
        _, factors = ops._matmul_split(term.expr)
        if not factors or not isinstance(factors[0], Transpose):
            return False
        w = factors[0].arg
        return isinstance(w, MatrixSymbol) and table.get((term.via, w.name)) == target
