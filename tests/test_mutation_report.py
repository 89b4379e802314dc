"""A fast subset for the mutation runs of the report modules (printers, notation, report,
report_steps): every printed equation of a few cells' reports read back and checked against
the derivation (as test_report_roundtrip does for every cell, there ~2 min), without PDFs.

rnn and gru in both languages, mgu and lstm_peephole (other gates, a peephole) in English;
each report is rendered once per module.
"""

from __future__ import annotations

import itertools
import re

import pytest
import sympy as sp

from symbptt import derive
from symbptt.loader import load
from symbptt.notation import latex_printer
from symbptt.report import LANGS, report_context, report_tex
from symbptt.report_check import NOT_STEP_EQUATIONS, check_report

CASES = [("rnn", lang) for lang in LANGS] + [("gru", lang) for lang in LANGS] + [("mgu", "en")]


@pytest.fixture(scope="module")
def derivations() -> dict:
    return {name: derive(load(name)) for name in {name for name, _ in CASES}}


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_printed_equations_read_back_as_the_derivation(derivations, name, lang):
    d = derivations[name]
    verdict = check_report(d, report_tex(d, lang))
    problems = "\n".join(f"{side.label}: {side.lhs} = {side.rhs}: {why}" for side, why in verdict.failures)
    assert not verdict.failures, problems
    assert {why for _, why in verdict.skipped} <= set(NOT_STEP_EQUATIONS.values())
    assert len(verdict.checked) >= 3 * len(d.backward)


# -- the .tex of every cell, rendered inside each test ------------------------------------------
# (test_report.py checks the same on texts its module fixture renders once; mutmut credits a
# fixture's calls to the first test that uses it, so its later tests never ran against mutants.)


def _extra_cell(kind: str):
    """inline: tanh written inside the update (its pre-activation a_tanh_h is of no named
    equation); no_carry: h_t does not depend on h_{t-1} (δh_{t-1} = 0, one row, not two)."""
    from symbptt import Cell, sigmoid, tanh

    cell = Cell(kind, "A cell written for one case of the report.")
    if kind == "shared":
        (n,) = cell.dims("n")
        x, h_prev = cell.input("x", n, "input"), cell.state("h", n, "state")
        W = cell.weight("W", n, n, "weights")
        cell.update("h", tanh(W @ x) + sigmoid(W @ h_prev))
        return cell
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W = cell.weight("W", n_h, n_x, "weights")
    if kind == "inline":
        cell.update("h", h_prev + tanh(W @ x))
    else:
        cell.update("h", cell.let("g", tanh(W @ x), "gate"))
    return cell


EXTRA = ("inline", "no_carry", "shared")


def _cells():
    from symbptt.loader import builtin_cells

    return [*sorted(p.stem for p in builtin_cells()), *EXTRA]


def _derivation(name):
    return derive(_extra_cell(name) if name in EXTRA else load(name))


@pytest.mark.parametrize("name", _cells())
def test_no_artifacts_and_no_repeated_right_hand_side(name):
    """No SymPy leftovers (None, MatMul, …); no row repeats the right side of the row before
    it (a chain-rule step that changed nothing is dropped)."""
    from tests.test_report import ARTIFACTS

    d = _derivation(name)
    for lang in LANGS if name == "rnn" else ("en",):  # the languages share every context
        tex = report_tex(d, lang)
        assert not [a for a in ARTIFACTS if a in tex], (name, lang)
        blocks = re.findall(r"\\begin\{(\w*align\*?)\}(.*?)\\end\{\1\}", tex, re.DOTALL)
        assert len(blocks) > 5
        for _, block in blocks:
            sides = [re.sub(r"\\label\{[^}]*\}|\\nonumber|&&.*$|^.*?&=|&\\quad", "", row.strip()).strip()
                     for row in block.split("\\\\")]
            repeated = [s for s, t in itertools.pairwise(sides) if s and s == t]
            assert not repeated, (name, lang, repeated)


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_symbol_table_shapes_read_back_as_the_declared_shapes(name):
    d = derive(load(name))
    context = report_context(d)
    rows = {row["latex"]: row["shape"] for row in context["symbols"]}
    printer = latex_printer(d)
    for sym in d.cell.parameters:
        shape = rows[printer.doprint(sp.MatrixSymbol(sym.name, 1, 1))]
        dims = [re.sub(r"[{}()]", "", side).strip() for side in shape.split(r"\times")]
        assert dims == [str(n) for n in sym.shape], (sym.name, shape)


