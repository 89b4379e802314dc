"""The dataflow figures (``symbptt/report_figure.py``) computed inside each test: the graph of
one step (nodes, styles, δ texts, arrows), the layout (longest-path columns, rows centred),
the arrows' routes (clear of the nodes they do not join), the TikZ text, and each built-in
cell's figures as its committed report (``generated/latex``) prints them."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

from symbptt import derive
from symbptt.loader import builtin_cells, load
from symbptt.notation import latex_printer
from symbptt.report_figure import (
    BENDS,
    CLEARANCE,
    LOOSENESS,
    MAX_STEP,
    WIDTH,
    Graph,
    _bend,
    _Builder,
    _clearance,
    _curve,
    _half_size,
    _layout,
    _route,
    figure,
    inline_printed,
)

GENERATED = Path(__file__).resolve().parent.parent / "generated" / "latex"


def _built(name: str):
    d = derive(load(name)).inlined()
    return d, latex_printer(d)


@pytest.mark.parametrize("name", sorted(p.stem for p in builtin_cells()))
def test_each_cells_figures_are_those_its_report_prints(name):
    """The forward and backward figures are the committed report's (generated/ is rebuilt and
    compared by the freshness test; here the figures alone, in this process)."""
    d, p = _built(name)
    tex = (GENERATED / f"{name}.tex").read_text(encoding="utf-8")
    forward, backward = figure(d, p), figure(d, p, backward=True)
    assert forward in tex
    assert backward in tex
    assert forward != backward


def test_graph_numbers_nodes_and_keeps_each_input_once():
    g = Graph()
    a = g.add("$a$", "source", [])
    b = g.add("$b$", "op", [a, a], r"$\delta b$")
    assert (a, b) == ("n0", "n1")
    assert g.inputs == {"n0": [], "n1": ["n0"]}
    assert (g.text["n1"], g.style["n1"], g.delta["n1"], g.delta["n0"]) == ("$b$", "op", r"$\delta b$", "")


def test_rnn_graph():
    d, p = _built("rnn")
    graph, sources, states = _Builder(d, p).build()
    assert sources == ["n0", "n1"]
    assert states == {"h": "n2"}
    assert graph.text == {"n0": r"$\mathbf{h}_{t-1}$", "n1": r"$\mathbf{x}_{t}$",
                          "n2": r"$\mathbf{h}_{t}$\\[-1pt]{\scriptsize $\tanh$}",
                          "n3": r"$\hat{\mathbf{y}}_{t}$\\[-1pt]{\scriptsize $\operatorname{softmax}$}"}
    assert graph.style == {"n0": "source", "n1": "source", "n2": "state", "n3": "readout"}
    assert graph.delta["n3"] == r"$\delta \hat{\mathbf{y}}_{t}$"
    assert graph.inputs == {"n0": [], "n1": [], "n2": ["n0", "n1"], "n3": ["n2"]}


def test_gru_torch_graph_names_its_inline_product_and_has_its_operations():
    d, p = _built("gru_torch")
    assert [v[0] for v in inline_printed(d).values()] == [r"\mathbf{s}"]
    graph, _, states = _Builder(d, p).build()
    styles = list(graph.style.values())
    assert styles == ["source", "source", "gate", "gate", "value", "named", "value", "op", "op", "op", "op",
                      "state"]
    named = next(n for n, s in graph.style.items() if s == "named")
    assert graph.text[named] == r"$\mathbf{s}_{t}$\\[-1pt]{\scriptsize $\odot$}"
    assert graph.delta[named] == r"$\delta \mathbf{s}_{t}$"
    ops_text = [graph.text[n] for n, s in graph.style.items() if s == "op"]
    assert ops_text == ["$1{-}$", r"$\odot$", r"$\odot$", "$+$"]
    plus = next(n for n in graph.text if graph.text[n] == "$+$")
    assert graph.inputs[states["h"]] == [plus]
    assert [graph.text[i] for i in graph.inputs[plus]] == [r"$\odot$", r"$\odot$"]


def test_gru_graph_has_its_stacks_and_named_products():
    """gru's u_t = [h; x] and v_t = [s; x] are operation nodes named for print; z, r gates."""
    d, p = _built("gru")
    graph, _, _ = _Builder(d, p).build()
    named = [graph.text[n] for n, s in graph.style.items() if s == "named"]
    assert any(t.startswith(r"$\mathbf{u}_{t}$") and r"[\cdot;\cdot]" in t for t in named)
    assert any(t.startswith(r"$\mathbf{s}_{t}$") and r"\odot" in t for t in named)
    assert sorted(s for s in graph.style.values() if s == "gate") == ["gate", "gate"]


