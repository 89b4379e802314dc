"""The forward pass the kernel planner emits (symbptt/kernels/forward.py): the activation of
a step's gates in as few in-place calls as their readiness allows, and biases summed before
they are halved for the σ rows.

These tests came from a mutation run over ``symbptt/kernels/forward.py`` (tools/mutation.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

from symbptt import Cell, fdcheck, odot, one_minus, ops, sigmoid, tanh
from symbptt.codegen import kernel_module, kernel_text
from symbptt.derive import derive
from symbptt.kernels import code as c
from symbptt.kernels import forward
from symbptt.kernels.array_printer import NUMPY_PRINTER
from symbptt.kernels.forward import ForwardPlanner
from symbptt.kernels.layout import Layout
from symbptt.loader import load
from symbptt.text import text
from tests.test_mutation_layout import interleaved_cell, reference_outputs


def activations(cell: Cell) -> list[tuple[str, list[str]]]:
    """Each in-place activation of the forward loop: (function, the gates' rows it covers)."""
    layout = Layout(derive(cell))
    loop = ForwardPlanner(layout).plan().loop
    out = []
    for s in loop:
        if not (isinstance(s, c.ApplyInPlace) and s.target.base == layout.buf):
            continue
        rows = s.target.index[0] if s.target.index else None
        lo, hi = (rows.lo, rows.hi) if rows is not None else (0, layout.total)
        out.append((s.fn, [r.name for r in layout.rows
                           if sp.simplify(r.start - lo) >= 0 and sp.simplify(hi - r.stop) >= 0]))
    return out


def test_lstm_gates_are_activated_by_one_call():
    """Every LSTM gate needs only this step's products: all four rows, σ and tanh, in one tanh."""
    [(fn, rows)] = activations(load("lstm"))
    assert fn == "tanh" and sorted(rows) == ["a_c_tilde", "a_f", "a_i", "a_o"]


def test_gru_candidate_waits_for_its_reset_gate():
    """z and r are ready together; h̃ needs r ⊙ h_prev first, so it is a second call."""
    assert activations(load("gru")) == [("tanh", ["a_z", "a_r"]), ("tanh", ["a_h_tilde"])]


def test_adjacent_ready_rows_below_the_first_activated_one_join_its_call():
    """interleaved: rows [g2 (relu); g3; g1; g4 (σ, σ, tanh)]; g1 comes first in the loop and
    its call reaches down to g3 and up to g4; the relu row is another family."""
    layout = Layout(derive(interleaved_cell()))
    assert [r.name for r in layout.rows] == ["a_g2", "a_g3", "a_g1", "a_g4"]
    assert activations(interleaved_cell()) == [("tanh", ["a_g3", "a_g1", "a_g4"]), ("relu", ["a_g2"])]


def two_bias_cell() -> Cell:
    """A σ gate with two biases next to a tanh gate: the σ row is halved, both biases with it."""
    cell = Cell("two_biases", "f = σ(U·h_prev + W·x + b + c), g = tanh(V·h_prev + d)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    f = cell.let("f", sigmoid(cell.weight("U", n_h, n_h) @ h_prev + cell.weight("W", n_h, n_x) @ x
                              + cell.bias("b", n_h) + cell.bias("c", n_h)))
    g = cell.let("g", tanh(cell.weight("V", n_h, n_h) @ h_prev + cell.bias("d", n_h)))
    cell.update("h", odot(f, h_prev) + odot(1 - f, g))
    return cell


def test_a_halved_row_halves_the_sum_of_its_biases():
    cell = two_bias_cell()
    layout = Layout(derive(cell))
    assert any(r.half and len(r.biases) == 2 for r in layout.rows), "the cell no longer tests this"
    kernel = kernel_module(cell)
    dims = fdcheck.dims_for(kernel)
    problem = fdcheck.random_problem(kernel, dims, 2, 3, seed=5)
    outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    expected = reference_outputs(cell, problem, dims, 2)
    np.testing.assert_allclose(outputs["h"], expected["h"], rtol=1e-12, atol=1e-12)
    errors = fdcheck.check(kernel, m=2, T=3, seed=5)
    assert max(errors.values()) <= 1e-6, errors


