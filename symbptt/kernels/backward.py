"""The backward pass of a sequence kernel as statements: readouts first, steps in reverse,
then the products over every step and the batch.

The readouts' backward runs once for all T·m columns before the loop; what it sends to the
states joins their upstream. In the loop, the adjoints of one step's stacked rows are
written into a reused buffer ``dgates``; σ' and tanh' multiply adjacent rows in one pass;
the adjoint of each operand of the stacked products is one product per step. The buffer
keeps a chunk of C steps; once a chunk is complete (at its first step), the input's adjoint,
every weight gradient and every other parameter's gradient get the chunk's share, each one
product or reduction over the chunk's steps and the batch.

Every value is named before a statement reads it, whatever the order of the cell's
declarations: a row's adjoint that a later equation reads gets its name when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatMul, MatrixSymbol, Transpose

from .. import ops
from ..cell import prev_name, step_name
from ..text import text
from . import code as c
from .forward import Forward, chunk_columns, chunk_operands, flat, rows_view, seq_view, write_into
from .layout import Layout, Row, total_rows
from .rewrite import names_in


@dataclass
class Backward:
    """The backward pass's statements and the gradient of every parameter."""

    setup: list = field(default_factory=list)
    loop: list = field(default_factory=list)
    after: list = field(default_factory=list)
    #: [(key, value, comment)] in the order of the cell's parameters
    grads: list = field(default_factory=list)


def _zeros(*dims) -> c.Call:
    return c.Call("zeros", (c.Shape(tuple(c.Dim(d) if not isinstance(d, c.Name) else d
                                         for d in dims)),))