def test_a_pre_activation_is_never_named_after_its_operation():
    """tanh(z ⊙ h_{t−1}) in a cell that names an operand for print: the ⊙ node that makes the
    pre-activation stays an operation (only operands the cell or the lowering named are boxes)."""
    from symbptt import Cell, odot, sigmoid, stack, tanh

    cell = Cell("gated", "a gate times the state, inside tanh; a stack named for print")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    u = cell.print_as(stack(h_prev, x), r"\mathbf{u}", "stacked")
    z = cell.let("z", sigmoid(cell.weight("W", n_h, n_h + n_x) @ u), "gate")
    cell.update("h", tanh(odot(z, h_prev)))
    d = derive(cell).inlined()
    graph, _, states = _Builder(d, latex_printer(d)).build()
    (product,) = graph.inputs[states["h"]]
    assert (graph.text[product], graph.style[product], graph.delta[product]) == (r"$\odot$", "op", "")
    assert [s for s in graph.style.values() if s == "named"] == ["named"]  # u_t only


def test_a_transposed_weight_passes_its_operand_on():
    """Tied weights, tanh(Wᵀ x): the transpose is of a parameter, left out like W itself."""
    from symbptt import Cell, tanh

    cell = Cell("tied", "a weight used transposed")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_x, n_h).T @ x) + h_prev)
    d = derive(cell).inlined()
    graph, sources, _ = _Builder(d, latex_printer(d)).build()
    tanh_node = next(n for n in graph.text if graph.text[n] == r"$\tanh$")
    assert graph.inputs[tanh_node] == [sources[1]]  # x_t only


def test_peephole_vectors_pass_their_operand_on():
    """lstm_peephole's p ⊙ c: a per-unit vector is a parameter, left out; c passes straight on."""
    d, p = _built("lstm_peephole")
    graph, sources, _ = _Builder(d, p).build()
    c_prev = next(n for n in sources if graph.text[n] == r"$\mathbf{c}_{t-1}$")
    gates = [n for n, s in graph.style.items() if s == "gate"]
    assert len(gates) == 3
    assert sum(c_prev in graph.inputs[g] for g in gates) == 2  # input and forget gates read c_{t-1}


def test_layout_columns_are_longest_paths_and_rows_are_centred():
    d, p = _built("gru_torch")
    graph, sources, _ = _Builder(d, p).build()
    pos = _layout(graph, sources)
    layer = {}
    for node, inputs in graph.inputs.items():
        layer[node] = 0 if node in sources else 1 + max((layer[i] for i in inputs), default=0)
    step = min(MAX_STEP, WIDTH / max(layer.values()))
    for node, (x, _) in pos.items():
        assert x == pytest.approx(layer[node] * step)
    for k in set(layer.values()):
        ys = sorted(y for n, (x, y) in pos.items() if layer[n] == k)
        assert sum(ys) == pytest.approx(0)
        assert all(b - a == pytest.approx(1.3) for a, b in itertools.pairwise(ys))


def _two_columns():
    g = Graph()
    top, bottom = g.add("a", "source", []), g.add("b", "source", [])
    low, high = g.add("c", "value", [bottom]), g.add("d", "value", [top])  # created low first
    return _layout(g, [top, bottom]), top, bottom, low, high


def test_layout_puts_sources_in_order_and_a_column_at_one_step():
    pos, top, bottom, low, high = _two_columns()
    assert pos[top] == (0.0, 0.65) and pos[bottom] == (0.0, -0.65)
    assert pos[high][0] == pos[low][0] == MAX_STEP
    assert {pos[high][1], pos[low][1]} == {0.65, -0.65}


def test_layout_orders_a_column_by_the_height_of_its_inputs():
    """A node fed from above is drawn above one fed from below (their arrows would cross)."""
    pos, _, _, low, high = _two_columns()
    assert pos[high][1] > pos[low][1]


