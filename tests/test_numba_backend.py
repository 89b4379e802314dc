"""The fused (Numba) backend: the NumPy kernel with its loops compiled gives the NumPy
kernel's numbers (float64 to 1e-12) for every built-in cell and drawn ones, full and
truncated BPTT, chunked, every state and readout with upstream; without numba the same
module runs its NumPy loops, with a warning; the backends are chosen by name."""

from __future__ import annotations

import builtins
import importlib.util
import types
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from symbptt import load_kernel
from symbptt.api import kernel_source
from symbptt.codegen import kernel_module, resolve_backend
from symbptt.loader import builtin_cells

HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
BUILTIN = [p.stem for p in builtin_cells()]
DETERMINISTIC = {"deadline": None, "derandomize": True, "database": None,
                 "suppress_health_check": [HealthCheck.too_slow]}


def problem(kernel, dtype=np.float64, m=3, T=7, seed=0, sizes=None):
    rng = np.random.default_rng(seed)
    dims = {d: (sizes or {}).get(d, 4 + i) for i, d in enumerate(kernel.DIMS)}
    p = kernel.init_parameters(dims, rng, dtype)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows["x"], m, T)).astype(dtype)
    h0 = {s: rng.standard_normal((rows[s], m)).astype(dtype) for s in kernel.STATES}
    up = {k: rng.standard_normal((rows[k], m, T)).astype(dtype)
          for k in kernel.STATES + kernel.READOUTS}
    return p, x, h0, up


def worst_difference(a, b, p, x, h0, up, **backward) -> float:
    """Largest difference of every output and gradient, relative to 1 or the value."""
    oa, ca = a.forward(p, x, h0)
    ob, cb = b.forward(p, x, h0)
    ga, gb = a.backward(ca, up, **backward), b.backward(cb, up, **backward)
    assert set(oa) == set(ob) and set(ga) == set(gb)
    pairs = [(oa[k], ob[k]) for k in ob] + [(ga[k], gb[k]) for k in gb]
    return max(float(np.max(np.abs(u - v) / np.maximum(1.0, np.abs(v)))) for u, v in pairs)


@needs_numba
@pytest.mark.parametrize("cell", BUILTIN)
def test_builtin_cell_same_numbers_as_numpy(cell):
    plain, fused = kernel_module(cell), kernel_module(cell, backend="numba")
    assert fused.FUSED
    p, x, h0, up = problem(plain)
    for backward in ({}, {"truncate": 3}, {"chunk": 2}, {"truncate": 2, "chunk": 3}):
        assert worst_difference(fused, plain, p, x, h0, up, **backward) < 1e-12, backward
    # only the readout's upstream (the states' buffer then comes from the readouts alone),
    # and no upstream at all
    readouts_only = {k: v for k, v in up.items() if k in plain.READOUTS}
    assert worst_difference(fused, plain, p, x, h0, readouts_only) < 1e-12
    assert worst_difference(fused, plain, p, x, h0, {}) < 1e-12


@needs_numba
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_float32_close_to_numpy(cell):
    plain, fused = kernel_module(cell), kernel_module(cell, backend="numba")
    p, x, h0, up = problem(plain, np.float32, m=5, T=12)
    assert worst_difference(fused, plain, p, x, h0, up) < 2e-5
    outputs, _ = fused.forward(p, x, h0)
    assert all(v.dtype == np.float32 for v in outputs.values())


def _drawn_case_matches(case) -> None:
    plain, fused = kernel_module(case.cell), kernel_module(case.cell, backend="numba")
    p, x, h0, up = problem(plain, m=2, T=5, sizes=case.sizes)
    cell = "\n".join(f"{e.name} = {e.expr}" for e in case.cell.equations)
    err = worst_difference(fused, plain, p, x, h0, up, truncate=case.truncate)
    assert err < 1e-12, f"{err:.2e} for\n" + cell


if HAS_NUMBA:
    from test_random_cells import literature_cells, random_cells

    @settings(max_examples=4, **DETERMINISTIC)
    @given(random_cells())
    def test_random_cell_same_numbers_as_numpy(case):
        _drawn_case_matches(case)

    @settings(max_examples=4, **DETERMINISTIC)
    @given(literature_cells())
    def test_literature_cell_same_numbers_as_numpy(case):
        _drawn_case_matches(case)


