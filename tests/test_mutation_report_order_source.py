"""``source_sums`` end to end: a cell built inside a function records the order its file writes
(the terms are evaluated with the function's locals and the module's globals).

A wrapper around ``source_sums`` (mutmut's trampoline is one) must not be taken for the cell
file: the cell file's frame is the first one outside cell.py, above the Cell method that asks."""

from __future__ import annotations

import symbptt.report_order
from symbptt.loader import load

BUILT_IN_A_FUNCTION = '''from symbptt import Cell, tanh


def build():
    cell = Cell("inner", "declared inside a function: its names are the function's locals")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    W, U, b = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h), cell.bias("b", n_h)
    g = cell.let("g", tanh(U @ h_prev + b + W @ x))
    cell.update("h", tanh(W @ x) + g)  # a term that calls a module-level function, tanh
    return cell


cell = build()
'''


def test_a_cell_built_in_a_function_records_its_terms_in_written_order(tmp_path):
    path = tmp_path / "inner.py"
    path.write_text(BUILT_IN_A_FUNCTION, encoding="utf-8")
    cell = load(path)
    assert cell.term_order["g"] == ((("MatMul", "U", "h_prev"), ("Broadcast", "b", "m"), ("MatMul", "W", "xt")),)
    assert cell.term_order["h"] == (((("Tanh", ("MatMul", "W", "xt")), "g")),)  # tanh: a global of the file


def test_a_wrapper_around_source_sums_is_not_taken_for_the_cell_file(tmp_path, monkeypatch):
    original = symbptt.report_order.source_sums
    calls = []

    def wrapper():  # a frame of this test file between source_sums and the Cell method
        calls.append(1)
        return original()

    monkeypatch.setattr(symbptt.report_order, "source_sums", wrapper)
    path = tmp_path / "inner.py"
    path.write_text(BUILT_IN_A_FUNCTION, encoding="utf-8")
    cell = load(path)
    assert calls, "the Cell methods no longer ask report_order.source_sums"
    assert cell.term_order["g"] == ((("MatMul", "U", "h_prev"), ("Broadcast", "b", "m"), ("MatMul", "W", "xt")),)


def test_no_order_without_a_cell_method_asking():
    assert symbptt.report_order.source_sums() == ()