class BackwardPlanner:
    """Emits :class:`Backward` for one layout and the forward planned for it."""

    def __init__(self, layout: Layout, forward: Forward):
        self.L = layout
        self.F = forward
        self.names = {b: layout.block_view(b) for b in layout.split.blocks}
        self.out = Backward()
        d = layout.d
        self.by_target = {a.target: a for a in d.backward}
        self.adjoint_names = {a.symbol.name for a in d.backward} | {
            s.name for s in d.incoming.values()}
        self.row_adjoint = {a.symbol.name: layout.row[a.target]
                            for a in d.backward if a.target in layout.row}
        self.ro_adjoints = [a for a in d.backward if a.target in layout.readout_names]
        self.readout_incoming = {sym.name for name, sym in d.incoming.items()
                                 if name in layout.readout_names}
        self.defined: dict = {}  # (rows, T·m) copies the readouts' backward made
        self.referenced: set[str] = set()

    def math(self, expr, extra: dict | None = None) -> c.Math:
        return c.Math.of(expr, {**self.names, **(extra or {})})

    def plan(self) -> Backward:
        self._readouts()
        self._setup()
        self._loop()
        self._after()
        self._grads()
        return self.out

    # -- before the loop ---------------------------------------------------------------------

    def _readouts(self) -> None:
        """The readouts' backward for every step at once; what it adds to the loop's adjoints."""
        L, d = self.L, self.L.d
        ro_into = {}  # loop value -> its adjoint's terms that come from the readouts
        for a in d.backward:
            ts = [t for t in a.terms if t.via in L.readout_names]
            if a.target not in L.readout_names and ts:
                ro_into[a.target] = ts
        self.extra_terms: dict[str, MatrixSymbol] = {}
        self.state_plus: dict[str, tuple] = {}
        self.ro_names: dict = {}
        if not (self.ro_adjoints or ro_into):
            return
        self.out.setup.append(c.Comment("The readouts' backward for every step at once, before the loop."))
        refs = set().union(*[names_in(a.expr) for a in self.ro_adjoints],
                           *[names_in(t.expr) for ts in ro_into.values() for t in ts])
        self._readout_names(refs)
        for a in self.ro_adjoints:
            self.ro_names[a.symbol.name] = c.View(f"{a.symbol.name}_all")
            self.out.setup.append(c.Comment(f"{a.symbol.name} = {text(a.expr)}"))
            self.out.setup.append(c.assign(f"{a.symbol.name}_all", self.math(a.expr, self.ro_names)))
        for target, ts in ro_into.items():
            self._readout_terms(target, ops.add(*[t.expr for t in ts]))
        self._release(refs)

    def _release(self, refs: set[str]) -> None:
        """``del`` the readouts' upstream gradients that nothing after their backward reads."""
        L, d = self.L, self.L.d
        later = set().union(*[names_in(a.expr) for a in d.backward if a.target not in L.readout_names],
                            *[names_in(a.expr) for a in d.parameters])
        done = sorted(f"{n}_all" for n in self.readout_incoming if n in refs and n not in later)
        if done:
            self.out.setup.append(c.Release(tuple(done), "read no more: freed before the loop"))

    def _readout_names(self, refs: set[str]) -> None:
        """Every value the readouts' backward reads, over every step: (rows, T·m) matrices."""
        L = self.L
        incoming = {s.name for s in L.d.incoming.values()}
        for n in sorted(refs):
            if n in L.readout_names or n in incoming:
                self.ro_names[n] = c.View(f"{n}_all")  # cached by the forward, or the upstream
            elif n in L.eq or n in L.prev_of or n in L.step_of or n in L.states:
                self.ro_names[n] = flat(L, n, self.defined, self.out.setup)

    def _readout_terms(self, target: str, total) -> None:
        sym = self.by_target[target].symbol
        steps = c.Call("reshape_steps", (c.Paren(self.math(total, self.ro_names)), c.Dim(sym.shape[0])))
        self.out.setup.append(c.Comment(f"{sym.name} += {text(total)}  (from the readouts)"))
        if target in self.L.states:
            self.state_plus[target] = self._product_into_upstream(target, total) or (("plus", steps),)
            return
        name = f"{sym.name}_ro"
        self.out.setup.append(c.assign(f"{name}_seq", steps))
        self.extra_terms[target] = MatrixSymbol(name, *sym.shape)
        self.names[name] = c.View(f"{name}_seq", (c.Name("t"),))

    def _product_into_upstream(self, state: str, total) -> tuple | None:
        """``Wᵀ·da`` from the readouts written straight into the state's upstream buffer, step
        by step (no (rows, T·m) temporary, no copy); None when the terms are not one product."""
        args: tuple = total.args if isinstance(total, MatMul) else ()
        if not (len(args) == 2 and isinstance(args[0], Transpose) and isinstance(args[0].arg, MatrixSymbol)
                and isinstance(args[1], MatrixSymbol) and args[1].name in self.ro_names):
            return None
        w, da = args[0].arg, args[1]
        rows = self.L.cell.symbols[prev_name(state)].shape[0]
        buf = f"d{state}_up"
        self.out.setup += [
            c.assign(buf, c.Call("workspace", (buf, c.Shape((c.Name("T"), c.Dim(rows), c.Name("m")))))),
            c.MatMulInto(c.View(buf), c.Transposed(self.names.get(w.name) or w.name, (1, 0)),
                         c.Call("reshape_steps", (self.ro_names[da.name], c.Dim(da.shape[0]))))]
        return (("plus", buf), ("into", "True"))

    def _setup(self) -> None:
        L, setup = self.L, self.out.setup
        self.C, self.n_t = L.fresh("C"), L.fresh("n_t")  # steps per chunk, in this chunk
        for st in L.states:
            kwargs = self.state_plus.get(st, ())
            setup.append(c.assign(f"d{st}_up", c.Call("upstream", (
                st, c.Dim(L.cell.symbols[prev_name(st)].shape[0])), kwargs)))
        setup.append(c.assign(self.C, c.Call("chunk_steps"),
                              "steps per chunk of the products over steps and batch"))
        if L.rows:
            self._stacked_buffers()
        self._kept_adjoints()
        for s in L.states:
            setup.append(c.assign(f"d{s}_carry", _zeros(L.cell.symbols[prev_name(s)].shape[0],
                                                         c.Name("m")),
                                  "gradient flowing back from step t+1"))

    def _stacked_buffers(self) -> None:
        """Stacked weights, and the adjoints of one chunk of C steps' rows (rows first)."""
        L, setup = self.L, self.out.setup
        for v, members in list(L.groups.items()) + list(L.static_groups.items()):
            if len(members) > 1:
                setup.append(c.assign(L.stacked[v], c.Call("concat", tuple(
                    L.wcode(w) for _, w in members)), f"weights of every product with {v}"))
        setup.append(c.assign(f"{L.dbuf}_seq", c.Call("workspace", (f"{L.dbuf}_seq", c.Shape((
            c.Dim(L.total), c.Name(self.C), c.Name("m"))))),
            f"adjoints of {L.buf}_seq's rows, C steps, rows first"))

    def _kept_adjoints(self) -> None:
        """Adjoints kept for every step, for parameters whose gradient is not a stacked product."""
        L, d = self.L, self.L.d
        self.fallback = [a for a in d.parameters if a.target not in L.covered]
        ro = {a.symbol.name for a in self.ro_adjoints}
        read = set().union(set(), *[names_in(a.expr) for a in self.fallback])
        self.kept = [n for n in sorted(read) if n in self.adjoint_names and n not in self.row_adjoint
                     and n not in self.readout_incoming and n not in ro]
        rows_of = {a.symbol.name: a.symbol.shape[0] for a in d.backward}
        rows_of.update({s.name: s.shape[0] for s in d.incoming.values() if s.name not in rows_of})
        for n in self.kept:
            self.out.setup.append(c.assign(f"{n}_seq", c.Call("empty", (c.Shape((
                c.Name("T"), c.Dim(rows_of[n]), c.Name("m"))),))))

    # -- one step, in reverse ----------------------------------------------------------------

    def _loop(self) -> None:
        L = self.L
        self.body: list = []
        self.pending: list[Row] = []
        self.unbound: dict[str, Row] = {}  # flushed rows' adjoints not yet given their name
        self.uses_gates = False
        self.carries: dict[str, tuple] = {}  # state -> (its adjoint, the expression carried)
        self.input_rest: dict[str, object] = {}
        self.batched = self._batched()
        incoming = self._incoming()
        for a in L.d.backward:
            if a.target not in L.readout_names:
                self._adjoint(a)
        self._flush()
        if self.uses_gates:
            incoming.insert(0, c.assign(L.buf, c.View(f"{L.buf}_seq", (c.Name("t"),))))
        self._input_rest()
        self._carries()
        fwd = ({e.name for e in L.forward} | set(L.prev_of) | set(L.step_of) | set(L.states))
        loads = [c.assign(n, seq_view(L, n)) for n in sorted(self.referenced & fwd)
                 if n not in self.adjoint_names]
        if L.rows:
            loads.append(c.assign(L.dbuf, c.View(f"{L.dbuf}_seq", (":", c.ChunkSlot(c.Name(self.C)))),
                                  "this step's column of the chunk"))
        self.out.loop = loads + incoming + self.body

    def _incoming(self) -> list[c.Statement]:
        """The states' adjoints entering the step: the loss's at t plus the carry from t + 1."""
        L = self.L
        out: list[c.Statement] = []
        for name, sym in L.d.incoming.items():
            if name not in L.states:
                continue
            up, carry = f"d{name}_up", f"d{name}_carry"
            value = c.IfElse(carry, c.IsNone(up), c.Sum((c.View(up, (c.Name("t"),)), carry)))
            if sym.name in self.kept:
                out.append(c.Assign((sym.name,), (c.Paren(value),),
                                    chain=c.View(f"{sym.name}_seq", (c.Name("t"),))))
            else:
                out.append(c.assign(sym.name, value))
        for r in L.rows:
            if r.name not in self.by_target:
                out.append(c.Update(self._dbuf_rows(r), "=", "0", f"nothing depends on {r.name}"))
        return out

    def _batched(self) -> dict[str, Row]:
        """Rows whose activation's adjoint is written into ``dgates`` and multiplied by the
        activation's derivative there, adjacent rows of one function in one pass."""
        batched = {}
        for r in self.L.rows:
            out_adj = self.by_target.get(r.act.name) if r.act else None
            row_adj = self.by_target.get(r.name)
            if (out_adj is not None and row_adj is not None and len(row_adj.terms) == 1
                    and row_adj.terms[0].via == r.activation.name and row_adj.incoming is None):
                batched[r.activation.name] = r
                batched[r.name] = r
        return batched

    def _dbuf_rows(self, r: Row) -> c.View:
        return rows_view(self.L.dbuf, r.start, r.stop, self.L.total)

    def _flush(self, need: set[str] | None = None) -> None:
        """Apply the activations' derivatives to the pending rows (all of them, adjacent rows
        of one function in one pass) if ``need`` reads one of them, or if need is None."""
        L, by_target = self.L, self.by_target
        if not any(need is None or by_target[r.name].symbol.name in need for r in self.pending):
            return
        todo = sorted(self.pending, key=L.rows.index)
        k = 0
        while k < len(todo):
            j = k + 1
            while (j < len(todo) and todo[j].act_kind == todo[k].act_kind
                   and L.rows.index(todo[j]) == L.rows.index(todo[j - 1]) + 1):
                j += 1
            self._derivative(todo[k:j])
            k = j
        for r in todo:
            self.unbound[by_target[r.name].symbol.name] = r
        self.pending.clear()
        self._bind(need or set())

    def _derivative(self, run: list[Row]) -> None:
        L = self.L
        lo, hi = run[0].start, run[-1].stop
        out = MatrixSymbol("__run__", hi - lo, ops.BATCH)
        deriv = type(run[0].activation.expr)(out).derivative(out)
        self.body.append(c.Comment(", ".join(f"{self.by_target[r.name].symbol.name} = "
                                             f"{text(self.by_target[r.name].expr)}" for r in run)))
        self.body.append(c.Update(rows_view(L.dbuf, lo, hi, L.total), "*",
                                  self.math(deriv, {"__run__": rows_view(L.buf, lo, hi, L.total)})))
        self.uses_gates = True

    def _bind(self, need: set[str]) -> None:
        """Name the flushed rows' adjoints that ``need`` reads (flushing pending ones first)."""
        if any(self.by_target[r.name].symbol.name in need for r in self.pending):
            self._flush(need)
        for name in sorted(need & set(self.unbound), key=lambda n: self.L.rows.index(self.unbound[n])):
            self.body.append(c.assign(name, self._dbuf_rows(self.unbound.pop(name))))

    def _adjoint(self, a) -> None:
        """The statements of one adjoint of the step."""
        L = self.L
        if a.target in self.batched:
            r = self.batched[a.target]
            if a.target == r.name:
                self.pending.append(r)  # the row's adjoint: σ' or tanh' applied in a run later
                return
            expr = self._without_readouts(a)
            self._bind(names_in(expr))
            self.body.append(c.Comment(f"{a.symbol.name} = {text(expr)}"))
            self.body.append(c.assign(a.symbol.name, self._dbuf_rows(r)))
            self.body.extend(write_into(a.symbol.name, expr, self.names))
            self.referenced |= names_in(expr)
            return
        grouped = [t for t in a.terms if self._grouped(t, a.target, L.grouped)]
        static = [t for t in a.terms if self._grouped(t, a.target, L.grouped_static)]
        rest = [t for t in a.terms if t not in grouped and t not in static
                and t.via not in L.readout_names]
        self._bind(set().union(set(), *[names_in(t.expr) for t in rest]))
        parts = ([a.incoming] if a.incoming is not None else []) + [t.expr for t in rest]
        if a.target in self.extra_terms:
            parts.append(self.extra_terms[a.target])
        if grouped:
            parts.append(self._grouped_product(a, grouped))
        if a.target in L.step_of:
            if parts:
                self.input_rest[a.target] = ops.add(*parts)
                self.referenced |= names_in(self.input_rest[a.target])
            return
        expr = ops.add(*parts) if parts else sp.ZeroMatrix(*a.symbol.shape)
        self.referenced |= names_in(expr)
        if a.target in L.prev_of:
            self.carries[a.target] = (a, expr)
            return
        self._write_adjoint(a, expr)

    def _without_readouts(self, a):
        """a's adjoint with the readouts' terms read from their sum made before the loop."""
        if a.target not in self.extra_terms:
            return a.expr
        return ops.add(*([a.incoming] if a.incoming is not None else []),
                       *[t.expr for t in a.terms if t.via not in self.L.readout_names],
                       self.extra_terms[a.target])

    def _write_adjoint(self, a, expr) -> None:
        name = a.symbol.name
        self.body.append(c.Comment(f"{name} = {text(expr)}"))
        if name in self.row_adjoint:
            self.body.append(c.assign(name, self._dbuf_rows(self.row_adjoint[name])))
            self.body.extend(write_into(name, expr, self.names))
        elif name in self.kept:
            self.body.append(c.assign(name, c.View(f"{name}_seq", (c.Name("t"),))))
            self.body.extend(write_into(name, expr, self.names))
        else:
            self.body.append(c.assign(name, self.math(expr)))

    def _grouped_product(self, a, grouped) -> MatrixSymbol:
        """Σ Wᵀ·da over the rows that multiply ``a.target``: one product per run of rows."""
        L = self.L
        self._flush()
        v = a.target
        members = L.groups[v]
        gname = f"{a.symbol.name}_{L.buf}"
        gtotal = total_rows(r for r, _ in members)
        pieces = []
        for run in L.runs(members):
            w = L.stacked[v] if ops.same_dim(run.rows, gtotal) else rows_view(
                L.stacked[v], run.group_start, run.group_start + run.rows, gtotal)
            src = rows_view(L.dbuf, run.start, run.start + run.rows, L.total)
            pieces.append(c.Product(w, src, transpose_a=True))
        self.body.append(c.Comment(f"{gname} = " + " + ".join(text(t.expr) for t in grouped)
                                   + (": one product" if len(grouped) > 1 else "")))
        self.body.append(c.assign(gname, c.Sum(tuple(pieces))))
        return MatrixSymbol(gname, *a.symbol.shape)

    def _grouped(self, term, target: str, table) -> bool:
        """A term ``Wᵀ·da`` of ``target``'s adjoint that a stacked product computes."""
        if term.via not in self.L.row or not isinstance(term.expr, MatMul):
            return False
        _, factors = ops._matmul_split(term.expr)
        if not factors or not isinstance(factors[0], Transpose):
            return False
        w = factors[0].arg
        return isinstance(w, MatrixSymbol) and table.get((term.via, w.name)) == target

    def _input_rest(self) -> None:
        L = self.L
        for i in L.inputs:
            xt = step_name(i)
            if xt not in self.input_rest:
                continue
            expr = self.input_rest[xt]
            self._bind(names_in(expr))
            self.body.append(c.Comment(f"d{xt} (the part not through the stacked products)"))
            self.body.append(c.Update(c.View(f"d{i}_rest_seq", (c.Name("t"),)), "=", self.math(expr)))
            self.out.setup.append(c.assign(f"d{i}_rest_seq", c.Call("empty", (c.Shape((
                c.Name("T"), c.Dim(L.cell.symbols[xt].shape[0]), c.Name("m"))),))))

    def _carries(self) -> None:
        L = self.L
        self.body.append(c.assign("cut", c.TruncationCut()))
        for s in L.states:
            a, expr = self.carries[prev_name(s)]
            self._bind(names_in(expr))
            self.body.append(c.Comment(f"{a.symbol.name} = {text(expr)}"))
            self.body.append(c.assign(f"d{s}_carry", c.IfElse(
                self.math(expr), c.Not(c.Name("cut")), _zeros(a.symbol.shape[0], c.Name("m")))))

    # -- after the loop ----------------------------------------------------------------------

    def _after(self) -> None:
        """The products over steps and batch: per chunk of C steps in the loop (once the
        chunk's adjoints are complete, at its first step), accumulated into the gradients."""
        L = self.L
        self.chunk: list = [c.assign(self.n_t, c.Call("chunk_len", (c.Name(self.C),)), "steps in this chunk")]
        if L.rows:
            self.chunk.append(c.assign(f"{L.dbuf}_chunk", c.Call("chunk_matrix", (
                f"{L.dbuf}_seq", c.Dim(L.total), c.Name(self.n_t))), "(rows, n_t·m)"))
        self.cv = self._chunk_values()
        for i in L.inputs:
            self._input_gradient(i)
        self.block: dict[str, object] = {}
        for v, members in list(L.static_groups.items()) + list(L.groups.items()):
            self._weight_gradients(v, members)
        if any(b in L.covered for r in L.rows for b in r.biases):
            self.out.setup.append(c.assign(f"d{L.buf}_bias", _zeros(L.total, 1),
                                           "every row's Σ over steps and batch"))
            self.chunk.append(c.Update(c.View(f"d{L.buf}_bias"), "+", c.Call(
                "rowsum", (f"{L.dbuf}_chunk",))))
        self._fallback_gradients()
        if len(self.chunk) > 1:
            self.out.loop.append(c.Comment("A chunk's products over its steps and the batch, "
                                           "once its first step is done."))
            self.out.loop.append(c.When(c.ChunkStart(c.Name(self.C)), tuple(self.chunk)))

    def _chunk_values(self) -> dict:
        """What the chunk's products read, over its steps: (rows, n_t·m) views of the buffers
        kept for every step, and copies of one chunk of the others."""
        L = self.L
        ro = {a.symbol.name for a in self.ro_adjoints}
        wanted = set(L.static_groups) | set(L.groups) | {
            n for a in self.fallback for n in names_in(a.expr) if n not in L.params}
        values: dict = {}
        for n in sorted(wanted):
            if n in L.readout_names or n in self.readout_incoming or n in ro:
                values[n] = chunk_columns(f"{n}_all", self.n_t)
            elif n in self.row_adjoint:
                r = self.row_adjoint[n]
                values[n] = self._chunk_rows(r.start, r.rows)
        # the rest: the input, states, values kept in sequence buffers, kept adjoints
        copies = {n for n in wanted if n not in values}
        return values | chunk_operands(L, copies, self.n_t, self.chunk)

    def _fallback_gradients(self) -> None:
        """The gradients the stacked products do not give, each a sum over the chunks."""
        self.fallback_sums: dict[str, str] = {}
        for a in self.fallback:
            if not a.terms:
                continue
            name = self.L.fresh(f"{a.symbol.name}_sum")
            self.fallback_sums[a.target] = name
            self.out.setup.append(c.assign(name, _zeros(*a.symbol.shape), f"{a.symbol.name} = Σ_t {text(a.expr)}"))
            self.chunk.append(c.Update(c.View(name), "+", self.math(a.expr, self.cv)))

    def _chunk_rows(self, start, rows) -> c.View:
        return rows_view(f"{self.L.dbuf}_chunk", start, start + rows, self.L.total)

    def _input_gradient(self, i: str) -> None:
        """dx: the stacked input products' transposes per chunk, plus the rest after the loop."""
        L, after = self.L, self.out.after
        xt = step_name(i)
        members = L.static_groups.get(xt)
        rows = L.cell.symbols[xt].shape[0]
        if members:
            self.out.setup.append(c.assign(f"d{i}_all", c.Call("empty", (c.Shape((
                c.Dim(rows), c.Name("T * m"))),))))
            gtotal = total_rows(r for r, _ in members)
            self.chunk.append(c.Comment(f"d{xt} = " + " + ".join(f"{w}ᵀ·d{r.name}" for r, w in members)))
            out = chunk_columns(f"d{i}_all", self.n_t)
            for k, run in enumerate(L.runs(members)):
                w = L.stacked[xt] if ops.same_dim(run.rows, gtotal) else rows_view(
                    L.stacked[xt], run.group_start, run.group_start + run.rows, gtotal)
                src = self._chunk_rows(run.start, run.rows)
                self.chunk.append(c.MatMulInto(out, c.Transposed(w, (1, 0)), src) if k == 0 else
                                  c.Update(out, "+", c.Product(w, src, transpose_a=True)))
            if xt in self.input_rest:
                after.append(c.Update(c.View(f"d{i}_all"), "+", c.Call("flat", (f"d{i}_rest_seq",))))
        elif xt in self.input_rest:
            after.append(c.assign(f"d{i}_all", c.Call("flat", (f"d{i}_rest_seq",))))
        else:
            after.append(c.assign(f"d{i}_all", _zeros(rows, c.Name("T * m"))))

    def _weight_gradients(self, v: str, members) -> None:
        """One product per operand (and contiguous run of rows) and chunk gives its weights'
        gradients, accumulated over the chunks."""
        L = self.L
        runs = L.runs(members)
        stacked = L.stacked[v]
        own_name = len(runs) == 1 and isinstance(stacked, str) and stacked not in L.params
        cols = L.cell.symbols[v].shape[0]
        operand = self.cv[v]
        for k, run in enumerate(runs):
            name = L.fresh(f"d{stacked}" if own_name else f"dW_{v}" + (f"_{k + 1}" if len(runs) > 1 else ""))
            self.out.setup.append(c.assign(name, _zeros(run.rows, cols), ", ".join(
                f"d{w}" for _, w in run.members) + f" = Σ_t d(row)·{v}ᵀ"))
            self.chunk.append(c.Update(c.View(name), "+", c.Product(
                self._chunk_rows(run.start, run.rows), operand, transpose_b=True)))
            off = run.start
            for r, w in run.members:
                self.block[w] = c.View(name) if len(run.members) == 1 else rows_view(
                    name, off - run.start, off - run.start + r.rows, run.rows)
                off = off + r.rows

    def _grads(self) -> None:
        L = self.L
        self.used_slices: set = set()
        self.ga = {a.target: a for a in L.d.parameters}
        original = {a.target: a for a in L.original.parameters}
        for p in L.original.cell.parameters:
            if p.name in L.split.split_weights:
                value = c.Call("concat", tuple(self._grad(b) for b in L.split.split_weights[p.name]),
                               (("axis", "1"),))
            else:
                value = self._grad(p.name)
            self.out.grads.append((f"d{p.name}", value,
                                   f"d{p.name} = Σ_t {text(original[p.name].expr)}"))

    def _grad(self, p: str):
        L = self.L
        if p in self.block:
            return self.block[p]
        if p in L.covered and p in L.biases:
            parts = []
            for r in L.rows:
                if p in r.biases:
                    sl = rows_view(f"d{L.buf}_bias", r.start, r.stop, L.total)
                    parts.append(c.Call("copy", (sl,)) if sl in self.used_slices else sl)
                    self.used_slices.add(sl)
            return c.Sum(tuple(parts))
        if p in self.fallback_sums:
            return c.View(self.fallback_sums[p])
        return _zeros(*self.ga[p].symbol.shape)
