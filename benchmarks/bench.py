"""Benchmark: forward + full-BPTT backward of every built-in cell, side by side.

Implementations, timed interleaved (the order rotates every round), median after a warm-up:

- ``generated``: the generated NumPy kernel (``generated/numpy/<cell>.py`` when it exists,
  else built in memory by ``symbptt.codegen.kernel_module``);
- ``notebook``: the notebook-style hand-written references of ``tests/reference`` (rnn, lstm,
  gru; float64 only, since they allocate float64 buffers and would silently upcast float32);
- ``torch``: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` on the CPU with autograd, loss
  ``sum(upstream * outputs)``; same weights wherever the function is the same (rnn, lstm,
  lstm_torch, gru_torch), a module of the same size for the notebook GRU, whose reset gate
  acts elsewhere; a softmax readout is added for cells that have one;
- ``floor``: the matrix products alone, in the best structure NumPy allows (input and readout
  products over all steps at once, recurrent products step by step, weight gradients in one
  product after the loop), into preallocated buffers.

Run as ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py``;
``--quick`` is a tiny run for tests. Figures go to ``benchmarks/results/bench.json``.

``--torch-kernel [--device cpu|cuda]`` times something else: the generated kernel printed
for torch tensors (``kernel_module(cell, module="torch")``) against ``nn.LSTM``/``nn.GRU``
with autograd on that device, for ``lstm_torch`` and ``gru_torch`` (the cells that are one
layer of those modules, same weights), with the ratios and a check that h and dx agree
(``benchmarks/results/bench_torch_kernel.json``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse
import ctypes
import datetime
import gc
import glob
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symbptt import Cell, derive, odot, one_minus, sigmoid, stack, tanh
from symbptt.codegen import kernel_module, numpy_kernel
from symbptt.loader import builtin_cells, load, resolve, source_label

try:
    import torch
except ImportError:  # the torch column is then left out
    torch = None

THREADS = 2
RESULTS = ROOT / "benchmarks" / "results"
BAD_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
Runner = Callable[[], None]


# ---------------------------------------------------------------------------------------
# sizes and problems
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """One problem size; the readout has ``n_y = n_x`` classes (a character model's shape)."""

    name: str
    n_x: int
    n_h: int
    m: int
    T: int

    @property
    def n_y(self) -> int:
        return self.n_x

    def with_T(self, T: int) -> Size:
        """The same size with another sequence length."""
        return Size(self.name, self.n_x, self.n_h, self.m, T)


SIZES = {
    "tiny": Size("tiny", 4, 8, 3, 5),
    "small": Size("small", 32, 64, 16, 50),
    "medium": Size("medium", 128, 256, 64, 50),
    "large": Size("large", 256, 512, 128, 100),
}
DTYPES = {"float32": np.float32, "float64": np.float64}
NOTEBOOK_FILES = {"rnn": "rnn_notebook.py", "lstm": "lstm_notebook.py", "gru": "gru_handwritten.py"}
READOUT_KEYS = {"rnn": ("Wyh", "by"), "lstm": ("Wy", "by"), "gru": ("Wy", "by")}


@dataclass
class Problem:
    """Parameters and data of one (cell, size, dtype) run, in the generated kernel's layout."""

    cell: str
    size: Size
    dtype: type
    kernel: types.ModuleType
    params: dict[str, np.ndarray]
    x: np.ndarray
    initial: dict[str, np.ndarray]
    upstream: dict[str, np.ndarray]


def make_problem(cell: str, kernel: types.ModuleType, size: Size, dtype: type, seed: int = 0) -> Problem:
    """Random parameters, input and upstream gradients (on h and on the readouts)."""
    rng = np.random.default_rng(seed)
    dims = {"n_x": size.n_x, "n_h": size.n_h, "n_y": size.n_y}
    params = kernel.init_parameters({d: dims[d] for d in kernel.DIMS}, rng, dtype)
    x = rng.standard_normal((size.n_x, size.m, size.T)).astype(dtype)
    initial = {s: np.zeros((size.n_h, size.m), dtype) for s in kernel.STATES}
    upstream = {"h": rng.standard_normal((size.n_h, size.m, size.T)).astype(dtype)}
    for name in kernel.READOUTS:
        upstream[name] = rng.standard_normal((size.n_y, size.m, size.T)).astype(dtype)
    return Problem(cell, size, dtype, kernel, params, x, initial, upstream)


# ---------------------------------------------------------------------------------------
# implementations: each factory returns a runner doing one forward + full-BPTT backward
# ---------------------------------------------------------------------------------------


def import_file(path: Path, name: str) -> types.ModuleType:
    """Import a Python file as a module of the given name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD_IN_MEMORY = False  # --build: ignore generated/ and build every kernel from the current planner


def load_kernel(cell: str) -> tuple[types.ModuleType, str]:
    """The generated kernel of a cell and where it came from."""
    path = ROOT / "generated" / "numpy" / f"{cell}.py"
    if path.is_file() and not BUILD_IN_MEMORY:
        return import_file(path, f"bench_generated_{cell}"), f"generated/numpy/{cell}.py"
    return kernel_module(cell), "symbptt.codegen.kernel_module (in memory)"


BASELINE_DIR: Path | None = None  # --baseline DIR: also time DIR/<cell>.py (an earlier kernel)


def baseline_runner(p: Problem) -> Runner | None:
    """The same problem through an earlier kernel of the cell (``--baseline``), or None."""
    path = BASELINE_DIR / f"{p.cell}.py" if BASELINE_DIR else None
    if path is None or not path.is_file():
        return None
    return generated_runner(Problem(p.cell, p.size, p.dtype, import_file(path, f"bench_baseline_{p.cell}"),
                                    p.params, p.x, p.initial, p.upstream))


def generated_runner(p: Problem) -> Runner:
    """The generated kernel: forward then backward with the same upstream every time."""

    def run() -> None:
        _, cache = p.kernel.forward(p.params, p.x, p.initial)
        p.kernel.backward(cache, p.upstream)

    return run


def notebook_runner(p: Problem) -> Runner | None:
    """The notebook-style reference (float64 only), or None where there is none."""
    if p.cell not in NOTEBOOK_FILES or p.dtype is not np.float64:
        return None
    module = import_file(ROOT / "tests" / "reference" / NOTEBOOK_FILES[p.cell], f"bench_ref_{p.cell}")
    forward = getattr(module, f"{p.cell}_forward")
    backward = getattr(module, f"{p.cell}_backward_full")
    h0, dH, dY = p.initial["h"], p.upstream["h"], p.upstream["y"]

    def run() -> None:
        out = forward(p.x, h0, p.params)
        backward(dH, dY, out[-1])

    return run


def notebook_outputs(p: Problem) -> dict[str, np.ndarray]:
    """H of the notebook reference, for the correctness check."""
    module = import_file(ROOT / "tests" / "reference" / NOTEBOOK_FILES[p.cell], f"bench_ref_{p.cell}")
    return {"h": getattr(module, f"{p.cell}_forward")(p.x, p.initial["h"], p.params)[0]}


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(arrays, axis=0))


def torch_weights(p: Problem) -> dict[str, np.ndarray] | None:
    """nn.RNN/LSTM/GRU weights computing the same function, or None (notebook GRU)."""
    q, n_h = p.params, p.size.n_h
    zero = [np.zeros((n_h, 1), p.dtype)]
    if p.cell == "rnn":
        w = {"ih": [q["Whx"]], "hh": [q["Whh"]], "bih": [q["bh"]], "bhh": zero}
    elif p.cell == "lstm":
        keys = ("i", "f", "c", "o")  # torch's gate order i, f, g, o
        w = {"ih": [q["W" + k][:, n_h:] for k in keys], "hh": [q["W" + k][:, :n_h] for k in keys],
             "bih": [q["b" + k] for k in keys], "bhh": zero * 4}
    elif p.cell in ("lstm_torch", "gru_torch"):
        from symbptt.torch import layer_to_torch  # this process has torch already

        return {k: v.numpy() for k, v in layer_to_torch(p.cell, q).items()}
    else:
        return None
    return {"weight_ih_l0": _cat(w["ih"]), "weight_hh_l0": _cat(w["hh"]),
            "bias_ih_l0": _cat(w["bih"]).ravel(), "bias_hh_l0": _cat(w["bhh"]).ravel()}


def torch_modules(p: Problem) -> tuple[object, object | None, bool]:
    """The recurrent module, the readout (or None), and whether the weights are shared."""
    s, tdtype = p.size, getattr(torch, np.dtype(p.dtype).name)
    kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "lstm_torch": torch.nn.LSTM}.get(p.cell, torch.nn.GRU)
    rec = kind(s.n_x, s.n_h).to(tdtype)
    weights = torch_weights(p)
    readout = None
    with torch.no_grad():
        for name, value in (weights or {}).items():
            getattr(rec, name).copy_(torch.from_numpy(value))
        if p.kernel.READOUTS:
            w_key, b_key = READOUT_KEYS[p.cell]
            readout = torch.nn.Linear(s.n_h, s.n_y).to(tdtype)
            readout.weight.copy_(torch.from_numpy(np.ascontiguousarray(p.params[w_key])))
            readout.bias.copy_(torch.from_numpy(p.params[b_key].ravel()))
    return rec, readout, weights is not None


def to_torch(a: np.ndarray, grad: bool = False) -> object:
    """(n, m, T) → a contiguous (T, m, n) tensor, torch's layout."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 1, 0))).requires_grad_(grad)


@dataclass
class TorchCase:
    """A torch module set up for one problem; ``run`` does forward + autograd backward."""

    rec: object
    readout: object | None
    same_weights: bool
    x: object
    h0: tuple
    dH: object
    dY: object | None

    def forward(self) -> tuple[object, object | None]:
        state = self.h0 if len(self.h0) == 2 else self.h0[0]
        out, _ = self.rec(self.x, state)
        y = torch.softmax(self.readout(out), dim=-1) if self.readout is not None else None
        return out, y

    def loss(self) -> object:
        """sum(upstream * outputs) over h and the readout."""
        out, y = self.forward()
        loss = (self.dH * out).sum()
        return loss + (self.dY * y).sum() if y is not None else loss

    def run(self) -> None:
        self.loss().backward()
        self.clear()

    def clear(self) -> None:
        """Drop every gradient so each run allocates (and frees) the same memory."""
        for t in (*self.parameters(), self.x, *self.h0):
            t.grad = None

    def parameters(self) -> list:
        extra = list(self.readout.parameters()) if self.readout is not None else []
        return list(self.rec.parameters()) + extra


def torch_case(p: Problem) -> TorchCase | None:
    """PyTorch's module for a built-in cell, or None (no torch or unknown cell)."""
    if torch is None or p.cell not in ("rnn", "lstm", "gru", "lstm_torch", "gru_torch"):
        return None
    rec, readout, same = torch_modules(p)
    h0 = tuple(torch.from_numpy(np.ascontiguousarray(p.initial[s].T)[None]).requires_grad_(True)
               for s in p.kernel.STATES)  # (1, m, n_h) each
    dY = to_torch(p.upstream["y"]) if readout is not None else None
    return TorchCase(rec, readout, same, to_torch(p.x, True), h0, to_torch(p.upstream["h"]), dY)


# ---------------------------------------------------------------------------------------
# the floor: the cell's matrix products alone
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmPlan:
    """The products one sequence needs.

    ``recurrent``: row counts of products ``W (rows × n_h) · h_prev`` done step by step;
    ``batched``: ``(rows, cols)`` of products over all T·m columns at once (inputs, readout).
    Every product appears three times: forward, data gradient (Wᵀ·dZ), weight gradient.
    """

    recurrent: tuple[int, ...]
    batched: tuple[tuple[int, int], ...]

    def flops(self, s: Size) -> float:
        """Floating-point operations of all products, forward and backward."""
        mn = s.m * s.T
        rec = sum(r * s.n_h for r in self.recurrent)
        bat = sum(r * c for r, c in self.batched)
        return 3 * 2 * mn * (rec + bat)

    def weight_count(self, s: Size) -> int:
        """Number of weight entries the plan covers (checked against the kernel's)."""
        return sum(r * s.n_h for r in self.recurrent) + sum(r * c for r, c in self.batched)


def gemm_plan(cell: str, s: Size) -> GemmPlan | None:
    """The products of a built-in cell (GRU: the candidate's h-product waits for r)."""
    h, x, y = s.n_h, s.n_x, s.n_y
    plans = {
        "rnn": GemmPlan((h,), ((h, x), (y, h))),
        "lstm": GemmPlan((4 * h,), ((4 * h, x), (y, h))),
        "gru": GemmPlan((2 * h, h), ((3 * h, x), (y, h))),
        "lstm_torch": GemmPlan((4 * h,), ((4 * h, x),)),
        "gru_torch": GemmPlan((3 * h,), ((3 * h, x),)),
    }
    return plans.get(cell)


def floor_runner(plan: GemmPlan, s: Size, dtype: type, seed: int = 1) -> Runner:
    """Every product of the plan with NumPy at ``dtype`` into preallocated buffers."""
    rng = np.random.default_rng(seed)
    mT, m = s.m * s.T, s.m

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    H, dH = arr(s.n_h, mT), arr(s.n_h, mT)
    rec = [(arr(r, s.n_h), arr(r, mT), arr(r, s.n_h)) for r in plan.recurrent]  # W, Z/dZ, dW
    bat = [(arr(r, c), arr(c, mT), arr(r, mT), arr(c, mT), arr(r, c)) for r, c in plan.batched]

    def run() -> None:
        for W, X, Z, _, _ in bat:
            np.matmul(W, X, out=Z)
        for t in range(s.T):
            cols = slice(t * m, (t + 1) * m)
            for W, Z, _ in rec:
                np.matmul(W, H[:, cols], out=Z[:, cols])
        for t in reversed(range(s.T)):
            cols = slice(t * m, (t + 1) * m)
            for W, dZ, _ in rec:
                np.matmul(W.T, dZ[:, cols], out=dH[:, cols])
        for _, dZ, dW in rec:
            np.matmul(dZ, H.T, out=dW)
        for W, X, dZ, dX, dW in bat:
            np.matmul(W.T, dZ, out=dX)
            np.matmul(dZ, X.T, out=dW)

    return run


def kernel_weight_count(p: Problem) -> int:
    """Weight entries (biases excluded) of the kernel's parameters."""
    return sum(a.size for a in p.params.values() if a.shape[1] != 1)


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int] | None:
    """(busy clock ticks of all CPUs, steal included; ticks of this process), or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(fields) - fields[3] - fields[4], int(own[11]) + int(own[12])


def measure(run: Runner) -> tuple[float, float]:
    """Seconds of one run and the CPU ticks other processes (or the hypervisor) took meanwhile."""
    before = cpu_ticks()
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    after = cpu_ticks()
    if before is None or after is None:
        return elapsed, 0.0
    return elapsed, float((after[0] - before[0]) - (after[1] - before[1]))


@dataclass
class Waiter:
    """Waits for idle CPUs, out of one budget of seconds for the whole benchmark."""

    budget: float = 600.0

    def wait(self, max_wait: float) -> float | None:
        """Wait at most ``max_wait`` s (and what is left of the budget); the idle fraction."""
        t0 = time.monotonic()
        idle = wait_for_idle(min(max_wait, max(self.budget, 0.0)))
        self.budget -= time.monotonic() - t0
        return idle


@dataclass(frozen=True)
class Timing:
    """How samples are taken: rounds, the pause before each run, retries of disturbed runs."""

    repeat: int = 5
    warmup: int = 1
    pause: float = 0.15
    retries: int = 3
    wait_idle: float = 30.0
    waiter: Waiter = field(default_factory=Waiter)

    def disturbed(self, seconds: float, other_ticks: float) -> bool:
        """True when others took more than 2 ticks plus 5 % of the CPUs during a run."""
        return other_ticks > 2 + 0.05 * seconds * 100 * (os.cpu_count() or 1)


def time_interleaved(runners: dict[str, Runner], cfg: Timing) -> tuple[dict[str, list[float]], dict]:
    """Seconds of each runner, rounds interleaved and rotated, warm-up rounds dropped.

    Each run starts after a collection and a pause (so that idle BLAS/OpenMP threads of the
    previous run stop spinning); a run during which other processes used the CPUs is redone,
    after waiting for them, at most ``cfg.retries`` times, and counted in the returned stats.
    """
    names = list(runners)
    samples: dict[str, list[float]] = {n: [] for n in names}
    stats = {"redone": 0, "disturbed_kept": 0}
    for r in range(cfg.warmup + cfg.repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for attempt in range(cfg.retries + 1):
                gc.collect()
                time.sleep(cfg.pause)
                elapsed, other = measure(runners[name])
                if r < cfg.warmup or not cfg.disturbed(elapsed, other):
                    break
                if attempt == cfg.retries or cfg.waiter.budget <= 0:
                    stats["disturbed_kept"] += 1
                    break
                stats["redone"] += 1
                cfg.waiter.wait(cfg.wait_idle)
            if r >= cfg.warmup:
                samples[name].append(elapsed)
    return samples, stats


def cpu_idle_fraction(interval: float = 0.25) -> float | None:
    """Fraction of all CPUs idle over ``interval`` seconds (None where /proc/stat is missing)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except OSError:
        return None
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_idle(max_wait: float, threshold: float = 0.9) -> float | None:
    """Wait (at most ``max_wait`` s) until other processes leave the CPUs idle; the idle fraction."""
    deadline = time.monotonic() + max_wait
    while True:
        idle = cpu_idle_fraction(0.25 if max_wait > 0 else 0.05)
        if idle is None or idle >= threshold or time.monotonic() >= deadline:
            return idle
        time.sleep(1.0)


