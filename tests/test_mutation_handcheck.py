r"""Hand derivations, line by line: what the reader of the LaTeX subset understands, what it
refuses and how it says so, and the verdict a person gets on a right or a wrong line.

These tests came from a mutation run over ``symbptt/handcheck.py`` (tools/mutation.py): each one
kills mutants that test_handcheck.py and test_pinned_tolerances.py let through.
"""

from __future__ import annotations

import pytest

from symbptt import derive, handcheck
from symbptt.handcheck import HandResult, check_one
from symbptt.loader import load

DA_Z = r"\delta h_t \odot (h_{t-1} - \tilde{h}_t) \odot z_t \odot (1 - z_t)"


@pytest.fixture(scope="module")
def gru():
    return derive(load("gru"))


@pytest.fixture(scope="module")
def rnn():
    return derive(load("rnn"))


def parser(derivation, text: str) -> handcheck.Parser:
    resolve = handcheck.Resolver(handcheck._symbols(derivation), dimensions=derivation.cell.dimensions)
    return handcheck.Parser(text, resolve)


def error(derivation, target: str, text: str) -> str:
    result = check_one(derivation, target, text)
    assert result.verdict == "cannot check" and not result.equivalent, result.report()
    return result.error


# -- reading ----------------------------------------------------------------------------------


def test_unicode_and_spacing_become_latex():
    assert handcheck.normalise("h̃ − δ ⊙ ∘ · ᵀ σ ×") == (
        r"\tilde{h} - \delta  \odot  \circ  \cdot  ^\top  \sigma  \times ")
    assert handcheck.normalise(r"a\,b\;c\:d\!e\ f\quad g\qquad h~i") == "a b c d e f  g  h i"
    assert handcheck.tokenize(r"δh ⊙ h̃ · W^\top \, x_{t-1} 12.5 σ(a)") == [
        r"\delta", "h", r"\odot", r"\tilde", "{", "h", "}", r"\cdot", "W", "^", r"\top", "x", "_", "{", "t", "-",
        "1", "}", "12.5", r"\sigma", "(", "a", ")"]


@pytest.mark.parametrize("text, parts, candidates", [
    (r"\delta h_{t-1}", (True, "h", "", (), "prev"), ["dh_prev"]),
    (r"\tilde{h}_t", (False, "h", "tilde", (), "now"), ["h_tilde", "h_tildet"]),
    ("W_z", (False, "W", "", ("z",), ""), ["W_z", "Wz"]),
    (r"a_{z,t}", (False, "a", "", ("z",), "now"), ["a_z", "az", "a_zt", "azt"]),
    ("x_t", (False, "x", "", (), "now"), ["x", "xt"]),
    (r"\hat{y}_t", (False, "y", "hat", (), "now"), ["y_hat", "y", "y_hatt", "yt"]),
    ("h_{t+1}", (False, "h", "", (), "next"), ["h_next"]),
    (r"\mathbf{W}_{z}", (False, "W", "", ("z",), ""), ["W_z", "Wz"]),
    (r"\delta^{(t)} h_{t-1}", (True, "h", "", (), "prev"), ["dh_prev"]),
    (r"\bar{x}", (False, "x", "bar", (), ""), ["x_bar"]),
    (r"W_{\tilde{h}}", (False, "W", "", ("h_tilde",), ""), ["W_h_tilde", "Wh_tilde"]),
    (r"\boldsymbol{h}_{\mathbf{r}}", (False, "h", "", ("r",), ""), ["h_r", "hr"]),
])
def test_names_and_what_they_may_mean(gru, text, parts, candidates):
    name = parser(gru, text).name()
    assert (name.delta, name.base, name.decoration, name.parts, name.time) == parts
    assert name.candidates()[:len(candidates)] == candidates
    assert name.text == text.replace(" ", "")


