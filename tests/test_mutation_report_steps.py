"""symbptt/report_steps.py: where a GRU-like cell applies its reset gate (before or after the
hidden matrix product), for the built-in cells and for cells written inline, against the
form each cell's equations have.

These tests came from ``tools/mutation.py symbptt/report_steps.py --sample 40``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from symbptt import Cell, derive, odot, sigmoid, tanh
from symbptt.loader import builtin_cells, load
from symbptt.notation import latex_printer
from symbptt.report_steps import (
    affine_parameters,
    names_table,
    reset_placement,
    softmax_rows,
    variant_context,
)

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


def test_a_gate_on_a_product_of_the_input_alone_is_no_placement():
    """r ⊙ (V x_t): the gate multiplies a product, but not one of h_{t−1}, while the gates'
    own pre-activations (the first equations) do read h_{t−1}."""
    cell = Cell("gated_input", "A gate on the input's product.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    r = cell.let("r", sigmoid(cell.weight("Wr", n_h, n_x) @ x + cell.weight("Ur", n_h, n_h) @ h_prev))
    z = cell.let("z", sigmoid(cell.weight("Wz", n_h, n_x) @ x + cell.weight("Uz", n_h, n_h) @ h_prev))
    n = cell.let("n", tanh(cell.weight("Un", n_h, n_h) @ h_prev + odot(r, cell.weight("Vn", n_h, n_x) @ x)))
    cell.update("h", odot(1 - z, n) + odot(z, h_prev))
    d = derive(cell)
    assert any(e.name.startswith("a_") for e in d.forward)
    assert reset_placement(d) == ""



def test_the_affine_pair_is_found_whatever_parameter_comes_first():
    """a = W x + b with b declared before W: the entry-wise derivation still gets W, b and x."""
    cell = Cell("bias_first", "The bias declared first.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    h_prev = cell.state("h", n_h, "state")
    b = cell.bias("b", n_h, "bias")
    W = cell.weight("W", n_h, n_x, "weights")
    cell.update("h", tanh(W @ x + b) + h_prev)
    found = affine_parameters(derive(cell))
    assert (found["weight"].target, found["bias"].target, found["operand"].name) == ("W", "b", "xt")


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_notebook_names_are_the_course_notebooks_variables(name):
    """The δ names the report gives for the notebook are the ones its code uses (dfs_t, dccs_t,
    dh_prev, dWf, …): each is a name in the notebook's own solution, and every dgs_t there is one."""
    d = derive(load(name))
    source = (Path(__file__).parent / "reference" / f"{name}_notebook.py").read_text(encoding="utf-8")
    words = set(re.findall(r"\b\w+\b", source))
    given = {row["notebook"] for row in names_table(d, latex_printer(d))} - {""}
    assert given <= words, given - words
    assert {w for w in words if re.fullmatch(r"d[a-z]+s_t", w)} <= given
    assert {"dh_prev", "dxt"} <= given


@pytest.mark.parametrize("states", [("c",), ("h", "g")])
def test_no_placement_for_a_cell_with_a_c_or_two_states(states):
    """A gated r ⊙ h_{t-1} inside a product, but the state is an LSTM's c, or there are two."""
    cell = Cell("gated", "Two gates, one or two states.")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x, "input")
    prev = [cell.state(s, n_h, s) for s in states]
    W = {g: cell.weight(f"W{g}", n_h, n_x, g) for g in "rzn"}
    U = cell.weight("U", n_h, n_h, "U")
    r = cell.let("r", sigmoid(W["r"] @ x), "reset gate")
    z = cell.let("z", sigmoid(W["z"] @ x), "update gate")
    n = cell.let("n", tanh(W["n"] @ x + U @ odot(r, prev[0])), "candidate")
    cell.update(states[0], odot(1 - z, n) + odot(z, prev[0]))
    for s, p in zip(states[1:], prev[1:]):
        cell.update(s, tanh(p))
    d = derive(cell)
    assert reset_placement(d) == "" and variant_context(d) is None

