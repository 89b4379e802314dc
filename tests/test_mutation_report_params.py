"""Every parameter's entry-wise gradient line and the blocks of weights that read a stack
(``symbptt/report_params.py``), computed inside each test: against the rule
``∂L/∂W_ij = Σ_t Σ_n [δa]_in [u]_jn`` written out from the derivation's own terms, against
the numbers (a block's slice of a stack's gradient is the slice of ``Wᵀ δa``), and against
the committed reports (``generated/latex``)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symbptt import Cell, derive, sigmoid, tanh
from symbptt.loader import builtin_cells, load
from symbptt.notation import latex_printer
from symbptt.report_params import _block_name, entry_row, weight_blocks

GENERATED = Path(__file__).resolve().parent.parent / "generated" / "latex"
SUMS = r"\sum\nolimits_{t=1}^{T} \sum\nolimits_{n=1}^{m} "


def _built(cell_or_name):
    d = derive(load(cell_or_name) if isinstance(cell_or_name, str) else cell_or_name).inlined()
    return d, latex_printer(d)


@pytest.mark.parametrize("name", sorted(p.stem for p in builtin_cells()))
def test_each_cells_lines_are_those_its_report_prints(name):
    d, p = _built(name)
    tex = (GENERATED / f"{name}.tex").read_text(encoding="utf-8")
    rows = [entry_row(d, p, a) for a in d.parameters]
    assert all(rows), name  # every built-in parameter has its entry-wise line
    for row in rows:
        assert row in tex
    blocks = weight_blocks(d, p)
    for block in blocks:
        for line in block["splits"] + block["rows"]:
            assert line in tex
    if blocks:
        assert blocks[0]["products"] in tex


def test_rnn_entry_rows_follow_the_rule():
    d, p = _built("rnn")
    for a in d.parameters:
        (term,) = a.terms
        weight = d.cell.symbols[a.target].role == "weight"
        if weight:  # δa · uᵀ
            delta, used = term.expr.args
            body = rf"\left[{p.doprint(delta)}\right]_{{in}}\, \left[{p.doprint(used.arg)}\right]_{{jn}}"
        else:  # δa 1
            body = rf"\left[{p.doprint(term.expr.args[0])}\right]_{{in}}"
        index = "ij" if weight else "i"
        label = a.target
        assert entry_row(d, p, a) == (rf"\left[\partial L / \partial {p.symbol_latex(a.target)}\right]_{{{index}}} &= "
                                      rf"{SUMS}{body} \label{{eq:ent:p-{label}}}")


def test_a_peephole_vector_is_a_product_entry_by_entry():
    d, p = _built("lstm_peephole")
    row = entry_row(d, p, next(a for a in d.parameters if a.target == "p_f"))
    assert row == (r"\left[\partial L / \partial \mathbf{p}_{f}\right]_{i} &= " + SUMS
                   + r"\left[\delta \mathbf{a}_{f,t}\right]_{in}\, \left[\mathbf{c}_{t-1}\right]_{in}"
                   r" \label{eq:ent:p-p-f}")  # the label's name with "-" for "_"


def shared_weight_cell():
    """One weight W read twice, W·x inside a tanh and W·h_{t−1} inside a σ."""
    cell = Cell("shared", "one weight read twice")
    (n,) = cell.dims("n")
    x, h_prev = cell.input("x", n, "input"), cell.state("h", n, "state")
    W = cell.weight("W", n, n, "weights")
    cell.update("h", tanh(W @ x) + sigmoid(W @ h_prev))
    return cell


def test_a_weight_used_twice_sums_its_terms_in_brackets():
    d, p = _built(shared_weight_cell())
    (a,) = d.parameters
    row = entry_row(d, p, a)
    assert row.startswith(r"\left[\partial L / \partial \mathbf{W}\right]_{ij} &= " + SUMS + r"\Bigl(")
    assert row.endswith(r"\Bigr) \label{eq:ent:p-W}")
    assert row.count(r"\, ") == 2 and row.count(" + ") == 1
    assert r"\left[\mathbf{x}_{t}\right]_{jn}" in row and r"\left[\mathbf{h}_{t-1}\right]_{jn}" in row


def test_no_line_for_a_parameter_without_terms_or_without_a_rule():
    d, p = _built("rnn")
    a = d.parameters[0]
    assert entry_row(d, p, replace(a, terms=())) == ""
    other = replace(a.terms[0], expr=sp.MatrixSymbol("Q", *a.terms[0].expr.shape))  # no rule for a name
    assert entry_row(d, p, replace(a, terms=(a.terms[0], other))) == ""


def test_a_weight_reading_a_value_that_is_no_stack_has_no_blocks():
    """W tanh(U x): W's gradient is δa · tanh(…)ᵀ, a product with a named value, but no stack."""
    cell = Cell("nested", "a weight reading an unnamed tanh")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_h) @ tanh(cell.weight("U", n_h, n_x) @ x)) + h)
    d, p = _built(cell)
    assert any(e.auto and not e.name.startswith("a_") for e in d.forward)  # tanh(U x) is named
    assert weight_blocks(d, p) == []
    assert all(entry_row(d, p, a) for a in d.parameters)


def test_no_line_for_a_product_without_a_transpose():
    d, p = _built("rnn")
    a = d.parameters[0]
    term = a.terms[0]
    q, r = sp.MatrixSymbol("Q", term.expr.shape[0], 4), sp.MatrixSymbol("R", 4, term.expr.shape[1])
    assert entry_row(d, p, replace(a, terms=(replace(term, expr=q * r),))) == ""


