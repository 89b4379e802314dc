"""The fused (Numba) backend's printed loops (symbptt/kernels/fused.py) run as Python: the
module's text is executed with numba hidden and ``FUSED`` then set, so that the functions Numba
would compile (the forward's steps, the backward's chunks, the elementwise helpers) run
uncompiled and give, for every built-in cell, the NumPy kernel's numbers, full, truncated and
chunked; in float32 too. No compiling (numba is not in the test extras, and a compile takes
seconds); the helpers that only matter to Numba (the precision of a scalar function) are
checked on their text.

These tests came from ``tools/mutation.py symbptt/kernels/fused.py --sample 40``.
"""

from __future__ import annotations

import builtins
import math
import types

import numpy as np
import pytest

from symbptt import Cell, elu, exp, odot, relu, sigmoid, softmax, softplus, tanh
from symbptt.api import kernel_source
from symbptt.codegen import kernel_module
from symbptt.kernels import fused
from symbptt.loader import builtin_cells

BUILTIN = [p.stem for p in builtin_cells()]


def _softmax_state() -> Cell:
    """A cell whose state is a softmax (its compiled loop calls the compiled array_softmax) and
    has a sigmoid and a tanh in one step."""
    cell = Cell("softmax_state")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h)
    cell.update("h", odot(softmax(W @ x + U @ h_prev), tanh(odot(sigmoid(U @ h_prev), h_prev))))
    return cell


def _pointwise_state() -> Cell:
    """A cell whose backward's formulas call exp inside a loop over entries (elu's and exp's
    derivatives), with relu and softplus beside them."""
    cell = Cell("pointwise_state")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h)
    value = tanh(W @ x)
    for f in (elu, exp, relu, softplus):
        value = odot(value, f(U @ h_prev))
    cell.update("h", value)
    return cell


def _loops_as_python(cell, monkeypatch) -> types.ModuleType:
    text = kernel_source(cell, backend="numba")
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "numba" or name.startswith("numba."):
            raise ImportError("No module named 'numba' (hidden)")
        return real_import(name, *args, **kwargs)

    module = types.ModuleType("loops_as_python")
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "__import__", refuse)
        with pytest.warns(RuntimeWarning, match="numba is not installed"):
            exec(compile(text, f"<{cell} fused>", "exec"), module.__dict__)  # noqa: S102
    assert module.FUSED is False
    module.FUSED = True  # the loops that numba would compile, run as Python
    return module


def _problem(kernel, dtype=np.float64, m=2, T=5, seed=0):
    rng = np.random.default_rng(seed)
    dims = {d: 2 + i for i, d in enumerate(kernel.DIMS)}
    p = kernel.init_parameters(dims, rng, dtype)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows[kernel.INPUTS[0]], m, T)).astype(dtype)
    h0 = {s: rng.standard_normal((rows[s], m)).astype(dtype) for s in kernel.STATES}
    up = {k: rng.standard_normal((rows[k], m, T)).astype(dtype) for k in kernel.STATES + kernel.READOUTS}
    return p, x, h0, up


def _worst(a, b, p, x, h0, up, **backward) -> float:
    oa, ca = a.forward(p, x, h0)
    ob, cb = b.forward(p, x, h0)
    ga, gb = a.backward(ca, up, **backward), b.backward(cb, up, **backward)
    assert set(oa) == set(ob) and set(ga) == set(gb)
    pairs = [(oa[k], ob[k]) for k in ob] + [(ga[k], gb[k]) for k in gb]
    assert all(u.dtype == v.dtype and u.shape == v.shape for u, v in pairs)
    return max(float(np.max(np.abs(u - v) / np.maximum(1.0, np.abs(v)))) for u, v in pairs)


@pytest.mark.parametrize("cell", BUILTIN)
def test_the_compiled_loops_give_the_numpy_kernels_numbers(cell, monkeypatch):
    plain, loops = kernel_module(cell), _loops_as_python(cell, monkeypatch)
    p, x, h0, up = _problem(plain)
    for backward in ({}, {"truncate": 2}, {"chunk": 2}, {"truncate": 3, "chunk": 2}):
        assert _worst(loops, plain, p, x, h0, up, **backward) < 1e-12, backward
    readouts_only = {k: v for k, v in up.items() if k in plain.READOUTS}
    assert _worst(loops, plain, p, x, h0, up=readouts_only) < 1e-12
    assert _worst(loops, plain, p, x, h0, up={}) < 1e-12


