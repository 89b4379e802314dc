"""The kernel statements as data (symbptt/kernels/code.py): views with row ranges, SymPy
expressions with their symbols' printed values, assignments; built inside the tests (the
printing tests of test_kernel_plan.py build theirs at import, where a mutation run does not
see them).

These tests came from a mutation run over ``symbptt/kernels/code.py`` (tools/mutation.py).
"""

from __future__ import annotations

import sympy as sp
from sympy import MatrixSymbol

from symbptt.kernels import code as c
from symbptt.kernels.array_printer import NUMPY_PRINTER
from symbptt.ops import BATCH

value, statement = NUMPY_PRINTER.value, NUMPY_PRINTER.statement

n_h = sp.Symbol("n_h", integer=True, positive=True)


def test_rows_of_a_view_add_one_axis_with_symbolic_bounds():
    view = c.View("gates_seq", (":",)).rows(0, n_h, 4 * n_h)
    assert view == c.View("gates_seq", (":", c.Rows(sp.Integer(0), n_h, 4 * n_h)))
    assert isinstance(view.index[1].lo, sp.Integer)
    assert value(view) == "gates_seq[:, :n_h]"
    assert value(c.View("gates").rows(n_h, 3 * n_h, 4 * n_h)) == "gates[n_h:3*n_h]"
    assert value(c.View("gates").rows(2 * n_h, 4 * n_h, 4 * n_h)) == "gates[2*n_h:]"
    assert value(c.View("gates").rows(0, 4 * n_h, 4 * n_h)) == "gates"
    assert value(c.View("g").rows(1, 2, 3)) == "g[1:2]"


def test_math_prints_its_symbols_as_values_and_parenthesizes_only_operands():
    z, h = MatrixSymbol("z", n_h, BATCH), MatrixSymbol("h", n_h, BATCH)
    names = {"z": c.View("gates").rows(0, n_h, 2 * n_h), "h": c.View("h_seq", (c.Name("t"),))}
    plain = c.Math.of(z + h, names)
    assert plain.operand is False
    assert value(plain) == "gates[:n_h] + h_seq[t]" or value(plain) == "h_seq[t] + gates[:n_h]"
    assert value(c.Math.of(z + h, names, operand=True)) in {"(gates[:n_h] + h_seq[t])",
                                                           "(h_seq[t] + gates[:n_h])"}
    # The names are kept sorted: the same mapping in any order is the same value.
    other = c.Math.of(z + h, dict(reversed(list(names.items()))))
    assert other == plain and hash(other) == hash(plain)
    assert [k for k, _ in plain.names] == ["h", "z"]
    assert c.Math.of(z).names == ()


def test_assign_without_a_note_prints_no_comment():
    assert c.assign("a", "b") == c.Assign(("a",), ("b",), "")
    assert statement(c.assign("a", "b")) == "a = b"
    assert statement(c.assign("a", "b", "why")) == "a = b  # why"


def test_a_section_keeps_its_statements_in_order():
    section = c.Section()
    section.add(c.assign("a", "1"), c.assign("b", "a"))
    section.add(c.assign("c", "b"))
    assert [statement(s) for s in section.statements] == ["a = 1", "b = a", "c = b"]