def test_sizes_of_row_ranges():
    dims = load("gru").dimensions
    assert handcheck._size("", dims) is None
    assert handcheck._size("3", dims) == 3
    assert handcheck._size("n_h+1", dims) == dims["n_h"] + 1
    assert handcheck._size("n_h+n_x", dims) == dims["n_h"] + dims["n_x"]
    assert handcheck._size("n_h-1", dims) == dims["n_h"] - 1
    assert handcheck._size("2-1+n_x", dims) == 1 + dims["n_x"]
    with pytest.raises(handcheck.HandParseError, match=r"unknown size 'n_q' in the row range 'n_q\+1' "
                                                       r"\(sizes: n_x, n_h, n_y\)"):
        handcheck._size("n_q+1", dims)


def test_bases_of_names():
    assert handcheck._base_of(r"\tilde{\mathbf{h}}") == ("h", "tilde")
    assert handcheck._base_of("W") == ("W", "")
    assert handcheck._base_of(r"\mathbf{\boldsymbol{x}}") == ("x", "")
    assert handcheck._base_of(r"\hat{y}") == ("y", "hat")
    assert handcheck._base_of("1") == ("", "")
    assert handcheck._base_of(r"\frac") == ("", "")


# -- refusing, with the reason ------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    (r"\delta h_t \odot ", r"expected a value at token 6 (None) of '\\delta h_t \\odot ', after '\\deltah_t\\odot'"),
    ("x^{q}", "unsupported superscript 'q' at token 6 (None) of 'x^{q}', after 'x^{q}'"),
    (r"x^{\odot 9}", r"an elementwise power must be 1 to 8, not 9 at token 7 (None) of 'x^{\\odot 9}'"),
    ("x^2^2", ("a double superscript (x^2^2: LaTeX refuses it too); write (x^2)^2 or x^4 as a product at token 6 "
              "(None) of 'x^2^2', after 'x^2^2'")),
    (r"\tanh^3(x)", r"only a square of a function is supported at token 4 ('(') of '\\tanh^3(x)', after '\\tanh^3'"),
    (r"\sigma x", r"expected '(' at token 2 ('x') of '\\sigma x', after '\\sigma'"),
    ("x )", "unexpected token at token 2 (')') of 'x )', after 'x'"),
    (r"\frac{1}{2}", "a matrix is needed where the number 1/2 stands"),
    (r"\mathbb{2}[h > 0]", (r"only \mathbb{1}[u > 0] is supported at token 5 ('[') of '\\mathbb{2}[h > 0]', "
                           r"after '\\mathbb{2}'")),
    ("[h; x]_{3}", ("a subscript on a bracket must be a row range a:b, not '3' at token 10 (None) of '[h; x]_{3}', "
                   "after '[h;x]_{3}'")),
    ("1 + 2", "a matrix is needed where the number 3 stands"),
    (r"\mathbf{1}", (r"a matrix is needed where \mathbf{1} (a matrix of ones, whose shape only a partner "
                    r"such as z in \mathbf{1} - z decides) stands")),
    (r"\mathbf{1}\mathbf{1}^\top", (r"a matrix is needed where \mathbf{1}\mathbf{1}^\top (column sums, which need a "
                                   r"matrix after them) stands")),
    (r"\mathbf{1}\mathbf{1}^2 z", (r"expected \mathbf{1}\mathbf{1}^\top at token 11 ('z') of "
                                  r"'\\mathbf{1}\\mathbf{1}^2 z', after '\\mathbf{1}\\mathbf{1}^2'")),
    ("q", "unknown name 'q' (read as q, qt; known: "),
])
def test_a_line_outside_the_subset_says_where(gru, text, message):
    assert error(gru, "da_z", text).startswith(message)


def test_row_ranges_that_cannot_be(gru):
    assert error(gru, "dh_prev", r"[\delta h_{t-1}; x]_{0:2}").startswith(
        "the row range 0:2 starts before row 1 (rows are counted from 1) at token 19")
    assert error(gru, "dh_prev", "[x; h]_{3:1}").startswith(
        "the row range 3:1 is empty (rows a to b, counted from 1, need a ≤ b) at token")
    assert error(gru, "dh_prev", "[x; h]_{n_q:1}") == "unknown size 'n_q' in the row range 'n_q' (sizes: n_x, n_h, n_y)"
    assert error(gru, "dh_prev", "[x; h]_{2:1}") == "has shape (0, m) but dh_prev is (n_h, m)"


