"""The benchmark's line profile must time the kernel as it runs in a loop: with its reused
buffers, not fresh pages whose faults would land on the lines that first write each step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_for_profile_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_profiled_run_reuses_the_buffers_of_the_runs_before_it():
    bench = load()
    kernel, _ = bench.load_kernel("lstm")
    kernel.release_workspace()
    prof = bench.profile_case("lstm", kernel, bench.SIZES["tiny"], np.float64)
    kept = kernel._workspaces.__dict__
    # one call's worth of every buffer: no run found its buffer still referred to
    assert kept and all(len(buffers) == 1 for buffers in kept.values()), {k: len(v) for k, v in kept.items()}
    kernel.release_workspace()
    shares = [row["share"] for row in prof["lines"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert prof["forward_ms"] > 0 and prof["backward_ms"] > 0


def test_a_profile_that_held_the_outputs_would_be_seen():
    """The check above can fail: a caller that keeps one call's outputs makes the next call
    take a second buffer."""
    bench = load()
    kernel, _ = bench.load_kernel("lstm")
    kernel.release_workspace()
    p = bench.make_problem("lstm", kernel, bench.SIZES["tiny"], np.float64)
    outputs, cache = kernel.forward(p.params, p.x, p.initial)
    del cache
    kernel.forward(p.params, p.x, p.initial)
    assert len(kernel._workspaces.__dict__["h_seq"]) == 2
    del outputs
    kernel.release_workspace()
