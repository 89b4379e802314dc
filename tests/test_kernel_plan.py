"""The kernel planner (symbptt/kernels): its statements print as exact NumPy lines, every
value is named before it is read whatever the declaration order, and the code stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sympy as sp
from sympy import MatrixSymbol

from symbptt import Cell, fdcheck, odot, sigmoid, softmax, stack, tanh
from symbptt.codegen import kernel_module
from symbptt.derive import derive
from symbptt.kernels import code as c
from symbptt.kernels import plan_kernel
from symbptt.kernels.array_printer import NUMPY_PRINTER
from symbptt.ops import BATCH

value, statement, lines = NUMPY_PRINTER.value, NUMPY_PRINTER.statement, NUMPY_PRINTER.lines

ROOT = Path(__file__).resolve().parent.parent
n_h = sp.Symbol("n_h", integer=True, positive=True)
K = 4 * n_h


# -- the printer, with exact strings ----------------------------------------------------------


VALUES = [
    (c.View("gates"), "gates"),
    (c.View("gates").rows(0, K, K), "gates"),
    (c.View("gates").rows(n_h, 3 * n_h, K), "gates[n_h:3*n_h]"),
    (c.View("gates").rows(0, n_h, K), "gates[:n_h]"),
    (c.View("gates_seq", (":",)).rows(2 * n_h, K, K), "gates_seq[:, 2*n_h:]"),
    (c.View("gates_seq", (":",)).rows(0, K, K), "gates_seq"),
    (c.View("x_seq", (":", c.Name("t"))), "x_seq[:, t]"),
    (c.View("h_seq", (c.Name("t + 1"),)), "h_seq[t + 1]"),
    (c.Product("W", c.View("dgates"), transpose_a=True), "W.T @ dgates"),
    (c.Product("dgates_all", c.View("h_flat", (":", c.Name(":-m"))), transpose_b=True),
     "dgates_all @ h_flat[:, :-m].T"),
    (c.Scaled("0.5", c.Sum(("b1", "b2"), paren=True)), "0.5 * (b1 + b2)"),
    (c.Scaled("0.5", c.View("Wf", (":", c.Rows(sp.S(0), n_h, 2 * n_h)))), "0.5 * Wf[:, :n_h]"),
    (c.Call("concat", ("a", "b")), "np.concatenate((a, b))"),
    (c.Call("concat", ("a", "b"), (("axis", "1"),)), "np.concatenate((a, b), axis=1)"),
    (c.Call("zeros", (c.Shape((c.Dim(n_h), c.Name("m"))),)), "np.zeros((n_h, m), dtype)"),
    (c.Call("workspace", ("gates_seq", c.Shape((c.Name("T"), c.Dim(K), c.Name("m"))))),
     '_workspace("gates_seq", (T, 4*n_h, m), dtype, workspace)'),
    (c.Call("upstream", ("h", c.Dim(n_h))), '_upstream(upstream, "h", n_h, m, T, dtype, workspace)'),
    (c.Call("reshape_steps", (c.Paren("a + b"), c.Dim(n_h))),
     "(a + b).reshape(n_h, T, m).transpose(1, 0, 2)"),
    (c.IfElse("dh_carry", c.IsNone("dh_up"), c.Sum((c.View("dh_up", (c.Name("t"),)), "dh_carry"))),
     "dh_carry if dh_up is None else dh_up[t] + dh_carry"),
    (c.Math.of(odot(MatrixSymbol("z", n_h, BATCH), MatrixSymbol("h", n_h, BATCH)),
               {"z": c.View("gates").rows(0, n_h, K)}), "gates[:n_h] * h"),
]


@pytest.mark.parametrize("v,expected", VALUES, ids=[e for _, e in VALUES])
def test_value_prints_exactly(v, expected):
    assert value(v) == expected


STATEMENTS = [
    (c.Comment("z = σ(a_z)"), "# z = σ(a_z)"),
    (c.Comment("f += {}·h_prev", (c.View("Wf", (":", c.Rows(sp.S(0), n_h, 2 * n_h))),)),
     "# f += Wf[:, :n_h]·h_prev"),
    (c.assign("gates", c.View("gates_seq", (c.Name("t"),))), "gates = gates_seq[t]"),
    (c.Assign(("f", "i"), (c.View("gates").rows(0, n_h, K), c.View("gates").rows(n_h, 2 * n_h, K))),
     "f, i = gates[:n_h], gates[n_h:2*n_h]"),
    (c.Assign(("dh",), (c.Paren("dh_carry"),), chain=c.View("dh_seq", (c.Name("t"),))),
     "dh = dh_seq[t] = (dh_carry)"),
    (c.Update(c.View("h"), "=", "z"), "h[...] = z"),
    (c.Update(c.View("gates").rows(0, n_h, K), "=", "0", "nothing depends on a"),
     "gates[:n_h] = 0  # nothing depends on a"),
    (c.Update(c.View("gates"), "+", "prod_h"), "gates += prod_h"),
    (c.Update(c.View("gates").rows(0, n_h, K), "*", "0.5"), "gates[:n_h] *= 0.5"),
    (c.MatMulInto(c.View("prod"), "W", "h_prev"), "np.matmul(W, h_prev, out=prod)"),
    (c.ApplyInPlace("np.tanh", c.View("gates")), "np.tanh(gates, out=gates)"),
    (c.ApplyInPlace("sigmoid", c.View("z"), "a_z"), "sigmoid(a_z, out=z)"),
    (c.MultiplyInto(c.View("c"), "f", "c_prev"), "np.multiply(f, c_prev, out=c)"),
]


@pytest.mark.parametrize("s,expected", STATEMENTS, ids=[e for _, e in STATEMENTS])
def test_statement_prints_exactly(s, expected):
    assert statement(s) == expected


def test_unknown_statement_names_its_type():
    class Mystery:
        pass

    with pytest.raises(TypeError, match="Mystery"):
        statement(Mystery())
    with pytest.raises(TypeError, match="Mystery"):
        value(Mystery())


# -- naming before reading, whatever the declaration order --------------------------------------


def peephole(h_first: bool, readout: bool = True) -> Cell:
    """An LSTM with peepholes (gates read c through per-unit vectors), states in either order."""
    cell = Cell("peephole_" + ("h_first" if h_first else "c_first"), "Peephole LSTM.")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y") if readout else (*cell.dims("n_x", "n_h"), None)
    x = cell.input("x", n_x)
    if h_first:
        h_prev, c_prev = cell.state("h", n_h), cell.state("c", n_h)
    else:
        c_prev, h_prev = cell.state("c", n_h), cell.state("h", n_h)
    W = {g: cell.weight(f"W{g}", n_h, n_h + n_x) for g in "fico"}
    b = {g: cell.bias(f"b{g}", n_h) for g in "fico"}
    p = {g: cell.bias(f"p{g}", n_h) for g in "fio"}
    f = cell.let("f", sigmoid(W["f"] @ stack(h_prev, x) + odot(p["f"], c_prev) + b["f"]))
    i = cell.let("i", sigmoid(W["i"] @ stack(h_prev, x) + odot(p["i"], c_prev) + b["i"]))
    g = cell.let("g", tanh(W["c"] @ stack(h_prev, x) + b["c"]))
    c_new = cell.update("c", odot(f, c_prev) + odot(i, g))
    o = cell.let("o", sigmoid(W["o"] @ stack(h_prev, x) + odot(p["o"], c_new) + b["o"]))
    h = cell.update("h", odot(o, tanh(c_new)))
    if readout:
        cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y)))
    return cell


@pytest.mark.parametrize("h_first", [True, False], ids=["h first", "c first"])
@pytest.mark.parametrize("truncate", [None, 2])
def test_peephole_lstm_in_any_order_matches_differences_and_torch(h_first, truncate):
    cell = peephole(h_first)
    kernel = kernel_module(cell)
    errors = fdcheck.check(kernel, m=2, T=4, truncate=truncate)
    assert max(errors.values()) < 1e-6, errors
    torch_oracle = pytest.importorskip("symbptt.torch_oracle")
    pytest.importorskip("torch")
    errors = torch_oracle.compare_with_kernel(kernel, cell, truncate=truncate)
    assert max(errors.values()) < 1e-10, errors


def test_every_name_is_bound_before_it_is_read():
    """In the backward loop of the peephole LSTM, a row adjoint read by the carry is named."""
    plan = plan_kernel(derive(peephole(True)))
    bound: set[str] = set()
    for s in plan.backward.loop:
        if isinstance(s, c.Assign):
            bound |= {t for t in s.targets if isinstance(t, str)}
    for name in ("da_i", "da_f"):
        assert name in bound
    text = "\n".join(lines(plan.backward.loop))
    assert text.index("da_i = dgates[") < text.index("dc_carry = ")


# -- the code stays small -----------------------------------------------------------------------


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_planner_functions_are_short():
    long = [f"{p.name}:{f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in sorted((ROOT / "symbptt" / "kernels").glob("*.py")) for f in _functions(p)
            if f.end_lineno - f.lineno + 1 > 60]
    assert not long, long


def test_no_function_in_the_package_is_too_complex():
    radon = pytest.importorskip("radon.complexity")
    complex_ = [f"{p.relative_to(ROOT)}:{b.name} ({b.complexity})"
                for p in sorted((ROOT / "symbptt").rglob("*.py"))
                for b in radon.cc_visit(p.read_text()) if b.complexity > 20]
    assert not complex_, complex_


def test_no_import_cycle_in_the_package():
    package = ROOT / "symbptt"
    graph: dict[str, set[str]] = {}
    for p in package.rglob("*.py"):
        mod = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        pkg = mod if p.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                if node.module:
                    deps.add(".".join(base + [node.module]))
                else:  # from . import ops: the submodules named
                    deps |= {".".join(base + [a.name]) for a in node.names}
        graph[mod] = deps
    graph = {m: {d for d in deps if d != m} for m, deps in graph.items()}

    def visit(m, stack):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        for d in sorted(graph.get(m, ())):
            # a package's own __init__ importing its submodules is not a cycle
            if d in graph and not m.startswith(d + "."):
                visit(d, stack + [m])
    for m in sorted(graph):
        visit(m, [])