def test_targets_that_are_not_adjoints(gru):
    assert error(gru, "dq", "h_t").startswith("a target is one name at token 2 ('q') of 'dq', after 'd'")
    assert error(gru, "dWz", "h_t") == "has shape (n_h, m) but dWz is (n_h, n_h + n_x)"
    assert error(gru, "z", "h_t").startswith("z is not a derived adjoint (derived: da_y, dh, ")
    assert check_one(gru, r"\frac{\partial L}{\partial a_z}", DA_Z).target == "da_z"
    assert check_one(gru, r"\delta a_{z,t}", DA_Z).equivalent


def test_a_line_using_its_own_or_a_later_adjoint_is_refused(gru):
    result = check_one(gru, "da_z", DA_Z + r" + \delta a_z")
    assert (result.verdict, result.limit) == ("refused", "refused")
    assert result.error == (
        "da_z may not be written in terms of da_z (its own adjoint or one derived after it); it may use forward "
        "values, parameters, incoming gradients and the adjoints derived before it (da_y, dh, dh_tilde, "
        "da_h_tilde, dh_prev_r_xt, dh_prev_r, dr, da_r, dz)")
    # an earlier adjoint is allowed: δz is derived before δa_z
    assert check_one(gru, "da_z", r"\delta z \odot z \odot (1 - z)").equivalent
    first = check_one(gru, "da_y", r"\delta a_z")
    assert first.verdict == "refused" and first.error.endswith("adjoints derived before it (none)")


def test_limits_of_one_line(gru):
    long = check_one(gru, "da_z", "z + " * 600 + "z")
    assert (long.verdict, long.error) == ("too large", "the line has 2401 characters; at most 2000 are checked")
    many = check_one(gru, "da_z", "+".join(["z"] * 301))
    assert many.verdict == "too large"
    assert many.error == ("the line has 601 symbols; at most 600 are checked (split a long sum into named parts)")
    deep = check_one(gru, "da_z", "(" * 41 + "z" + ")" * 41)
    assert (deep.verdict, deep.error) == ("too deep", "more than 40 nested brackets or functions")
    assert check_one(gru, "da_z", "(" * 38 + "z" + ")" * 38).verdict == "NOT equivalent"
    signs = check_one(gru, "da_z", "-" * 45 + "z")
    assert (signs.verdict, signs.error) == ("too deep", "more than 40 signs or nested brackets")


# -- verdicts -------------------------------------------------------------------------------------


def test_right_lines_in_several_forms(rnn):
    for target, text in [("dbh", r"\delta a_h \mathbf{1}"), ("dWhh", r"\delta a_h h_{t-1}^\top"),
                         ("dWhh", r"\delta a_h \cdot h_{t-1}^T"), ("da_h", r"\delta h \odot (1 - h^2)"),
                         ("da_h", r"\delta h \circ (\mathbf{1} - h \odot h)"),
                         ("da_h", r"\delta h * (1 - h)*(1 + h)"),
                         ("dh_prev", r"W_{hh}^\top \delta a_h"), ("dh_prev", r"W_{hh}^\top \times \delta a_h"),
                         ("dh_prev", r"\left( W_{hh}^\top \right) \delta a_h"),
                         ("dxt", r"W_{hx}^\top \delta a_h"), ("dbh", r"\delta a_h \mathbf{1}")]:
        result = check_one(rnn, target, text)
        assert result.equivalent and result.symbolic and result.numeric_error < 1e-12, result.report()
        assert result.how == "identical once the derived adjoints are expanded"
    through = check_one(rnn, "da_h", r"\delta h \odot (1 - \tanh^2(a_h))")
    assert through.equivalent and through.how == "equal using the forward equations"
    assert through.report() == ("da_h = \\delta h \\odot (1 - \\tanh^2(a_h))\n  equivalent (equal using the forward "
                                f"equations; numeric rel. error {through.numeric_error:.1e})")


