"""symbptt/report_steps.py: where a GRU-like cell applies its reset gate (before or after the
hidden matrix product), for the built-in cells and for cells written inline, against the
form each cell's equations have.

These tests came from ``tools/mutation.py symbptt/report_steps.py --sample 40``.
"""

from __future__ import annotations

import pytest

from symbptt import Cell, derive, odot, sigmoid, tanh
from symbptt.loader import builtin_cells, load
from symbptt.report_steps import reset_placement, variant_context

#: The cells whose reset gate multiplies h_{t-1} before (gru) or after (gru_torch) a product.
PLACEMENT = {"gru": "before", "gru_torch": "after"}


@pytest.mark.parametrize("name", sorted(p.stem for p in builtin_cells()))
def test_placement_of_every_builtin_cell(name):
    d = derive(load(name))
    assert reset_placement(d) == PLACEMENT.get(name, "")
    context = variant_context(d)
    if name in PLACEMENT:
        assert context["other_cell"] == ({"gru", "gru_torch"} - {name}).pop()
    else:
        assert context is None


def _gru_like(candidate) -> str:
    """A one-state cell with gates r and z and the candidate ``candidate(r, h_prev, x, U)``."""
    cell = Cell("gru_like", "Two gates and a candidate.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    W = {g: cell.weight(f"W{g}", n_h, n_x, g) for g in "rzn"}
    U = {g: cell.weight(f"U{g}", n_h, n_h, g) for g in "rzn"}
    r = cell.let("r", sigmoid(W["r"] @ x + U["r"] @ h_prev), "reset gate")
    z = cell.let("z", sigmoid(W["z"] @ x + U["z"] @ h_prev), "update gate")
    n = cell.let("n", tanh(W["n"] @ x + candidate(r, h_prev, U["n"])), "candidate")
    cell.update("h", odot(1 - z, n) + odot(z, h_prev))
    return reset_placement(derive(cell))


def test_placement_of_inline_cells():
    # r ⊙ (U h_{t-1}), the product not named: after
    assert _gru_like(lambda r, h, U: odot(r, U @ h)) == "after"
    # U (r ⊙ h_{t-1}): before
    assert _gru_like(lambda r, h, U: U @ odot(r, h)) == "before"
    # (U h_{t-1}) ⊙ h_{t-1}: a product with h_{t-1}, but no gate in it: neither
    assert _gru_like(lambda r, h, U: odot(U @ h, h)) == ""
