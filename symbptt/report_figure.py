"""The dataflow figures of a report: one step's forward graph and its backward twin, in TikZ.

Every operation of the step is a node: the values the cell names (boxes, with the
nonlinearity that makes them, ``z_t = σ(·)``), the stacks and gated products the lowering
introduced (``u_t = [·;·]``, ``s_t = ·⊙·``), and the operations inside an equation
(``1−``, ``⊙``, ``+``) as small circles. Weights and biases are left out: an affine map
``W·u + b`` passes its operand straight to the node it feeds. Text sits only inside nodes,
so no arrow crosses a label.

The backward figure has the same layout with every arrow reversed (red) and each value
box showing its gradient δ: the chain rule sums what arrives at a node along its arrows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol

from . import ops
from .cell import prev_name, step_name
from .derive import Derivation
from .notation import canonical
from .report_order import expanded

#: Horizontal room for the figure's columns (cm) and the widest column step.
WIDTH = 15.5
MAX_STEP = 2.6


@dataclass
class Graph:
    """Nodes (id → LaTeX text, style, δ text) and arrows of one step, in creation order."""

    text: dict[str, str] = field(default_factory=dict)
    style: dict[str, str] = field(default_factory=dict)
    delta: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)

    def add(self, text: str, style: str, inputs: list[str], delta: str = "") -> str:
        node = f"n{len(self.text)}"
        self.text[node], self.style[node], self.delta[node] = text, style, delta
        self.inputs[node] = list(dict.fromkeys(inputs))
        return node


def inline_printed(d: Derivation) -> dict:
    """Operands the cell named for print (``cell.print_as``) that stay inside an equation.

    The lowering gives a stack or a product used twice its own equation, which prints under
    the cell's name; a product used once (gru_torch's ``r ⊙ h_n``) stays inline, and only the
    figure's node and the symbol table show its name. Keyed by :func:`canonical`:
    ``(LaTeX base, meaning, the expression)``.
    """
    lowered = {canonical(expanded(d, e.expr)) for e in d.forward if e.auto}
    return {key: (latex, meaning, expr) for expr, (latex, meaning) in d.cell.printed_names.items()
            if (key := canonical(expr)) not in lowered}


class _Builder:
    """Turns a derivation's forward equations into a :class:`Graph` (one pass, in order)."""

    def __init__(self, d: Derivation, printer):
        self.d, self.p = d, printer
        self.params = {s.name for s in d.cell.parameters}
        self.graph = Graph()
        self.node_of: dict[str, list[str]] = {}  # value name → nodes that stand for it
        self.inline = inline_printed(d)

    def feed(self, expr) -> list[str]:
        """The nodes an expression feeds into the node that reads it (creating op nodes)."""
        for kind, method in self._FEEDERS:
            if isinstance(expr, kind):
                return getattr(self, method)(expr)
        if isinstance(expr, ops.Pointwise) or type(expr) in ops.FUNCTIONS.values():
            return [self.graph.add(rf"${expr.latex_name}$", "op", self.feed(expr.args[0]))]
        return self._all(expr.args)

    def _all(self, exprs) -> list[str]:
        return [n for a in exprs if getattr(a, "is_Matrix", False) for n in self.feed(a)]

    def _symbol(self, expr: MatrixSymbol) -> list[str]:
        return [] if expr.name in self.params else list(self.node_of.get(expr.name, []))

    def _nothing(self, expr) -> list[str]:
        return []  # a bias or per-unit vector (parameters are left out)

    def _product(self, expr: MatMul) -> list[str]:
        return self._all(expr.args)  # W·u passes u on

    def _hadamard(self, expr: HadamardProduct) -> list[str]:
        values = [f for f in expr.args if not isinstance(f, ops.Broadcast)]
        if len(values) == 1:
            return self.feed(values[0])  # p ⊙ c with a per-unit vector p
        node = self.graph.add(r"$\odot$", "op", self._all(values))
        printed = self.inline.get(canonical(expr))
        if printed is not None:  # a product the cell named for print, left inside its equation
            self._name(node, rf"{printed[0]}_{{t}}")
        return [node]

    def _name(self, node: str, sym: str) -> None:
        """An operation node the cell named: its name above the operation, a named box."""
        self.graph.text[node] = rf"${sym}$\\[-1pt]{{\scriptsize {self.graph.text[node]}}}"
        self.graph.style[node] = "named"
        self.graph.delta[node] = rf"$\delta {sym}$"

    def _stack(self, expr) -> list[str]:
        return [self.graph.add(r"$[\cdot;\cdot]$", "op", self._all(expr.args))]

    _FEEDERS = ((MatrixSymbol, "_symbol"), (ops.Broadcast, "_nothing"), (MatMul, "_product"),
                (MatAdd, "_sum"), (HadamardProduct, "_hadamard"), (ops.Stack, "_stack"))

    def _sum(self, expr: MatAdd) -> list[str]:
        """An affine map passes its operands on; ``1 − z`` and a sum of products are nodes."""
        terms = expr.args
        constants = [t for t in terms if not t.atoms(MatrixSymbol)]
        values = [t for t in terms if t.atoms(MatrixSymbol)]
        if constants and len(values) == 1:
            return [self.graph.add(r"$1{-}$", "op", self.feed(values[0]))]
        affine = any(isinstance(t, (MatMul, ops.Broadcast)) and t.atoms(MatrixSymbol) & self._param_symbols()
                     for t in terms)
        fed = [self.feed(t) for t in values]
        if affine:
            return [n for group in fed for n in group]
        return [self.graph.add("$+$", "op", [n for group in fed for n in group])]

    def _param_symbols(self) -> set:
        return {s for s in self.d.cell.parameters for s in [MatrixSymbol(s.name, *s.shape)]}

    def equation(self, e) -> None:
        """Add the nodes of one forward equation."""
        sym = self.p.symbol_latex(e.name)
        if e.auto and e.name.startswith("a_"):
            self.node_of[e.name] = self.feed(e.expr)  # folded into the activation it feeds
            return
        if e.auto:
            inner = self.feed(e.expr)
            named = self.d.cell.printed_names and not sym.startswith((r"\left", "("))
            if named and len(inner) == 1 and self.graph.style[inner[0]] == "op":
                self._name(inner[0], sym)
            self.node_of[e.name] = inner
            return
        style = self._style(e)
        if isinstance(e.expr, (ops.Pointwise, ops.Softmax)):
            text = rf"${sym}$\\[-1pt]{{\scriptsize ${e.expr.latex_name}$}}"
            inputs = self.feed(e.expr.args[0])
        else:
            text, inputs = f"${sym}$", self.feed(e.expr)
        self.node_of[e.name] = [self.graph.add(text, style, inputs, rf"$\delta {sym}$")]

    def _style(self, e) -> str:
        if e.kind in ("update", "readout"):
            return "state" if e.kind == "update" else "readout"
        return "gate" if isinstance(e.expr, ops.Sigmoid) else "value"

    def build(self) -> tuple[Graph, list[str], dict[str, str]]:
        cell = self.d.cell
        sources = [prev_name(s) for s in cell.states] + [step_name(i) for i in cell.inputs]
        for name in sources:
            sym = self.p.symbol_latex(name)
            self.node_of[name] = [self.graph.add(f"${sym}$", "source", [], rf"$\delta {sym}$")]
        for e in self.d.forward:
            self.equation(e)
        states = {s: self.node_of[s][0] for s in cell.states}
        return self.graph, [self.node_of[s][0] for s in sources], states


