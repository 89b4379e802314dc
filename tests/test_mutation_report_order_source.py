"""``source_sums`` end to end: a cell built inside a function records the order its file writes
(the terms are evaluated with the function's locals and the module's globals).

Not in the mutation subset of report_order.py: under mutmut, ``source_sums`` runs inside
mutmut's trampoline and takes that frame for the cell file's, so it records nothing there."""

from __future__ import annotations

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
