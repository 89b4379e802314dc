"""benchmarks/elementwise.py times one LSTM step's elementwise work written several ways; each
way must compute the step NumPy computes, or its time means nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "elementwise.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_elementwise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lstm_step(z, b, c_prev):
    """The step written out from its equations, independently of the script."""
    n = c_prev.shape[0]
    a = z + b
    sig = 1 / (1 + np.exp(-a[:3 * n]))
    i, f, o, g = sig[:n], sig[n:2 * n], sig[2 * n:], np.tanh(a[3 * n:])
    c = f * c_prev + i * g
    return c, o * np.tanh(c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_way_computes_the_lstm_step(dtype):
    bench = load()
    rng = np.random.default_rng(1)
    n, m = 6, 4
    z = rng.standard_normal((4 * n, m)).astype(dtype)
    b = rng.standard_normal((4 * n, 1)).astype(dtype)
    c_prev = rng.standard_normal((n, m)).astype(dtype)
    expect_c, expect_h = lstm_step(z.astype(np.float64), b.astype(np.float64), c_prev.astype(np.float64))
    ways = bench.ways()
    assert {"numpy", "numpy/2 threads"} <= set(ways)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for name, step in ways.items():
        c, h = np.empty_like(c_prev), np.empty_like(c_prev)
        step(z.copy(), b, c_prev, c, h)
        assert np.allclose(c, expect_c, atol=tol) and np.allclose(h, expect_h, atol=tol), name


@pytest.mark.parametrize("mode, spoiled", [("alone", "h"), ("steps", "c")])
def test_each_mode_refuses_a_way_that_computes_another_step(monkeypatch, mode, spoiled):
    """Alone, and between the products of a recurrence (where a wrong c shows only through
    the next step's h, or the last c)."""
    bench = load()

    def wrong(a, b, c_prev, c, h):
        bench.numpy_step(a, b, c_prev, c, h)
        (h if spoiled == "h" else c)[...] *= 1.001

    monkeypatch.setattr(bench, "ways", lambda: {"numpy": bench.numpy_step, "wrong": wrong})
    with pytest.raises(AssertionError, match="wrong computes another step"):
        if mode == "alone":
            bench.measure(4, 3, np.float64, repeat=1)
        else:
            bench.measure_steps(4, 3, np.float64, repeat=1, steps=3)


def test_measure_gives_each_way_a_time():
    bench = load()
    best = bench.measure(4, 4, np.float64, repeat=2)
    assert set(best) == set(bench.ways()) and all(ms > 0 for ms in best.values())


def test_the_steps_mode_carries_h_and_c_through_the_recurrence():
    """run_steps against the recurrence written out here: z = W·h, then the LSTM step."""
    bench = load()
    rng = np.random.default_rng(2)
    n, m = 5, 3
    w = rng.standard_normal((4 * n, n)) / 3
    b = rng.standard_normal((4 * n, 1))
    h, c = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    got_h, got_c = bench.run_steps(bench.numpy_step, w, b, h, c, 4)
    for _ in range(4):
        c, h = lstm_step(w @ h, b, c)
    assert np.allclose(got_h, h, atol=1e-13) and np.allclose(got_c, c, atol=1e-13)
    products_only = bench.run_steps(None, w, b, h, c, 2)
    assert all(np.array_equal(a, e) for a, e in zip(products_only, (h, c)))


def test_the_steps_mode_times_every_way_and_the_products_alone():
    bench = load()
    best = bench.measure_steps(6, 4, np.float32, repeat=2, steps=3)
    assert set(best) == {"products"} | set(bench.ways()) and all(ms > 0 for ms in best.values())
