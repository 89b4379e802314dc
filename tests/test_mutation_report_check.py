"""The report check (``symbptt/report_check.py``) on its own: reading displayed equations out of
a .tex, moving time indices, finding operands and delimiters, and the verdicts of single sides
(a right side, a wrong sign, a Jacobian applied to the wrong δ, a per-unit vector). Everything is
computed inside each test (see tests/test_mutation_report.py)."""

from __future__ import annotations

import pytest

from symbptt import derive
from symbptt.handcheck import HandParseError
from symbptt.loader import load
from symbptt.report_check import (
    NOT_STEP_EQUATIONS,
    Reader,
    Side,
    _balanced,
    _clean,
    _closing,
    _operand,
    _skip_reason,
    _top_level_split,
    check_report,
    displayed_sides,
    unshift,
)

TEX = r"""\begin{align}
a &= b \label{eq:fwd:a} \\
c &= d = e \\
&= f \\
&\quad + g \label{eq:bwd:c}
\end{align}
text between the displays, a = b
\begin{keptalign}
p &= \frac{q}{2} && \text{note = 1} \nonumber
\end{keptalign}"""


def test_displayed_sides_split_rows_sides_and_continuations():
    sides = displayed_sides(TEX)
    assert sides == [Side("a", "b", "eq:fwd:a"), Side("c", "d", "eq:bwd:c"), Side("c", "e", "eq:bwd:c"),
                     Side("c", "f  + g", "eq:bwd:c"), Side("p", r"\frac{q}{2}", "")]


def test_top_level_split_and_clean():
    assert _top_level_split("a && {b && c} && d", "&&") == ["a ", " {b && c} ", " d"]
    assert _top_level_split("x = {y = z}", " = ") == ["x", "{y = z}"]
    assert _top_level_split("abc", " = ") == ["abc"]
    assert _clean(r"x &= y && \text{via} \label{eq:fwd:x} \nonumber") == ("x &= y", "eq:fwd:x")
    assert _clean(r"x &= y \nonumber") == ("x &= y", "")


@pytest.mark.parametrize(("before", "after"), [
    ("h_{t}", "h_{t-1}"), ("h_{t+1}", "h_{t}"), ("h_{t+2}", "h_{t+1}"), ("h_{t-1}", "h_{t-2}"),
    ("x_{t-2}", "x_{t-3}"), ("a_{z,t}", "a_{z,t-1}"), (r"\delta^{(t+1)} \mathbf{h}_{t}", r"\delta^{(t)} \mathbf{h}_{t-1}"),
    (r"\mathrm{tanh}_{t}", r"\mathrm{tanh}_{t-1}"),
])
def test_unshift_moves_every_time_index_back_one_step(before, after):
    assert unshift(before) == after


def test_balanced_operand_and_closing_indices():
    assert _balanced("{a{b}c}d", 0) == 7
    with pytest.raises(HandParseError, match="unbalanced braces"):
        _balanced("{a{b}c", 0)
    for operand, rest in [(r"\delta^{(t)} \mathbf{h}_{t-1}", " rest"), (r"  \left( x \left(y\right) \right)", " rest"),
                          (r"\hat{\mathbf{y}}_t", " rest"), (r"\mathbf{h}_{t}", r"^{\top}"), (r"\mathbf{x}", " + y"),
                          (r"\boldsymbol{\varepsilon}_{h,t}", " + x"), (r"\tilde{\mathbf{h}}_{t}", " x"),
                          (r"\bar{x}_{t}", " x"), (r"\mathrm{aux}_{0}", " x")]:
        text = operand + rest
        assert text[:_operand(text, 0)] == operand
    text = r"\left( a \left( b \right) c \right) d"
    assert text[:_closing(text, len(r"\left("))] == r"\left( a \left( b \right) c \right)"
    with pytest.raises(HandParseError, match=r"unbalanced \\left/\\right in"):
        _closing(r"\left( a \left( b \right) c", len(r"\left("))