_EQUATION = re.compile(r"(\w+) = (.+?)(?=, \w+ = |$)")


def forward_comments(cell: Cell) -> tuple[Layout, list[str]]:
    d = derive(cell)
    source = kernel_text(d, f"{cell.name}.py", "numpy")
    forward = source[source.index("\ndef forward("):source.index("\ndef backward(")]
    return Layout(d), [m.group(1) for m in re.finditer(r"^\s*# (.*)$", forward, re.MULTILINE)]


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_peephole", "mgu", "interleaved", "two_biases"])
def test_the_forward_comments_state_what_the_next_lines_compute(name):
    """Every equation comment is the layout's equation; every product comment names the rows
    its operand's weights write, ½ exactly on the halved σ rows; the set-up comment lists the
    stacked rows in the buffer's order."""
    cell = {"interleaved": interleaved_cell, "two_biases": two_bias_cell}.get(name, lambda: load(name))()
    layout, comments = forward_comments(cell)
    equations = {e.name: text(e.expr) for e in [*layout.loop, *layout.readout_part]}
    rows = {r.name: r for r in layout.rows}
    seen = {"stacked": 0, "static": 0, "dynamic": 0, "equation": 0}
    for comment in comments:
        if m := re.fullmatch(r"The step's affine equations, stacked as the rows \[(.*)\]", comment):
            assert m.group(1).split("; ") == [r.name for r in layout.rows], comment
            seen["stacked"] += 1
        elif m := re.fullmatch(r"of (\w+)_seq; .*", comment):
            assert m.group(1) == layout.buf, comment
        elif m := re.fullmatch(r"([\w, ]+): products with (\w+)", comment):
            members = [r.name for r, _ in layout.static_groups[m.group(2)]]
            assert m.group(1).split(", ") == members, comment
            seen["static"] += 1
        elif m := (re.fullmatch(r"([\w, ]+) \+= \[(.*)\]·(\w+): one product", comment)
                   or re.fullmatch(r"(\w+) \+= (.*)·(\w+)", comment)):
            members = layout.groups.get(m.group(3), [])
            assert m.group(1).split(", ") == [r.name for r, _ in members], comment
            assert comment.endswith(": one product") == (len(members) > 1), comment
            weights = [("½" if r.half else "") + NUMPY_PRINTER.value(layout.wcode(w)) for r, w in members]
            assert m.group(2).split("; ") == weights, comment
            seen["dynamic"] += 1
        elif m := re.fullmatch(r"(\w+) \+= (.+)", comment):
            assert m.group(2) in [text(t) for t in rows[m.group(1)].rest], comment
        elif _EQUATION.match(comment) and "σ(u) = " not in comment:
            for name_, rhs in _EQUATION.findall(comment):
                assert equations[name_] == rhs, f"{comment!r}: {name_} is {equations[name_]}"
                seen["equation"] += 1
    assert seen["stacked"] == 1 and seen["static"] >= 1 and seen["dynamic"] >= 1, seen
    assert seen["equation"] >= len(layout.rows), seen


# -- cells whose kernels take the planner's rarer paths ----------------------------------------


def input_readout_cell() -> Cell:
    """A readout that reads the input as well as the state (both flattened after the loop)."""
    cell = Cell("input_readout", "h = tanh(U·h_prev + W·x); y = Wy·h + Vy·x")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    h = cell.update("h", tanh(cell.weight("U", n_h, n_h) @ h_prev + cell.weight("W", n_h, n_x) @ x))
    cell.readout("y", cell.weight("Wy", n_y, n_h) @ h + cell.weight("Vy", n_y, n_x) @ x)
    return cell