def _without_numba(monkeypatch) -> None:
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "numba" or name.startswith("numba."):
            raise ImportError("No module named 'numba' (simulated)")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", refuse)


def test_without_numba_the_numpy_loops_run(monkeypatch):
    text = kernel_source("gru", backend="numba")
    _without_numba(monkeypatch)
    module = types.ModuleType("gru_without_numba")
    with pytest.warns(RuntimeWarning, match="numba is not installed"):
        exec(compile(text, "<gru without numba>", "exec"), module.__dict__)  # noqa: S102
    assert module.FUSED is False and module.numba is None
    plain = kernel_module("gru")
    p, x, h0, up = problem(plain)
    assert worst_difference(module, plain, p, x, h0, up, truncate=3) == 0.0


@needs_numba
def test_fused_flag_off_runs_the_numpy_loops():
    fused, plain = kernel_module("rnn", backend="numba"), kernel_module("rnn")
    fused.FUSED = False
    p, x, h0, up = problem(plain)
    assert worst_difference(fused, plain, p, x, h0, up) == 0.0


def _counting(module, monkeypatch) -> dict:
    """Count the calls of the module's compiled loops."""
    calls = {"_forward_steps": 0, "_backward_steps": 0}
    for name in calls:
        compiled = getattr(module, name)

        def counted(*args, _compiled=compiled, _name=name):
            calls[_name] += 1
            return _compiled(*args)
        monkeypatch.setattr(module, name, counted)
    return calls


def _work(p, m) -> int:
    """The figure FUSED_MAX_WORK bounds: the weights' entries times the batch columns."""
    return m * sum(w.size for w in p.values() if w.shape[1] != 1)


@needs_numba
@pytest.mark.parametrize("cell", ["lstm", "gru", "indrnn"])
def test_a_step_above_the_limit_runs_the_numpy_loops(cell, monkeypatch):
    fused, plain = kernel_module(cell, backend="numba"), kernel_module(cell)
    p, x, h0, up = problem(plain, m=3, T=5)
    work = _work(p, 3)
    calls = _counting(fused, monkeypatch)
    monkeypatch.setattr(fused, "FUSED_MAX_WORK", work)  # at the limit: compiled
    assert worst_difference(fused, plain, p, x, h0, up) < 1e-12
    assert calls["_forward_steps"] == 1 and calls["_backward_steps"] >= 1
    calls.update(dict.fromkeys(calls, 0))
    monkeypatch.setattr(fused, "FUSED_MAX_WORK", work - 1)  # one over: the NumPy loops
    assert worst_difference(fused, plain, p, x, h0, up, truncate=2) == 0.0
    assert calls == {"_forward_steps": 0, "_backward_steps": 0}


@needs_numba
def test_the_benchmark_sizes_compile_the_small_steps_only():
    """The limit sits between the benchmark's small size (compiled, where it pays) and its
    medium size (the NumPy loops, faster there), for every built-in cell."""
    for cell in BUILTIN:
        fused = kernel_module(cell, backend="numba")
        small = fused.init_parameters({"n_x": 32, "n_h": 64, "n_y": 32})
        medium = fused.init_parameters({"n_x": 128, "n_h": 256, "n_y": 128})
        assert fused._fused_for(small, 16), cell
        assert not fused._fused_for(medium, 64), cell


def test_module_text_is_readable_and_keeps_the_numpy_kernel():
    text = kernel_source("gru", backend="numba")
    plain = kernel_source("gru")
    assert "Backend: numba." in text and "Backend: numba." not in plain
    assert "def _forward_steps(" in text and "def _backward_steps(" in text
    assert "# h = (1 - z) ⊙ h_tilde + h_prev ⊙ z" in text  # equations as comments, in both loops
    eq = "# h = (1 - z) ⊙ h_tilde + h_prev ⊙ z"
    assert text.count(eq) == plain.count(eq) + 1  # the compiled loop's copy
    # tanh of one number, once per precision, and the name that picks one by the argument's
    assert "def _scalar_tanh_f64(u):" in text and "def _scalar_tanh_f32(u):" in text
    assert "scalar_tanh = _by_precision(_scalar_tanh_f64, _scalar_tanh_f32)" in text
    # elementwise statements are loops over entries, those on the same rows in one loop
    body = text[text.index("def _forward_steps("):text.index("def _backward_steps(")]
    assert "for _j in range(" in body and "np.multiply(" not in body
    # the NumPy kernel's own functions are all still there
    for line in plain.splitlines():
        if line.startswith("def "):
            assert line in text
    compile(text, "<gru numba>", "exec")