def gemm_peak(n: int, dtype: type, waiter: Waiter, repeat: int = 5, tries: int = 15) -> float:
    """GFLOP/s of an n³ numpy matmul: the best undisturbed run (waiting for idle CPUs after a
    disturbed one), or the best of all ``tries`` when none was undisturbed."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)
    clean, disturbed = [], []
    for _ in range(tries):
        elapsed, other = measure(lambda: np.matmul(a, b, out=out))
        if Timing().disturbed(elapsed, other):
            disturbed.append(elapsed)
            waiter.wait(10.0)
        else:
            clean.append(elapsed)
        if len(clean) >= repeat:
            break
    return 2 * n**3 / min(clean or disturbed) / 1e9


def _timed(fn: Runner) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# one benchmark case
# ---------------------------------------------------------------------------------------


NUMBA_KERNELS: dict[str, types.ModuleType] = {}  # --backend numba: the fused kernel of each cell


def numba_runner(p: Problem) -> Runner | None:
    """The same problem through the kernel compiled by Numba (``--backend numba``), or None.
    Its first call (compilation) happens here, not in the timed runs."""
    if not BACKEND_NUMBA:
        return None
    if p.cell not in NUMBA_KERNELS:
        t0 = time.perf_counter()
        NUMBA_KERNELS[p.cell] = kernel_module(p.cell, backend="numba")
        print(f"numba kernel of {p.cell}: generated in {time.perf_counter() - t0:.1f} s", flush=True)
    run = generated_runner(Problem(p.cell, p.size, p.dtype, NUMBA_KERNELS[p.cell], p.params, p.x,
                                   p.initial, p.upstream))
    t0 = time.perf_counter()
    run()
    print(f"numba kernel of {p.cell} {np.dtype(p.dtype).name}: first call {time.perf_counter() - t0:.1f} s "
          "(compilation)", flush=True)
    return run


BACKEND_NUMBA = False  # --backend numba


def build_runners(p: Problem) -> tuple[dict[str, Runner], TorchCase | None]:
    """Every available implementation of a problem."""
    runners = {"generated": generated_runner(p)}
    fused = numba_runner(p)
    if fused is not None:
        runners["numba"] = fused
    base = baseline_runner(p)
    if base is not None:
        runners["baseline"] = base
    nb = notebook_runner(p)
    if nb is not None:
        runners["notebook"] = nb
    case = torch_case(p)
    if case is not None:
        runners["torch"] = case.run
    plan = gemm_plan(p.cell, p.size)
    if plan is not None:
        runners["floor"] = floor_runner(plan, p.size, p.dtype)
    return runners, case


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference, relative to the larger of 1 and b's largest magnitude."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def check_case(p: Problem, case: TorchCase | None) -> dict[str, float]:
    """Largest differences of h (and dx) between the generated kernel and the others."""
    outputs, cache = p.kernel.forward(p.params, p.x, p.initial)
    checks: dict[str, float] = {}
    if case is not None and case.same_weights:
        with torch.no_grad():
            out, _ = case.forward()
        checks["torch_h"] = max_diff(outputs["h"], out.numpy().transpose(2, 1, 0))
        case.loss().backward()
        dx = p.kernel.backward(cache, p.upstream)["dx"]
        checks["torch_dx"] = max_diff(dx, case.x.grad.numpy().transpose(2, 1, 0))
        case.clear()
    if p.cell in NOTEBOOK_FILES and p.dtype is np.float64:
        checks["notebook_h"] = max_diff(outputs["h"], notebook_outputs(p)["h"])
    return checks


def summarize(p: Problem, samples: dict[str, list[float]], peak: float) -> dict:
    """Medians, ratios and fractions of GEMM peak of one case."""
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    plan = gemm_plan(p.cell, p.size)
    flops = plan.flops(p.size) if plan else None
    gen = med["generated"]
    ratios = {f"generated/{k}": gen / v for k, v in med.items() if k != "generated"}
    if "numba" in med and "floor" in med:
        ratios["numba/floor"] = med["numba"] / med["floor"]
    peak_fraction = {k: flops / (v / 1e3) / (peak * 1e9) for k, v in med.items()} if flops else {}
    return {"cell": p.cell, "size": p.size.name, "dtype": np.dtype(p.dtype).name,
            "dims": asdict(p.size) | {"n_y": p.size.n_y}, "flops": flops,
            "median_ms": med, "min_ms": {k: min(v) * 1e3 for k, v in samples.items()}, "samples_ms": {k: [s * 1e3 for s in v] for k, v in samples.items()},
            "ratios": ratios, "peak_fraction": peak_fraction}


def torch_samples(cell: str, size: Size, dtype: type, cfg: Timing) -> tuple[list[float], dict] | None:
    """Seconds of torch's runs, timed in a fresh process (torch's and OpenBLAS's threads
    interfere when both live in one process), or None when that process fails."""
    spec = json.dumps({"cell": cell, "size": size.name, "dtype": np.dtype(dtype).name,
                       "timing": asdict(cfg) | {"waiter": None}})
    proc = subprocess.run([sys.executable, __file__, "--torch-worker", spec], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        print(f"torch worker failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["samples"], out["stats"]


def torch_worker(spec: str) -> None:
    """Entry point of the torch timing subprocess: prints its samples as JSON."""
    job = json.loads(spec)
    set_threads()
    kernel, _ = load_kernel(job["cell"])
    p = make_problem(job["cell"], kernel, SIZES[job["size"]], DTYPES[job["dtype"]])
    case = torch_case(p)
    cfg = Timing(**(job["timing"] | {"waiter": Waiter(0.0)}))
    samples, stats = time_interleaved({"torch": case.run}, cfg)
    print(json.dumps({"samples": samples["torch"], "stats": stats}))


def run_case(cell: str, kernel: types.ModuleType, size: Size, dtype: type, args, peak: float) -> dict:
    """Time every implementation of one (cell, size, dtype); torch in a process of its own."""
    p = make_problem(cell, kernel, size, dtype)
    runners, case = build_runners(p)
    checks = check_case(p, case)
    runners.pop("torch", None)
    idle = args.timing.waiter.wait(args.timing.wait_idle)
    samples, stats = time_interleaved(runners, args.timing)
    if case is not None:
        got = torch_samples(cell, size, dtype, args.timing)
        if got is not None:
            samples["torch"] = got[0]
            stats = {k: v + got[1][k] for k, v in stats.items()}
    result = summarize(p, samples, peak)
    result["checks"] = checks
    result["timing_stats"] = stats
    result["cpu_idle_before"] = idle
    plan = gemm_plan(cell, size)
    if plan is not None and plan.weight_count(size) != kernel_weight_count(p):
        result["floor_warning"] = "the floor's products do not cover the kernel's weights"
    if case is not None and not case.same_weights:
        result["torch_note"] = "torch module of the same size, not the same function"
    return result


# ---------------------------------------------------------------------------------------
# peak memory (one subprocess per job, glibc returning large blocks to the system at once)
# ---------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_peak_above(base_kib: int, run: Runner) -> float | None:
    """MiB of resident memory above ``base_kib`` at the peak of ``run`` (None off Linux)."""
    try:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        run()
        return (_status_kib("VmHWM") - base_kib) / 1024
    except OSError:
        return None


def traced_peak(run: Runner) -> float:
    """MiB at the peak of allocations tracemalloc sees (NumPy's buffers, not torch's)."""
    gc.collect()
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def memory_job(cell: str, size: Size, dtype: type, which: str = "generated,torch") -> dict:
    """Peak memory of generated and torch (``which`` of them): a warm run's peak RSS above the
    level before the implementation's first call (so buffers kept between calls count), and
    tracemalloc's peak of a warm run (NumPy's allocations during the call only)."""
    kernel, _ = load_kernel(cell)
    p = make_problem(cell, kernel, size, dtype)
    runners = {"generated": generated_runner(p)} if "generated" in which else {}
    case = torch_case(p) if "torch" in which else None
    if case is not None:
        runners["torch"] = case.run
    rss, traced = {}, {}
    for name, run in runners.items():
        gc.collect()
        base = _status_kib("VmRSS")
        run()  # warm-up
        rss[name] = rss_peak_above(base, run)
        if name != "torch":
            traced[name] = traced_peak(run)
    return {"cell": cell, "size": size.name, "dtype": np.dtype(dtype).name,
            "rss_peak_delta_mib": rss, "tracemalloc_peak_mib": traced}


def run_memory(jobs: list[tuple[str, str, str]], one_process: bool) -> list[dict]:
    """Memory jobs in fresh interpreters with MALLOC_MMAP_THRESHOLD_ fixed at 64 KiB."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    groups = [jobs] if one_process else [[(*j, w)] for j in jobs for w in ("generated", "torch")]
    results: list[dict] = []
    for group in groups:
        spec = ";".join(",".join(j) for j in group)
        build = ["--build"] if BUILD_IN_MEMORY else []
        proc = subprocess.run([sys.executable, __file__, *build, "--memory-worker", spec], env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            results.append({"jobs": spec, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        results.extend(json.loads(proc.stdout))
    return results if one_process else _merge_memory(results)


def _merge_memory(rows: list[dict]) -> list[dict]:
    """One row per (cell, size, dtype) from the rows of its implementations' processes."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        if "error" in r:
            merged[(r["jobs"],)] = r
            continue
        row = merged.setdefault((r["cell"], r["size"], r["dtype"]), {
            "cell": r["cell"], "size": r["size"], "dtype": r["dtype"],
            "rss_peak_delta_mib": {}, "tracemalloc_peak_mib": {}})
        row["rss_peak_delta_mib"].update(r["rss_peak_delta_mib"])
        row["tracemalloc_peak_mib"].update(r["tracemalloc_peak_mib"])
    return list(merged.values())


def memory_worker(spec: str) -> None:
    """Entry point of the memory subprocess: prints its results as JSON."""
    set_threads()
    freeze_heap()
    out = []
    for job in spec.split(";"):
        cell, size, dtype, *which = job.split(",")
        out.append(memory_job(cell, SIZES[size], DTYPES[dtype], ",".join(which) or "generated,torch"))
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------
# where the time goes: a line profile of one forward + backward
# ---------------------------------------------------------------------------------------


def kernel_file(cell: str, kernel: types.ModuleType) -> types.ModuleType:
    """The kernel imported from a file (its lines can then be profiled and printed)."""
    if Path(kernel.__file__).is_file():
        return kernel
    path = RESULTS / "profiled" / f"{cell}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(numpy_kernel(derive(load(resolve(cell))), source_label(resolve(cell))))
    return import_file(path, f"bench_profiled_{cell}")


def profile_case(cell: str, kernel: types.ModuleType, size: Size, dtype: type, top: int = 12) -> dict:
    """Seconds of forward and backward, and the kernel's lines that take the most time (a
    line tracer: it adds about a microsecond a line, so cheap lines look dearer)."""
    k = kernel_file(cell, kernel)
    p = make_problem(cell, k, size, dtype)
    path = k.__file__
    for _ in range(2):
        generated_runner(p)()
    t0 = time.perf_counter()
    outputs, cache = k.forward(p.params, p.x, p.initial)
    t1 = time.perf_counter()
    k.backward(cache, p.upstream)
    t2 = time.perf_counter()
    # Drop the outputs too: they are views of the sequence buffers, and a buffer still
    # referred to is not reused, so the profiled run would pay fresh pages' faults on the
    # lines that first write each step's states.
    del outputs, cache
    spent: dict[tuple[str, int], float] = {}
    last: list = [None, 0.0]

    def line(frame, event, arg):
        now = time.perf_counter()
        if last[0] is not None:
            spent[last[0]] = spent.get(last[0], 0.0) + now - last[1]
        last[0] = (frame.f_code.co_name, frame.f_lineno) if event == "line" else None
        last[1] = time.perf_counter()
        return line

    sys.settrace(lambda frame, event, arg: line if frame.f_code.co_filename == path else None)
    try:
        generated_runner(p)()
    finally:
        sys.settrace(None)
    total = sum(spent.values()) or 1.0
    text = Path(path).read_text().splitlines()
    rows = [{"function": f, "line": n, "share": v / total, "code": text[n - 1].strip()[:100]}
            for (f, n), v in sorted(spent.items(), key=lambda kv: -kv[1])[:top]]
    return {"cell": cell, "size": size.name, "dtype": np.dtype(dtype).name,
            "forward_ms": (t1 - t0) * 1e3, "backward_ms": (t2 - t1) * 1e3, "lines": rows}


def print_profile(prof: dict) -> None:
    """The profile as text."""
    print(f"\nWhere the time goes: {prof['cell']} {prof['size']} {prof['dtype']}, forward "
          f"{prof['forward_ms']:.1f} ms, backward {prof['backward_ms']:.1f} ms; the kernel's dearest lines:")
    for r in prof["lines"]:
        print(f"  {100 * r['share']:5.1f} %  {r['function']}:{r['line']}  {r['code']}")


# ---------------------------------------------------------------------------------------
# derivation time
# ---------------------------------------------------------------------------------------


def time_builtin_derivations() -> dict:
    """Seconds to load, derive and generate the NumPy kernel of every built-in cell."""
    per_cell = {}
    t_all = time.perf_counter()
    for path in builtin_cells():
        t0 = time.perf_counter()
        numpy_kernel(derive(load(path)), source_label(path))
        per_cell[path.stem] = time.perf_counter() - t0
    return {"seconds_per_cell": per_cell, "total_seconds": time.perf_counter() - t_all}


def synthetic_cell(k: int) -> Cell:
    """A cell of k LSTM-like units: gate g_j, candidate u_j, s_j = g_j⊙s_{j-1} + (1−g_j)⊙u_j."""
    cell = Cell(f"stacked{k}", f"{k} stacked LSTM-like gates (benchmark only)")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev, carry = cell.state("h", n_h), cell.state("c", n_h)
    for j in range(k):
        W, b = cell.weight(f"W{j}", n_h, n_h + n_x), cell.bias(f"b{j}", n_h)
        U, a = cell.weight(f"U{j}", n_h, n_h + n_x), cell.bias(f"a{j}", n_h)
        g = cell.let(f"g{j}", sigmoid(W @ stack(h_prev, x) + b))
        u = cell.let(f"u{j}", tanh(U @ stack(h_prev, x) + a))
        mix = odot(g, carry) + odot(one_minus(g), u)
        carry = cell.update("c", mix) if j == k - 1 else cell.let(f"s{j}", mix)
    cell.update("h", tanh(carry))
    return cell


def time_scaling(ks: list[int], repeat: int) -> dict:
    """Derive + generate time against the number of equations, with a least-squares line."""
    rows = []
    for k in ks:
        n_eq = len(synthetic_cell(k).equations)
        times = [_timed(lambda k=k: numpy_kernel(derive(synthetic_cell(k)))) for _ in range(repeat)]
        rows.append({"k": k, "equations": n_eq, "seconds": statistics.median(times)})
    return {"rows": rows, "fit": linear_fit([r["equations"] for r in rows], [r["seconds"] for r in rows])}


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Slope, intercept and R² of y = a·x + b (R² is None with fewer than 3 points)."""
    if len(xs) < 2:
        return {"slope": None, "intercept": None, "r2": None}
    a, b = np.polyfit(xs, ys, 1)
    pred = a * np.asarray(xs) + b
    ss_tot = float(np.sum((np.asarray(ys) - np.mean(ys)) ** 2))
    r2 = 1 - float(np.sum((np.asarray(ys) - pred) ** 2)) / ss_tot if len(xs) > 2 and ss_tot else None
    return {"slope": float(a), "intercept": float(b), "r2": r2}


# ---------------------------------------------------------------------------------------
# time per step against T, and its plot
# ---------------------------------------------------------------------------------------


def time_sweep(kernel: types.ModuleType, size: Size, Ts: list[int], args) -> dict:
    """ms per step of generated and torch (LSTM, float32) for each sequence length."""
    rows = []
    for T in Ts:
        p = make_problem("lstm", kernel, size.with_T(T), np.float32)
        runners = {"generated": generated_runner(p)}
        case = torch_case(p)
        if case is not None:
            runners["torch"] = case.run
        args.timing.waiter.wait(args.timing.wait_idle)
        samples, _ = time_interleaved(runners, args.timing)
        rows.append({"T": T} | {k: statistics.median(v) * 1e3 / T for k, v in samples.items()})
    return {"cell": "lstm", "size": size.name, "dtype": "float32", "ms_per_step": rows}


def svg_plot(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """A small line chart as SVG text (used when matplotlib is not installed)."""
    W, H, L, R, Tm, B = 560, 360, 70, 20, 40, 50
    xs = [x for pts in series.values() for x, _ in pts]
    ymax = max(y for pts in series.values() for _, y in pts) * 1.15
    x0, x1 = min(xs), max(xs)

    def px(x: float) -> float:
        return L + (x - x0) / ((x1 - x0) or 1) * (W - L - R)

    def py(y: float) -> float:
        return H - B - y / ymax * (H - Tm - B)

    header = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
              f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>')
    parts = [header,
             f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
             f'<line x1="{L}" y1="{Tm}" x2="{L}" y2="{H - B}" stroke="black"/>',
             f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>',
             (f'<text x="16" y="{H / 2}" text-anchor="middle" '
              f'transform="rotate(-90 16 {H / 2})">{ylabel}</text>')]
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:g}</text>')
    for i in range(6):
        y = ymax * i / 5
        parts.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>'
                     f'<line x1="{L}" y1="{py(y):.1f}" x2="{W - R}" y2="{py(y):.1f}" stroke="#ddd"/>')
    for i, (name, pts) in enumerate(series.items()):
        color = ("#1f77b4", "#d62728", "#2ca02c")[i % 3]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in pts]
        parts.append(f'<text x="{W - R - 110}" y="{Tm + 16 * (i + 1)}" fill="{color}">{name}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def draw_plot(sweep: dict, path: Path) -> Path:
    """PNG with matplotlib when it is importable, else a hand-written SVG; returns the path."""
    rows = sweep["ms_per_step"]
    series = {k: [(r["T"], r[k]) for r in rows] for k in rows[0] if k != "T"}
    title = f"{sweep['cell']} {sweep['size']} {sweep['dtype']}: forward + full BPTT"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = path.with_suffix(".svg")
        path.write_text(svg_plot(series, title, "sequence length T", "ms per step"))
        return path
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in series.items():
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xlabel="sequence length T", ylabel="ms per step", title=title, ylim=(0, None))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"))
    plt.close(fig)
    return path.with_suffix(".png")


