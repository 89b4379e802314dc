"""Benchmark: one LSTM step's elementwise work, written four ways, side by side.

This is the measurement behind the choice of the fused backend (issue: speed at the machine's
limit). At the large size the kernels' matrix products use every core, while the elementwise
work between them (gate nonlinearities, state update) runs on one; this script asks which way
of writing that work is fastest on this machine:

- ``numpy``: the NumPy calls a generated kernel makes, one pass per operation, in place;
- ``numpy/2 threads``: the same calls on two halves of the batch columns, one in a second
  Python thread (NumPy's ufuncs release the GIL);
- ``numpy/2 threads, units``: the same on two halves of the hidden units (each gate's first
  and second half of rows), so that every pass runs over contiguous rows;
- ``numexpr/k``: one ``numexpr.evaluate`` per output with k threads (when numexpr is installed);
- ``numba``: one compiled loop over the step with the fused backend's scalar σ and tanh (when
  numba is installed).

The step: ``a = z + b`` (gate rows i, f, o, g), ``i, f, o = σ(a)``, ``g = tanh(a)``,
``c = f ⊙ c_prev + i ⊙ g``, ``h = o ⊙ tanh(c)``. Each way's result is checked against the
NumPy one before it is timed. Printed: the best of ``--repeat`` runs in ms, and each way's
ratio to ``numpy``.

With ``--steps T`` each way runs where a kernel runs it: T steps of a recurrence, each the
product ``z = W·h_prev`` (BLAS, with its own threads) and then the way's elementwise step,
h and c carried to the next step. Printed: the best time of the T steps, and each way's
ratio to the products alone (what the kernels' goal of 1.15× is measured against). The
elementwise work alone can be split among threads; between products it competes with the
threads BLAS keeps spinning after each product, and this mode shows what that leaves.

    python benchmarks/elementwise.py                 # large and small sizes, float32 and float64
    python benchmarks/elementwise.py --hidden 64 --batch 32
    python benchmarks/elementwise.py --steps 50 --hidden 512 --batch 128
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def numpy_step(a: np.ndarray, b: np.ndarray, c_prev: np.ndarray, c: np.ndarray, h: np.ndarray) -> None:
    """The step as a generated NumPy kernel writes it: one in-place pass per operation (the
    gate rows [i; f; o; g] seen as (4, units, batch) blocks, a view, so the passes are the
    same)."""
    n = c_prev.shape[0]
    gate_blocks_step(a.reshape(4, n, -1), b.reshape(4, n, 1), c_prev, c, h)


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


def gate_blocks_step(a4: np.ndarray, b4: np.ndarray, c_prev: np.ndarray, c: np.ndarray, h: np.ndarray) -> None:
    """The step's passes on the gates as (4, units, batch) blocks [i; f; o; g]: a range of
    units is then one view of every gate (units_split_step), the whole range numpy_step."""
    np.add(a4, b4, out=a4)
    s = a4[:3]
    np.negative(s, out=s)
    np.exp(s, out=s)
    np.add(s, 1, out=s)
    np.reciprocal(s, out=s)
    np.tanh(a4[3], out=a4[3])
    i, f, o, g = a4
    np.multiply(f, c_prev, out=c)
    c += i * g
    np.tanh(c, out=h)
    h *= o


def units_split_step(pool: ThreadPoolExecutor) -> Callable[..., None]:
    """The step on two halves of the hidden units, the first half in another thread: every
    pass runs over whole rows, contiguous."""
    def step(a, b, c_prev, c, h):
        n, m = c.shape
        a4, b4 = a.reshape(4, n, m), b.reshape(4, n, 1)
        half = n // 2
        job = pool.submit(gate_blocks_step, a4[:, :half], b4[:, :half], c_prev[:half], c[:half], h[:half])
        gate_blocks_step(a4[:, half:], b4[:, half:], c_prev[half:], c[half:], h[half:])
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
    """The step as one compiled loop over rows and columns, compiled as the fused backend
    compiles its loops: its prelude's ``_jit`` (NumPy's division semantics, so that a loop
    with a division vectorizes), its scalar σ and tanh (``numba_scalar``/``numba_helper`` in
    :mod:`symbptt.ops`, tanh in arithmetic alone, printed in float64 and float32), and the
    formula's constants in the arrays' own precision (``_f``)."""
    from symbptt import ops
    from symbptt.kernels import fused

    space: dict = {"np": np, "os": os, "warnings": warnings}
    exec(fused.PRELUDE, space)  # noqa: S102 - the project's own backend source
    exec(fused._decorate(ops.Tanh.numba_helper), space)  # noqa: S102
    sigma = fused.in_precision(ops.Sigmoid.numba_scalar.format(u="u"))
    exec(f"def sigmoid(u, _f):\n    return {sigma}", space)  # noqa: S102
    sigmoid, tanh, jit = space["_jit"](space["sigmoid"]), space["scalar_tanh"], space["_jit"]

    @jit
    def compiled(a, b, c_prev, c, h, _f):
        n, m = c_prev.shape
        for r in range(n):
            for j in range(m):
                i = sigmoid(a[r, j] + b[r, 0], _f)
                f = sigmoid(a[n + r, j] + b[n + r, 0], _f)
                o = sigmoid(a[2 * n + r, j] + b[2 * n + r, 0], _f)
                g = tanh(a[3 * n + r, j] + b[3 * n + r, 0])
                c[r, j] = f * c_prev[r, j] + i * g
                h[r, j] = o * tanh(c[r, j])

    def step(a, b, c_prev, c, h):
        compiled(a, b, c_prev, c, h, a.dtype.type)
    return step


def ways() -> dict[str, Callable[..., None]]:
    """Every way this machine can run, by name."""
    found: dict[str, Callable[..., None]] = {"numpy": numpy_step,
                                             "numpy/2 threads": split_step(ThreadPoolExecutor(1)),
                                             "numpy/2 threads, units": units_split_step(ThreadPoolExecutor(1))}
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


def run_steps(step: Callable[..., None] | None, w: np.ndarray, b: np.ndarray, h0: np.ndarray,
              c0: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` steps of the recurrence z = W·h_prev, then ``step`` (None: the products
    alone, h and c left as they are); the last h and c."""
    z = np.empty((w.shape[0], h0.shape[1]), h0.dtype)
    h, c = h0.copy(), c0.copy()
    h_next, c_next = np.empty_like(h), np.empty_like(c)
    for _ in range(steps):
        np.matmul(w, h, out=z)
        if step is not None:
            step(z, b, c, c_next, h_next)
            h, h_next, c, c_next = h_next, h, c_next, c
    return h, c