def test_a_sum_of_values_is_a_node_but_an_affine_map_is_not():
    """tanh(W x) + 2 h_{t−1}: no term multiplies a parameter, so the sum is a + node (2 h_{t−1}
    is a product, but of a number); in rnn's W x + U h + b the products pass their operands on."""
    from symbptt import Cell, tanh
    from symbptt.ops import scale

    cell = Cell("scaled", "a scaled previous state beside a product")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x) + scale(2, h_prev))
    d = derive(cell).inlined()
    graph, sources, states = _Builder(d, latex_printer(d)).build()
    assert [graph.text[n] for n in graph.inputs[states["h"]]] == ["$+$"]
    plus = graph.inputs[states["h"]][0]
    assert graph.inputs[plus] == [sources[0], next(n for n in graph.text if graph.text[n] == r"$\tanh$")]
    assert "$+$" not in _Builder(*_built("rnn")).build()[0].text.values()


def test_a_node_without_inputs_that_is_no_source_sits_in_the_first_column_after_them():
    g = Graph()
    source = g.add("s", "source", [])
    lonely = g.add("v", "value", [])  # a value of parameters only
    fed = g.add("w", "value", [lonely])
    pos = _layout(g, [source])
    assert (pos[source][0], pos[lonely][0], pos[fed][0]) == (0.0, MAX_STEP, 2 * MAX_STEP)


def test_layout_fits_many_columns_into_the_width():
    many = Graph()
    chain = [many.add("s", "source", [])]
    for _ in range(12):
        chain.append(many.add("v", "value", [chain[-1]]))
    assert _layout(many, chain[:1])[chain[-1]][0] == pytest.approx(WIDTH)  # 12 columns fit the width


def test_half_sizes():
    g = Graph()
    op = g.add(r"$\odot$", "op", [])
    box = g.add(r"$\mathbf{h}_{t}$", "state", [])
    two = g.add(r"$\mathbf{h}_{t}$\\[-1pt]{\scriptsize $\tanh$}", "state", [])
    assert _half_size(g, op) == (0.3, 0.3)
    assert _half_size(g, box) == pytest.approx((0.15 + 0.065 * len("ht"), 0.3))
    assert _half_size(g, two) == pytest.approx((0.15 + 0.065 * len("ht"), 0.42))  # \tanh: no letters counted
    wide = g.add(r"$a$\\[-1pt]{\scriptsize longer}", "named", [])
    assert _half_size(g, wide) == pytest.approx((0.15 + 0.065 * len(" longer"), 0.42))


def test_curve_is_tikz_bend():
    straight = list(_curve((0, 0), (2, 0), 0))
    assert len(straight) == 23
    assert all(y == pytest.approx(0) for _, y in straight)
    assert [x for x, _ in straight] == sorted(x for x, _ in straight)
    left = list(_curve((0, 0), (2, 0), 30))
    assert all(y > 0 for _, y in left)  # bend left of the direction of travel
    right = list(_curve((0, 0), (2, 0), -30))
    assert [y for _, y in right] == pytest.approx([-y for _, y in left])
    loose = list(_curve((0, 0), (2, 0), 30, looseness=0.4))
    assert max(y for _, y in loose) < max(y for _, y in left)
    # the midpoint of a cubic Bézier: (p0 + 3 c0 + 3 c1 + p1) / 8, controls 0.3915·length away
    d = 0.3915 * 2
    mid = left[11]
    assert mid[1] == pytest.approx(6 * d * math.sin(math.radians(30)) / 8)


def test_clearance_and_route():
    g = Graph()
    a, b, c = (g.add(t, "op", []) for t in "abc")
    pos = {a: (0.0, 0.0), b: (4.0, 0.0), c: (2.0, 0.0)}  # c sits on the straight line a → b
    assert _clearance(g, pos, a, b, 0) < 0
    bend, looseness = _route(g, pos, a, b)
    assert bend != 0
    assert _clearance(g, pos, a, b, bend, looseness) >= CLEARANCE
    assert _bend(g, pos, a, b).startswith("[bend ")
    pos[c] = (2.0, 3.0)  # out of the way
    assert _clearance(g, pos, a, b, 0) == pytest.approx(3.0 - 0.3)  # its half height 0.3, passed at x = 2
    assert _route(g, pos, a, b) == (0.0, 1.0)
    assert _bend(g, pos, a, b) == " "


