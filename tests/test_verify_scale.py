"""`symbptt verify` on cells too large or too slow for the exact proof: bounded time, and a
row that says what was checked instead."""

from __future__ import annotations

import time

from symbptt import Cell, odot, sigmoid, stack, tanh
from symbptt.verify import PROOF_MAX_EQUATIONS, operation_rows, proof_rows


def deep_cell(n: int) -> Cell:
    cell = Cell("deep", "A long chain of equations.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    v = cell.let("g0", tanh(cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev))
    for k in range(1, n):
        v = cell.let(f"g{k}", 0.5 * v + odot(v, h_prev) if k % 2 else tanh(v))
    cell.update("h", odot(sigmoid(v), h_prev))
    return cell


def wide_cell(gates: int) -> Cell:
    cell = Cell("wide", "Many gates, two parameters each.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    acc = None
    for k in range(gates):
        g = cell.let(f"g{k}", sigmoid(cell.weight(f"W{k}", n_h, n_h + n_x) @ stack(h_prev, x)
                                      + cell.bias(f"b{k}", n_h)))
        acc = g if acc is None else acc + g
    cell.update("h", tanh((1 / gates) * acc))
    return cell


def test_a_cell_too_large_for_the_proof_says_so_and_checks_its_rules():
    for cell in (deep_cell(150), wide_cell(30)):
        began = time.monotonic()
        rows = proof_rows(cell)
        assert time.monotonic() - began < 30
        assert rows[0].ok is None and "the exact proof is tried up to" in rows[0].result
        assert str(PROOF_MAX_EQUATIONS) in rows[0].result
        assert {r.key for r in rows[1:]} == {"sigmoid", "tanh"}
        assert all(r.ok for r in rows[1:])


def test_a_proof_out_of_time_is_skipped_not_failed():
    began = time.monotonic()
    rows = proof_rows(wide_cell(2), timeout=0.05)
    assert time.monotonic() - began < 10
    assert rows[0].ok is None and "not finished within 0.05 s" in rows[0].result
    assert [r.key for r in rows[1:]] == ["sigmoid", "tanh"]


def test_a_wrong_rule_is_caught_by_the_operation_rows(monkeypatch):
    from symbptt import ops, proof

    def clear():
        proof.check_derivative.cache_clear()
        proof._derivative_template.cache_clear()

    clear()
    monkeypatch.setattr(ops.Tanh, "derivative", lambda self, out: ops.one_minus(out))
    try:
        rows = {r.key: r for r in operation_rows(wide_cell(2))}
    finally:
        clear()
    assert rows["tanh"].ok is False and "not d/du of its definition" in rows["tanh"].result
    assert rows["sigmoid"].ok