def test_wrong_lines_show_the_difference_and_a_counterexample(rnn):
    result = check_one(rnn, "da_h", r"\delta h / (1 + h)")
    assert result.verdict == "NOT equivalent" and result.symbolic is False
    assert result.difference == "dh*h*(h**2 + h - 1)/(h + 1)"
    assert result.counterexample.startswith("at n_x=1, n_h=1, n_y=1, m=1 with xt=[[0.02]]; h_prev=[[0.9]]; ")
    assert result.counterexample.endswith(": derived da_h[0,0] = -0.152145, given -0.129182")
    assert result.report().splitlines() == [
        r"da_h = \delta h / (1 + h)", "  NOT equivalent to the derived adjoint",
        "  given − derived = dh*h*(h**2 + h - 1)/(h + 1)", f"  counterexample: {result.counterexample}"]
    step = check_one(rnn, "da_h", r"\delta h \odot \mathbb{1}[a_h > 0]")
    assert step.difference == "dh*(h**2 + Heaviside(a_h, 0) - 1)"
    assert check_one(rnn, "da_h", r"\delta h \odot \mathbb{1}\left[a_h > 0\right]").difference == step.difference


def test_a_missing_transpose_is_shown_entry_by_entry(rnn):
    result = check_one(rnn, "dh_prev", r"W_{hh} \delta a_h")
    assert not result.equivalent
    assert result.difference == "entry [0,0]: da_h[1,0]*(Whh[0,1] - Whh[1,0])"
    assert result.counterexample.startswith("at n_x=3, n_h=2, n_y=2, m=2 with ")
    assert ": derived dh_prev[0,1] = 0.273404, given -0.0211157" in result.counterexample


def test_the_numeric_tolerance_alone_can_refuse(gru, monkeypatch):
    """The numeric comparison is a second, independent judge: with it at its pinned 1e-9 a line
    that is symbolically right passes; with an impossible tolerance it does not."""
    assert handcheck.NUMERIC_TOLERANCE == 1e-9
    monkeypatch.setattr(handcheck, "NUMERIC_TOLERANCE", -1.0)
    result = check_one(gru, "da_z", DA_Z)
    assert result.symbolic and not result.equivalent
    assert result.difference == "0 in these variables (it differs only through the forward equations)"


def test_stacks_slices_and_sums(gru, rnn):
    assert check_one(gru, "dh_prev_r", r"[\delta h_{prev,r,xt}]_{1:n_h}").equivalent
    assert check_one(gru, "dh_prev_r", r"[\delta h_{prev,r,xt}]_{:n_h}").equivalent
    assert not check_one(gru, "dh_prev_r", r"[\delta h_{prev,r,xt}]_{2:n_h+1}").equivalent
    assert check_one(rnn, "dbh", r"\mathbf{1}\mathbf{1}^\top \delta a_h").error == (
        "has shape (n_h, m) but dbh is (n_h, 1)")


def test_the_report_of_a_result():
    assert HandResult("da_z", "x" * 301, False, line=3, error="boom").report() == (
        "line 3: da_z = " + "x" * 300 + " …\n  cannot check: boom")
    assert HandResult("da_z", "x" * 300, False, error="boom").report() == "da_z = " + "x" * 300 + "\n  cannot check: boom"
    assert HandResult("da_z", "x", False, line="cell 4, row 2", limit="too slow", error="took long").report() == (
        "cell 4, row 2: da_z = x\n  too slow: took long")
    assert HandResult("da_z", "x", False).report() == "da_z = x\n  NOT equivalent to the derived adjoint"
    assert HandResult("da_z", "x", True, True, 1.5e-16, "how").report() == (
        "da_z = x\n  equivalent (how; numeric rel. error 1.5e-16)")
    assert [HandResult("t", "x", ok).verdict for ok in (True, False)] == ["equivalent", "NOT equivalent"]
    assert HandResult("t", "x", False, error="e").verdict == "cannot check"
    assert HandResult("t", "x", False, error="e", limit="too deep").verdict == "too deep"


# -- files ------------------------------------------------------------------------------------------


