"""The forward pass of a sequence kernel as statements: set-up, one step, readouts after.

Before the loop, every step's products with the input and the biases are written into the
stacked rows at once. In the loop, each operand's products with its stacked weights are one
product, activations overwrite their rows (several gates in one call), and every other
equation is written into its sequence buffer. Readouts run after the loop, C steps (C·m
columns) at a time, so that what they read is copied one chunk at a time, never the whole
sequence. See :mod:`symbptt.kernels.layout` for the layout itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import HadamardProduct, MatAdd

from .. import ops
from ..cell import prev_name, step_name
from ..printers import _ordered_terms
from ..text import text
from . import code as c
from .layout import Layout, Row, in_place_name, total_rows
from .rewrite import names_in, uses


def seq_view(layout: Layout, name: str, t: str = "t") -> c.View:
    """A value of one step in its sequence buffer (states hold T + 1 steps)."""
    if name in layout.prev_of:
        return c.View(f"{layout.prev_of[name]}_seq", (c.Name(t),))
    if name in layout.states:
        return c.View(f"{name}_seq", (c.Name(f"{t} + 1"),))
    if name in layout.step_of:  # inputs are kept as (rows, T, m)
        return c.View(f"{layout.step_of[name]}_seq", (":", c.Name(t)))
    return c.View(f"{name}_seq", (c.Name(t),))


def rows_view(base, start, stop, total, step_axis: bool = False):
    """Rows start:stop of ``base`` (of a (T, rows, m) buffer with ``step_axis``)."""
    lead = (":",) if step_axis else ()
    if isinstance(base, c.View):
        return c.View(base.base, base.index + lead + (c.Rows(start, stop, total),))
    return c.View(base, lead + (c.Rows(sp.sympify(start), sp.sympify(stop), sp.sympify(total)),))


def flat(layout: Layout, name: str, defined: dict, out: list) -> c.View | c.Call:
    """``name`` at every step as one (rows, T·m) matrix, copied once per sequence buffer.

    A state's buffer holds T + 1 steps; its one copy serves both s (columns m:) and s_prev
    (all but the last m columns). ``defined`` remembers the copies made; new ones go to out.
    """
    if name in layout.prev_of or name in layout.states:
        s = layout.prev_of.get(name, name)
        if f"{s}_flat" not in defined:
            defined[f"{s}_flat"] = True
            out.append(c.assign(f"{s}_flat", c.Call("flat", (f"{s}_seq",)), "(rows, (T + 1)·m)"))
        return c.View(f"{s}_flat", (":", c.Name(":-m" if name in layout.prev_of else "m:")))
    if name in layout.step_of:  # an input, kept as (rows, T, m): a view
        return c.Call("input_matrix", (f"{layout.step_of[name]}_seq",))
    var = f"{name}_all"
    if var not in defined:
        defined[var] = True
        out.append(c.assign(var, c.Call("flat", (f"{name}_seq",))))
    return c.View(var)


def chunk_columns(name: str, n_t: str) -> c.View:
    """The columns of the chunk's steps t … t + n_t − 1 in the (rows, T·m) matrix ``name``."""
    return c.View(name, (":", c.StepColumns(c.Name("t"), c.Name(n_t))))