def test_a_checked_failure_names_the_adjoints_label():
    """A flipped sign in rnn's δa_h row: the report check names that row's label."""
    d = derive(load("rnn"))
    tex = report_tex(d)
    row = next(line for line in tex.splitlines() if line.startswith(r"\delta \mathbf{a}_{h,t} &="))
    flipped = row.replace(r"\odot", r"\odot -", 1)
    verdict = check_report(d, tex.replace(row, flipped))
    assert [side.label for side, _ in verdict.failures] == ["eq:bwd:a-h"]


def test_write_atomic_replaces_a_file_in_an_existing_folder(tmp_path):
    from symbptt.report import write_atomic

    target = tmp_path / "report.tex"
    write_atomic(target, "first")
    write_atomic(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.tex"]


@pytest.mark.parametrize("name", ["inline", "shared"])  # no_carry's δh_{t-1} = 0: the parser reads no 0
def test_printed_equations_of_the_written_cells_read_back(name):
    d = _derivation(name)
    verdict = check_report(d, report_tex(d))
    assert not verdict.failures, [(side.label, why) for side, why in verdict.failures]
    assert len(verdict.checked) >= 3 * len(d.backward)


def test_a_state_update_is_titled_as_the_next_state():
    d = derive(load("rnn"))
    assert r"Gradient of the next state $\mathbf{h}_{t}$" in report_tex(d, "en")


def _thresholded():
    """A cell whose weight V is seen only through a step function: ∂L/∂V = 0."""
    from symbptt import Cell, ops, tanh

    cell = Cell("thresholded", "A weight seen only through a step function (derivative 0).")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W, V = cell.weight("W", n_h, n_x, "weights"), cell.weight("V", n_h, n_x, "thresholded")
    cell.update("h", tanh(W @ x) + ops.Step(V @ x) + h_prev)
    return cell


def test_every_summary_statement_is_one_numbered_equation():
    """One \\label per kernel statement, a weight whose gradient is zero (∂L/∂V = 0) too."""
    from symbptt.report import summary_adjoints

    for d in (derive(_thresholded()), derive(load("rnn"))):
        summary = report_context(d)["summary"]
        labels = re.findall(r"\\label\{eq:sum:([^}]*)\}", " ".join(summary))
        assert len(labels) == len(set(labels)) == len(summary_adjoints(d))


def test_an_unknown_language_is_refused_by_the_context_too():
    with pytest.raises(ValueError, match="choose one of en, es"):
        report_context(derive(load("rnn")), "fr")


def test_keeping_gates_of_gated_cells():
    """The sigmoid gate weighing a state's previous value in its own update, and its biases."""
    from symbptt import Cell, odot, sigmoid
    from symbptt.report import keep_gates

    assert keep_gates(derive(load("rnn"))) == []
    assert keep_gates(derive(load("gru"))) == [{"state": "h", "gate": "z", "biases": ["bz"]}]
    assert keep_gates(derive(load("lstm"))) == [{"state": "c", "gate": "f", "biases": ["bf"]}]
    cell = Cell("leaky", "A plain term beside the gated one.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W, V = cell.weight("W", n_h, n_x, "weights"), cell.weight("V", n_h, n_x, "gate weights")
    b = cell.bias("b", n_h, "gate bias")
    z = cell.let("z", sigmoid(V @ x + b), "keep gate")
    cell.update("h", W @ x + odot(z, h_prev))  # the product W x comes first in the sum
    assert keep_gates(derive(cell)) == [{"state": "h", "gate": "z", "biases": ["b"]}]


def test_long_sums_break_within_the_widths():
    """The first line within first_width, the others within width; nothing lost or reordered."""
    from symbptt.report import pack, visible_length

    assert visible_length("a_{bc}") == 2 and visible_length(r"\mathbf{W}_{hx}") == 2  # subscripts count half
    assert visible_length(r"\left(\mathbf{h}\right)") == 3
    pieces = ["aaaa", "+ bbbb", "+ cccc", "- dddd"]
    lines = pack(pieces, width=12, first_width=6)
    assert " ".join(lines) == " ".join(pieces)
    assert visible_length(lines[0]) <= 6 and all(visible_length(line) <= 12 for line in lines[1:])
    assert len(lines) == 3


def test_the_plot_names_the_step_before_j():
    sym = report_context(derive(load("gru")))["plot"]["sym"]
    assert sym["jm1"] == sym["j"].replace("_{j}", "_{j-1}") != sym["j"]


# -- a fresh sample of report.py after the tests above (tools/mutation.py … --sample 30 --seed 1) --


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_every_symbol_row_has_a_shape_and_the_next_state_its_states_meaning(name):
    d = derive(load(name))
    rows = report_context(d)["symbols"]
    dims = {str(n) for n in d.cell.dimensions} | {"m", "1"}
    for row in rows:
        sides = [re.sub(r"[{}()\s]", "", side) for side in row["shape"].split(r"\times")]
        assert len(sides) == 2 and all(set(re.split(r"\+", s)) <= dims for s in sides), row
    for row in rows:
        if row["kind"] == "next":
            state = next(s for s in d.cell.states if row["latex"].startswith(latex_printer(d).doprint(
                sp.MatrixSymbol(s, 1, 1))))
            assert row["meaning"] == d.cell.symbols[f"{state}_prev"].meaning


def test_pre_activations_titled_and_the_cell_states_path_named():
    for name, has_c in (("lstm", True), ("gru", False)):
        d = derive(load(name))
        tex = report_tex(d)
        assert tex.count("Gradient of the pre-activation") == sum(a.target.startswith("a_") for a in d.backward)
        assert ("additive path through the cell state" in tex) == has_c
        assert "_{," not in tex  # a readout's target y_t: no empty subscript part


# -- the whole report, in this process ------------------------------------------------------------


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm_peephole", "indrnn", "gru_torch", "lstm_torch", "mgu", "lstm"])
def test_each_cells_report_is_the_committed_one(name):
    """Every byte of each built-in cell's report equals the committed generated/latex/<cell>.tex
    (the freshness test checks the same through the CLI, in a subprocess mutmut does not see)."""
    from pathlib import Path

    from symbptt.loader import builtin_cells, source_label

    path = next(p for p in builtin_cells() if p.stem == name)
    committed = Path(__file__).resolve().parent.parent / "generated" / "latex" / f"{name}.tex"
    assert report_tex(derive(load(path)), "en", source_label(path)) == committed.read_text(encoding="utf-8")


# -- a fresh sample of report.py (tools/mutation.py … --sample 40 --seed 2) -------------------------


def test_a_weight_with_a_zero_gradient_is_printed_as_zero():
    """V seen only through a step function: ∂L/∂V = 0, printed as the zero matrix, not a sum."""
    d = derive(_thresholded())
    rows = {p["name"]: p["rows"] for p in report_context(d)["parameters"]}
    assert rows["V"] == [r"\partial L / \partial \mathbf{V} &= \mathbf{0} \label{eq:par:V}"]
    assert rows["W"][0].startswith(r"\partial L / \partial \mathbf{W} &= \sum\nolimits_{t=1}^{T} ")
    assert r"\partial L / \partial \mathbf{V} &= \mathbf{0}" in report_tex(d)


def test_each_step_and_boundary_context_says_what_its_value_is():
    """The kind of each value whose gradient a section derives, and the cell's meaning of it:
    the previous state and the input (the boundary), the next state, the pre-activations."""
    d = derive(load("rnn"))
    context = report_context(d)
    meanings = {s: d.cell.symbols[f"{s}_prev"].meaning for s in d.cell.states}
    assert [(s["kind"], s["meaning"]) for s in context["boundary"]] == [
        ("previous", meanings["h"]), ("input", d.cell.symbols["xt"].meaning)]
    assert [(s["kind"], s["meaning"]) for s in context["steps"]] == [
        ("preactivation", ""), ("next", meanings["h"]), ("preactivation", "")]


@pytest.mark.parametrize(("norms", "trend"), [([4.0, 2.0, 1.0], "explode"), ([1.0, 2.0, 4.0], "vanish"),
                                             ([1.0, 1.0, 1.0], "steady"), ([1.0, 0.99, 0.98], "steady")])
def test_a_curve_reads_its_trend_rate_and_tenfold_steps(norms, trend):
    """Going back in time from the last step: a ratio per step above 1.02 explodes, below 0.98
    vanishes; "tenfold" is the number of steps for a factor of ten (0 when steady)."""
    import math

    from symbptt.report import curve

    c = curve(norms)
    per_step = (norms[0] / norms[-1]) ** (1 / (len(norms) - 1))
    assert c["trend"] == trend
    assert c["per_step"] == f"{per_step:.3f}"
    assert c["tenfold"] == (f"{math.log(10) / abs(math.log(per_step)):.1f}" if trend != "steady" else "0.0")
    assert c["coords"] == " ".join(f"({t},{v:.4e})" for t, v in enumerate(norms))
    assert curve([0.0, 1.0])["coords"] == "(0,1.0000e-300) (1,1.0000e+00)"  # a zero norm at the floor


def test_a_weight_read_twice_sums_its_terms_in_brackets_in_the_list_and_the_summary():
    from tests.test_mutation_report_params import shared_weight_cell

    context = report_context(derive(shared_weight_cell()))
    body = (r"\sum\nolimits_{t=1}^{T} \Big(\delta \mathbf{a}_{tanhh,t} \mathbf{x}_{t}^{\top} + "
            r"\delta \mathbf{a}_{sigmoidh,t} \mathbf{h}_{t-1}^{\top}\Big)")
    assert context["parameters"][0]["rows"] == [rf"\partial L / \partial \mathbf{{W}} &= {body} \label{{eq:par:W}}"]
    assert context["summary"][-1] == rf"\partial L / \partial \mathbf{{W}} &= {body} \label{{eq:sum:dW}}"


def test_the_plot_follows_h_wherever_it_is_declared():
    from symbptt import Cell, tanh
    from symbptt.report import plot_state

    cell = Cell("c_first", "c declared before h")
    (n,) = cell.dims("n")
    c, h, x = cell.state("c", n), cell.state("h", n), cell.input("x", n)
    cell.update("c", tanh(c + x))
    cell.update("h", tanh(h + x))
    assert cell.states == ["c", "h"] and plot_state(cell) == "h"
    other = Cell("no_h", "no state named h")
    (n,) = other.dims("n")
    s, x = other.state("s", n), other.input("x", n)
    other.update("s", tanh(s + x))
    assert plot_state(other) == "s"


def test_a_long_equation_continues_on_quad_rows_and_is_numbered_once():
    from symbptt.report import rows

    pieces = [r"\mathbf{a}" * 20] + [rf"+ \mathbf{{b}}_{{{k}}}" * 10 for k in range(6)]
    out = rows(r"\mathbf{z}", pieces, label="eq:fwd:z", prefix="P ", note=r"\text{via}")
    assert len(out) > 2  # broken at the line width
    assert out[0].startswith(r"\mathbf{z} &= P " + pieces[0])
    assert all(r.startswith(r"&\quad + ") for r in out[1:])
    assert all(r.endswith(r" \nonumber") for r in out[:-1])
    assert out[-1].endswith(r" && \text{via} \label{eq:fwd:z}")
    joined = " ".join(re.sub(r"^.*?&= P |^&\\quad | && .*$| \\nonumber$", "", r) for r in out)
    assert joined == " ".join(pieces)