def test_a_softmax_in_the_loop_runs_the_compiled_softmax(monkeypatch):
    cell = _softmax_state()
    text = kernel_source(cell, backend="numba")
    body = text[text.index("def _forward_steps("):text.index("def _backward_steps(")]
    assert "[...] = array_softmax(" in body and "def array_softmax(" in text
    plain, loops = kernel_module(cell), _loops_as_python(cell, monkeypatch)
    p, x, h0, up = _problem(plain)
    for backward in ({}, {"truncate": 2}, {"chunk": 2}):
        assert _worst(loops, plain, p, x, h0, up, **backward) < 1e-12, backward


def test_exp_inside_a_formula_over_entries(monkeypatch):
    cell = _pointwise_state()
    text = kernel_source(cell, backend="numba")
    backward = text[text.index("def _backward_steps("):text.index("_workspaces = threading.local()")]
    assert "(math.exp(" in backward or "(np.exp(" in backward or "exp(" in backward
    plain, loops = kernel_module(cell), _loops_as_python(cell, monkeypatch)
    p, x, h0, up = _problem(plain, T=3)
    for backward_args in ({}, {"truncate": 2}):
        assert _worst(loops, plain, p, x, h0, up, **backward_args) < 1e-12, backward_args


@pytest.mark.parametrize("cell", ["gru", "lstm_peephole"])
def test_the_compiled_loops_in_float32(cell, monkeypatch):
    plain, loops = kernel_module(cell), _loops_as_python(cell, monkeypatch)
    p, x, h0, up = _problem(plain, np.float32, T=4)
    assert _worst(loops, plain, p, x, h0, up, truncate=2) < 1e-5
    outputs, _ = loops.forward(p, x, h0)
    assert all(v.dtype == np.float32 for v in outputs.values())


def test_the_module_text_calls_its_compiled_loops_only_when_fused():
    text = kernel_source("lstm", backend="numba")
    assert text.count("    if _fused_for(parameters, m):  # every step in one compiled call\n") == 1
    assert text.count("    if _fused_for(parameters, m):  # the steps compiled, chunk by chunk\n") == 1
    assert "import math\nimport os\nimport sys\nimport threading\nimport warnings\n" in text
    assert text.index("def _forward_steps(") < text.index("_workspaces = threading.local()")
    assert "@_jit\ndef _forward_steps(T," in text and "@_jit\ndef _backward_steps(first, stop," in text
    assert "Backend: numba. The loops of forward and backward are compiled by Numba" in text
    assert text.index("Backend: numba.") < text.index("Interface: forward(")
    assert "truncate > 0 and t > 0 and t % truncate == 0" in text
    backward = text[text.index("def _backward_steps("):text.index("_workspaces = threading.local()")]
    # a new array filled entry by entry, and the step's column of the chunk copied back
    assert "= np.empty((n_h, m), dtype)" in backward and "for _i in range(" in backward
    assert "# the step's column of the chunk" in backward
    assert ('"""Every step of forward\'s loop, compiled (the NumPy loop in forward says the same)."""' in text)
    assert ('"""Steps stop - 1 down to first of backward\'s loop, compiled (the NumPy loop in backward says '
            'the same)."""' in text)


@pytest.mark.parametrize("cell", BUILTIN)
def test_the_chunks_products_keep_the_numpy_loops_order_and_comments(cell):
    text = kernel_source(cell, backend="numba")
    fused_branch = text[text.index("    if _fused_for(parameters, m):  # the steps compiled, chunk by chunk"):]
    chunk = fused_branch[fused_branch.index("            t = first\n") + len("            t = first\n"):
                         fused_branch.index("    else:")]
    numpy_loop = fused_branch[fused_branch.index("    else:"):]
    lines = [line.strip() for line in chunk.splitlines() if line.strip()]
    assert lines, cell
    position = 0
    for line in lines:  # the chunk's lines, comments included, in the NumPy loop's order
        position = numpy_loop.index(line, position) + len(line)


def test_a_scalar_function_is_printed_once_per_precision():
    source = "def scalar_soft(u):\n    return 0.5 * u + 1.25e-3 + x1.0 + 2"
    text = fused._decorate(source)
    f64, f32, chooser = text.split("\n\n\n")
    assert f64 == source.replace("def scalar_soft(", "def _scalar_soft_f64(")
    assert f32 == "def _scalar_soft_f32(u):\n    return np.float32(0.5) * u + np.float32(1.25e-3) + x1.0 + 2"
    assert chooser == "scalar_soft = _by_precision(_scalar_soft_f64, _scalar_soft_f32)"
    assert fused._decorate("def array_tanh(u, out=None):\n    return u\n") == (
        "@_jit\ndef array_tanh(u, out=None):\n    return u\n")
    assert fused.in_precision("1.0 - 2.5 * u + a1.5 + 3") == "_f(1.0) - _f(2.5) * u + a1.5 + 3"


