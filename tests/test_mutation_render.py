"""Template contexts (``symbptt/render.py``) computed inside each test: the jinja2 environment and
its filters, docstrings made safe (read back by Python's own parser), where a kernel reads each
dimension, how a kernel says to regenerate it, the kernel and notebook contexts, and every
built-in cell's NumPy kernel as committed in ``generated/numpy``."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest

from symbptt import Cell, derive, tanh
from symbptt.array_module import NUMPY, array_module
from symbptt.cell import CellError
from symbptt.codegen import numpy_kernel
from symbptt.loader import builtin_cells, load, source_label
from symbptt.render import (
    _dim_sources,
    _recurrent_parameters,
    _regenerate,
    dim_code,
    docstring,
    environment,
    kernel_context,
    notebook_context,
    pytuple,
)

GENERATED = Path(__file__).resolve().parent.parent / "generated" / "numpy"


@pytest.mark.parametrize("path", sorted(builtin_cells()), ids=lambda p: p.stem)
def test_each_cells_kernel_is_the_committed_one(path):
    assert numpy_kernel(derive(load(path)), source_label(path)) == (GENERATED / f"{path.stem}.py").read_text(
        encoding="utf-8")


def test_pytuple():
    for items in ([], ["h"], ["h", "c"]):
        text = pytuple(items)
        assert ast.literal_eval(text) == tuple(items)
    assert pytuple(["h"]) == '("h",)'
    assert pytuple(["h", "c"]) == '("h", "c")'


@pytest.mark.parametrize("text", ['plain', 'a\\u b \\N{x}', 'ends """ early', 'nul\x00 bell\x07 esc\x1b',
                                  'tab\tand\nnewline', 'ünïcödé ⊙ σ'])
def test_docstring_text_reads_back_as_written(text):
    safe = docstring(text)
    module = ast.parse(f'"""{safe} """\n')
    assert ast.get_docstring(module, clean=False) == text + " "
    assert "\x00" not in safe
    assert ("\t" in safe) == ("\t" in text) and safe.count("\n") == text.count("\n")


def test_environment_is_strict_and_keeps_whitespace_stable(tmp_path):
    (tmp_path / "t.j2").write_text("{% for x in xs %}\n  {{ x | add_prefix('d') | add_suffix('_s') }}\n"
                                   "{% endfor %}\n{{ names | pytuple }} {{ doc | docstring }} <b>\n",
                                   encoding="utf-8")
    env = environment(tmp_path)
    out = env.get_template("t.j2").render(xs=["h", "c"], names=["h"], doc='q"""')
    assert out == '  dh_s\n  dc_s\n("h",) q""\\" <b>\n'  # no blank lines, kept newline, no escaping
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("t.j2").render(xs=["h"], names=["h"])
    (tmp_path / "indented.j2").write_text("  {% if on %}\nA\n  {% endif %}\nB\n", encoding="utf-8")
    assert env.get_template("indented.j2").render(on=True) == "A\nB\n"  # an indented tag leaves no spaces


def test_dim_code():
    import sympy as sp

    n_h, n_x = sp.symbols("n_h n_x")
    assert dim_code(n_h + n_x) == "n_h + n_x"
    assert dim_code(3) == "3"


def _cell(name: str, state_first: bool):
    cell = Cell(name, "one size, no parameter")
    (n,) = cell.dims("n")
    if state_first:
        h, x = cell.state("h", n), cell.input("x", n)
    else:
        x, h = cell.input("x", n), cell.state("h", n)
    cell.update("h", tanh(h + x))
    return cell


def test_dim_sources_from_parameters_inputs_and_states():
    d = derive(load("rnn"))
    assert _dim_sources(d) == [("n_x", "Whx.shape[1]"), ("n_h", "Whx.shape[0]"), ("n_y", "Wyh.shape[0]")]
    assert _dim_sources(d, per_step=True) == _dim_sources(d)
    state = derive(_cell("state_first", True))
    assert _dim_sources(state) == [("n", "h_seq.shape[1]")]
    assert _dim_sources(state, per_step=True) == [("n", "h_prev.shape[0]")]
    given = derive(_cell("input_first", False))
    assert _dim_sources(given) == [("n", "x_seq.shape[0]")]
    assert _dim_sources(given, per_step=True) == [("n", "xt.shape[0]")]


def test_regenerate_says_how_in_each_case():
    torch = array_module("torch")
    assert _regenerate("rnn", "", NUMPY) == "symbptt.kernel_source(cell)"
    assert _regenerate("rnn", "cells/rnn.py", NUMPY) == "`symbptt build`"
    assert _regenerate("rnn", "", torch) == 'symbptt.kernel_source(cell, module="torch")'
    assert _regenerate("rnn", "cells/rnn.py", torch) == "`symbptt codegen rnn --module torch`"


def test_recurrent_parameters_leave_out_the_readouts():
    assert _recurrent_parameters(derive(load("rnn"))) == ["Whx", "Whh", "bh"]
    lstm = derive(load("lstm"))
    assert "Wy" not in _recurrent_parameters(lstm) and "by" not in _recurrent_parameters(lstm)
    assert set(_recurrent_parameters(lstm)) == {p.name for p in lstm.cell.parameters} - {"Wy", "by"}