def test_gru_blocks_name_recurrent_and_input_parts_and_slice_the_stack():
    d, p = _built("gru")
    first, second = weight_blocks(d, p)
    assert first["stack"] == r"\mathbf{u}_{t}" and first["parts"] == [r"\mathbf{h}_{t-1}", r"\mathbf{x}_{t}"]
    assert second["stack"] == r"\mathbf{v}_{t}" and second["parts"] == [r"\mathbf{s}_{t}", r"\mathbf{x}_{t}"]
    assert first["splits"] == [
        r"\mathbf{W}_{z} &= \bigl[\, \mathbf{U}_{z} \;\; \mathbf{W}_{xz} \,\bigr] \label{eq:blk:Wz}",
        r"\mathbf{W}_{r} &= \bigl[\, \mathbf{U}_{r} \;\; \mathbf{W}_{xr} \,\bigr] \label{eq:blk:Wr}"]
    assert first["rows"] == [
        (r"\left[\delta \mathbf{u}_{t}\right]_{1:n_{h}} &= \mathbf{U}_{z}^{\top} \delta \mathbf{a}_{z,t} + "
        r"\mathbf{U}_{r}^{\top} \delta \mathbf{a}_{r,t} \label{eq:blk:h-prev-xt-1}"),
        (r"\left[\delta \mathbf{u}_{t}\right]_{n_{h} + 1:n_{h} + n_{x}} &= \mathbf{W}_{xz}^{\top} \delta \mathbf{a}_{z,t}"
        r" + \mathbf{W}_{xr}^{\top} \delta \mathbf{a}_{r,t} \label{eq:blk:h-prev-xt-2}")]
    assert first["products"] == r"\mathbf{W}_{z} \mathbf{u}_{t} = \mathbf{U}_{z} \mathbf{h}_{t-1} + \mathbf{W}_{xz} \mathbf{x}_{t}"
    assert second["products"] == r"\mathbf{W}_{h} \mathbf{v}_{t} = \mathbf{U}_{h} \mathbf{s}_{t} + \mathbf{W}_{xh} \mathbf{x}_{t}"


def test_block_rows_are_the_slices_of_the_stack_gradient():
    """Numbers: with W = [U  W_x], the rows' slices of Wᵀ δa are Uᵀ δa and W_xᵀ δa, at the rows
    the printed ranges name (1:n_h and n_h+1:n_h+n_x, one-based)."""
    d, p = _built("lstm")
    (block,) = weight_blocks(d, p)
    n_h, n_x, m = 3, 2, 4
    rng = np.random.default_rng(1)
    W, delta = rng.standard_normal((n_h, n_h + n_x)), rng.standard_normal((n_h, m))
    full = W.T @ delta
    ranges = [re.search(r"\\right\]_\{(.*)\} &=", row).group(1) for row in block["rows"]]
    assert ranges == ["1:n_{h}", "n_{h} + 1:n_{h} + n_{x}"]
    for text, block_of_w in zip(ranges, (W[:, :n_h], W[:, n_h:]), strict=True):
        lo, hi = (eval(side.replace("n_{h}", "n_h").replace("n_{x}", "n_x"), {}, {"n_h": n_h, "n_x": n_x})
                  for side in text.split(":"))
        np.testing.assert_allclose(full[lo - 1:hi], block_of_w.T @ delta)


def test_block_names():
    d, p = _built("gru")
    h_prev = sp.MatrixSymbol("h_prev", 3, 4)
    xt = sp.MatrixSymbol("xt", 2, 4)
    s = sp.MatrixSymbol("h_prev_r", 3, 4)  # gru's s_t = h_{t−1} ⊙ r: made from the previous state
    assert _block_name(d, p, "Wz", h_prev, 0) == r"\mathbf{U}_{z}"
    assert _block_name(d, p, "Wz", xt, 1) == r"\mathbf{W}_{xz}"
    assert _block_name(d, p, "Wh", s, 0) == r"\mathbf{U}_{h}"
    assert _block_name(d, p, "Wz", sp.MatrixSymbol("other", 3, 4), 2) == r"\mathbf{W}_{z}^{(3)}"
    assert _block_name(d, p, "Wz", sp.MatrixSymbol("z", 3, 4), 0) == r"\mathbf{W}_{z}^{(1)}"  # z_t: made of neither
    assert _block_name(d, p, "by", h_prev, 0) == r"\mathbf{b}_{y}^{(1)}"  # not W_{…}: numbered


def test_no_blocks_when_a_block_name_is_taken():
    """A cell whose parameters already hold the names U_z and W_{xz}: no split, rather than
    two different matrices printed with one name."""
    from symbptt import stack

    cell = Cell("taken", "block names in use")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    Wz = cell.weight("Wz", n_h, n_h + n_x)
    Uz = cell.weight("Uz", n_h, n_h)
    u = stack(h_prev, x)
    cell.update("h", tanh(Wz @ u) + tanh(Uz @ h_prev) + sigmoid(cell.weight("Wr", n_h, n_h + n_x) @ u))
    d, p = _built(cell)
    assert weight_blocks(d, p) == []
    renamed = Cell("free", "block names free")
    n_x, n_h = renamed.dims("n_x", "n_h")
    x, h_prev = renamed.input("x", n_x), renamed.state("h", n_h)
    Wz = renamed.weight("Wz", n_h, n_h + n_x)
    u = stack(h_prev, x)
    renamed.update("h", tanh(Wz @ u) + tanh(renamed.weight("V", n_h, n_h) @ h_prev)
                   + sigmoid(renamed.weight("Wr", n_h, n_h + n_x) @ u))
    d, p = _built(renamed)
    (block,) = weight_blocks(d, p)
    assert [s.split(" &=")[0] for s in block["splits"]] == [r"\mathbf{W}_{z}", r"\mathbf{W}_{r}"]
