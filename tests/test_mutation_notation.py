"""symbptt/notation.py: Greek capitals and dotless accented i/j in LaTeX, and the table of a
derivation's symbol names, each against what it must be (LaTeX's own commands, the names the
derivation's equations use, the printer's LaTeX of each).

These tests came from ``tools/mutation.py symbptt/notation.py --sample 40``.
"""

from __future__ import annotations

import sympy as sp

from symbptt import derive
from symbptt.loader import load
from symbptt.notation import escape_math, escape_tex, latex_printer, latex_symbol_names

#: Every Greek capital with LaTeX's command for it, or the Latin capital LaTeX sets it as.
GREEK_CAPITALS = {"Α": "A", "Β": "B", "Γ": r"\Gamma", "Δ": r"\Delta", "Ε": "E", "Ζ": "Z", "Η": "H",
                  "Θ": r"\Theta", "Ι": "I", "Κ": "K", "Λ": r"\Lambda", "Μ": "M", "Ν": "N", "Ξ": r"\Xi",
                  "Ο": "O", "Π": r"\Pi", "Ρ": "P", "Σ": r"\Sigma", "Τ": "T", "Υ": r"\Upsilon",
                  "Φ": r"\Phi", "Χ": "X", "Ψ": r"\Psi", "Ω": r"\Omega"}


def test_greek_capitals_are_latex_commands_or_their_latin_lookalikes():
    assert {ch: escape_math(ch) for ch in GREEK_CAPITALS} == GREEK_CAPITALS
    assert escape_math("λ") == r"\lambda"


def test_accented_i_and_j_lose_their_dot():
    """LaTeX puts an accent over a dotless ı/ȷ (\\i, \\j); over i it would keep the dot too."""
    assert escape_tex("ĩ ĵ ŷ") == r"\~{\i} \^{\j} \^{y}"


def test_symbol_names_are_the_names_the_equations_use_without_dimensions():
    d = derive(load("rnn"))
    used = {s.name for eq in d.forward for s in eq.expr.free_symbols if isinstance(s, sp.MatrixSymbol)}
    names = latex_symbol_names(d)
    assert set(names) == used | {eq.name for eq in d.forward}
    assert not set(names) & {str(n) for n in d.cell.dimensions}
    printer = latex_printer(d)
    assert all(names[s] == printer.doprint(sp.MatrixSymbol(s, 1, 1)) for s in used)


def test_every_name_given_with_print_as_is_used_in_the_report():
    """gru's v = [s; x] names a stack of another introduced name (s = r ⊙ h_prev): its
    definition is matched after s is expanded, so the report writes v, not the stack."""
    from symbptt.report import report_tex

    for name in ("gru", "mgu"):
        d = derive(load(name))
        tex = report_tex(d)
        for latex, _ in d.cell.printed_names.values():
            assert tex.count(latex + "_{t}") >= 2, (name, latex)


def test_a_readout_wears_a_hat_and_a_pre_activation_keeps_its_accent():
    """ŷ_t for a prediction (the notebook's notation); a_{\\tilde{gin},t} for the pre-activation
    of g_in_tilde: the accent is the name's last part, whatever the parts before it."""
    from symbptt import Cell, tanh

    for name in ("rnn", "gru"):
        d = derive(load(name))
        names = latex_symbol_names(d)
        readouts = [eq.name for eq in d.forward if eq.kind == "readout"]
        assert readouts and all(names[r].startswith(r"\hat{\mathbf{") for r in readouts)
        assert not any(names[eq.name].startswith(r"\hat") for eq in d.forward if eq.kind != "readout")
    cell = Cell("accents", "A three-part name with an accent.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W = cell.weight("W", n_h, n_x, "weights")
    cell.update("h", cell.let("g_in_tilde", tanh(W @ x), "candidate") + h_prev)
    names = latex_symbol_names(derive(cell))
    assert names["a_g_in_tilde"] == r"\mathbf{a}_{\tilde{gin},t}"
    assert names["g_in_tilde"] == r"\tilde{\mathbf{g}}_{in,t}"