def _layout(graph: Graph, sources: list[str]) -> dict[str, tuple[float, float]]:
    """Longest-path columns; in each, the node whose inputs sit highest on top, so that
    arrows from one column to the next do not cross where they need not."""
    layer = {s: 0 for s in sources}
    for node, inputs in graph.inputs.items():
        if node not in layer:
            layer[node] = 1 + max((layer[i] for i in inputs), default=0)
    columns: dict[int, list[str]] = {}
    for node in graph.text:
        columns.setdefault(layer[node], []).append(node)
    step = min(MAX_STEP, WIDTH / max(max(columns), 1))
    pos: dict[str, tuple[float, float]] = {}
    for k in sorted(columns):
        names = columns[k]
        if k:
            names.sort(key=lambda n: -sum(pos[i][1] for i in graph.inputs[n]) / max(len(graph.inputs[n]), 1))
        for j, name in enumerate(names):
            pos[name] = (k * step, ((len(names) - 1) / 2 - j) * 1.3)
    return pos


#: Bends tried for an arrow (degrees, TikZ ``bend left``; negative bends right), each with
#: these loosenesses (a steep start that flattens keeps a long arrow low).
BENDS = (0, 15, -15, 25, -25, 35, -35, 45, -45, 55, -55, 65, -65, 75, -75)
LOOSENESS = (1.0, 0.6, 0.4)
#: Room an arrow keeps from every node it does not join (cm).
CLEARANCE = 0.15


def _half_size(graph: Graph, node: str) -> tuple[float, float]:
    """A node's half width and half height in cm, estimated from its text (font \\small)."""
    if graph.style[node] == "op":
        return 0.3, 0.3
    lines = graph.text[node].split(r"\\")
    visible = max(len(re.sub(r"\\[a-zA-Z]+|[{}$_^]|\[[^]]*\]", "", line)) for line in lines)
    return 0.15 + 0.065 * visible, 0.3 if len(lines) == 1 else 0.42