def test_backend_names():
    assert resolve_backend("numpy") == "numpy"
    assert resolve_backend("auto") == ("numba" if HAS_NUMBA else "numpy")
    assert resolve_backend("auto", "torch") == "numpy"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("fortran")
    with pytest.raises(ValueError, match="compiles NumPy kernels"):
        resolve_backend("numba", "torch")
    assert kernel_source("rnn", backend="numpy") == kernel_source("rnn")


@needs_numba
def test_load_kernel_auto_is_numba_where_installed():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        kernel = load_kernel("rnn", backend="auto")
    assert kernel.FUSED and kernel.__name__.endswith("_numba")


def test_cli_codegen_backend(tmp_path, capsys):
    from symbptt.cli import main

    out = tmp_path / "rnn_numba.py"
    assert main(["codegen", "rnn", "--backend", "numba", "-o", str(out)]) == 0
    assert "def _forward_steps(" in out.read_text()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_tanh_keeps_the_precision_and_nan(dtype):
    """The compiled tanh: np.tanh's values within a few units in the last place, in the
    argument's own precision, and NaN for NaN (a clamp once turned NaN into −1)."""
    import numba

    tanh = kernel_module("lstm", backend="numba").scalar_tanh

    @numba.njit
    def apply(u):
        out = np.empty_like(u)
        for j in range(u.shape[0]):
            out[j] = tanh(u[j])
        return out
    u = np.concatenate([np.linspace(-30, 30, 601), [0.0, 1e-30, -1e-8, np.inf, -np.inf, np.nan]])
    u = u.astype(dtype).reshape(1, -1)
    out = apply(u[0]).reshape(1, -1)
    assert out.dtype == dtype
    assert np.isnan(out[0, -1])
    exact = np.tanh(u[:, :-1].astype(np.float64))
    ulp = np.finfo(dtype).eps
    assert np.max(np.abs(out[:, :-1] - exact)) < 8 * ulp
    if dtype == np.float32:  # computed in float32 arithmetic, not float64 rounded at the end
        assert np.any(out[:, :-1] != exact.astype(np.float32))


@needs_numba
def test_nan_input_gives_nan_like_numpy():
    plain, fused = kernel_module("gru"), kernel_module("gru", backend="numba")
    p, x, h0, _ = problem(plain, m=3, T=4)
    x[0, 1, 2] = np.nan
    a, _ = plain.forward(p, x, h0)
    b, _ = fused.forward(p, x, h0)
    for k in a:
        assert np.array_equal(np.isnan(a[k]), np.isnan(b[k])), k
        assert np.isnan(a[k]).any()


def test_loop_variables_are_not_arguments():
    """A compiled function's arguments are what its body reads before binding: a loop's own
    variables (and the views it binds) are locals."""
    from symbptt.kernels.fused import step_function

    body = ["_out = a[:n]", "for _i in range(_out.shape[0]):", "    for _j in range(_out.shape[1]):",
            "        _out[_i, _j] += b[_i, _j]", "c = a * 2"]
    fn = step_function("f", "for t in range(T):", body, ["c"], ("T",), {"np"}, "doc")
    assert fn.args == ["T", "a", "n", "b"]
    assert fn.returns == ["c"]


@needs_numba
def test_broadcast_columns_and_cut_carries_are_entry_loops():
    """lstm_peephole's p ⊙ c_prev (a column over the batch) and its carried gradient, zero at a
    truncation cut, are loops over entries, with the NumPy kernel's numbers."""
    text = kernel_source("lstm_peephole", backend="numba")
    body = text[text.index("def _backward_steps("):text.index("_workspaces = threading.local()")]
    assert "p_f[_i, 0]" in body and "if not cut else _f(0.0)" in body
    plain, fused = kernel_module("lstm_peephole"), kernel_module("lstm_peephole", backend="numba")
    p, x, h0, up = problem(plain, m=4, T=6)
    assert worst_difference(fused, plain, p, x, h0, up, truncate=2) < 1e-12