def chunk_operands(layout: Layout, names: set[str], n_t: str, out: list) -> dict:
    """Each of ``names`` (states, their previous values, inputs, values kept in sequence
    buffers) over the chunk's steps t … t + n_t − 1 as a (rows, n_t·m) matrix.

    An input is a view; any other value is copied, one chunk at a time (so that no copy of
    the whole sequence is ever made). A state read both as s and as s_prev is copied once,
    steps t … t + n_t, and serves both. The copies' statements go to ``out``.
    """
    t, count = c.Name("t"), c.Name(n_t)
    values: dict = {}
    prevs = {layout.prev_of[n] for n in names if n in layout.prev_of}
    for n in sorted(names):
        if n in layout.step_of:  # an input, kept as (rows, T, m): a view
            values[n] = c.Call("input_chunk", (f"{layout.step_of[n]}_seq", c.StepRange(t, count)))
            continue
        s = layout.prev_of.get(n, n)
        both = s in prevs and s in names  # the state read as s_prev and as s
        if both and n in layout.prev_of:
            continue  # given with its state below
        var = layout.fresh(f"{s}_chunk")
        if both:
            steps = c.StepRange(t, c.Name(f"{n_t} + 1"))
            values[prev_name(s)] = c.View(var, (":", c.Name(":-m")))
            values[s] = c.View(var, (":", c.Name("m:")))
        else:
            steps = c.StepRange(c.Name("t + 1") if n in layout.states else t, count)
            values[n] = c.View(var)
        out.append(c.assign(var, c.Call("flat", (c.View(f"{s}_seq", (steps,)),))))
    return values


def write_into(target: str, expr, names: dict | None = None) -> list:
    """Statements that write ``expr`` into the existing array ``target``, fewest passes."""
    names = names or {}
    view = c.View(target)
    fn = in_place_name(expr)
    if fn:
        return [c.ApplyInPlace(fn, view, c.Math.of(expr.arg, names))]
    if isinstance(expr, HadamardProduct):
        first, second, *more = expr.args
        return ([c.MultiplyInto(view, c.Math.of(first, names), c.Math.of(second, names))]
                + [c.Update(view, "*", c.Math.of(f, names, operand=True)) for f in more])
    if isinstance(expr, MatAdd):
        terms = _ordered_terms(expr)
        if not terms[0][0] and not isinstance(terms[0][1], sp.OneMatrix):
            out = write_into(target, terms[0][1], names)
            for negative, t in terms[1:]:
                out.append(c.Update(view, "-" if negative else "+", c.Math.of(t, names)))
            return out
    return [c.Update(view, "=", c.Math.of(expr, names))]


@dataclass
class Forward:
    """The forward pass's statements, and what its cache keeps for the backward."""

    setup: list = field(default_factory=list)
    loop: list = field(default_factory=list)
    after: list = field(default_factory=list)
    #: loop values kept in sequence buffers of their own: [(name, rows)]
    stored: list = field(default_factory=list)
    #: names of the forward's arrays the cache keeps
    cache: list = field(default_factory=list)
    #: loop value -> its rows of the stacked buffer (every step)
    stored_rows: dict = field(default_factory=dict)


