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

from dataclasses import dataclass, field

from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol

from . import ops
from .cell import prev_name, step_name
from .derive import Derivation

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


class _Builder:
    """Turns a derivation's forward equations into a :class:`Graph` (one pass, in order)."""

    def __init__(self, d: Derivation, printer):
        self.d, self.p = d, printer
        self.params = {s.name for s in d.cell.parameters}
        self.graph = Graph()
        self.node_of: dict[str, list[str]] = {}  # value name → nodes that stand for it

    def value_text(self, name: str) -> str:
        return self.p.doprint(MatrixSymbol(name, 1, 1)) if name not in self.d.cell.symbols else \
            self.p.symbol_latex(name)

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
        return [self.graph.add(r"$\odot$", "op", self._all(values))]

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
                node = inner[0]
                self.graph.text[node] = rf"${sym}$\\[-1pt]{{\scriptsize {self.graph.text[node]}}}"
                self.graph.style[node] = "named"
                self.graph.delta[node] = rf"$\delta {sym}$"
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
    """Longest-path columns, rows ordered by the mean height of a node's inputs."""
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
            names.sort(key=lambda n: sum(pos[i][1] for i in graph.inputs[n]) / max(len(graph.inputs[n]), 1))
        for j, name in enumerate(names):
            pos[name] = (k * step, ((len(names) - 1) / 2 - j) * 1.3)
    return pos


def _bend(graph: Graph, pos: dict, src: str, dst: str) -> str:
    """Curve an arrow that skips a column away from the nodes between (straight otherwise)."""
    (x0, y0), (x1, y1) = pos[src], pos[dst]
    between = [n for n, (x, y) in pos.items() if x0 < x < x1 and abs(y - (y0 + (y1 - y0) * (x - x0) / (x1 - x0))) < 0.6]
    if not between:
        return " "
    return "[bend left=18] " if y0 >= y1 else "[bend right=18] "


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