# -- the softmax and cross-entropy rows, entry by entry, evaluated ------------------------------

K, M = 4, 3  # classes, columns
_TOKEN = re.compile(r"\\[A-Za-z]+|\\[,;!]|\d+|\S")
_SKIP = {r"\,", r"\;", r"\!", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr", r"\qquad"}


def _softmax(a):
    e = np.exp(a - a.max(axis=0))
    return e / e.sum(axis=0)


class _Entries:
    """Reads one side of an entry-by-entry row (ŷ_i, a_j, e^{…}, Σ_k, \\frac, [i = j], log, ∂)
    into a function of the indices, evaluated on fixed values: a, ŷ = softmax(a), y, δŷ."""

    def __init__(self, text: str, values: dict):
        self.tokens = [t for t in _TOKEN.findall(text) if t not in _SKIP]
        self.pos, self.values = 0, values

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, want=None):
        token = self.peek()
        assert want is None or token == want, f"expected {want!r}, got {token!r} in {self.tokens}"
        self.pos += 1
        return token

    def read(self):
        value = self.expr()
        assert self.peek() is None, f"left over: {self.tokens[self.pos:]}"
        return value

    def expr(self):
        sign = -1.0 if self.peek() == "-" and self.take() else 1.0
        terms = [(sign, self.term())]
        while self.peek() in ("+", "-"):
            terms.append((1.0 if self.take() == "+" else -1.0, self.term()))
        return lambda env: sum(s * t(env) for s, t in terms)

    def term(self):
        factors = []
        while self.peek() not in (None, "+", "-", ")", "}", "]", "=", ","):
            if self.peek() == r"\sum":
                factors.append(self.sum())
                break
            factors.append(self.factor())
        assert factors, f"empty term at {self.tokens[self.pos:]}"
        return lambda env: float(np.prod([f(env) for f in factors]))

    def sum(self):
        self.take(r"\sum")
        self.take("_")
        self.take("{")
        var = self.take()
        start = 0
        if self.peek() == "=":
            self.take()
            start = int(self.take())
        self.take("}")
        if self.peek() == "^":
            self.take()
            self.take("{")
            self.take("m")
            self.take("}")
        body = self.term()
        stop = M + 1 if start == 1 else K
        return lambda env: sum(body({**env, var: v}) for v in range(start, stop))

    def group(self):
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def factor(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            power = self.group()
            return lambda env: base(env) ** power(env)
        return base

    def index(self):
        self.take("_")
        self.take("{")
        names = [self.take()]
        while self.peek() == ",":
            self.take()
            names.append(self.take())
        self.take("}")
        return lambda env: (env[names[0]], env[names[1]] - 1 if len(names) > 1 else 0)

    def atom(self):
        token = self.take()
        if token == "(":
            value = self.expr()
            self.take(")")
            return value
        if token == "{":
            self.pos -= 1
            return self.group()
        if token.isdigit():
            return lambda env: float(token)
        if token == r"\frac":
            if self.tokens[self.pos + 1] == r"\partial":
                return self.derivative()
            num, den = self.group(), self.group()
            return lambda env: num(env) / den(env)
        if token == r"\log":
            inner = self.factor()
            return lambda env: np.log(inner(env))
        if token == "e" and self.peek() == "^":
            self.take()
            power = self.group()
            return lambda env: np.exp(power(env))
        if token == "[":
            inside = []
            while self.peek() != "]":
                inside.append(self.take())
            self.take("]")
            if "=" in inside:  # Iverson bracket [i = j]
                return lambda env: float(env[inside[0]] == env[inside[2]])
            return self.entry("".join(inside))
        if token == r"\hat":
            self.take("{")
            assert self.take() == "y"
            self.take("}")
            return self.entry("yhat")
        if token == "L":
            self.index()
            return lambda env: self.values["L"]
        return self.entry(token)

    def entry(self, name: str):
        array = self.values[{"\\delta\\mathbf{a}": "da", "\\delta\\hat{\\mathbf{y}}": "dy"}.get(name, name)]
        at = self.index()
        return lambda env: array[at(env)]

    def derivative(self):
        """∂ŷ_i/∂a_j or ∂L/∂ŷ_{i,n}, from the values' own Jacobian and gradient."""
        self.take("{")
        self.take(r"\partial")
        top = self.atom() if self.peek() != "L" else (self.take() and None)
        self.take("}")
        self.take("{")
        self.take(r"\partial")
        self.atom()
        self.take("}")
        if top is None:
            return lambda env: self.values["dL_dyhat"][env["i"], env["n"] - 1]
        return lambda env: self.values["jacobian"][env["i"], env["j"]]


def _values() -> dict:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(K, M))
    yhat = _softmax(a)
    y = rng.dirichlet(np.ones(K), size=M).T  # each column a distribution, as a target is
    dy = rng.normal(size=(K, M))

    def loss_of_yhat(p):
        return -np.sum(y * np.log(p))

    def loss_of_a(z):
        return -np.sum(y[:, :1] * np.log(_softmax(z)))

    h = 1e-6
    jacobian = np.zeros((K, K))
    dL_dyhat = np.zeros((K, M))
    da_ce = np.zeros((K, 1))
    for j in range(K):
        step = np.zeros((K, 1))
        step[j] = h
        jacobian[:, j] = ((_softmax(a[:, :1] + step) - _softmax(a[:, :1] - step)) / (2 * h))[:, 0]
        da_ce[j] = (loss_of_a(a[:, :1] + step) - loss_of_a(a[:, :1] - step)) / (2 * h)
    for idx in np.ndindex(K, M):
        step = np.zeros((K, M))
        step[idx] = h
        dL_dyhat[idx] = (loss_of_yhat(yhat + step) - loss_of_yhat(yhat - step)) / (2 * h)
    return {"a": a, "yhat": yhat, "y": y, "dy": dy, "L": loss_of_yhat(yhat), "jacobian": jacobian,
            "dL_dyhat": dL_dyhat, "da_softmax": jacobian.T @ dy[:, :1], "da_ce": da_ce}