def test_the_compiled_helpers_run_as_python(monkeypatch):
    loops = _loops_as_python("lstm", monkeypatch)
    assert loops.scalar_tanh(0.5) == pytest.approx(np.tanh(0.5), rel=1e-14)
    assert loops._scalar_tanh_f32(np.float32(0.5)) == pytest.approx(np.tanh(0.5), rel=1e-6)
    namespace = {"np": np, "math": math, "_jit": lambda fn: fn, "_by_precision": lambda f64, f32: f64}
    for source in fused._used_helpers("y = array_sigmoid(u, out)\nz = sum_keepdims(u, 0)"):
        exec(fused._decorate(source), namespace)  # noqa: S102
    sigmoid = namespace["array_sigmoid"]
    u = np.array([[0.3, -2.0], [40.0, np.nan]])
    exact = 1 / (1 + np.exp(-u))
    out = np.empty_like(u)
    assert sigmoid(u, out) is out and np.allclose(out, exact, rtol=1e-14, equal_nan=True)
    fresh = sigmoid(u)
    assert fresh is not u and np.array_equal(fresh, out, equal_nan=True) and np.isnan(u[1, 1])
    inplace = u.copy()
    assert sigmoid(inplace, inplace) is inplace and np.array_equal(inplace, out, equal_nan=True)
    keep = namespace["sum_keepdims"]
    assert np.array_equal(keep(np.ones((2, 3)), 1), [[3.0], [3.0]])
    assert np.array_equal(keep(np.ones((2, 3)), 0), [[2.0, 2.0, 2.0]])


def test_only_the_helpers_a_loop_calls_are_printed_callees_first():
    used = fused._used_helpers("x = array_sigmoid(a)\ny = sum_keepdims(b, 0)")
    names = [fused._helper_names([s])[0] for s in used]
    assert names == ["sum_keepdims", "scalar_tanh", "array_sigmoid"]  # its callee before it
    assert fused._used_helpers("def array_sigmoid(u):\n    pass") == []
    assert fused._helper_names(["def a(x):\n    pass\ndef b():\n  pass", "def c(): pass"]) == ["a", "b", "c"]


def test_a_step_function_takes_what_it_reads_first_and_returns_what_is_read_after():
    body = ["y = w * x", "z += y", "for k in range(n):", "    acc = acc + k", "tmp = y"]
    fn = fused.step_function("f", "for t in range(T):", body, ["print(acc, z)"], ("T",), {"np"}, "doc")
    assert fn.args == ["T", "w", "x", "z", "n", "acc"]
    assert fn.returns == ["z", "acc"]  # y and tmp are not read before they are bound, nor after
    assert fn.source.splitlines()[:3] == [f"def f({', '.join(fn.args)}):", '    """doc"""', "    for t in range(T):"]
    one = fused.step_function("g", "for t in range(T):", ["q = t * 2"], ["r = q"], ("T",), set(), "d")
    assert one.returns == ["q"] and one.source.endswith("    return q,")
    assert fused._call(one, {"T": "n_steps"}) == "q, = g(n_steps)"
    none = fused.step_function("h", "for t in range(T):", ["print(t)"], [], ("T",), set(), "d")
    assert none.returns == [] and "return" not in none.source and fused._call(none, {}) == "h(T)"
    two = fused.step_function("k", "for t in range(T):", ["a = 1", "b = 2"], ["a + b"], ("T",), set(), "d")
    assert two.source.endswith("    return a, b") and fused._call(two, {}) == "a, b = k(T)"


def test_names_read_before_assignment_in_running_order():
    assert fused._names(["a = b + c", "b = a", "d += a"]) == (["b", "c", "d"], ["a", "b", "d"])
    assert fused._names(["for i in range(n):", "    s = s + i"]) == (["range", "n", "s"], ["i", "s"])
    assert fused._loaded([]) == set() and fused._loaded(["x = y"]) == {"x", "y"}
    assert fused._indent(["a", "", "b"], 2) == ["  a", "", "  b"]


def test_a_number_in_text():
    assert fused._is_number("1.5") and fused._is_number("-2") and fused._is_number("1e-3")
    assert not fused._is_number("n_h") and not fused._is_number("")