def _curve(p0: tuple[float, float], p1: tuple[float, float], bend: float, looseness: float = 1.0,
           samples: int = 24):
    """Points of TikZ's ``to[bend left=bend, looseness=…]`` from p0 to p1 (a cubic Bézier)."""
    (x0, y0), (x1, y1) = p0, p1
    length, angle = math.hypot(x1 - x0, y1 - y0), math.atan2(y1 - y0, x1 - x0)
    out, into = angle + math.radians(bend), angle + math.pi - math.radians(bend)
    d = 0.3915 * length * looseness
    c0 = (x0 + d * math.cos(out), y0 + d * math.sin(out))
    c1 = (x1 + d * math.cos(into), y1 + d * math.sin(into))
    for k in range(1, samples):
        t = k / samples
        a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        yield (a * x0 + b * c0[0] + c * c1[0] + e * x1, a * y0 + b * c0[1] + c * c1[1] + e * y1)


def _clearance(graph: Graph, pos: dict, src: str, dst: str, bend: float, looseness: float = 1.0) -> float:
    """How far (cm) the arrow passes from the nearest node it does not join (< 0: through it)."""
    others = [(pos[n], _half_size(graph, n)) for n in pos if n not in (src, dst)]
    nearest = math.inf
    for x, y in _curve(pos[src], pos[dst], bend, looseness):
        for (nx, ny), (w, h) in others:
            nearest = min(nearest, max(abs(x - nx) - w, abs(y - ny) - h))
    return nearest


def _route(graph: Graph, pos: dict, src: str, dst: str) -> tuple[float, float]:
    """(bend, looseness) of an arrow: of those clear of every node, the one that strays least
    from the straight line, a full looseness first (a smooth arc); when none is clear, the
    clearest."""
    (x0, y0), (x1, y1) = pos[src], pos[dst]
    length = math.hypot(x1 - x0, y1 - y0)
    best, best_key = (0.0, 1.0), (1, 0, math.inf)
    for bend in BENDS:
        for looseness in LOOSENESS if bend else (1.0,):
            room = _clearance(graph, pos, src, dst, bend, looseness)
            stray = 0.3915 * length * looseness * abs(math.sin(math.radians(bend)))
            key = (0, looseness != 1.0, stray) if room >= CLEARANCE else (1, 0, -room)
            if key < best_key:
                best, best_key = (bend, looseness), key
    return best


def _bend(graph: Graph, pos: dict, src: str, dst: str) -> str:
    """The TikZ options of an arrow's path (a space when it goes straight)."""
    bend, looseness = _route(graph, pos, src, dst)
    if not bend:
        return " "
    side = f"bend left={bend:g}" if bend > 0 else f"bend right={-bend:g}"
    return f"[{side}] " if looseness == 1.0 else f"[{side}, looseness={looseness:g}] "


_STYLES = [r"\begin{tikzpicture}[>=Stealth, every node/.style={font=\small},",
           (r"  box/.style={draw, rounded corners=2pt, minimum height=6mm, inner sep=2pt, "
            r"align=center, fill=white},"),
           r"  source/.style={box, fill=blue!8}, gate/.style={box, fill=orange!15},",
           r"  value/.style={box, fill=green!12}, state/.style={box, fill=red!10, thick},",
           r"  readout/.style={box, fill=violet!12}, named/.style={box, fill=gray!10},",
           r"  op/.style={draw, circle, inner sep=1pt, minimum size=5mm, fill=gray!10}]"]


def figure(d: Derivation, printer, backward: bool = False) -> str:
    """TikZ code of the step's dataflow (``backward``: the reversed arrows and the δs)."""
    graph, sources, states = _Builder(d, printer).build()
    pos = _layout(graph, sources)
    lines = list(_STYLES)
    for node, text in graph.text.items():
        shown = graph.delta[node] if backward and graph.delta[node] else text
        x, y = pos[node]
        lines.append(rf"\node[{graph.style[node]}] ({node}) at ({x:.2f}, {y:.2f}) {{{shown}}};")
    arrow = "<-, red!70!black" if backward else "->"
    for node, inputs in graph.inputs.items():
        for i in inputs:
            lines.append(rf"\draw[{arrow}] ({i}) to{_bend(graph, pos, i, node)}({node});")
    for node in states.values():
        lines.append(rf"\draw[{arrow}, dashed] ({node}.north) -- ++(0, 0.7) node[above] "
                     rf"{{\scriptsize $t{{+}}1$}};")
    lines.append(r"\end{tikzpicture}")
    return "\n".join(lines)


__all__ = ["figure"]