def _split(text: str, at: str) -> list[str]:
    """``text`` split at ``at`` outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += ch in "{[(" and 1 or -(ch in "}])")
        if depth == 0 and text.startswith(at, k):
            parts.append(text[start:k])
            start = k + len(at)
    return [*parts, text[start:]]


def test_the_softmax_and_cross_entropy_rows_hold_entry_by_entry():
    """Every side of every entry-wise row, evaluated at every i, j, n, equals the others and
    what differences of softmax and of the cross-entropy give (the two matrix rows apart)."""
    values = _values()
    rows = softmax_rows(r"\hat{\mathbf{y}}_{t}", r"\mathbf{y}_{t}", r"\mathbf{a}_{y,t}", r"\delta \hat{\mathbf{y}}_{t}")
    checked = set()
    for kind, lines in rows.items():
        for line in lines:
            label = re.search(r"\\label\{(.*?)\}", line)[1]
            assert line.endswith(rf"\label{{{label}}}"), line
            if label.endswith(":matrix"):
                continue
            values["da"] = values["da_softmax" if kind == "jacobian" else "da_ce"]
            text = line[: line.index(r"\label")].replace("&=", "=")
            for equation in _split(text, r", \qquad"):
                sides = [_Entries(side, values).read() for side in _split(equation, "=")]
                assert len(sides) >= 2, equation
                for i, j, n in np.ndindex(K, K, M):
                    env = {"i": i, "j": j, "n": n + 1}
                    got = [side(env) for side in sides]
                    assert np.allclose(got, got[0], rtol=1e-5, atol=1e-8), (label, equation, env, got)
            checked.add(label)
    assert checked == {"eq:soft:def", "eq:soft:jac", "eq:soft:vjp", "eq:ce:dy", "eq:ce:entry"}