def test_skip_reasons():
    assert _skip_reason(Side("L", "x", "eq:loss:1")) == NOT_STEP_EQUATIONS["loss"]
    assert _skip_reason(Side("x", "y", "eq:ent:p-W")) == NOT_STEP_EQUATIONS["ent"]
    assert _skip_reason(Side("x", "y", "eq:fwd:a")) == ""
    assert _skip_reason(Side("x", "y", "loss")) == ""  # no kind without two colons
    eps = r"\boldsymbol{\varepsilon}_{h,t}"
    assert _skip_reason(Side(eps, r"\mathbf{g}_{h,t} + \delta^{(t+1)} \mathbf{h}_{t}", "")) == NOT_STEP_EQUATIONS["eps"]
    assert _skip_reason(Side(r"\delta \mathbf{h}_{t}", eps, "")) == NOT_STEP_EQUATIONS["eps"]
    assert _skip_reason(Side(r"\delta \mathbf{h}_{t}", eps + r" + \mathbf{W}^{\top} \delta \mathbf{a}_{t}", "")) == ""


def _check(name: str, lhs: str, rhs: str, label: str) -> str:
    return Reader(derive(load(name)).inlined()).check(Side(lhs, rhs, label))


A_H = r"\mathbf{W}_{hx} \mathbf{x}_{t} + \mathbf{W}_{hh} \mathbf{h}_{t-1} + \mathbf{b}_{h}"
JACOBIAN = r"\left(\frac{\partial \mathbf{a}_{y,t}}{\partial %s}\right)^{\!\top} \delta %s"
EPS = r"\boldsymbol{\varepsilon}_{h,t} + "


@pytest.mark.parametrize(("lhs", "rhs", "label", "verdict"), [
    (r"\mathbf{a}_{h,t}", A_H, "eq:fwd:a-h", ""),
    (r"\mathbf{a}_{h,t}", A_H.replace("+", "-", 1), "eq:fwd:a-h", "differs from the forward equation by"),
    (r"\mathbf{h}_{t}", r"\tanh\left(\mathbf{a}_{h,t}\right)", "eq:fwd:h", ""),
    (r"\mathbf{h}_{t}", r"\sigma\left(\mathbf{a}_{h,t}\right)", "eq:fwd:h", "differs from the forward equation"),
    (r"\mathbf{h}_{t}", r"\tanh\left(\mathbf{a}_{h,t}", "eq:fwd:h", "cannot read: "),
    # the recursion one step later: read back only once moved to this step
    (r"\delta^{(t+1)} \mathbf{h}_{t}", r"\mathbf{W}_{hh}^{\top} \delta \mathbf{a}_{h,t+1}", "eq:rec:h", ""),
    (r"\delta^{(t+1)} \mathbf{h}_{t}", r"\mathbf{W}_{hh}^{\top} \delta \mathbf{a}_{h,t+1}", "eq:bwd:h", "unknown name"),
    (r"\delta \mathbf{h}_{t}", EPS + JACOBIAN % (r"\mathbf{h}_{t}", r"\mathbf{a}_{y,t}"), "eq:bwd:h", ""),
    (r"\delta \mathbf{h}_{t}", EPS + JACOBIAN % (r"\mathbf{h}_{t}", r"\mathbf{a}_{h,t}"), "eq:bwd:h",
     "cannot read: (∂a_y/∂h)ᵀ multiplies δa_h, not δa_y"),
    (r"\delta \mathbf{h}_{t}", EPS + JACOBIAN % (r"\mathbf{x}_{t}", r"\mathbf{a}_{y,t}"), "eq:bwd:h",
     "cannot read: xt is not used by a_y, yet the chain rule has (∂a_y/∂xt)ᵀ"),
    (r"\delta \mathbf{h}_{t}", EPS + (JACOBIAN % (r"\mathbf{h}_{t}", r"\mathbf{a}_{y,t}")).replace(r"^{\!\top}", ""),
     "eq:bwd:h", r"cannot read: expected \right)^{\top} after the Jacobian"),
    # a missing sign: the adjoint read back, checked symbolically
    (r"\delta \mathbf{h}_{t}", EPS.replace("+", "-") + JACOBIAN % (r"\mathbf{h}_{t}", r"\mathbf{a}_{y,t}"), "eq:bwd:h",
     "NOT equivalent"),
    (r"\delta \mathbf{a}_{h,t}", r"\delta \mathbf{h}_{t} \odot \tanh'\!\left(\mathbf{a}_{h,t}\right)", "eq:bwd:a-h", ""),
    (r"\delta \mathbf{a}_{h,t}", r"\delta \mathbf{h}_{t} \odot \sigma'\!\left(\mathbf{a}_{h,t}\right)", "eq:bwd:a-h",
     "NOT equivalent"),
    (r"\partial L / \partial \mathbf{W}_{hx}", r"\sum\nolimits_{t=1}^{T} \delta \mathbf{a}_{h,t} \mathbf{x}_{t}^{\top}",
     "eq:par:Whx", ""),
    (r"\partial L / \partial \mathbf{W}_{hx}", r"\sum\nolimits_{t=1}^{T} \delta \mathbf{a}_{h,t} \mathbf{h}_{t-1}^{\top}",
     "eq:par:Whx", "has shape (n_h, n_h) but dWhx is (n_h, n_x)"),
])
def test_one_side_of_rnn(lhs, rhs, label, verdict):
    found = _check("rnn", lhs, rhs, label)
    if verdict:
        assert verdict in found
    else:
        assert found == ""