class ForwardPlanner:
    """Emits :class:`Forward` for one layout."""

    def __init__(self, layout: Layout):
        self.L = layout
        self.names = {b: layout.block_view(b) for b in layout.split.blocks}
        self.out = Forward()
        self.referenced: set[str] = set()

    def math(self, expr, extra: dict | None = None, operand: bool = False) -> c.Math:
        return c.Math.of(expr, {**self.names, **(extra or {})}, operand)

    def plan(self) -> Forward:
        if self.L.rows:
            self._stacked_setup()
        for r in self.L.rows:
            value = r.act.name if r.act is not None else r.name
            self.out.stored_rows[value] = rows_view(f"{self.L.buf}_seq", r.start, r.stop,
                                                    self.L.total, step_axis=True)
        self.stored_names = [e for e in self.L.loop if e.name in self.L.needed and e.kind == "let"
                             and e.name not in self.out.stored_rows]
        self.out.stored = [(e.name, ops.shape_of(e.expr)[0]) for e in self.stored_names]
        self._loop()
        self.read_back = set().union(set(), *[names_in(a.expr) for a in self.L.d.backward], *[
            names_in(a.expr) for a in self.L.d.parameters if a.target not in self.L.covered])
        with self.L.scratch():
            self._readouts()
        self._cache()
        return self.out

    # -- before the loop ---------------------------------------------------------------------

    def _stacked_setup(self) -> None:
        L, setup = self.L, self.out.setup
        setup.append(c.Comment("The step's affine equations, stacked as the rows "
                               f"[{'; '.join(r.name for r in L.rows)}]"))
        setup.append(c.Comment(f"of {L.buf}_seq; their products with the per-step input and "
                               "their biases are"))
        setup.append(c.Comment("computed for every step at once, before the loop."))
        if any(r.half for r in L.rows):
            setup.append(c.Comment("σ(u) = (1 + tanh(u/2)) / 2: the σ rows' weights and biases "
                                   "are halved here,"))
            setup.append(c.Comment("so that one tanh activates the σ and tanh rows of a step "
                                   "together."))
        for v, members in list(L.static_groups.items()) + list(L.groups.items()):
            ws = [c.Scaled("0.5", L.wcode(w)) if r.half else L.wcode(w) for r, w in members]
            if len(members) > 1:
                setup.append(c.assign(L.fstacked[v], c.Call("concat", tuple(ws)),
                                      f"weights of every product with {v}"))
            elif L.fstacked[v] != ws[0]:
                setup.append(c.assign(L.fstacked[v], ws[0]))
        if L.rows_in_state:  # the state overwrites its pre-activation: one buffer for both
            steps = sp.Symbol("T") + 1
            setup.append(c.Comment(f"{L.rows[0].name} is written into {L.rows_in_state}_seq itself "
                                   f"(step t's in {L.rows_in_state}_seq[t + 1]), which "
                                   f"{L.rows_in_state} then overwrites."))
            setup.append(c.assign(f"{L.buf}_seq", c.View(f"{L.rows_in_state}_seq", (
                c.Rows(sp.Integer(1), steps, steps),))))
        else:
            setup.append(c.assign(f"{L.buf}_seq", c.Call("workspace", (
                f"{L.buf}_seq", c.Shape((c.Name("T"), c.Dim(L.total), c.Name("m")))))))
        covered = self._input_products()
        self._biases(covered)
        for v, members in L.groups.items():
            setup.append(c.assign(f"prod_{v}", c.Call("empty", (c.Shape((
                c.Dim(total_rows(r for r, _ in members)), c.Name("m"))),)),
                f"per-step products with {v}"))

    def _input_products(self) -> list[bool]:
        """Every step's products with the inputs, before the loop; which rows they wrote."""
        L, setup = self.L, self.out.setup
        covered = [False] * len(L.rows)
        first = True
        for v, members in L.static_groups.items():
            gtotal = total_rows(r for r, _ in members)
            for run in L.runs(members):
                w = L.fstacked[v]
                if len(run.members) != len(members):
                    w = rows_view(w, run.group_start, run.group_start + run.rows, gtotal)
                xs = c.Transposed(f"{L.step_of[v]}_seq", (1, 0, 2))
                target = rows_view(f"{L.buf}_seq", run.start, run.start + run.rows, L.total, True)
                if first:
                    setup.append(c.Comment(f"{', '.join(r.name for r, _ in run.members)}: "
                                           f"products with {v}"))
                    setup.append(c.MatMulInto(target, w, xs))
                    for r, _ in run.members:
                        covered[L.rows.index(r)] = True
                else:
                    setup.append(c.Update(target, "+", c.Call("matmul", (w, xs))))
            first = False
        return covered

    def _bias_value(self, rows: list[Row]):
        parts: list[c.Value] = []
        for r in rows:
            if not r.biases:
                parts.append(c.Call("zeros", (c.Shape((c.Dim(r.rows), c.Dim(1))),)))
                continue
            b = r.biases[0] if len(r.biases) == 1 else c.Sum(tuple(r.biases), paren=True)
            parts.append(c.Scaled("0.5", b) if r.half else b)
        return parts[0] if len(parts) == 1 else c.Call("concat", tuple(parts))

    def _biases(self, covered: list[bool]) -> None:
        """Rows the first product did not write start from their biases; the others add them."""
        L = self.L
        i = 0
        while i < len(L.rows):
            j = i
            while j < len(L.rows) and covered[j] == covered[i]:
                j += 1
            block = L.rows[i:j]
            target = rows_view(f"{L.buf}_seq", block[0].start, block[-1].stop, L.total, True)
            if not covered[i]:
                self.out.setup.append(c.Update(target, "=", self._bias_value(block), "biases"))
            elif any(r.biases for r in block):
                self.out.setup.append(c.Update(target, "+", self._bias_value(block), "biases"))
            i = j

    # -- one step ----------------------------------------------------------------------------

    def _loop(self) -> None:
        L = self.L
        self.emitted: set[str] = set()
        self.activated: set[str] = set()
        self.complete: set[str] = set()
        body: list = []
        for e in L.loop:
            if e.name in L.row:
                body += self._row(L.row[e.name])
            elif any(r.act is not None and r.act.name == e.name for r in L.rows):
                body += self._activation(e)
            else:
                body += self._equation(e)
        steps = [step_name(i) for i in L.inputs] + [prev_name(s) for s in L.states]
        loads = [c.assign(n, seq_view(L, n)) for n in steps if n in self.referenced]
        if L.rows:
            loads.append(c.assign(L.buf, c.View(f"{L.buf}_seq", (c.Name("t"),))))
        self.out.loop = loads + body

    def _buf_rows(self, start, stop) -> c.View:
        return rows_view(self.L.buf, start, stop, self.L.total)

    def _group_product(self, v: str) -> list:
        """One product of every weight that multiplies ``v``, added into their rows."""
        L = self.L
        members = L.groups[v]
        self.emitted.add(v)
        self.referenced.add(v)
        eqs = ", ".join(m.name for m, _ in members)
        ws = "; ".join(("½" if m.half else "") + "{}" for m, _ in members)
        text_ = f"{eqs} += [{ws}]·{v}: one product" if len(members) > 1 else f"{eqs} += {ws}·{v}"
        out = [c.Comment(text_, tuple(L.wcode(w) for _, w in members)),
               c.MatMulInto(c.View(f"prod_{v}"), L.fstacked[v], v)]
        gtotal = total_rows(r for r, _ in members)
        for run in L.runs(members):
            src = rows_view(f"prod_{v}", run.group_start, run.group_start + run.rows, gtotal)
            out.append(c.Update(self._buf_rows(run.start, run.start + run.rows), "+", src))
        return out

    def _row(self, r: Row) -> list:
        out = []
        for _, v in r.dynamic:
            if v not in self.emitted:
                out += self._group_product(v)
        for t in r.rest:
            self.referenced |= names_in(t)
            out.append(c.Comment(f"{r.name} += {text(t)}"))
            out.append(c.Update(self._buf_rows(r.start, r.stop), "+", self.math(t)))
        self.complete.add(r.name)
        if r.act is None and any(uses(x.expr, r.name) for x in self.L.loop):
            out.append(c.assign(r.name, self._buf_rows(r.start, r.stop)))
        return out

    def _ready(self, r: Row) -> bool:
        return all(v in self.emitted for _, v in r.dynamic) and (not r.rest or r.name in self.complete)

    def _activation(self, e) -> list:
        """Activate the run of adjacent ready rows of one family around e's row, in one call."""
        L = self.L
        if e.name in self.activated:
            return []
        owner = next(r for r in L.rows if r.act is not None and r.act.name == e.name)

        def ok(k):
            x = L.rows[k]
            return (x.act is not None and x.family == owner.family
                    and x.act.name not in self.activated and self._ready(x))
        lo = hi = L.rows.index(owner)
        while lo > 0 and ok(lo - 1):
            lo -= 1
        while hi + 1 < len(L.rows) and ok(hi + 1):
            hi += 1
        run = L.rows[lo:hi + 1]
        target = self._buf_rows(run[0].start, run[-1].stop)
        out: list[c.Statement] = [
            c.Comment(", ".join(f"{x.activation.name} = {text(x.activation.expr)}" for x in run)),
            c.ApplyInPlace(owner.family, target)]
        out += self._half_rows(run)
        later = [x for x in run if any(uses(y.expr, x.activation.name) for y in L.loop)]
        if later:
            out.append(c.Assign(tuple(x.activation.name for x in later),
                                tuple(self._buf_rows(x.start, x.stop) for x in later)))
        self.activated |= {x.activation.name for x in run}
        return out

    def _half_rows(self, run: list[Row]) -> list:
        """σ = (1 + tanh(u/2))/2 on the σ rows of a run that one tanh activated."""
        out, k = [], 0
        while k < len(run):
            if not run[k].half:
                k += 1
                continue
            j = k
            while j < len(run) and run[j].half:
                j += 1
            sig = self._buf_rows(run[k].start, run[j - 1].stop)
            out += [c.Update(sig, "*", "0.5", "σ rows: (1 + tanh(u/2)) / 2"), c.Update(sig, "+", "0.5")]
            k = j
        return out

    def _equation(self, e) -> list:
        self.referenced |= names_in(e.expr)
        out: list[c.Statement] = [c.Comment(f"{e.name} = {text(e.expr)}")]
        if e.kind == "update" or e.name in {s.name for s in self.stored_names}:
            out.append(c.assign(e.name, seq_view(self.L, e.name) if e.kind == "update"
                                else c.View(f"{e.name}_seq", (c.Name("t"),))))
            if e.name == self.L.rows_in_state:  # its rows hold its pre-activation: in place
                out.append(c.ApplyInPlace(str(in_place_name(e.expr)), c.View(e.name)))
            else:
                out += write_into(e.name, e.expr, self.names)
        else:
            out.append(c.assign(e.name, self.math(e.expr)))
        return out

    # -- after the loop ----------------------------------------------------------------------

    def _readouts(self) -> None:
        """The readouts of every step, after the loop, C steps (C·m columns) at a time: what
        they read is copied one chunk at a time, never the whole sequence."""
        L, after = self.L, self.out.after
        if not L.readout_part:
            return
        size, n_t = L.fresh("C"), L.fresh("n_t")
        after.append(c.Comment("Readouts of every step, C steps (C·m columns) at a time, after the loop."))
        after.append(c.assign(size, c.Call("readout_chunk"), "steps per chunk"))
        body: list = [c.assign(n_t, c.Call("chunk_len", (c.Name(size),)), "steps in this chunk")]
        read = set().union(*[names_in(e.expr) for e in L.readout_part])
        names = chunk_operands(L, read & (L.loop_names | set(L.prev_of) | set(L.step_of)), n_t, body)
        for e in L.readout_part:
            body.append(c.Comment(f"{e.name} = {text(e.expr)}"))
            if e.kind == "readout" or e.name in self.read_back:  # kept for every step
                after.append(c.assign(f"{e.name}_all", c.Call("empty", (c.Shape((
                    c.Dim(ops.shape_of(e.expr)[0]), c.Name("T * m"))),))))
                names[e.name] = chunk_columns(f"{e.name}_all", n_t)
                body.append(c.Update(names[e.name], "=", self.math(e.expr, names)))
            else:
                body.append(c.assign(e.name, self.math(e.expr, names)))
        after.append(c.ForChunks(c.Name(size), tuple(body)))
        for e in L.readout_part:
            if e.kind == "readout":
                after.append(c.assign(f"{e.name}_seq", c.Call("reshape_steps", (
                    f"{e.name}_all", c.Dim(ops.shape_of(e.expr)[0])))))

    def _cache(self) -> None:
        L, out = self.L, self.out
        self.readout_cached = [e.name for e in L.readout_part if e.name in self.read_back]
        cache = (([f"{L.buf}_seq"] if L.rows else [])
                 + [f"{n}_seq" for n in out.stored_rows if n in L.needed]
                 + [f"{n}_seq" for n, _ in out.stored] + [f"{n}_all" for n in self.readout_cached])
        out.cache = cache
        views = [c.assign(f"{n}_seq", v) for n, v in out.stored_rows.items() if n in L.needed]
        out.after = views + out.after