def two_state_operands_cell() -> Cell:
    """A gate multiplying both states (two products in one step before its activation), and
    gates declared so that the first one activated is not the first row."""
    cell = Cell("two_operands", "g = σ(U·h_prev + V·c_prev + W·x), c = tanh(A·c_prev + B·h_prev)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev, c_prev = cell.input("x", n_x), cell.state("h", n_h), cell.state("c", n_h)
    g = cell.let("g", sigmoid(cell.weight("U", n_h, n_h) @ h_prev + cell.weight("V", n_h, n_h) @ c_prev
                              + cell.weight("W", n_h, n_x) @ x))
    c_new = cell.update("c", tanh(cell.weight("A", n_h, n_h) @ c_prev + cell.weight("B", n_h, n_h) @ h_prev))
    cell.update("h", odot(g, h_prev) + odot(1 - g, c_new))
    return cell


def negative_update_cell() -> Cell:
    """Updates that are sums whose terms are all negative, or start from a constant one."""
    cell = Cell("negative", "h = −(W·x) − h_prev ⊙ g, c = 1 − g ⊙ c_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev, c_prev = cell.input("x", n_x), cell.state("h", n_h), cell.state("c", n_h)
    g = cell.let("g", sigmoid(cell.weight("U", n_h, n_h) @ h_prev + cell.weight("Q", n_h, n_x) @ x))
    cell.update("h", -tanh(cell.weight("W", n_h, n_x) @ x) - odot(h_prev, g))
    cell.update("c", one_minus(odot(g, c_prev)))
    return cell


def no_row_cell() -> Cell:
    """No weight product at all: the kernel has no stacked buffer (nothing to cache of it)."""
    cell = Cell("no_rows", "h = tanh(h_prev ⊙ x + b)")
    (n_h,) = cell.dims("n_h")
    x, h_prev = cell.input("x", n_h), cell.state("h", n_h)
    cell.update("h", tanh(odot(h_prev, x) + cell.bias("b", n_h)))
    return cell


@pytest.mark.parametrize("make", [input_readout_cell, two_state_operands_cell, negative_update_cell, no_row_cell])
def test_kernel_of_a_rarer_cell_is_its_equations(make):
    cell = make()
    kernel = kernel_module(cell)
    dims = fdcheck.dims_for(kernel)
    for m, T in [(2, 3), (1, 1)]:
        problem = fdcheck.random_problem(kernel, dims, m, T, seed=7)
        outputs, _ = kernel.forward(problem.parameters, problem.x, problem.initial_states)
        expected = reference_outputs(cell, problem, dims, m)
        for key, value in expected.items():
            np.testing.assert_allclose(outputs[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    errors = fdcheck.check(kernel, m=2, T=3, seed=7)
    assert max(errors.values()) <= 1e-6, errors


def test_a_run_reaching_down_to_the_first_row_is_one_call():
    """Rows [g1; g4; g2; g3] (operands adjacent); g2, declared first, is activated first, and
    its one call reaches down to the first row and up to the last."""
    cell = Cell("down", "g2 = tanh(A·h_prev + B·x), g1 = σ(C·h_prev), g3 = σ(D·x), g4 = tanh(E·h_prev)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g2 = cell.let("g2", tanh(cell.weight("A", n_h, n_h) @ h_prev + cell.weight("B", n_h, n_x) @ x))
    g1 = cell.let("g1", sigmoid(cell.weight("C", n_h, n_h) @ h_prev))
    g3 = cell.let("g3", sigmoid(cell.weight("D", n_h, n_x) @ x))
    g4 = cell.let("g4", tanh(cell.weight("E", n_h, n_h) @ h_prev))
    cell.update("h", odot(g1, h_prev) + odot(g2, g3) + g4)
    layout = Layout(derive(cell))
    assert [r.name for r in layout.rows].index("a_g2") >= 2, [r.name for r in layout.rows]
    [(fn, rows)] = activations(cell)
    assert fn == "tanh" and sorted(rows) == ["a_g1", "a_g2", "a_g3", "a_g4"]


# -- the helpers, on their own ------------------------------------------------------------------


def _run(statements, env):
    space = {"np": np}
    for helper in ops.kernel_helpers([]):
        exec(helper, space)  # noqa: S102 - the kernel's helpers, as the kernel defines them
    space.update({k: v.copy() for k, v in env.items()})
    exec("\n".join(NUMPY_PRINTER.lines(statements)), space)  # noqa: S102 - printed plan
    return space


def test_rows_view_of_a_view_adds_its_rows_after_the_view_index():
    env = {"W": np.arange(24.0).reshape(6, 4), "B": np.arange(60.0).reshape(3, 5, 4)}
    plain = forward.rows_view("W", 1, 3, 6)
    assert eval(NUMPY_PRINTER.value(plain), {}, env).tolist() == env["W"][1:3].tolist()
    of_view = forward.rows_view(c.View("W", (":",)), 2, 6, 6)
    assert of_view == c.View("W", (":", c.Rows(2, 6, 6)))
    stepped = forward.rows_view(c.View("B", (c.Name("t"),)), 1, 4, 5, step_axis=True)
    assert stepped == c.View("B", (c.Name("t"), ":", c.Rows(1, 4, 5)))
    env["t"] = 2
    assert np.array_equal(eval(NUMPY_PRINTER.value(stepped), {}, env), env["B"][2, :, 1:4])


def test_write_into_computes_the_expression_in_place_with_the_fewest_passes():
    n = sp.Integer(3)
    a, b, d = (sp.MatrixSymbol(s, n, 2) for s in "abd")
    rng = np.random.default_rng(0)
    env = {s: rng.normal(size=(3, 2)) for s in "abd"} | {"out": np.zeros((3, 2))}
    cases = [
        (sigmoid(a), [c.ApplyInPlace], 1 / (1 + np.exp(-env["a"]))),
        (odot(odot(a, b), d + a), [c.MultiplyInto, c.Update], env["a"] * env["b"] * (env["d"] + env["a"])),
        (a + b - d, [c.Update, c.Update, c.Update], env["a"] + env["b"] - env["d"]),
        (a - d, [c.Update, c.Update], env["a"] - env["d"]),
        (-a - b, [c.Update], -env["a"] - env["b"]),
        (one_minus(odot(a, b)), [c.Update], 1 - env["a"] * env["b"]),
    ]
    for expr, kinds, expected in cases:
        statements = forward.write_into("out", expr)
        assert [type(s) for s in statements] == kinds, (expr, statements)
        assert np.allclose(_run(statements, env)["out"], expected), expr
    # names maps each symbol to where the kernel keeps it (here: rows of one bigger buffer)
    big = np.concatenate([env["a"], env["b"], env["d"]])
    names = {s: c.View("big", (c.Rows(3 * i, 3 * i + 3, 9),)) for i, s in enumerate("abd")}
    for expr, _, expected in cases:
        statements = forward.write_into("out", expr, names)
        assert np.allclose(_run(statements, {"big": big, "out": np.zeros((3, 2))})["out"], expected), expr


@pytest.mark.parametrize(("name", "ops_"), [("gru_torch", ["=", "+"]), ("lstm", ["+"]), ("rnn", ["+"])])
def test_the_bias_statements_of_the_set_up_say_they_add_or_write_biases(name, ops_):
    """Rows no product wrote start from their biases (=), the others add them (+=): each such
    statement of the set-up carries the note "biases", the kernel's comment."""
    layout = Layout(derive(load(name)))
    setup = ForwardPlanner(layout).plan().setup
    updates = [s for s in setup if isinstance(s, c.Update) and s.target.base == f"{layout.buf}_seq"]
    assert [u.op for u in updates] == ops_
    assert [u.note for u in updates] == ["biases"] * len(ops_)


def test_the_readout_chunks_say_how_many_steps_they_hold():
    """The readouts' chunk loop: C steps per chunk, n_t steps in this one (the last may be
    shorter); each assignment says which in its comment."""
    after = ForwardPlanner(Layout(derive(load("gru")))).plan().after
    [size] = [s for s in after if isinstance(s, c.Assign) and s.values[0] == c.Call("readout_chunk")]
    [loop] = [s for s in after if isinstance(s, c.ForChunks)]
    first = loop.body[0]
    assert (size.targets, size.note) == (("C",), "steps per chunk")
    assert (first.targets, first.values, first.note) == (("n_t",), (c.Call("chunk_len", (c.Name("C"),)),),
                                                         "steps in this chunk")
