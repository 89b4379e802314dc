"""Kernels at the edges a careless caller reaches: a sequence of no steps, and weights in one
precision with an input in another. Both backends, every built-in cell.

Each case once failed: with T = 0 the backward of indrnn and lstm_peephole (cells whose
weight gradients read every step's adjoints at once) read a chunk the loop never made, and
the compiled backend's chunk loop stepped by 0; float32 weights with a float64 input reached
the compiled products in two precisions, which Numba refuses.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from symbptt.codegen import kernel_module
from symbptt.loader import builtin_cells

BUILTIN = [p.stem for p in builtin_cells()]
BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba is not installed"))]


def _problem(kernel, T: int, m: int = 3, weights=np.float64, inputs=np.float64, seed: int = 0):
    rng = np.random.default_rng(seed)
    dims = {d: 3 + i for i, d in enumerate(kernel.DIMS)}
    p = kernel.init_parameters(dims, rng, weights)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows["x"], m, T)).astype(inputs)
    h0 = {s: rng.standard_normal((rows[s], m)).astype(inputs) for s in kernel.STATES}
    up = {k: rng.standard_normal((rows[k], m, T)).astype(inputs)
          for k in kernel.STATES + kernel.READOUTS}
    return p, x, h0, up, rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", BUILTIN)
def test_no_steps_gives_empty_outputs_and_zero_gradients(cell, backend):
    kernel = kernel_module(cell, backend=backend)
    p, x, h0, up, rows = _problem(kernel, T=0)
    outputs, cache = kernel.forward(p, x, h0)
    assert {k: v.shape for k, v in outputs.items()} == {
        k: (rows[k], 3, 0) for k in kernel.STATES + kernel.READOUTS}
    for upstream in (up, {}):
        g = kernel.backward(cache, upstream)
        assert g["dx"].shape == x.shape
        for name, value in p.items():  # the gradient of an empty sum
            assert g["d" + name].shape == value.shape and not g["d" + name].any(), name
        for s in kernel.STATES:  # nothing reads the initial state: its gradient is zero
            assert g[f"d{s}0"].shape == h0[s].shape and not g[f"d{s}0"].any(), s


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", BUILTIN)
def test_float32_weights_with_a_float64_input_compute_in_float64(cell, backend):
    kernel = kernel_module(cell, backend=backend)
    p32, x, h0, up, _ = _problem(kernel, T=5, weights=np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    mixed, cache_mixed = kernel.forward(p32, x, h0)
    wide, cache_wide = kernel.forward(p64, x, h0)
    for k in wide:  # the same float64 run as with the weights widened first, bit for bit
        assert mixed[k].dtype == np.float64
        np.testing.assert_array_equal(mixed[k], wide[k], err_msg=k)
    g_mixed, g_wide = kernel.backward(cache_mixed, up), kernel.backward(cache_wide, up)
    for k in g_wide:
        assert g_mixed[k].dtype == np.float64
        np.testing.assert_array_equal(g_mixed[k], g_wide[k], err_msg=k)
