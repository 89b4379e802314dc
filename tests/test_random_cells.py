"""Property: any cell composed from the supported operations gets gradients that match
finite differences and PyTorch autograd.

Two strategies draw cells. ``random_cells``: one or two states, one to three gates (each on
a stacked [h_prev; x] or on separate products, with or without a bias, optionally gated by
an earlier gate as the GRU's reset gate is), an activation per gate (σ, tanh, relu,
exp∘tanh, log∘σ), one of several state updates, and no readout, a tanh one or a softmax
one. ``literature_cells``: what cells from the literature add: one to three states declared
in any order; gates that read another state through ⊙ with a per-unit vector (peepholes
``p ⊙ c_prev``, or ``p ⊙ c`` on the new value as the LSTM's output gate does); IndRNN-like
updates ``relu(W·x + u ⊙ h_prev + b)``; numbers next to matrices (``1 - g``, ``0.5 * h``);
zero, one or two readouts on any state; and the equations written in any order the DSL
accepts (any topological order of their dependencies). Sizes are random.

Each generated kernel's backward must match central differences to 1e-6 (full BPTT, and
truncated for some draws; see finite_difference_errors for the step size) and the torch
oracle (the cell's equations run by PyTorch autograd, nothing of the derivation) to 1e-9.
The runs are derandomized (a fixed sequence of examples, no example database), so CI sees
the same cells every time. A failure shrinks to a small cell, printed as its equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sympy as sp
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sympy import HadamardProduct

from symbptt import Cell, exp, fdcheck, log, odot, relu, sigmoid, softmax, stack, tanh, torch_oracle
from symbptt.codegen import kernel_module
from symbptt.ops import Broadcast

TOLERANCE = 1e-6
#: The kernel and the torch oracle compute the same float64 operations in another order.
TORCH_TOLERANCE = 1e-9

#: A fixed sequence of examples: CI sees the same cells on every run.
DETERMINISTIC = {"deadline": None, "derandomize": True, "database": None,
                 "suppress_health_check": [HealthCheck.too_slow]}

needs_torch = pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")

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


# -- cells from the literature: several states, peepholes, vectors, any order ---------------

STATES = ("h", "c", "s")
#: Gate activations of these cells: bounded below, so a gate that multiplies a state through
#: a peephole feedback cannot drive σ to 0 and log σ to −∞ within a few steps (log∘σ is
#: drawn by random_cells, where no state feeds its own gate through ⊙).
GATE_ACTIVATIONS = ("sigmoid", "tanh", "relu", "exp∘tanh")
UPDATES = ["gated", "convex", "indrnn", "plain", "numbers"]


@dataclass
class Node:
    """One equation before it is written: what it needs defined first and how to build it.

    ``build(env)`` declares the node's parameters and returns its expression; ``env`` maps
    the names of the values defined so far (``h_prev``, ``g0``, ``c``, ``xt``) to them.
    """

    name: str
    kind: str  # "let", "update" or "readout"
    needs: set
    build: object


class Drafter:
    """Draws the nodes of one cell from the literature; then writes them in a drawn order."""

    def __init__(self, draw, cell: Cell, dims: dict, states: list[str]):
        self.draw, self.cell, self.dims, self.states = draw, cell, dims, states
        self.nodes: dict[str, Node] = {}
        self.late: set[str] = set()  # gates that read a new state value (and what needs them)

    def gate(self, k: int, lead: str | None) -> str:
        """g_k = f(W·x + U·state_prev [+ b] [+ p ⊙ other state, previous or new])."""
        draw, n_x, n_h = self.draw, self.dims["n_x"], self.dims["n_h"]
        name, needs = f"g{k}", set()
        reads = draw(st.sampled_from(self.states))
        inner_gate = draw(st.sampled_from([None, *[f"g{j}" for j in range(k)]]))
        stacked, bias = draw(st.booleans()), draw(st.booleans())
        peep = draw(st.sampled_from([None, *self.states]))
        peep_new = peep is not None and peep == lead and draw(st.booleans())
        activation = draw(st.sampled_from(GATE_ACTIVATIONS))
        if inner_gate:
            needs.add(inner_gate)
        if peep_new:
            needs.add(lead)

        def build(env):
            inner = env[f"{reads}_prev"]
            if inner_gate:
                inner = odot(env[inner_gate], inner)
            if stacked:
                pre = self.cell.weight(f"W{k}", n_h, n_h + n_x) @ stack(inner, env["xt"])
            else:
                pre = (self.cell.weight(f"U{k}", n_h, n_x) @ env["xt"]
                       + self.cell.weight(f"V{k}", n_h, n_h) @ inner)
            if bias:
                pre = pre + self.cell.bias(f"b{k}", n_h)
            if peep:
                value = env[peep] if peep_new else env[f"{peep}_prev"]
                pre = pre + odot(self.cell.vector(f"p{k}", n_h), value)
            return ACTIVATIONS[activation](pre)

        self.nodes[name] = Node(name, "let", needs, build)
        if peep_new or (inner_gate in self.late):
            self.late.add(name)
        return name

    def update(self, state: str, gates: list[str], lead: str | None) -> None:
        """The state's update, from the gates it may use (and the lead's new value).

        Without a usable gate (every gate reads the lead's new value) the update of the lead
        is IndRNN-like, which needs none.
        """
        draw, n_x, n_h = self.draw, self.dims["n_x"], self.dims["n_h"]
        kind = draw(st.sampled_from(UPDATES)) if gates else "indrnn"
        a, b = (draw(st.sampled_from(gates)), draw(st.sampled_from(gates))) if gates else (0, 0)
        reads_lead = lead is not None and state != lead and draw(st.booleans())
        needs = ({a, b} if kind != "indrnn" else set()) | ({lead} if reads_lead else set())

        def build(env):
            prev = env[f"{state}_prev"]
            if kind == "gated":  # LSTM's c: f ⊙ c_prev + i ⊙ g
                expr = odot(env[a], prev) + (env[b] if a == b else odot(env[a], env[b]))
            elif kind == "convex":  # GRU's h: z ⊙ h_prev + (1 − z) ⊙ h̃
                expr = odot(env[a], prev) + odot(1 - env[a], env[b])
            elif kind == "indrnn":  # relu(W·x + u ⊙ h_prev + b)
                expr = relu(self.cell.weight(f"W_{state}", n_h, n_x) @ env["xt"]
                            + odot(self.cell.vector(f"u_{state}", n_h), prev)
                            + self.cell.bias(f"b_{state}", n_h))
            elif kind == "numbers":  # numbers next to matrices
                expr = odot(2 - env[a], env[b]) + 0.5 * (prev - 1)
            else:
                expr = env[a]
            if reads_lead:  # LSTM's h: o ⊙ tanh(c)
                expr = expr + odot(env[a] if kind != "indrnn" else prev, tanh(env[lead]))
            return expr

        self.nodes[state] = Node(state, "update", needs, build)

    def readout(self, k: int) -> None:
        """y_k = f(Wy_k · state + by_k), on any state."""
        draw = self.draw
        state = draw(st.sampled_from(self.states))
        kind = draw(st.sampled_from(READOUTS[1:]))
        rows = self.dims["n_y"] if k == 0 or draw(st.booleans()) else self.dims["n_h"]
        name = ("y", "v")[k]

        def build(env):
            a = (self.cell.weight(f"Wy{k}", rows, self.dims["n_h"]) @ env[state]
                 + self.cell.bias(f"by{k}", rows))
            return {"softmax": softmax, "tanh": tanh, "linear": lambda u: u}[kind](a)

        self.nodes[name] = Node(name, "readout", {state}, build)

    def write(self, env: dict) -> None:
        """Write every node in a drawn order that defines each value before it is read."""
        written: set[str] = set()
        while len(written) < len(self.nodes):
            ready = [n for n in self.nodes.values()
                     if n.name not in written and n.needs <= written]
            node = self.draw(st.sampled_from(ready))
            expr = node.build(env)
            if node.kind == "let":
                env[node.name] = self.cell.let(node.name, expr)
            elif node.kind == "update":
                env[node.name] = self.cell.update(node.name, expr)
            else:
                env[node.name] = self.cell.readout(node.name, expr)
            written.add(node.name)


@st.composite
def literature_cells(draw):
    """A :class:`Drawn` cell with several states, peepholes, vectors and readouts."""
    sizes = {"n_x": draw(st.integers(1, 3)), "n_h": draw(st.integers(1, 3)),
             "n_y": draw(st.integers(2, 3))}
    n_readouts = draw(st.integers(0, 2))
    cell = Cell("literature", "a cell drawn by hypothesis")
    names = ("n_x", "n_h", "n_y") if n_readouts else ("n_x", "n_h")
    dims = dict(zip(names, cell.dims(*names)))
    states = draw(st.permutations(STATES[:draw(st.integers(1, 3))]))
    env = {"xt": cell.input("x", dims["n_x"])}
    for state in states:  # declared in the drawn order
        env[f"{state}_prev"] = cell.state(state, dims["n_h"])
    drafter = Drafter(draw, cell, dims, list(states))
    lead = states[0] if len(states) > 1 else None  # updated before the states that read it
    gates = [drafter.gate(k, lead) for k in range(draw(st.integers(1, 3)))]
    early = [g for g in gates if g not in drafter.late]  # the lead's update may use these
    for state in states:
        drafter.update(state, early if state == lead else gates, lead)
    for k in range(n_readouts):
        drafter.readout(k)
    drafter.write(env)
    if not n_readouts:
        sizes.pop("n_y")
    truncate = draw(st.sampled_from([None, None, 2]))
    return Drawn(cell, sizes, truncate)


def finite_difference_errors(kernel, sizes: dict, truncate) -> dict[str, float]:
    """fdcheck's relative error per key (it retries a larger step where round-off rules)."""
    return fdcheck.check(kernel, m=2, T=3, truncate=truncate, sizes=sizes, tolerance=TOLERANCE)


def equations(cell: Cell) -> str:
    """The cell as a person reads it: one equation per line."""
    return "\n".join(f"  {e.name} = {e.expr}" for e in cell.equations)


def assert_matches_oracles(case: Drawn) -> None:
    """The kernel of a drawn cell against finite differences and the torch oracle."""
    cell, sizes, truncate = case.cell, case.sizes, case.truncate
    note(repr(case))
    kernel = kernel_module(cell)
    errors = finite_difference_errors(kernel, sizes, truncate)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (
        f"{worst} relative error {errors[worst]:.2e} for the cell\n{equations(cell)}")
    if torch_oracle.available():
        errors = torch_oracle.compare_with_kernel(kernel, cell, m=2, T=3, truncate=truncate,
                                                  sizes=sizes)
        worst = max(errors, key=errors.get)
        assert errors[worst] <= TORCH_TOLERANCE, (
            f"{worst} differs from torch by {errors[worst]:.2e} for the cell\n{equations(cell)}")


@settings(max_examples=30, **DETERMINISTIC)
@given(random_cells())
def test_random_cell_matches_finite_differences_and_torch(case):
    assert_matches_oracles(case)


@settings(max_examples=50, **DETERMINISTIC)
@given(literature_cells())
def test_cell_from_the_literature_matches_finite_differences_and_torch(case):
    for feature in features(case.cell):  # shown by pytest --hypothesis-show-statistics
        event(feature)
    assert_matches_oracles(case)


def features(cell: Cell) -> list[str]:
    """What a drawn cell exercises, for Hypothesis's statistics."""
    roles = [s.role for s in cell.symbols.values()]
    updates = [e.name for e in cell.equations if e.kind == "update"]
    peeps = [e for e in cell.equations if e.kind == "let" and any(
        isinstance(f, HadamardProduct) and any(isinstance(a, Broadcast) for a in f.args)
        and any(getattr(a, "name", "") in {*cell.states, *(f"{s}_prev" for s in cell.states)}
                for a in f.args)
        for f in sp.preorder_traversal(e.expr))]
    return [f"{len(cell.states)} state(s)", f"states declared {','.join(cell.states)}",
            f"states updated {','.join(updates)}", f"{len(cell.readouts)} readout(s)",
            f"vectors: {roles.count('vector')}", f"gates with a peephole: {len(peeps)}"]


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
