"""Hand derivations: a LaTeX subset parsed without eval, compared exactly and numerically."""

from __future__ import annotations

import pytest
import sympy as sp

from symbptt import derive, handcheck
from symbptt.handcheck import HandParseError, Resolver, check_hand_derivation, parse_latex, tokenize
from symbptt.loader import load
from symbptt.ops import BATCH


@pytest.fixture(scope="module")
def gru():
    return derive(load("gru"))


@pytest.fixture(scope="module")
def rnn():
    return derive(load("rnn"))


def resolver(derivation) -> Resolver:
    return Resolver(handcheck._symbols(derivation))


CORRECT_DA_Z = r"\delta h_t \odot (h_{t-1} - \tilde{h}_t) \odot z_t \odot (1 - z_t)"


def test_correct_da_z_is_accepted(gru):
    [result] = check_hand_derivation(gru, {r"\delta a_z": CORRECT_DA_Z})
    assert result.equivalent and result.symbolic, result.report()
    assert result.target == "da_z"
    assert result.numeric_error < 1e-12
    assert "equivalent" in result.report()


def test_unicode_form_is_accepted(gru):
    [result] = check_hand_derivation(gru, {"δa_z": "δh ⊙ (h_{t-1} − h̃) ⊙ z ⊙ (1 − z)"})
    assert result.equivalent, result.report()


def test_sympy_expression_is_accepted(gru):
    n_h = gru.cell.dimensions["n_h"]
    dh, h_prev, h_tilde, z = (sp.MatrixSymbol(n, n_h, BATCH) for n in ("dh", "h_prev", "h_tilde", "z"))
    ones = sp.OneMatrix(n_h, BATCH)
    expr = sp.HadamardProduct(dh, h_prev - h_tilde, z, ones - z)
    [result] = check_hand_derivation(gru, {"da_z": expr})
    assert result.equivalent, result.report()


def test_equivalence_through_the_forward_equations(gru):
    given = r"\delta h \odot (h_{t-1} - \tilde{h}) \odot \sigma(a_z) \odot (1 - \sigma(a_z))"
    [result] = check_hand_derivation(gru, {"da_z": given})
    assert result.equivalent and "forward equations" in result.how, result.report()


def test_wrong_da_z_is_rejected_with_a_counterexample(gru):
    wrong = r"\delta h_t \odot (\tilde{h}_t - h_{t-1}) \odot z_t \odot (1 - z_t)"  # sign flipped
    [result] = check_hand_derivation(gru, {r"\delta a_z": wrong})
    assert not result.equivalent and result.symbolic is False
    assert result.numeric_error > 1e-3
    assert "h_prev" in result.difference and "h_tilde" in result.difference
    assert "derived da_z" in result.counterexample and "given" in result.counterexample
    assert "NOT equivalent" in result.report()


def test_forgotten_sigmoid_derivative_is_rejected(gru):
    [result] = check_hand_derivation(gru, {"da_z": r"\delta h \odot (h_{t-1} - \tilde{h})"})
    assert not result.equivalent
    assert "z" in result.difference


def test_missing_transpose_shows_only_at_sizes_above_one(rnn):
    [result] = check_hand_derivation(rnn, {r"\delta h_{t-1}": r"W_{hh} \delta a_h"})
    assert not result.equivalent, result.report()
    assert "entry" in result.difference  # invisible at size 1, shown as an entry
    [ok] = check_hand_derivation(rnn, {r"\delta h_{t-1}": r"W_{hh}^\top \delta a_h"})
    assert ok.equivalent, ok.report()


def test_shape_error_is_a_verdict_not_a_crash(gru):
    [result] = check_hand_derivation(gru, {r"\delta x_t": r"W_z^\top \delta a_z"})
    assert not result.equivalent and "shape" in result.error


def test_several_targets_at_once(gru):
    results = check_hand_derivation(gru, {
        "da_z": CORRECT_DA_Z,
        r"\delta a_{\tilde h}": r"\delta h \odot (1 - z) \odot (1 - \tilde{h}^2)",
        r"\delta r": r"[W_h^\top \delta a_{\tilde h}]_{} \odot h_{t-1}",
    })
    assert results[0].equivalent and results[1].equivalent
    assert results[2].error  # a row slice is outside the subset: reported, not raised