def test_a_per_unit_vector_is_broadcast_in_a_forward_side():
    """indrnn's a_h = W x + u ⊙ h_{t−1} + b: u is one column for every sequence of the batch."""
    rhs = r"\mathbf{W} \mathbf{x}_{t} + \mathbf{u} \odot \mathbf{h}_{t-1} + \mathbf{b}"
    assert _check("indrnn", r"\mathbf{a}_{h,t}", rhs, "eq:fwd:a-h") == ""
    assert "differs" in _check("indrnn", r"\mathbf{a}_{h,t}", rhs.replace(r"+ \mathbf{b}", r"- \mathbf{b}"), "eq:fwd:a-h")


def test_a_per_unit_vector_added_as_an_offset_is_broadcast():
    """A vector (n, 1) added to an (n, m) product, as a bias is: the forward side reads back."""
    from symbptt import Cell, tanh

    cell = Cell("offset", "a per-unit vector used as an offset")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, _ = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x + cell.vector("v", n_h)))
    reader = Reader(derive(cell).inlined())
    rhs = r"\mathbf{W} \mathbf{x}_{t} + \mathbf{v}"
    assert reader.check(Side(r"\mathbf{a}_{h,t}", rhs, "eq:fwd:a-h")) == ""
    assert "differs" in reader.check(Side(r"\mathbf{a}_{h,t}", rhs.replace("+", "-"), "eq:fwd:a-h"))


def test_name_of_refuses_what_is_not_one_name():
    reader = Reader(derive(load("rnn")).inlined())
    assert reader.name_of(r"\mathbf{h}_{t-1}") == "h_prev"
    with pytest.raises(HandParseError, match=r"is not one name"):
        reader.name_of(r"\mathbf{W}_{hh} \mathbf{h}_{t-1}")


def test_a_wrong_forward_side_is_reported_the_same_every_time():
    """The values a forward side is evaluated at are drawn from a fixed seed: the same wrong
    line gives the same difference on every run (a report's failures can be compared)."""
    wrong = A_H.replace("+", "-", 1)
    first, second = (_check("rnn", r"\mathbf{a}_{h,t}", wrong, "eq:fwd:a-h") for _ in range(2))
    assert "differs from the forward equation by" in first
    assert first == second


def test_check_report_sorts_checked_failed_and_skipped_sides():
    d = derive(load("rnn"))
    tex = "\n".join([r"\begin{align}", rf"\mathbf{{a}}_{{h,t}} &= {A_H} \label{{eq:fwd:a-h}} \\",
                     rf"\mathbf{{a}}_{{h,t}} &= {A_H.replace('+', '-', 1)} \label{{eq:fwd:a-h2}} \\",
                     r"L &= \sum_t L_t \label{eq:loss:1}", r"\end{align}"])
    verdict = check_report(d, tex)
    assert [s.label for s in verdict.checked] == ["eq:fwd:a-h"]
    assert [s.label for s, _ in verdict.failures] == ["eq:fwd:a-h2"]
    assert verdict.skipped == [(Side("L", r"\sum_t L_t", "eq:loss:1"), NOT_STEP_EQUATIONS["loss"])]
