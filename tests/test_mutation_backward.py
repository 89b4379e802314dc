"""The backward pass the kernel planner emits (symbptt/kernels/backward.py): its comments
state the adjoints the derivation gives, and the products over the stacked rows name the
rows and weights they read.

These tests came from a mutation run over ``symbptt/kernels/backward.py`` (tools/mutation.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from symbptt import Cell, fdcheck, odot, sigmoid, tanh
from symbptt.codegen import kernel_module, kernel_text
from symbptt.derive import derive
from symbptt.kernels.layout import Layout
from symbptt.loader import load
from symbptt.text import text
from tests.test_mutation_layout import reference_outputs

_EQUATION = re.compile(r"(\w+) = (.+?)(?=, \w+ = |$)")


def backward_comments(name: str) -> tuple[Layout, list[str]]:
    d = derive(load(name))
    source = kernel_text(d, f"{name}.py", "numpy")
    start = source.index("\ndef backward(")
    end = source.find("\ndef ", start + 1)
    end = len(source) if end < 0 else end  # backward may be the last function
    return Layout(d), [m.group(1) for m in re.finditer(r"^\s*# (.*)$", source[start:end], re.MULTILINE)]


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_peephole", "mgu", "rnn"])
def test_adjoint_comments_are_the_derivations_adjoints(name):
    """``# da_f = df ⊙ f ⊙ (1 - f)``: the derivation's adjoint, as the docstrings print it
    (the planner's own carried and grouped names, …_next and …_gates, and the input's adjoint,
    summed in row order, aside)."""
    layout, comments = backward_comments(name)
    adjoints = {a.symbol.name: text(a.expr) for a in layout.d.backward}
    for v in layout.static_groups:  # summed in row order (the next test)
        adjoints.pop(f"d{v}", None)
    checked = 0
    for comment in comments:
        if comment.endswith(": one product") or "(from the readouts)" in comment:
            continue
        for target, rhs in _EQUATION.findall(comment):
            if target in adjoints and "_next" not in rhs and "_gates" not in rhs:
                assert rhs == adjoints[target], f"{comment!r}: {target} is {adjoints[target]}"
                checked += 1
    assert checked >= len(layout.rows), (checked, comments)


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_input_adjoint_comment_sums_every_rows_product(name):
    """``# dxt = Wf_xtᵀ·da_f + …``: one term per row that multiplies the input, in row order."""
    layout, comments = backward_comments(name)
    [(xt, members)] = layout.static_groups.items()
    [line] = [cm for cm in comments if cm.startswith(f"d{xt} = ")]
    terms = line.removeprefix(f"d{xt} = ").split(" + ")
    assert [t.split("·")[1] for t in terms] == [f"d{r.name}" for r, _ in members], line
    assert all(t.split("·")[0].endswith("ᵀ") for t in terms), line


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_grouped_product_comment_names_its_rows(name):
    """``# dh_prev_gates = Wo_h_prevᵀ·da_o + …: one product``: a term for each row of the
    operand's group."""
    layout, comments = backward_comments(name)
    for v, members in layout.groups.items():
        lines = [cm for cm in comments if cm.startswith(f"d{v}_gates = ")]
        assert len(lines) == 1, (v, comments)
        body = lines[0].removeprefix(f"d{v}_gates = ").removesuffix(": one product")
        assert lines[0].endswith(": one product") == (len(members) > 1), lines[0]
        rows = sorted(t.split("·")[1] for t in body.split(" + "))
        assert rows == sorted(f"d{r.name}" for r, _ in members), lines[0]


# -- readouts whose backward takes the planner's other paths --------------------------------------


def readout_cell(kind: str) -> Cell:
    """h = tanh(U·h_prev + W·x + b) with a readout that reads the input (``input``), whose
    adjoint of h is more than one product (``square``), or that reads a gate, not a state
    (``gate``)."""
    cell = Cell(f"readout_{kind}", kind)
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g = cell.let("g", sigmoid(cell.weight("G", n_h, n_h) @ h_prev + cell.weight("Q", n_h, n_x) @ x))
    h = cell.update("h", odot(g, tanh(cell.weight("U", n_h, n_h) @ h_prev + cell.weight("W", n_h, n_x) @ x
                                      + cell.bias("b", n_h))))
    Wy = cell.weight("Wy", n_y, n_h)
    if kind == "input":
        readout = Wy @ h + cell.weight("Vy", n_y, n_x) @ x
    elif kind == "square":
        readout = Wy @ h + cell.weight("Vy", n_y, n_h) @ odot(h, h)
    else:
        readout = tanh(Wy @ g) + cell.weight("Vy", n_y, n_h) @ h
    cell.readout("y", readout)
    return cell


@pytest.mark.parametrize("kind", ["input", "square", "gate"])
@pytest.mark.parametrize("truncate", [None, 2])
def test_kernel_with_a_readout_matches_its_equations_and_differences(kind, truncate):
    cell = readout_cell(kind)
    kernel = kernel_module(cell)
    dims = fdcheck.dims_for(kernel)
    problem = fdcheck.random_problem(kernel, dims, 2, 3, seed=11)
    outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    expected = reference_outputs(cell, problem, dims, 2)
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    errors = fdcheck.check(kernel, m=2, T=3, truncate=truncate, seed=11)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-6, (kind, worst, errors[worst])
