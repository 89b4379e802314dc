"""Laying out a cell's step for the kernel: which equations run in the loop, which rows of
one stacked buffer each affine equation gets, which products share an operand.

Every affine equation of the loop (``a = Σ W·v + b + rest``) gets rows in one buffer
``gates_seq`` (T, rows, m). Products with a per-step input are *static* (computed for every
step before the loop), the others *dynamic* (one product per step and operand, against the
weights stacked once). Rows are ordered so that each shared operand's rows, and each
activation's, are adjacent. An activation whose pre-activation nothing else reads
overwrites its rows (σ as (1 + tanh(u/2))/2, so σ and tanh rows activate in one call).
Readouts (equations no state depends on) run after the loop, over every step at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol

from .. import ops
from ..cell import Equation, prev_name, step_name
from ..derive import Derivation
from .code import Rows, View
from .rewrite import names_in, product, split_cell, terms_of, uses


def in_place_name(expr) -> str | None:
    """The operation (its ``op_name``) whose kernel function applies ``expr`` in place
    (``out=``), if it has one; the printer spells it for its array library."""
    cls = type(expr)
    if not issubclass(cls, ops.Pointwise):
        return None
    return cls.op_name if getattr(cls, "numpy_out", False) else None


@dataclass
class Row:
    """One affine equation of the loop with rows in the stacked buffer."""

    name: str
    rows: sp.Expr
    static: list = field(default_factory=list)  # [(weight, operand)] products with an input
    dynamic: list = field(default_factory=list)  # [(weight, operand)] products with a step value
    biases: list = field(default_factory=list)  # bias names
    rest: list = field(default_factory=list)  # other terms (added in the loop)
    start: sp.Expr = sp.S.Zero
    act: Equation | None = None  # the activation equation that reads only this row, if in place
    act_kind: str = ""
    #: σ computed as (1 + tanh(u/2))/2 with the ½ folded into the row's weights and biases
    half: bool = False

    @property
    def stop(self) -> sp.Expr:
        return self.start + self.rows

    @property
    def activation(self) -> Equation:
        """The in-place activation, for a row known to have one."""
        if self.act is None:
            raise ValueError(f"row {self.name} has no in-place activation")
        return self.act

    @property
    def family(self) -> str:
        """Rows of one family are activated by one call (σ with halved rows joins tanh)."""
        return ops.Tanh.op_name if self.half else self.act_kind


def total_rows(rows) -> sp.Expr:
    return sum((r.rows for r in rows), sp.Integer(0))


@dataclass
class Run:
    """Adjacent rows of one operand's group: ``members`` [(row, weight)], where they start in
    the group's stacked weights and in the buffer."""

    members: list
    group_start: sp.Expr
    start: sp.Expr

    @property
    def rows(self) -> sp.Expr:
        return total_rows(r for r, _ in self.members)


