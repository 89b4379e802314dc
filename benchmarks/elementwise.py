"""Benchmark: one LSTM step's elementwise work, written four ways, side by side.

This is the measurement behind the choice of the fused backend (issue: speed at the machine's
limit). At the large size the kernels' matrix products use every core, while the elementwise
work between them (gate nonlinearities, state update) runs on one; this script asks which way
of writing that work is fastest on this machine:

- ``numpy``: the NumPy calls a generated kernel makes, one pass per operation, in place;
- ``numpy/2 threads``: the same calls on two halves of the batch columns, one in a second
  Python thread (NumPy's ufuncs release the GIL);
- ``numexpr/k``: one ``numexpr.evaluate`` per output with k threads (when numexpr is installed);
- ``numba``: one compiled loop over the step with the fused backend's scalar σ and tanh (when
  numba is installed).

The step: ``a = z + b`` (gate rows i, f, o, g), ``i, f, o = σ(a)``, ``g = tanh(a)``,
``c = f ⊙ c_prev + i ⊙ g``, ``h = o ⊙ tanh(c)``. Each way's result is checked against the
NumPy one before it is timed. Printed: the best of ``--repeat`` runs in ms, and each way's
ratio to ``numpy``.

    python benchmarks/elementwise.py                 # large and small sizes, float32 and float64
    python benchmarks/elementwise.py --hidden 64 --batch 32
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def numpy_step(a: np.ndarray, b: np.ndarray, c_prev: np.ndarray, c: np.ndarray, h: np.ndarray) -> None:
    """The step as a generated NumPy kernel writes it: one in-place pass per operation."""
    n = c_prev.shape[0]
    np.add(a, b, out=a)
    s = a[:3 * n]
    np.negative(s, out=s)
    np.exp(s, out=s)
    np.add(s, 1, out=s)
    np.reciprocal(s, out=s)
    np.tanh(a[3 * n:], out=a[3 * n:])
    i, f, o, g = a[:n], a[n:2 * n], a[2 * n:3 * n], a[3 * n:]
    np.multiply(f, c_prev, out=c)
    c += i * g
    np.tanh(c, out=h)
    h *= o


def split_step(pool: ThreadPoolExecutor) -> Callable[..., None]:
    """numpy_step on two halves of the batch columns, the first half in another thread (the
    bias column serves both)."""
    def step(a, b, c_prev, c, h):
        half = c.shape[1] // 2
        cols = [slice(0, half), slice(half, None)]
        a_, c_prev_, c_, h_ = ([x[:, k] for k in cols] for x in (a, c_prev, c, h))
        job = pool.submit(numpy_step, a_[0], b, c_prev_[0], c_[0], h_[0])
        numpy_step(a_[1], b, c_prev_[1], c_[1], h_[1])
        job.result()
    return step


def numexpr_step(threads: int) -> Callable[..., None]:
    """One numexpr expression per output, evaluated with ``threads`` threads."""
    import numexpr

    def step(a, b, c_prev, c, h):
        numexpr.set_num_threads(threads)
        n = c_prev.shape[0]
        names = {f"{x}": a[k * n:(k + 1) * n] for k, x in enumerate("ifog")}
        names |= {f"b{x}": b[k * n:(k + 1) * n] for k, x in enumerate("ifog")}
        names |= {"c_prev": c_prev, "c": c}
        sig = "1 / (1 + exp(-({x} + b{x})))"
        expr = f"{sig.format(x='f')} * c_prev + {sig.format(x='i')} * tanh(g + bg)"
        numexpr.evaluate(expr, local_dict=names, out=c)
        numexpr.evaluate(f"{sig.format(x='o')} * tanh(c)", local_dict=names, out=h)
    return step


def numba_step() -> Callable[..., None]:
    """The step as one compiled loop over rows and columns, with the fused backend's own
    scalar σ and tanh (their ``numba_scalar`` declarations in :mod:`symbptt.ops`: tanh in
    arithmetic alone, so that the loop vectorizes)."""
    import numba

    from symbptt import ops

    space: dict = {"np": np}
    exec(ops.Tanh.numba_helper, space)  # noqa: S102 - the project's own declared source
    tanh = numba.njit(space["scalar_tanh"])
    sigmoid_text = ops.Sigmoid.numba_scalar.format(u="u")
    space["scalar_tanh"] = tanh
    exec(f"def sigmoid(u):\n    return {sigmoid_text}", space)  # noqa: S102
    sigmoid = numba.njit(space["sigmoid"])

    @numba.njit
    def step(a, b, c_prev, c, h):
        n, m = c_prev.shape
        for r in range(n):
            for j in range(m):
                i = sigmoid(a[r, j] + b[r, 0])
                f = sigmoid(a[n + r, j] + b[n + r, 0])
                o = sigmoid(a[2 * n + r, j] + b[2 * n + r, 0])
                g = tanh(a[3 * n + r, j] + b[3 * n + r, 0])
                c[r, j] = f * c_prev[r, j] + i * g
                h[r, j] = o * tanh(c[r, j])
    return step


def ways() -> dict[str, Callable[..., None]]:
    """Every way this machine can run, by name."""
    found: dict[str, Callable[..., None]] = {"numpy": numpy_step,
                                             "numpy/2 threads": split_step(ThreadPoolExecutor(1))}
    if importlib.util.find_spec("numexpr"):
        found["numexpr/1"] = numexpr_step(1)
        found["numexpr/2"] = numexpr_step(2)
    if importlib.util.find_spec("numba"):
        found["numba"] = numba_step()
    return found


def measure(hidden: int, batch: int, dtype: type, repeat: int) -> dict[str, float]:
    """Best time in ms of each way on one step of this size, after checking its result."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4 * hidden, batch)).astype(dtype)
    b = rng.standard_normal((4 * hidden, 1)).astype(dtype)
    c_prev = rng.standard_normal((hidden, batch)).astype(dtype)
    expect_c, expect_h = np.empty_like(c_prev), np.empty_like(c_prev)
    numpy_step(z.copy(), b, c_prev, expect_c, expect_h)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    best: dict[str, float] = {}
    for name, step in ways().items():
        c, h = np.empty_like(c_prev), np.empty_like(c_prev)
        step(z.copy(), b, c_prev, c, h)  # warm-up (compiles numba) and check
        if not (np.allclose(c, expect_c, atol=tol) and np.allclose(h, expect_h, atol=tol)):
            raise AssertionError(f"{name} computes another step than numpy")
        times = []
        for _ in range(repeat):
            a = z.copy()
            start = time.perf_counter()
            step(a, b, c_prev, c, h)
            times.append(time.perf_counter() - start)
        best[name] = min(times) * 1e3
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, action="append", help="hidden units (default 512 and 64)")
    ap.add_argument("--batch", type=int, action="append", help="batch columns (default 256 and 32)")
    ap.add_argument("--repeat", type=int, default=50, help="runs per way; the best is printed")
    args = ap.parse_args()
    sizes = list(zip(args.hidden or [512, 64], args.batch or [256, 32]))
    print("| hidden × batch | dtype | way | best ms | / numpy |")
    print("| --- | --- | --- | --- | --- |")
    for hidden, batch in sizes:
        for dtype in (np.float32, np.float64):
            best = measure(hidden, batch, dtype, args.repeat)
            for name, ms in best.items():
                print(f"| {hidden} × {batch} | {np.dtype(dtype).name} | {name} | {ms:.3f} | "
                      f"{ms / best['numpy']:.2f} |")


if __name__ == "__main__":
    main()