def test_reading_a_derivation_file(tmp_path):
    path = tmp_path / "hand.tex"
    path.write_text("# comment\n% also\n\n$$ da_z = a = b $$\nno equals sign here\n  dz = c  \n", encoding="utf-8")
    entries, notes = handcheck.read_entries(path)
    assert entries == [(4, "da_z", "a"), (4, "da_z", "b"), (6, "dz", "c")]
    assert notes == [f"{path}:5: expected 'target = expression', got 'no equals sign here'"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("dz = caf\xe9\n".encode("latin-1"))
    entries, notes = handcheck.read_entries(latin)
    assert entries == [(1, "dz", "café")]
    assert notes == [f"{latin}: not UTF-8 (byte 0xe9 at position 8); read as Latin-1"]


def test_read_lines_keeps_the_first_equals_sign(tmp_path):
    path = tmp_path / "hand.tex"
    path.write_text("# c\n\n$da_z = a = b$\n% x\n", encoding="utf-8")
    assert handcheck.read_lines(path) == [("da_z", "a = b")]
    path.write_text("dz = a\nnothing\n", encoding="utf-8")
    with pytest.raises(handcheck.HandParseError, match=r"hand.tex:2: expected 'target = expression'"):
        handcheck.read_lines(path)


def test_main_counts_and_exits(tmp_path, capsys):
    path = tmp_path / "hand.tex"
    path.write_text(f"da_z = {DA_Z}\nda_z = z\n", encoding="utf-8")
    assert handcheck.main("gru", path) == 1
    out = capsys.readouterr().out
    assert out.endswith("\n\n1 of 2 equivalent\n")
    assert out.startswith(f"line 1: da_z = {DA_Z}\n  equivalent (identical once")
    path.write_text(f"da_z = {DA_Z}\njunk\n", encoding="utf-8")
    assert handcheck.main("gru", path) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"note: {path}:2: expected 'target = expression', got 'junk'\n")
    assert out.endswith("\n\n1 of 1 equivalent; 1 line(s) not read\n")
    path.write_text(f"da_z = {DA_Z}\n", encoding="utf-8")
    assert handcheck.main("gru", path) == 0
    path.write_text("# nothing\n", encoding="utf-8")
    assert handcheck.main("gru", path) == 1
    assert capsys.readouterr().out.endswith("\n\n0 of 0 equivalent\n")


@pytest.mark.parametrize("text, message", [
    (r"\delta h \odot \mathbb{1}(a_h > 0]", "expected '[' at token 8 ('(')"),
    (r"\delta h \odot \mathbb{1}[a_h < 0]", "expected '>' at token 12 ('<')"),
    (r"\delta h \odot \mathbb{1}[a_h > 1]", "expected '0' at token 13 ('1')"),
    (r"\delta h \odot \mathbb{1}\left[a_h > 0 ]", r"expected '\\right' at token 15 (']')"),
    (r"\delta h \odot \mathbb{1}[a_h > 0)", "expected ']' at token 14 (')')"),
])
def test_a_malformed_step_is_refused(rnn, text, message):
    assert error(rnn, "da_h", text).startswith(message)


@pytest.mark.parametrize("form", [r"\operatorname{softplus}", r"\mathrm{softplus}", r"\operatorname{relu}"])
def test_named_functions_are_read_in_either_form(rnn, form):
    result = check_one(rnn, "da_h", rf"\delta h \odot {form}(a_h)")
    assert result.verdict == "NOT equivalent" and result.difference, result.report()


def test_a_target_may_start_with_any_letter(tmp_path):
    path = tmp_path / "hand.tex"
    path.write_text("$Xh = a$\n", encoding="utf-8")
    assert handcheck.read_lines(path) == [("Xh", "a")]


# -- a sampled mutation run (tools/mutation.py symbptt/handcheck.py --sample 40) ---------------


def test_a_function_with_left_right_brackets_reads_back(rnn):
    result = check_one(rnn, "da_h", r"\delta h_t \odot \left(1 - \tanh^2\left(a_{h,t}\right)\right)")
    assert result.verdict == "equivalent", result.report()