def test_route_prefers_the_smallest_detour_and_bend_prints_it():
    g = Graph()
    a, b, c = (g.add(t, "op", []) for t in "abc")
    pos = {a: (0.0, 0.0), b: (4.0, 0.0), c: (2.0, -0.2)}  # just below the line: bend left, a little
    bend, looseness = _route(g, pos, a, b)
    assert bend > 0
    for other in (-bend, *(x for x in (15, 25, 35) if x < bend)):
        assert _clearance(g, pos, a, b, other, looseness) < CLEARANCE or abs(other) >= bend
    text = _bend(g, pos, a, b)
    expected = f"bend left={bend:g}" if looseness == 1.0 else f"bend left={bend:g}, looseness={looseness:g}"
    assert text == f"[{expected}] "
    pos[c] = (2.0, 0.2)
    assert _bend(g, pos, a, b).startswith("[bend right=")


def test_route_takes_the_clear_route_that_strays_least():
    """The straight line and every full arc are blocked: of the clear flattened arcs, the one
    whose control points stray least from the line (0.3915 · length · looseness · |sin bend|)."""
    g = Graph()
    a, b = g.add("a", "op", []), g.add("b", "op", [])
    blockers = [g.add("x", "op", []) for _ in range(3)]
    pos = {a: (0.0, 0.0), b: (4.0, 0.0), blockers[0]: (2.51, -1.01), blockers[1]: (3.08, 1.39),
           blockers[2]: (3.21, 0.21)}
    clear = [(bend, lo) for bend in BENDS for lo in (LOOSENESS if bend else (1.0,))
             if _clearance(g, pos, a, b, bend, lo) >= CLEARANCE]
    assert clear and all(lo != 1.0 for _, lo in clear) and len(clear) >= 2
    least = min(clear, key=lambda c: c[1] * abs(math.sin(math.radians(c[0]))))
    assert least != clear[0]  # not merely the first clear one tried
    assert _route(g, pos, a, b) == least == (-75, 0.4)
    assert _bend(g, pos, a, b) == "[bend right=75, looseness=0.4] "


def test_route_takes_the_clearest_when_none_is_clear():
    g = Graph()
    a, b = g.add("a", "op", []), g.add("b", "op", [])
    blockers = [g.add("x", "op", []) for _ in range(40)]
    pos = {a: (0.0, 0.0), b: (4.0, 0.0)}
    for k, n in enumerate(blockers):  # a wall of nodes above and below the line
        pos[n] = (0.5 + 0.1 * (k % 20), 0.0 if k < 20 else 1.0)
    bend, looseness = _route(g, pos, a, b)
    rooms = {(bb, lo): _clearance(g, pos, a, b, bb, lo) for bb in (0, 15, -15, 75, -75) for lo in (1.0, 0.6, 0.4)}
    assert _clearance(g, pos, a, b, bend, looseness) >= max(rooms.values()) - 1e-12


def test_figure_text_forward_and_backward():
    d, p = _built("rnn")
    forward, backward = figure(d, p), figure(d, p, backward=True)
    lines = forward.splitlines()
    assert lines[0].startswith(r"\begin{tikzpicture}") and lines[-1] == r"\end{tikzpicture}"
    nodes = [ln for ln in lines if ln.startswith(r"\node")]
    assert nodes[2] == r"\node[state] (n2) at (2.60, 0.00) {$\mathbf{h}_{t}$\\[-1pt]{\scriptsize $\tanh$}};"
    assert [ln for ln in lines if ln.startswith(r"\draw")] == [
        r"\draw[->] (n0) to (n2);", r"\draw[->] (n1) to (n2);", r"\draw[->] (n2) to (n3);",
        r"\draw[->, dashed] (n2.north) -- ++(0, 0.7) node[above] {\scriptsize $t{+}1$};"]
    back = backward.splitlines()
    assert next(ln for ln in back if ln.startswith(r"\draw")) == r"\draw[<-, red!70!black] (n0) to (n2);"
    assert r"\node[state] (n2) at (2.60, 0.00) {$\delta \mathbf{h}_{t}$};" in back
    assert back[:6] == lines[:6]  # the styles
    used = set(re.findall(r"\\node\[(\w+)\]", forward))
    defined = set(re.findall(r"(\w+)/\.style=", forward))
    assert used <= defined
    assert defined == {"node", "box", "source", "gate", "value", "state", "readout", "named", "op"}


def test_an_operation_without_a_delta_keeps_its_text_backward():
    d, p = _built("gru_torch")
    backward = figure(d, p, backward=True)
    assert r"{$1{-}$};" in backward and r"{$+$};" in backward
    assert r"{$\delta \mathbf{s}_{t}$};" in backward