def measure_steps(hidden: int, batch: int, dtype: type, repeat: int, steps: int) -> dict[str, float]:
    """Best time in ms of ``steps`` steps, product and elementwise, for each way (checked
    against NumPy's last h and c), and of the products alone ("products")."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4 * hidden, hidden)) / np.sqrt(hidden)).astype(dtype)
    b = (0.1 * rng.standard_normal((4 * hidden, 1))).astype(dtype)
    h0 = rng.standard_normal((hidden, batch)).astype(dtype)
    c0 = rng.standard_normal((hidden, batch)).astype(dtype)
    expect = run_steps(numpy_step, w, b, h0, c0, steps)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    runs: dict[str, Callable[..., None] | None] = {"products": None, **ways()}
    best: dict[str, float] = {}
    for name, step in runs.items():
        got = run_steps(step, w, b, h0, c0, steps)
        if step is not None and not all(np.allclose(g, e, atol=tol) for g, e in zip(got, expect)):
            raise AssertionError(f"{name} computes another step than numpy")
    for _ in range(repeat):  # interleaved: a disturbance hits every way alike
        for name, step in runs.items():
            start = time.perf_counter()
            run_steps(step, w, b, h0, c0, steps)
            best[name] = min(best.get(name, np.inf), (time.perf_counter() - start) * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, action="append", help="hidden units (default 512 and 64)")
    ap.add_argument("--batch", type=int, action="append", help="batch columns (default 256 and 32)")
    ap.add_argument("--repeat", type=int, default=50, help="runs per way; the best is printed")
    ap.add_argument("--steps", type=int, default=0,
                    help="time STEPS steps of a recurrence, the product W·h_prev before each step, "
                         "against the products alone")
    args = ap.parse_args()
    sizes = list(zip(args.hidden or [512, 64], args.batch or [256, 32]))
    if args.steps:
        print(f"| hidden × batch | dtype | way | best ms of {args.steps} steps | / products |")
        print("| --- | --- | --- | --- | --- |")
        for hidden, batch in sizes:
            for dtype in (np.float32, np.float64):
                best = measure_steps(hidden, batch, dtype, args.repeat, args.steps)
                for name, ms in best.items():
                    print(f"| {hidden} × {batch} | {np.dtype(dtype).name} | {name} | {ms:.2f} | "
                          f"{ms / best['products']:.2f} |")
        return
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