def test_kernel_context_of_rnn():
    d = derive(load("rnn"))
    k = kernel_context(d, "cells/rnn.py")
    assert (k["cell"], k["source"], k["regenerate"], k["module"]) == ("rnn", "cells/rnn.py", "`symbptt build`", NUMPY)
    assert k["equations"] == ["h = tanh(Whh·h_prev + Whx·xt + bh)", "y = softmax(Wyh·h + by)"]
    assert k["backward_equations"][0] == "da_y = y ⊙ (dy - colsum(y ⊙ dy))"
    assert k["backward_equations"][-2:] == ["dWyh = Σ_t da_y·hᵀ", "dby = Σ_t rowsum(da_y)"]
    assert len(k["backward_equations"]) == len(d.backward) + len(d.parameters)
    assert k["params"][0] == {"name": "Whx", "role": "weight", "rows": "n_h", "cols": "n_x",
                              "meaning": "input-to-hidden weights"}
    assert k["states"] == [{"name": "h", "rows": "n_h"}]
    assert k["inputs"] == [{"name": "x", "rows": "n_x"}]
    assert k["readouts"] == [{"name": "y", "rows": "n_y"}]
    assert k["softmax_readouts"] == ["y"]
    assert k["dims"] == [{"name": "n_x", "source": "Whx.shape[1]"}, {"name": "n_h", "source": "Whx.shape[0]"},
                         {"name": "n_y", "source": "Wyh.shape[0]"}]
    assert k["dim_names"] == ["n_x", "n_h", "n_y"]
    assert k["backward_params"] == ["Whx", "Whh", "Wyh"]  # read by the backward, not cached
    assert k["notebook"] is not None
    torch = kernel_context(d, "", "torch")
    assert torch["notebook"] is None
    assert torch["regenerate"] == 'symbptt.kernel_source(cell, module="torch")'


def test_kernel_context_needs_one_input_sequence():
    cell = Cell("two", "two inputs")
    (n,) = cell.dims("n")
    x, u, h = cell.input("x", n), cell.input("u", n), cell.state("h", n)
    cell.update("h", tanh(h + x + u))
    with pytest.raises(CellError, match=r"cell two: a generated kernel takes one input sequence x; "
                                        r"the cell declares 2 \(x, u\)"):
        kernel_context(derive(cell))


def test_kernel_context_names_no_input_as_none():
    cell = Cell("no_input", "a state alone")
    (n,) = cell.dims("n")
    h = cell.state("h", n)
    cell.update("h", tanh(cell.weight("W", n, n) @ h))
    with pytest.raises(CellError, match=r"the cell declares 0 \(none\)$"):
        kernel_context(derive(cell))


def test_a_softmax_inside_the_step_is_no_softmax_readout():
    from symbptt import odot, softmax

    cell = Cell("attend", "a softmax weighting the state")
    (n,) = cell.dims("n")
    x, h = cell.input("x", n), cell.state("h", n)
    a = cell.let("a", softmax(cell.weight("W", n, n) @ x))
    cell.update("h", tanh(odot(a, h)))
    assert kernel_context(derive(cell))["softmax_readouts"] == []


def test_notebook_context_of_rnn():
    cell = load("rnn")
    nb = notebook_context(cell, "cells/rnn.py")
    assert nb["prefix"] == "rnn"
    assert nb["states"] == ["h"] and nb["inputs"] == ["x"] and nb["readout"] == "y"
    assert [f["name"] for f in nb["forward"]] == ["a_h", "h", "a_y", "y"]
    assert nb["forward"][1] == {"name": "h", "code": "np.tanh(a_h)", "comment": "h = tanh(a_h)"}
    assert nb["cache"] == ["xt", "h_prev", "h"]
    assert nb["loads"] == ["xt", "h_prev", "h"]
    assert nb["backward_params"] == ["Whx", "Whh"]
    assert nb["dims"] == []  # the backward's code names no size
    assert nb["backward"][0]["name"] == "da_h" and nb["backward"][0]["comment"].startswith("da_h = ")
    assert nb["carries"] == [{"state": "h", "code": "Whh.T @ da_h"}]
    assert nb["input_grads"] == [{"input": "x", "code": "Whx.T @ da_h"}]
    assert [g["name"] for g in nb["param_grads"]] == ["Whx", "Whh", "bh"]
    assert nb["param_grads"][2]["code"] == "da_h.sum(axis=1, keepdims=True)"


def test_notebook_context_of_a_cell_without_a_readout():
    nb = notebook_context(_cell("no_readout", True), "")
    assert nb["readout"] is None
    assert [f["name"] for f in nb["forward"]] == ["a_h", "h"]
    assert nb["param_grads"] == []


def test_notebook_context_reads_a_size_the_backward_needs():
    """gru's one-step backward slices a stack's gradient at n_h: that size is read from an argument."""
    nb = notebook_context(load("gru"), "")
    assert [d["name"] for d in nb["dims"]] == ["n_h"]
    assert nb["dims"][0]["source"].endswith(".shape[0]")
    assert set(nb["loads"]) <= set(nb["cache"])
    assert nb["cache"][:2] == ["xt", "h_prev"]