# ---------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------


def freeze_heap() -> None:
    """Move every object alive now (SymPy's caches…) out of the collector's sight, so the
    ``gc.collect()`` before each timed run stays cheap."""
    gc.collect()
    gc.freeze()


def set_threads() -> None:
    """Two threads for torch (OpenBLAS's were set through the environment at import)."""
    if torch is not None:
        torch.set_num_threads(THREADS)


def openblas_info() -> dict:
    """OpenBLAS's core kernel, configuration and threads (threadpoolctl if installed, else ctypes)."""
    try:
        from threadpoolctl import threadpool_info

        return {"source": "threadpoolctl", "pools": threadpool_info()}
    except ImportError:
        pass
    libs = glob.glob(str(Path(np.__file__).parent.parent / "numpy.libs" / "libscipy_openblas*"))
    info: dict = {"source": "ctypes", "library": libs[0] if libs else None}
    if libs:
        lib = ctypes.CDLL(libs[0])
        for key, sym, rtype in (("corename", "get_corename", ctypes.c_char_p),
                                ("config", "get_config", ctypes.c_char_p),
                                ("threads", "get_num_threads", ctypes.c_int)):
            fn = getattr(lib, f"scipy_openblas_{sym}64_", None) or getattr(lib, f"openblas_{sym}", None)
            if fn is not None:
                fn.restype = rtype
                value = fn()
                info[key] = value.decode() if isinstance(value, bytes) else value
    return info