class Layout:
    """The cell split for speed, its loop and readout equations, and the stacked rows."""

    def __init__(self, derivation: Derivation):
        self.original = derivation
        self.split = split_cell(derivation)
        self.d = self.split.derivation
        self.cell = self.split.cell
        self.states = self.cell.states
        self.inputs = self.cell.inputs
        self.prev_of = {prev_name(s): s for s in self.states}
        self.step_of = {step_name(i): i for i in self.inputs}
        params = self.cell.parameters
        self.params = {p.name for p in params}
        self.weights = {p.name for p in params if p.role == "weight"}
        self.biases = {p.name for p in params if p.role == "bias"}
        self.forward = self.d.forward
        self.eq = {e.name: e for e in self.forward}
        self._taken: set[str] = set()
        self._classify()
        self.rows = self._order(self._in_place(self._affine_rows()))
        start = sp.Integer(0)
        for r in self.rows:
            r.start, start = start, start + r.rows
        self.total = start
        self.row = {r.name: r for r in self.rows}
        self.rows_in_state = self._rows_in_state()
        self.groups = self._groups("dynamic")
        self.static_groups = self._groups("static")
        self._analyse()

    # -- which equations run where -----------------------------------------------------------

    def _classify(self) -> None:
        needed: set[str] = set()
        loop = set()
        for e in reversed(self.forward):
            if e.kind == "update" or e.name in needed:
                loop.add(e.name)
                needed |= names_in(e.expr)
        self.loop = [e for e in self.forward if e.name in loop]
        self.readout_part = [e for e in self.forward if e.name not in loop]
        self.readout_names = {e.name for e in self.readout_part}
        self.loop_names = {e.name for e in self.loop}

    def _affine_rows(self) -> list[Row]:
        weight_uses = {w: sum(uses(e.expr, w) for e in self.forward) for w in self.weights}
        rows = []
        for e in self.loop:
            if e.kind != "let" or ops.is_nonlinear(e.expr) or isinstance(e.expr, ops.Stack):
                continue
            r = Row(e.name, ops.shape_of(e.expr)[0])
            seen = set()
            for t in terms_of(e.expr):
                pv = product(t, self.weights)
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
        return rows

    def _in_place(self, rows: list[Row]) -> list[Row]:
        """An activation overwrites its pre-activation's rows when nothing else reads them."""
        backward_names = self._backward_names()
        for r in rows:
            users = [e for e in self.forward if uses(e.expr, r.name)]
            if len(users) != 1 or users[0].kind != "let" or r.name in backward_names:
                continue
            expr = users[0].expr
            fn = in_place_name(expr)
            if fn and isinstance(expr.arg, MatrixSymbol) and expr.arg.name == r.name:
                r.act, r.act_kind = users[0], fn
                r.half = isinstance(expr, ops.Sigmoid) and not r.rest
        return rows

    def _backward_names(self) -> set[str]:
        """Every name the backward's adjoints and parameter gradients read."""
        names: set[str] = set()
        for a in self.d.backward + self.d.parameters:
            names |= names_in(a.expr)
        return names

    def _rows_in_state(self) -> str | None:
        """The state whose own sequence buffer holds the stacked rows, or None.

        When the only row is read by nothing but its state's update, an elementwise function
        with an in-place kernel form (the plain RNN's h = tanh(a_h)), and not by the backward,
        the state overwrites its pre-activation at each step: the rows live in the state's
        buffer (step t's in s_seq[t + 1]) and no separate buffer of T steps is kept."""
        if len(self.rows) != 1 or self.rows[0].act is not None:
            return None
        name = self.rows[0].name
        users = [e for e in self.forward if uses(e.expr, name)]
        if len(users) != 1 or users[0].kind != "update" or name in self._backward_names():
            return None
        expr = users[0].expr
        if in_place_name(expr) and isinstance(expr.arg, MatrixSymbol) and expr.arg.name == name:
            return users[0].name
        return None

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

    def runs(self, members: list[tuple[Row, str]]) -> list[Run]:
        """Contiguous stretches of a group's rows."""
        out: list[Run] = []
        gstart = sp.Integer(0)
        for r, w in members:
            if out and ops.same_dim(out[-1].start + out[-1].rows, r.start):
                out[-1].members.append((r, w))
            else:
                out.append(Run([(r, w)], gstart, r.start))
            gstart = gstart + r.rows
        return out

    # -- names -------------------------------------------------------------------------------

    @contextmanager
    def scratch(self) -> Iterator[None]:
        """Names made fresh inside are free again after it: one function's locals (the
        forward's readout loop), which the other function may name the same."""
        taken = set(self._taken)
        yield
        self._taken = taken

    def fresh(self, base: str) -> str:
        """A kernel variable name that no symbol, equation or adjoint of the cell uses."""
        taken = set(self.original.cell.symbols) | set(self.cell.symbols) | {
            e.name for e in self.original.forward + self.forward} | {
            a.symbol.name for a in self.d.backward + self.d.parameters} | self._taken
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    # -- what the backward needs from the forward --------------------------------------------

    def _analyse(self) -> None:
        self.buf = self.fresh("gates")
        self.dbuf = self.fresh("dgates")
        self.stacked: dict = {}  # operand -> its stacked weights' name, or one weight
        self.fstacked: dict = {}  # the same in forward, where σ rows are halved
        for v, members in list(self.static_groups.items()) + list(self.groups.items()):
            name = self.fresh(f"W_{v}")
            single = self.wcode(members[0][1])
            self.stacked[v] = name if len(members) > 1 else single
            self.fstacked[v] = name if len(members) > 1 or members[0][0].half else single
        # Grouped product terms in the backward: (via row, weight) -> operand.
        self.grouped = {(r.name, w): v for v, ms in self.groups.items() for r, w in ms}
        self.grouped_static = {(r.name, w): v for v, ms in self.static_groups.items() for r, w in ms}
        self.covered = self._covered()
        self.needed = self._needed()

    def _covered(self) -> set[str]:
        """Parameters whose gradient comes from the stacked products / the stacked row sums."""
        occurrences = {p: sum(uses(e.expr, p) for e in self.forward) for p in self.params}
        in_rows: dict[str, int] = {}
        for r in self.rows:
            for p in [w for w, _ in r.static + r.dynamic] + r.biases:
                in_rows[p] = in_rows.get(p, 0) + 1
        return {p for p in self.params if occurrences[p] and in_rows.get(p, 0) == occurrences[p]}

    def _needed(self) -> set[str]:
        """Forward values the backward reads (besides the stacked rows)."""
        needed: set[str] = set(self.groups)
        for a in self.d.backward:
            needed |= names_in(a.expr)
        for a in self.d.parameters:
            if a.target not in self.covered:
                needed |= names_in(a.expr)
        for e in self.readout_part:
            needed |= names_in(e.expr)
        return needed & {e.name for e in self.forward}

    def wcode(self, w: str):
        """A weight as the kernel reads it: its name, or a column block of an original weight."""
        return self.block_view(w) or w

    def block_view(self, w: str):
        """The column block of an original weight that a split weight ``w`` names, or None."""
        block = self.split.blocks.get(w)
        if block is None:
            return None
        cols = self.original.cell.symbols[block.weight].shape[1]
        return View(block.weight, (":", Rows(block.lo, block.hi, cols)))
