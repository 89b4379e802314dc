"""A value used more than once in one equation, in reports and in hand derivations.

A cell that squares a value (``odot(a, a)``) once crashed ``report_tex`` twice over: the
derivation computes the repeated term once as ``shared_1``, which the report tried to explain
as a forward equation (StopIteration), and a sum of equal terms was mistaken for a row that
repeats the one before it (ValueError). The report now writes each adjoint as the chain rule
gives it, and its round trip (every displayed equation read back) passes. The hand-derivation
parser reads the two forms the LaTeX printer writes for such cells, ``x^{\\odot k}`` and
``\\frac{1}{2} A``.
"""

from __future__ import annotations

import pytest
from sympy import HadamardPower, MatrixSymbol

from symbptt import Cell, derive, odot, stack, tanh
from symbptt.handcheck import HandParseError, check_one
from symbptt.notation import derivation_latex
from symbptt.report import LANGS, Printers, report_tex
from symbptt.report_check import check_report


def _cell(kind: str) -> Cell:
    cell = Cell(f"repeated_{kind}", "a value used more than once in one equation")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    a = cell.let("a", cell.weight("W", n_h, n_h + n_x) @ stack(h_prev, x) + cell.bias("b", n_h))
    if kind == "square":
        cell.update("h", tanh(odot(a, a)))
    elif kind == "cube":
        cell.update("h", tanh(odot(odot(a, a), a)))
    elif kind == "named_square":
        g = cell.let("g", odot(a, a))
        cell.update("h", tanh(g + odot(g, h_prev)))
    return cell


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ["square", "cube", "named_square"])
def test_report_of_a_repeated_value_reads_back_as_the_derivation(kind, lang):
    d = derive(_cell(kind))
    assert any(a.target.startswith("shared_") for a in d.backward)  # the case that crashed
    tex = report_tex(d, lang)
    assert r"shared\_" not in tex and "shared_" not in tex
    verdict = check_report(d, tex)
    assert not verdict.failures, verdict.failures
    assert len(verdict.checked) > 20


def test_inlined_derivation_has_the_same_adjoints_written_out():
    d = derive(_cell("cube"))
    inlined = d.inlined()
    assert [a.target for a in inlined.backward] == [a.target for a in d.backward
                                                    if not a.target.startswith("shared_")]
    da = next(a for a in inlined.backward if a.target == "a")
    assert "shared" not in str(da.expr) and len(da.terms) == 3



def test_a_derivation_with_nothing_shared_is_its_own_inlined_form(rnn):
    assert rnn.inlined() is rnn


@pytest.fixture(scope="module")
def rnn():
    from symbptt import load_cell
    return derive(load_cell("rnn"))


def test_printed_elementwise_power_is_read(rnn):
    h = MatrixSymbol("h", *rnn.cell.symbols["h"].shape)
    printed = Printers.of(rnn).expr(HadamardPower(h, 2))
    assert printed.endswith(r"^{\odot 2}")
    assert check_one(rnn, "da_h", rf"\delta h_t \odot (1 - {printed})").verdict == "equivalent"
    assert check_one(rnn, "da_h", r"\delta h_t \odot (1 - h_t^{\odot 3})").verdict == "NOT equivalent"
    assert check_one(rnn, "da_h", r"\delta h_t^{\odot 1} \odot (1 - h_t^2)").verdict == "equivalent"


def test_fractions_scale_and_divide(rnn):
    ok = [r"-\frac{1}{2} \delta h_t \odot (h_t^2 - 1) \cdot 2",
          r"\frac{\delta h_t}{2} \odot (2 - 2 h_t^{\odot 2})",
          r"\frac{1}{2}\frac{4}{2} \delta h_t \odot (1 - h_t^2)",
          r"\frac{\delta h_t \odot (h_t - h_t^{\odot 3})}{h_t}"]
    for text in ok:
        assert check_one(rnn, "da_h", text).verdict == "equivalent", text
    assert check_one(rnn, "da_h", r"\frac{1}{3} \delta h_t \odot (1 - h_t^2)").verdict == "NOT equivalent"


@pytest.mark.parametrize("text,message", [
    (r"\frac{\delta h_t}{0}", "zero denominator"),
    (r"h_t^{\odot 9}", "power must be 1 to 8"),
    (r"h_t^{\odot 0}", "power must be 1 to 8"),
    (r"\frac{\delta h_t}", "expected"),
])
def test_bad_powers_and_fractions_are_named(rnn, text, message):
    result = check_one(rnn, "da_h", text)
    assert result.verdict == "cannot check" and message in result.report(), result.report()
    with pytest.raises(HandParseError):
        from symbptt.handcheck import Resolver, _symbols, parse_latex
        parse_latex(text, Resolver(_symbols(rnn)))


def test_notebook_display_writes_shared_values_out():
    """A notebook shows a derivation as the report prints it: the kernels' shared_k, a value
    computed once for two uses, is written out in the adjoints that use it."""
    cell = Cell("sq", "a value used twice")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "hidden")
    W = cell.weight("W", n_h, n_x, "input weights")
    U = cell.weight("U", n_h, n_h, "recurrent weights")
    a = cell.let("a", tanh(W @ x + U @ h_prev))
    cell.update("h", odot(a, a))
    d = derive(cell)
    assert any(adj.symbol.name.startswith("shared_") for adj in d.backward)  # the kernels' view
    shown = d._repr_latex_()
    assert "shared" not in shown
    assert shown == derivation_latex(d.inlined())
    assert r"\delta \mathbf{a}_{t}" in shown and r"\boldsymbol{\varepsilon}_{h,t}" in shown


def test_adjoint_names_leave_the_kernels_shared_values_out(tmp_path):
    """adjoint_names lists handcheck's targets: a student writes δa, not the kernels' shared_1."""
    import symbptt

    path = tmp_path / "sq.py"
    path.write_text(
        "from symbptt import Cell, odot, tanh\n"
        "cell = Cell('sq', 'a value used twice')\n"
        "n_x, n_h = cell.dims('n_x', 'n_h')\n"
        "x = cell.input('x', n_x, 'input')\n"
        "h_prev = cell.state('h', n_h, 'hidden')\n"
        "W = cell.weight('W', n_h, n_x, 'input weights')\n"
        "U = cell.weight('U', n_h, n_h, 'recurrent weights')\n"
        "a = cell.let('a', tanh(W @ x + U @ h_prev))\n"
        "cell.update('h', odot(a, a))\n", encoding="utf-8")
    names = symbptt.adjoint_names(str(path))
    assert names == ["da", "da_a", "dxt", "dh_prev", "dW", "dU"]
    assert derive(symbptt.load_cell(str(path))).backward[0].symbol.name == "shared_1"  # the kernels' view