def test_a_line_that_overflows_is_judged_without_numpy_warnings():
    """log(h − h) = log 0 = −inf: the verdict says wrong, and nothing is printed on stderr (run
    in a fresh interpreter: pytest would catch the warning itself)."""
    import subprocess
    import sys

    code = ("from symbptt import derive, handcheck; from symbptt.loader import load; "
            "r = handcheck.check_limited(derive(load('rnn')), 'da_h', r'\\delta h_t \\odot \\log(h_t - h_t)'); "
            "print(r.verdict)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "NOT equivalent"
    assert "Warning" not in run.stderr, run.stderr


def test_a_leading_minus_negates_the_first_term(rnn):
    assert check_one(rnn, "dh_prev", r"-(-W_{hh}^\top \delta a_h)").equivalent
    assert check_one(rnn, "dh_prev", r"-W_{hh}^\top \delta a_h + 2 W_{hh}^\top \delta a_h").equivalent
    assert check_one(rnn, "dh_prev", r"-W_{hh}^\top \delta a_h").verdict == "NOT equivalent"


@pytest.mark.parametrize("sup", [r"^\top", "^T", r"^\intercal", r"^{\mathsf{T}}", r"^\mathsf{T}", r"^{\mathrm{T}}",
                                 r"^\mathrm{T}", r"^\mathrm T"])
def test_the_transpose_in_every_notation(rnn, sup):
    assert check_one(rnn, "dh_prev", "W_{hh}" + sup + r" \delta a_h").equivalent


def test_a_number_beside_a_matrix_is_that_number_times_ones(rnn):
    """2 − h ⊙ h − 1 is 1 − h²: the 2 is a matrix of twos, not of ones."""
    assert check_one(rnn, "da_h", r"\delta h \odot (2 - h \odot h - 1)").equivalent
    assert check_one(rnn, "da_h", r"\delta h \odot (2 - h \odot h)").verdict == "NOT equivalent"


@pytest.mark.parametrize("text", [r"\delta h \odot (1 - h^2) \odot \mathbf{1}",
                                  r"\mathbf{1} \odot \delta h \odot (1 - h^2)",
                                  r"\delta h \odot (1 - h^2) + \mathbf{0} \odot h",
                                  r"\delta h \odot (1 - h^2) + h \odot \mathbf{0}"])
def test_ones_and_zeros_on_either_side_of_a_hadamard_product(rnn, text):
    result = check_one(rnn, "da_h", text)
    assert result.equivalent, result.report()


def test_a_line_using_two_later_adjoints_names_both(gru):
    result = check_one(gru, "dz", r"\delta z + \delta a_z")
    assert result.verdict == "refused"
    assert result.error.startswith("dz may not be written in terms of dz, da_z (its own adjoint or one derived")


def test_reading_a_notebooks_display_math(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell("The candidate:\n$$\\delta a_h = \\delta h \\odot (1 - h^2)$$"),
                  nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "homework.ipynb"
    nbformat.write(book, str(path))
    entries, notes = handcheck.read_entries(path)
    assert [(target, latex) for _, target, latex in entries] == [(r"\delta a_h", r"\delta h \odot (1 - h^2)")]
    assert notes == []


def test_a_transposed_number_is_the_number(rnn):
    assert check_one(rnn, "dh_prev", r"2^\top W_{hh}^\top \delta a_h - W_{hh}^\top \delta a_h").equivalent


def test_a_zero_takes_the_shape_of_the_target(rnn):
    resolve = handcheck.Resolver(handcheck._symbols(rnn), dimensions=rnn.cell.dimensions)
    like = next(a.symbol for a in rnn.parameters if a.symbol.name == "dWhx")
    for text in (r"\mathbf{0}", "0", r"\mathbf{0} \odot h"):
        zero = handcheck.parse_latex(text, resolve, like=like)
        assert zero.is_ZeroMatrix and zero.shape == like.shape, text


def test_a_line_that_cannot_be_read_keeps_its_target(rnn):
    result = check_one(rnn, "da_h", r"\delta h \odot (")
    assert (result.target, result.verdict) == ("da_h", "cannot check")


def test_a_long_line_without_equals_sign_is_quoted_to_60_characters(tmp_path):
    path = tmp_path / "hand.tex"
    line = "x" * 59 + "yz" + "w" * 20
    path.write_text(line + "\n", encoding="utf-8")
    _, notes = handcheck.read_entries(path)
    assert notes == [f"{path}:1: expected 'target = expression', got '{'x' * 59}y'"]
