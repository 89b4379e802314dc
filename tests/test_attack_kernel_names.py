"""Attacks on the names a generated kernel uses for itself (``symbptt.cell.KERNEL_NAMES``).

A cell's values become local variables of the kernel's functions. A cell that names a value
as the kernel names one of its own (``torch``, ``device``, ``gates_seq``, the notebook's
``caches``) breaks the kernel at run time, or worse, silently. The static test below prints
every built-in cell with each of its declared names prefixed by ``Q`` (so that what comes
from the cell is told apart from what the template writes), for every array module, and
requires each name the template writes in a function that also holds the cell's values to
be reserved; the other tests check the behaviour for a few of those names.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

from symbptt import Cell, odot, tanh
from symbptt.array_module import MODULES
from symbptt.cell import KERNEL_NAMES, CellError
from symbptt.codegen import kernel_module, kernel_text
from symbptt.derive import derive
from symbptt.loader import builtin_cells, load

#: Names the kernel plan takes with ``fresh()``: renamed when a cell already uses them.
FRESH = {"C", "n_t"}

_SCOPES = (ast.FunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _q(arg: ast.expr) -> ast.expr:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return ast.Constant("Q" + arg.value)
    if isinstance(arg, ast.JoinedStr):
        return ast.JoinedStr([ast.Constant("Q"), *arg.values])
    return arg


class _Rename(ast.NodeTransformer):
    """Every name a cell file declares (``cell.weight("Wz", …)``, ``cell.dims("n_x", …)``,
    ``Cell("gru", …)``) gets the prefix ``Q``."""

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        f = node.func
        if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "cell"
                and f.attr != "print_as" and node.args):
            node.args = ([_q(a) for a in node.args] if f.attr == "dims"
                         else [_q(node.args[0]), *node.args[1:]])
        elif isinstance(f, ast.Name) and f.id == "Cell":
            node.args = [_q(node.args[0]), *node.args[1:]]
        return node


def _bound(scope: ast.AST) -> set[str]:
    """Names a nested scope binds for itself (its arguments, comprehension targets, stores)."""
    out = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


def scope_names(function: ast.FunctionDef) -> set[str]:
    """Every name of the function's own scope, and every free name its nested scopes read
    (the enclosing function's locals or the module's globals)."""
    names = {a.arg for a in function.args.args + function.args.kwonlyargs}
    stack = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
            inner = _bound(node)
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                      and isinstance(n.ctx, ast.Load) and n.id not in inner}
            continue
        if isinstance(node, ast.Name):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return names


@pytest.fixture(scope="module")
def renamed_derivations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qcells")
    out = []
    for path in builtin_cells():
        renamed = folder / path.name
        renamed.write_text(ast.unparse(_Rename().visit(ast.parse(path.read_text()))))
        cell = load(renamed)
        assert all(name.startswith("Q") for name in cell.symbols), cell.symbols
        out.append((path.stem, derive(cell)))
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_name_the_template_writes_beside_a_cells_values_is_reserved(renamed_derivations,
                                                                          module):
    unreserved: dict[str, set[str]] = {}
    for name, derivation in renamed_derivations:
        tree = ast.parse(kernel_text(derivation, module=module))
        for function in tree.body:
            if not isinstance(function, ast.FunctionDef):
                continue
            names = scope_names(function)
            if not any("Q" in n for n in names):
                continue  # a helper: the cell's values are not its locals
            for n in names:
                if "Q" not in n and n not in KERNEL_NAMES | FRESH and not n.startswith("_"):
                    unreserved.setdefault(n, set()).add(f"{name}.{function.name}")
    assert not unreserved, f"{module} kernel names a cell may declare: {unreserved}"


def test_numba_kernel_names_are_reserved(renamed_derivations):
    """The NumPy kernel with its loops compiled by Numba (where numba is installed)."""
    pytest.importorskip("numba")
    unreserved: dict[str, set[str]] = {}
    for name, derivation in renamed_derivations[:3]:
        tree = ast.parse(kernel_text(derivation, backend="numba"))
        for function in tree.body:
            if isinstance(function, ast.FunctionDef):
                names = scope_names(function)
                if any("Q" in n for n in names):
                    unreserved.update({n: {f"{name}.{function.name}"} for n in names if "Q" not in n
                                       and n not in KERNEL_NAMES | FRESH
                                       and not n.startswith(("_", "array_"))})
    assert not unreserved, f"the numba kernel writes unreserved names {sorted(unreserved)}"


def _cell(parameter="W", value=None, dim="n_h"):
    c = Cell("probe", "names a kernel uses")
    n_x, n_h = c.dims("n_x", dim)
    x = c.input("x", n_x)
    h_prev = c.state("h", n_h)
    W, U, b = c.weight(parameter, n_h, n_x), c.weight("U", n_h, n_h), c.bias("b", n_h)
    a = tanh(W @ x + U @ h_prev + b)
    if value:
        a = c.let(value, a)
        c.update("h", odot(a, h_prev) + a)
    else:
        c.update("h", a)
    return c


#: Names the torch template writes in forward, backward and init_parameters, and the
#: gates buffer's companions: every one broke a kernel before it was reserved.
TEMPLATE_NAMES = ["torch", "math", "device", "generator", "normal", "uniform", "gates_seq",
                  "dgates_seq", "dgates_bias", "dgates_chunk", "dgates_all"]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize("role", ["parameter", "value", "dim"])
def test_a_template_name_declared_by_a_cell_is_refused(name, role):
    with pytest.raises(CellError, match="the generated kernel uses for itself"):
        _cell(**{role: name})


@pytest.mark.parametrize("name", sorted(FRESH))
def test_a_fresh_name_declared_by_a_cell_gives_the_same_numbers(name):
    """``C`` and ``n_t`` stay allowed: the plan renames its own variables around them."""
    torch = pytest.importorskip("torch")
    reference, renamed = _cell(), _cell(value=None, dim=name)
    results = []
    for cell, dims in ((reference, {"n_x": 3, "n_h": 4}), (renamed, {"n_x": 3, name: 4})):
        for module in ("numpy", "torch"):
            k = kernel_module(cell, module=module)
            rng = np.random.default_rng(0)
            p = {key: rng.standard_normal(shape) for key, shape in
                 (("W", (4, 3)), ("U", (4, 4)), ("b", (4, 1)))}
            x = rng.standard_normal((3, 2, 5))
            if module == "torch":
                p, x = {key: torch.tensor(v) for key, v in p.items()}, torch.tensor(x)
            outputs, cache = k.forward(p, x)
            g = k.backward(cache, {"h": outputs["h"] * 0 + 1}, truncate=2, chunk=2)
            assert set(k.rows(dims)) == {"x", "h"}
            results.append({key: np.asarray(v) for key, v in g.items()})
    for got in results[1:]:
        for key, value in results[0].items():
            np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["T", "m", "t", "outputs", "dtype", "torch", "device", "gates_seq"])
def test_a_state_named_as_a_kernel_local_is_refused(name):
    """``h = h_seq[t + 1]``: a state's own name is a local of forward and backward; a state
    named ``T`` (or ``torch``, ``dtype``…) broke both kernels."""
    with pytest.raises(CellError, match="the generated kernel uses for itself"):
        _cell_with_state(name)


def _cell_with_state(name):
    c = Cell("probe", "a state's name")
    n_x, n_h = c.dims("n_x", "n_h")
    x = c.input("x", n_x)
    s_prev = c.state(name, n_h)
    c.update(name, tanh(c.weight("W", n_h, n_x) @ x + c.weight("U", n_h, n_h) @ s_prev))
    return c


@pytest.mark.parametrize("name", ["caches", "yt"])
def test_a_notebook_name_declared_as_the_input_is_refused(name):
    """The notebook API's ``rnn_forward(x, h0, parameters)`` keeps ``caches`` and ``yt`` beside
    the input: an input of either name was overwritten in the loop."""
    c = Cell("nb", "notebook names", notebook_api=True)
    n_x, _ = c.dims("n_x", "n_h")
    with pytest.raises(CellError, match="the generated kernel uses for itself"):
        c.input(name, n_x)


def _numpy_gradients(cell, names):
    """The NumPy kernel's gradients for W, U, b renamed by ``names``; a kernel error propagates."""
    k = kernel_module(cell)
    rng = np.random.default_rng(0)
    shapes = {"W": (4, 3), "U": (4, 4), "b": (4, 1)}
    p = {names.get(key, key): rng.standard_normal(shape) for key, shape in shapes.items()}
    x = rng.standard_normal((3, 2, 5))
    outputs, cache = k.forward(p, x)
    g = k.backward(cache, {"h": np.ones_like(outputs["h"])})
    return {key: g["d" + names.get(key, key)] for key in shapes}


@pytest.mark.parametrize(("parameter", "value"), [
    ("dh_next", None),  # the kernel's d<state>_next: no form "d{}_next" in _KERNEL_FORMS
    ("h0", None),       # the gradient key "dh0" of the initial state: no form "{}0"
    ("W", "W_xt"),      # backward.py names its accumulator f"dW_{v}", not fresh: "dW_xt" is W_xt's adjoint
])
def test_a_name_of_a_derived_form_is_refused_or_harmless(parameter, value):
    expected = _numpy_gradients(_cell(value="a" if value else None), {})
    try:
        got = _numpy_gradients(_cell(parameter=parameter, value=value), {"W": parameter})
    except CellError:
        return  # refused: fine
    for key, array in expected.items():
        np.testing.assert_allclose(got[key], array, rtol=1e-12)