def environment_warnings() -> list[str]:
    """Variables that skew OpenBLAS's kernel choice, and a busy machine."""
    notes = [f"{v}={os.environ[v]} is set: run as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
             f"python benchmarks/bench.py`" for v in BAD_ENV if v in os.environ]
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        notes.append(f"load average {load1:.2f} at start: other processes share the CPUs")
    return notes


def metadata(args) -> dict:
    """What the figures depend on."""
    return {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__ if torch else None,
            "torch_threads": torch.get_num_threads() if torch else None,
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", *BAD_ENV)},
            "openblas": openblas_info(), "timing": asdict(args.timing) | {"waiter": None},
            "warnings": environment_warnings()}


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(runs: list[dict]) -> str:
    """The timing table as Markdown."""
    head = ("| cell | size | dtype | generated ms | notebook ms | torch ms | floor ms | gen/torch "
            "| gen/floor | gen/notebook | gen % peak | torch % peak |")
    base = any("baseline" in r["median_ms"] for r in runs)
    head += " baseline ms | gen/baseline |" if base else ""
    lines = [head, "|" + " --- |" * (14 if base else 12)]
    for r in runs:
        med, rat, pf = r["median_ms"], r["ratios"], r["peak_fraction"]
        cells = [r["cell"], r["size"], r["dtype"]]
        cells += [_fmt(med.get(k), ".2f") for k in ("generated", "notebook", "torch", "floor")]
        cells += [_fmt(rat.get(f"generated/{k}"), ".2f") for k in ("torch", "floor", "notebook")]
        cells += [_fmt(pf.get(k) and 100 * pf[k], ".0f") for k in ("generated", "torch")]
        if base:
            cells += [_fmt(med.get("baseline"), ".2f"), _fmt(rat.get("generated/baseline"), ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def numba_table(runs: list[dict]) -> str:
    """The NumPy kernel, the kernel compiled by Numba and the floor, side by side (medians,
    and the min of the per-round ratios: rounds are interleaved, so each is one moment)."""
    head = ("| cell | size | dtype | numpy ms | numba ms | floor ms | numpy/floor | numba/floor "
            "| numba/floor per round (min–max) |")
    lines = [head, "| --- " * 9 + "|"]
    for r in runs:
        med, samples = r["median_ms"], r["samples_ms"]
        if "numba" not in med:
            continue
        per_round = ([a / b for a, b in zip(samples["numba"], samples["floor"])]
                     if "floor" in samples else [])
        spread = f"{min(per_round):.2f}–{max(per_round):.2f}" if per_round else "—"
        cells = [r["cell"], r["size"], r["dtype"]] + [_fmt(med.get(k), ".2f") for k in ("generated", "numba", "floor")]
        cells += [_fmt(r["ratios"].get("generated/floor"), ".2f"), _fmt(r["ratios"].get("numba/floor"), ".2f"), spread]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    """Peak memory as Markdown: RSS delta for both, tracemalloc for the NumPy kernel."""
    lines = ["| cell | size | dtype | generated RSS Δ MiB | torch RSS Δ MiB | generated/torch "
             + "| generated tracemalloc MiB |", "|" + " --- |" * 7]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['jobs']} | error: {r['error']} |")
            continue
        rss = r["rss_peak_delta_mib"]
        gen, tor = rss.get("generated"), rss.get("torch")
        ratio = gen / tor if gen is not None and tor else None
        cells = [r["cell"], r["size"], r["dtype"], _fmt(gen, ".0f"), _fmt(tor, ".0f"), _fmt(ratio, ".2f"),
                 _fmt(r["tracemalloc_peak_mib"].get("generated"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(results: dict) -> list[dict]:
    """The issue's goals, each with its figure and whether this run reached it."""
    out = []
    for r in results["runs"]:
        rat = r["ratios"]
        if r["size"] in ("medium", "large") and r["cell"] != "rnn" and "generated/torch" in rat:
            out.append(_goal(f"{r['cell']} {r['size']} {r['dtype']}: generated/torch ≤ 1.0",
                             rat["generated/torch"], 1.0))
        if r["size"] == "large" and "generated/floor" in rat:
            out.append(_goal(f"{r['cell']} large {r['dtype']}: generated/floor ≤ 1.15",
                             rat["generated/floor"], 1.15))
        if r["size"] == "small" and "numba/floor" in rat:  # the issue: with the fused backend
            out.append(_goal(f"{r['cell']} small {r['dtype']}: numba/floor ≤ 1.6",
                             rat["numba/floor"], 1.6))
        elif r["size"] == "small" and "generated/floor" in rat:
            out.append(_goal(f"{r['cell']} small {r['dtype']}: generated/floor ≤ 1.6",
                             rat["generated/floor"], 1.6))
        if r["size"] == "small" and "generated/notebook" in rat:
            out.append(_goal(f"{r['cell']} small {r['dtype']}: generated/notebook ≤ 0.5",
                             rat["generated/notebook"], 0.5))
    for m in results["memory"]:
        rss = m.get("rss_peak_delta_mib", {})
        if m.get("size") == "large" and rss.get("generated") is not None and rss.get("torch"):
            out.append(_goal(f"{m['cell']} {m['size']} {m['dtype']}: peak memory generated/torch ≤ 1.0",
                             rss["generated"] / rss["torch"], 1.0))
    if "total_seconds" in results["derivation"]:
        out.append(_goal("derive + generate all built-in cells ≤ 5 s",
                         results["derivation"]["total_seconds"], 5.0))
    return out


def _goal(name: str, value: float, limit: float) -> dict:
    return {"goal": name, "value": round(value, 3), "met": value <= limit}


def print_report(results: dict) -> None:
    """Everything a reader needs, in the order the issue lists it."""
    meta = results["meta"]
    for w in meta["warnings"]:
        print(f"WARNING: {w}")
    blas = meta["openblas"]
    print(f"numpy {meta['numpy']}, OpenBLAS kernel {blas.get('corename', '?')} ({blas.get('threads', '?')} "
          f"threads, via {blas['source']}); torch {meta['torch']} with {meta['torch_threads']} threads")
    peaks = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["peak_gflops"].items())
    print(f"GEMM peak ({results['peak_n']}³ numpy matmul): {peaks}\n")
    print(table(results["runs"]) + "\n")
    if any("numba" in r["median_ms"] for r in results["runs"]):
        print(numba_table(results["runs"]) + "\n")
    print("% peak: the products' flops (forward, data and weight gradients) over the time, relative to "
          "the 2048³ matmul above; cache-resident products can beat that matmul, so values above 100 % "
          "can occur.")
    print("notebook: float64 only (the references allocate float64 buffers). torch for gru: nn.GRU "
          "of the same size (its reset gate acts after the product), other cells the same weights.")
    for r in results["runs"]:
        for key in ("floor_warning",):
            if key in r:
                print(f"{r['cell']} {r['size']} {r['dtype']}: {r[key]}")
    bad = [f"{r['cell']} {r['size']} {r['dtype']} {k}={v:.2g}" for r in results["runs"]
           for k, v in r["checks"].items() if v > (1e-3 if r["dtype"] == "float32" else 1e-8)]
    busy = [f"{r['cell']} {r['size']} {r['dtype']} ({r['cpu_idle_before']:.0%} idle)" for r in results["runs"]
            if r.get("cpu_idle_before") is not None and r["cpu_idle_before"] < 0.9]
    if busy:
        print("WARNING: other processes were using the CPUs before: " + ", ".join(busy))
    redone = sum(r["timing_stats"]["redone"] for r in results["runs"])
    kept = sum(r["timing_stats"]["disturbed_kept"] for r in results["runs"])
    print(f"timed runs redone because other processes used the CPUs: {redone}; disturbed runs kept "
          f"after {results['meta']['timing']['retries']} retries: {kept}")
    print("correctness checks: " + ("all agree" if not bad else "MISMATCH " + "; ".join(bad)))
    if results["memory"]:
        print("\nPeak memory of forward + backward (RSS Δ: a warm run's peak resident memory above the "
              "level before the implementation's first call, so buffers kept between calls and one-time "
              "library state count; a fresh process per case, glibc's mmap threshold at 64 KiB so freed "
              "blocks leave RSS. tracemalloc: peak of NumPy's allocations within a warm call, blind to "
              "torch and to buffers kept from earlier calls):\n")
        print(memory_table(results["memory"]))
    d = results["derivation"]
    if "error" not in d:
        print(f"\nderive + generate every built-in cell: {d['total_seconds']:.2f} s ("
              + ", ".join(f"{k} {v:.2f}" for k, v in d["seconds_per_cell"].items()) + ")")
    s = results["scaling"]
    if "error" not in s:
        rows = ", ".join(f"{r['equations']} eq {r['seconds'] * 1e3:.0f} ms" for r in s["rows"])
        fit = s["fit"]
        print(f"derivation time against equations: {rows}; slope "
              f"{_fmt(fit['slope'] and fit['slope'] * 1e3, '.1f')} ms/equation, R² {_fmt(fit['r2'], '.3f')}")
    if "t_sweep" in results:  # measured only when lstm is among the cells
        print("time per step against T (lstm, float32): " + "; ".join(
            f"T={r['T']}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in r.items() if k != "T")
            for r in results["t_sweep"]["ms_per_step"]))
        print(f"plot: {results['plot']}")
    for prof in results.get("profile", []):
        if "error" not in prof:
            print_profile(prof)
    print("\ngoals:")
    for g in results["goals"]:
        print(f"  [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {g['value']}")


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# --torch-kernel: the generated kernel on torch tensors against nn.LSTM / nn.GRU
# ---------------------------------------------------------------------------------------

#: The cells whose function is exactly one layer of nn.LSTM / nn.GRU (same weights).
TORCH_LAYOUT_CELLS = ("lstm_torch", "gru_torch")


def _synchronized(run: Runner, device: str) -> Runner:
    """``run`` followed by a wait for the device, so that a CUDA run's time is its own."""
    if device != "cuda":
        return run

    def timed() -> None:
        run()
        torch.cuda.synchronize()

    return timed


def torch_kernel_case(p: Problem, device: str) -> tuple[dict[str, Runner], dict[str, float]]:
    """Runners (forward + full-BPTT backward) of the torch-tensor kernel and of nn.LSTM/nn.GRU
    with autograd, same weights, data and upstream on ``device`` (and, on the CPU, the NumPy
    kernel); and the largest differences of h and dx between the kernel and torch's module."""
    tkernel = kernel_module(p.cell, module="torch")

    def on_device(a: np.ndarray) -> object:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    params = {k: on_device(v) for k, v in p.params.items()}
    x, upstream = on_device(p.x), {k: on_device(v) for k, v in p.upstream.items()}
    initial = {k: on_device(v) for k, v in p.initial.items()}
    rec, readout, _ = torch_modules(p)
    rec.to(device)
    h0 = tuple(on_device(p.initial[s].T[None]).requires_grad_(True) for s in p.kernel.STATES)
    case = TorchCase(rec, readout, True, to_torch(p.x).to(device).requires_grad_(True), h0,
                     to_torch(p.upstream["h"]).to(device), None)

    def kernel_run() -> None:
        _, cache = tkernel.forward(params, x, initial)
        tkernel.backward(cache, upstream)

    runners = {"torch_kernel": _synchronized(kernel_run, device), "nn": _synchronized(case.run, device)}
    if device == "cpu":
        runners["numpy_kernel"] = generated_runner(p)
    outputs, cache = tkernel.forward(params, x, initial)
    grads = tkernel.backward(cache, upstream)
    out, _ = case.forward()
    case.loss().backward()
    check = {"h": float((outputs["h"].permute(2, 1, 0) - out.detach()).abs().max()),
             "dx": float((grads["dx"].permute(2, 1, 0) - case.x.grad).abs().max())}
    case.clear()
    return runners, check


def run_torch_kernel(args) -> dict:
    """Time the torch-tensor kernel against nn.LSTM/nn.GRU for the torch-layout cells."""
    if torch is None:
        raise SystemExit("--torch-kernel needs PyTorch")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    set_threads()
    cells = [c for c in (args.cells.split(",") if args.cells else TORCH_LAYOUT_CELLS)
             if c in TORCH_LAYOUT_CELLS]
    runs = []
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            for cell in cells:
                kernel, _ = load_kernel(cell)
                p = make_problem(cell, kernel, SIZES[size], DTYPES[dtype])
                runners, check = torch_kernel_case(p, device)
                samples, _ = time_interleaved(runners, args.timing)
                runs.append({"cell": cell, "size": size, "dtype": dtype, "device": device,
                             "seconds": {k: statistics.median(v) for k, v in samples.items()},
                             "check": check})
    return {"meta": metadata(args), "device": device, "runs": runs}


def torch_kernel_table(results: dict) -> str:
    """Median seconds of forward + backward and the ratios, one line per case."""
    lines = [(f"device {results['device']}; kernel = the generated kernel on torch tensors, "
              "nn = nn.LSTM/nn.GRU with autograd, numpy = the NumPy kernel (CPU runs only)"),
             (f"{'cell':<11} {'size':<7} {'dtype':<8} {'kernel ms':>10} {'nn ms':>9} {'numpy ms':>9} "
              f"{'kernel/nn':>10} {'kernel/numpy':>13} {'max|Δh|':>9} {'max|Δdx|':>9}")]
    for r in results["runs"]:
        s = r["seconds"]
        numpy_s = s.get("numpy_kernel")
        lines.append(f"{r['cell']:<11} {r['size']:<7} {r['dtype']:<8} {1e3 * s['torch_kernel']:>10.2f} "
                     f"{1e3 * s['nn']:>9.2f} {_fmt(numpy_s and 1e3 * numpy_s, '9.2f'):>9} "
                     f"{s['torch_kernel'] / s['nn']:>10.2f} "
                     f"{_fmt(numpy_s and s['torch_kernel'] / numpy_s, '13.2f'):>13} "
                     f"{r['check']['h']:>9.1e} {r['check']['dx']:>9.1e}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (for tests)")
    ap.add_argument("--backend", choices=["numpy", "numba"], default="numpy",
                    help="numba: also time the kernel compiled by Numba, interleaved with the others, "
                         "and print numpy kernel, numba kernel and floor side by side")
    ap.add_argument("--sizes", default="small,medium,large", help="comma-separated: " + ",".join(SIZES))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--cells", default="", help="comma-separated (default: every built-in cell)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per implementation (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", type=Path, default=RESULTS / "bench.json")
    ap.add_argument("--plot", type=Path, default=RESULTS / "time_per_step.png")
    ap.add_argument("--wait-idle", type=float, default=30.0,
                    help="before each case, wait up to this many seconds for other processes to leave "
                         "the CPUs idle (the idle fraction is recorded)")
    ap.add_argument("--wait-budget", type=float, default=600.0,
                    help="total seconds the whole run may spend waiting for idle CPUs")
    ap.add_argument("--pause", type=float, default=0.15, help="seconds of pause before each timed run")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--baseline", type=Path, help="a folder of earlier kernels (<cell>.py) to time "
                    "side by side with the generated ones (column gen/baseline)")
    ap.add_argument("--build", action="store_true",
                    help="build every kernel in memory from the current planner (ignore generated/)")
    ap.add_argument("--torch-kernel", action="store_true",
                    help="only time the generated kernel on torch tensors (forward + backward) against "
                         "nn.LSTM/nn.GRU with autograd, for the torch-layout cells lstm_torch and "
                         "gru_torch, side by side with ratios (and the NumPy kernel on the CPU)")
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    help="--torch-kernel's device (default: cuda when available, else cpu)")
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    ap.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.warmup, args.wait_idle, args.pause = "tiny", 1, 1, 0.0, 0.0
    args.timing = Timing(args.repeat, args.warmup, args.pause, 0 if args.quick else 3, args.wait_idle,
                         Waiter(0.0 if args.quick else args.wait_budget))
    return args


def guarded(what: str, fn: Callable[[], dict]) -> dict:
    """Run one phase; a failure (say, a cell that no longer derives) is reported, not fatal."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - keep the other phases' figures
        print(f"ERROR in {what}: {type(err).__name__}: {err}", flush=True)
        return {"error": f"{type(err).__name__}: {err}"}


def main(argv: list[str] | None = None) -> int:
    global BUILD_IN_MEMORY, BASELINE_DIR, BACKEND_NUMBA
    args = parse_args(argv)
    BUILD_IN_MEMORY = args.build
    BACKEND_NUMBA = args.backend == "numba"
    BASELINE_DIR = args.baseline
    if args.memory_worker:
        memory_worker(args.memory_worker)
        return 0
    if args.torch_worker:
        torch_worker(args.torch_worker)
        return 0
    if args.torch_kernel:
        results = run_torch_kernel(args)
        print(torch_kernel_table(results))
        path = args.json.with_name("bench_torch_kernel.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=str))
        print(f"figures: {path}")
        return 0
    set_threads()
    results: dict = {"meta": metadata(args)}
    for w in results["meta"]["warnings"]:
        print(f"WARNING: {w}", flush=True)
    results["peak_n"] = 256 if args.quick else 2048
    args.timing.waiter.wait(args.timing.wait_idle)
    results["peak_gflops"] = {d: gemm_peak(results["peak_n"], DTYPES[d], args.timing.waiter)
                              for d in args.dtypes.split(",")}
    cells = args.cells.split(",") if args.cells else [p.stem for p in builtin_cells()]
    kernels = {c: load_kernel(c) for c in cells}
    results["kernel_sources"] = {c: src for c, (_, src) in kernels.items()}
    freeze_heap()
    results["runs"] = []
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            for cell in cells:
                print(f"timing {cell} {size} {dtype}", flush=True)
                results["runs"].append(run_case(cell, kernels[cell][0], SIZES[size], DTYPES[dtype], args,
                                                results["peak_gflops"][dtype]))
    mem_size = "tiny" if args.quick else "large"
    jobs = [(c, mem_size, d) for d in args.dtypes.split(",") for c in cells]
    results["memory"] = [] if args.no_memory else run_memory(jobs, one_process=args.quick)
    results["derivation"] = guarded("derivation", time_builtin_derivations)
    results["scaling"] = guarded("scaling", lambda: time_scaling([1, 2] if args.quick else list(range(1, 9)),
                                                                 1 if args.quick else 3))
    if "lstm" in kernels:
        sweep_size, Ts = (SIZES["tiny"], [5, 10]) if args.quick else (SIZES["medium"], [25, 50, 100, 200])
        results["t_sweep"] = time_sweep(kernels["lstm"][0], sweep_size, Ts, args)
        results["plot"] = str(draw_plot(results["t_sweep"], args.plot))
    prof_cell = "lstm" if "lstm" in kernels else cells[0]
    prof_size = SIZES["tiny" if args.quick else "medium"]
    results["profile"] = [guarded("profile", lambda d=d: profile_case(prof_cell, kernels[prof_cell][0], prof_size,
                                                                    DTYPES[d])) for d in args.dtypes.split(",")]
    results["goals"] = goals(results)
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["meta"]["wait_budget_left_s"] = args.timing.waiter.budget
    print()
    print_report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
