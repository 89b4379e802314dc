"""Property: any cell composed from the supported operations gets gradients that match
finite differences.

Hypothesis draws a cell: one or two states, one to three gates (each on a stacked
[h_prev; x] or on separate products, with or without a bias, optionally gated by an
earlier gate as the GRU's reset gate is), an activation per gate (σ, tanh, relu, exp∘tanh,
log∘σ), one of several state updates, and no readout, a tanh one or a softmax one; and
random sizes. The generated kernel's backward must match central differences to 1e-6
(full BPTT, and truncated for some draws; see finite_difference_errors for the step size).
A failure shrinks to a small cell, printed as its equations.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from symbptt import Cell, exp, fdcheck, log, odot, relu, sigmoid, softmax, stack, tanh
from symbptt.codegen import kernel_module

TOLERANCE = 1e-6

ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "exp∘tanh": lambda u: exp(tanh(u)),
    "log∘sigmoid": lambda u: log(sigmoid(u)),
}


#: Readouts drawn: none, a softmax, a tanh layer or a plain linear map y = Wy·h + by.
READOUTS = ["none", "softmax", "tanh", "linear"]


def gate(draw, cell: Cell, k: int, sizes, x, h_prev, earlier: list):
    """One gate g_k = f(pre-activation), drawn."""
    n_x, n_h = sizes
    inner = h_prev
    if earlier and draw(st.booleans()):  # gate h_prev by an earlier gate (GRU's reset)
        inner = odot(draw(st.sampled_from(earlier)), h_prev)
    if draw(st.booleans()):
        pre = cell.weight(f"W{k}", n_h, n_h + n_x) @ stack(inner, x)
    else:
        pre = cell.weight(f"U{k}", n_h, n_x) @ x + cell.weight(f"V{k}", n_h, n_h) @ inner
    if draw(st.booleans()):
        pre = pre + cell.bias(f"b{k}", n_h)
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    return cell.let(f"g{k}", ACTIVATIONS[activation](pre))


def update(draw, cell: Cell, gates: list, h_prev, c_prev):
    """The state updates, drawn from the shapes recurrent cells use."""
    first, last = gates[0], gates[-1]
    if c_prev is not None:  # LSTM-like
        middle = gates[len(gates) // 2]
        c = cell.update("c", odot(first, c_prev) + (last if middle is last else odot(middle, last)))
        return cell.update("h", odot(last, tanh(c)))
    kind = draw(st.sampled_from(["convex", "sum", "product", "plain"]))
    if kind == "convex":  # GRU-like
        return cell.update("h", odot(first, h_prev) + odot(1 - first, last))
    if kind == "sum":
        return cell.update("h", last + odot(first, h_prev))
    if kind == "product":
        return cell.update("h", odot(last, tanh(h_prev)) + odot(first, h_prev))
    return cell.update("h", last)


@dataclass
class Drawn:
    """A drawn case; it prints as its equations, so a shrunk failure reads as a cell."""

    cell: Cell
    sizes: dict
    truncate: int | None

    def __repr__(self) -> str:
        return f"cell with sizes {self.sizes}, truncate={self.truncate}:\n{equations(self.cell)}"

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """How Hypothesis prints a falsifying example."""
        printer.text(repr(self))


@st.composite
def random_cells(draw):
    """A :class:`Drawn` cell with its sizes and truncation."""
    sizes = {"n_x": draw(st.integers(1, 3)), "n_h": draw(st.integers(1, 3)),
             "n_y": draw(st.integers(2, 3))}
    readout = draw(st.sampled_from(READOUTS))
    cell = Cell("random", "a cell drawn by hypothesis")
    names = ("n_x", "n_h", "n_y") if readout != "none" else ("n_x", "n_h")
    dims = cell.dims(*names)
    n_x, n_h = dims[0], dims[1]
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    c_prev = cell.state("c", n_h) if draw(st.booleans()) else None
    gates: list = []
    for k in range(draw(st.integers(1, 3))):
        gates.append(gate(draw, cell, k, (n_x, n_h), x, h_prev, gates))
    h = update(draw, cell, gates, h_prev, c_prev)
    if readout != "none":
        n_y = dims[2]
        a_y = cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y)
        cell.readout("y", {"softmax": softmax, "tanh": tanh, "linear": lambda a: a}[readout](a_y))
    if readout == "none":
        sizes.pop("n_y")
    truncate = draw(st.sampled_from([None, None, 2]))
    return Drawn(cell, sizes, truncate)


def finite_difference_errors(kernel, sizes: dict, truncate) -> dict[str, float]:
    """fdcheck's relative error per key, the best over a few step sizes.

    The first is fdcheck.check's own (eps = 1e-6). A composed cell can make a gradient
    small next to the loss (a saturated log∘σ), where eps = 1e-6 leaves round-off near
    1e-6; a larger eps then measures it cleanly, while a wrong gradient stays wrong at
    every eps.
    """
    errors = fdcheck.check(kernel, m=2, T=3, truncate=truncate, sizes=sizes)
    if max(errors.values()) <= TOLERANCE:
        return errors
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel, sizes), 2, 3, seed=0)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    analytic = kernel.backward(cache, problem.upstream, truncate=truncate)
    for eps in (1e-5, 1e-4):
        numeric = fdcheck.numerical_gradients(kernel, problem, truncate, eps=eps)
        errors = {k: min(e, fdcheck.relative_error(analytic[k], numeric[k]))
                  for k, e in errors.items()}
    return errors


def equations(cell: Cell) -> str:
    """The cell as a person reads it: one equation per line."""
    return "\n".join(f"  {e.name} = {e.expr}" for e in cell.equations)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cells())
def test_random_cell_matches_finite_differences(case):
    cell, sizes, truncate = case.cell, case.sizes, case.truncate
    note(repr(case))
    kernel = kernel_module(cell)
    errors = finite_difference_errors(kernel, sizes, truncate)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (
        f"{worst} relative error {errors[worst]:.2e} for the cell\n{equations(cell)}")


def test_elementwise_square_of_a_gate_in_a_sum():
    cell = Cell("square", "h = g ⊙ g + h_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g = cell.let("g", tanh(cell.weight("W", n_h, n_x) @ x))
    cell.update("h", odot(g, g) + h_prev)
    errors = fdcheck.check(kernel_module(cell), m=2, T=3)
    assert max(errors.values()) <= TOLERANCE


def test_linear_readout():
    cell = Cell("linear_readout", "h = tanh(W·x + U·h_prev); y = Wy·h + by")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    h = cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev))
    cell.readout("y", cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y))
    errors = fdcheck.check(kernel_module(cell), m=2, T=3)
    assert max(errors.values()) <= TOLERANCE, errors