def test_row_ranges_of_a_bracket(gru):
    results = check_hand_derivation(gru, [
        (r"\delta r", r"[W_h^\top \delta a_{\tilde h}]_{1:n_h} \odot h_{t-1}"),
        (r"\delta x_t", (r"[W_h^\top \delta a_{\tilde h}]_{n_h+1:n_h+n_x}"
                       r" + [W_r^\top \delta a_r + W_z^\top \delta a_z]_{n_h+1:}")),
        (r"\delta x_t", r"[W_h^\top \delta a_{\tilde h}]_{n_h+1:n_h+n_x}"),  # a term missing
    ])
    assert results[0].equivalent and results[1].equivalent, [r.report() for r in results]
    assert not results[2].equivalent and results[2].counterexample


@pytest.mark.parametrize("text, name", [
    (r"h_{t-1}", "h_prev"), (r"\tilde{h}_t", "h_tilde"), (r"x_t", "xt"), (r"W_z", "Wz"),
    (r"a_{z,t}", "a_z"), (r"\delta h_t", "dh"), (r"\delta h_{t-1}", "dh_prev"),
    (r"\mathbf{W}_z", "Wz"), (r"\tilde{\mathbf{h}}_t", "h_tilde"), (r"a_{\tilde h}", "a_h_tilde"),
    (r"\delta a_{\tilde{h},t}", "da_h_tilde"), (r"\hat{y}_t", "y"),
])
def test_names_map_to_the_derivation(gru, text, name):
    expr = parse_latex(text, resolver(gru))
    assert isinstance(expr, sp.MatrixSymbol) and expr.name == name


def test_stack_transpose_and_products(gru):
    expr = parse_latex(r"W_z [h_{t-1}; x_t] + W_r \cdot \left[ h_{t-1} ; x_t \right]", resolver(gru))
    assert "Stack(h_prev, xt)" in str(expr) and "Wz" in str(expr) and "Wr" in str(expr)
    expr = parse_latex(r"\delta a_z\, [h_{t-1}; x_t]^\top", resolver(gru))
    assert expr.shape == gru.cell.symbols["Wz"].shape


def test_matrix_product_binds_tighter_than_odot(gru):
    expr = parse_latex(r"W_y^T \delta a_y \odot z", resolver(gru))
    assert isinstance(expr, sp.HadamardProduct)


def test_unknown_name_lists_the_known_ones(gru):
    with pytest.raises(HandParseError, match=r"unknown name.*known: .*h_prev"):
        parse_latex(r"q_t \odot z", resolver(gru))


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "z.__class__", "eval(z)"])
def test_input_is_never_evaluated_as_code(gru, text):
    with pytest.raises(HandParseError):
        parse_latex(text, resolver(gru))


def test_tokenizer_reads_commands_letters_and_unicode():
    assert tokenize(r"\delta h_{t-1}") == ["\\delta", "h", "_", "{", "t", "-", "1", "}"]
    assert tokenize("δh ⊙ z") == ["\\delta", "h", "\\odot", "z"]
    assert tokenize("h̃") == ["\\tilde", "{", "h", "}"]


def test_main_reads_a_file_and_exits(tmp_path, capsys):
    good = tmp_path / "good.tex"
    good.write_text("% my GRU\n" + rf"\delta a_z = {CORRECT_DA_Z}" + "\n", encoding="utf-8")
    assert handcheck.main("gru", good) == 0
    assert "equivalent" in capsys.readouterr().out
    bad = tmp_path / "bad.tex"
    bad.write_text(r"$\delta a_z = \delta h \odot z$" + "\n", encoding="utf-8")
    assert handcheck.main("gru", bad) == 1
    out = capsys.readouterr().out
    assert "NOT equivalent" in out and "counterexample" in out


def test_a_long_sum_within_the_token_limit_is_a_verdict_not_a_recursion_error():
    """300 terms of z + z + …: under the line's token limit, but SymPy recursed past Python's
    limit and check_one raised RecursionError at the API (the CLI's limited child hid it)."""
    from symbptt import handcheck
    from symbptt.derive import derive
    from symbptt.loader import load, resolve

    result = handcheck.check_one(derive(load(resolve("gru"))), "da_z", "+".join(["z"] * 300))
    assert not result.equivalent and result.limit == "too deep"
    assert "split it over several lines" in result.error
