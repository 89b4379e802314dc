"""A kernel refuses, with one clear message each, the arguments it cannot compute with.

Each case was once accepted silently or failed deep inside NumPy: a 1-D initial state
broadcast along the wrong axis, a complex entry turning the run complex, ``truncate=True``
read as 1, a string entry failing with "data type 'model-1' not understood".
"""

from __future__ import annotations

import numpy as np
import pytest

from symbptt.codegen import kernel_module

SIZES = {"n_x": 3, "n_h": 4, "n_y": 2}
M, T = 5, 6


@pytest.fixture(scope="module", params=["gru", "lstm_torch"])
def setup(request):
    kernel = kernel_module(request.param)
    rng = np.random.default_rng(0)
    p = kernel.init_parameters(SIZES, rng)
    x = rng.standard_normal((3, M, T))
    _, cache = kernel.forward(p, x)
    up = {"h": rng.standard_normal((4, M, T))}
    return kernel, p, x, cache, up


def _refused(error, match, call):
    with pytest.raises(error, match=match):
        call()


def test_parameters_must_be_exactly_the_cells_real_arrays(setup):
    k, p, x, _, _ = setup
    first = next(iter(p))
    _refused(KeyError, "unknown key.*model", lambda: k.forward({**p, "model": "model-1"}, x))
    _refused(KeyError, "unknown key.*extra", lambda: k.forward({**p, "extra": np.ones((1, 1), complex)}, x))
    _refused(KeyError, f"lack {first}", lambda: k.forward({n: v for n, v in p.items() if n != first}, x))
    _refused(TypeError, f"parameter {first} holds complex", lambda: k.forward({**p, first: p[first] + 0j}, x))
    _refused(TypeError, f"parameter {first} holds dtype <U", lambda: k.forward({**p, first: "W"}, x))
    _refused(ValueError, f"parameter {first} has 1 axes", lambda: k.forward({**p, first: p[first][0]}, x))
    _refused(ValueError, "parameter .* has shape .*expected \\(n_h.*where n_",
             lambda: k.forward({**p, first: p[first][:, :-1]}, x))
    _refused(TypeError, "parameters must be a dict", lambda: k.forward(list(p.values()), x))


def test_input_must_be_a_real_3d_array_with_the_cells_rows(setup):
    k, p, x, _, _ = setup
    _refused(ValueError, "x has 2 axes", lambda: k.forward(p, x[:, :, 0]))
    _refused(TypeError, "x holds complex", lambda: k.forward(p, x + 1j))
    _refused(ValueError, "shape", lambda: k.forward(p, x[:2]))


def test_initial_state_must_be_rows_by_batch(setup):
    k, p, x, _, _ = setup
    # m == n_h would once have broadcast a (n_h,) start along the batch axis.
    x4 = np.zeros((3, 4, T))
    _refused(ValueError, r"initial_states\['h'\] has 1 axes", lambda: k.forward(p, x4, {"h": np.ones(4)}))
    _refused(ValueError, r'initial_states\["h"\] has shape \(4, 3\), expected \(n_h, m\) = \(4, 5\)',
             lambda: k.forward(p, x, {"h": np.ones((4, 3))}))
    _refused(KeyError, "unknown state.*q", lambda: k.forward(p, x, {"q": np.ones((4, M))}))


def test_truncate_and_chunk_are_step_counts(setup):
    k, _, _, cache, up = setup
    for bad in (True, 0, -1, 2.0, "2"):
        _refused(ValueError, "truncate must be a positive integer", lambda b=bad: k.backward(cache, up, truncate=b))
        _refused(ValueError, "chunk must be a positive integer", lambda b=bad: k.backward(cache, up, chunk=b))
    a = k.backward(cache, up, truncate=np.int64(2))
    b = k.backward(cache, up, truncate=2)
    assert all(np.array_equal(a[key], b[key]) for key in a)


def test_upstream_is_checked(setup):
    k, _, _, cache, up = setup
    _refused(TypeError, r"upstream\['h'\] holds complex", lambda: k.backward(cache, {"h": up["h"] + 0j}))
    _refused(ValueError, r"upstream\['h'\] has 2 axes", lambda: k.backward(cache, {"h": up["h"][:, :, 0]}))
    _refused(KeyError, "unknown output.*z", lambda: k.backward(cache, {"z": up["h"]}))
    _refused(TypeError, "upstream must be a dict", lambda: k.backward(cache, [up["h"]]))


def test_lists_and_integers_are_converted_to_floating_point(setup):
    k, p, x, _, up = setup
    ref, cache = k.forward(p, x)
    listed, _ = k.forward({n: v.tolist() for n, v in p.items()}, x.tolist())
    assert all(np.array_equal(ref[n], listed[n]) for n in ref)
    ints, _ = k.forward(p, (x > 0).astype(int))
    assert ints["h"].dtype == np.float64
    floats, _ = k.forward(p, (x > 0).astype(float))
    assert np.array_equal(ints["h"], floats["h"])
    g_list = k.backward(cache, {"h": up["h"].tolist()})
    g_ref = k.backward(cache, up)
    assert all(np.array_equal(g_list[n], g_ref[n]) for n in g_ref)


def test_float32_stays_float32(setup):
    k, p, x, _, _ = setup
    p32 = {n: v.astype(np.float32) for n, v in p.items()}
    out, cache = k.forward(p32, x.astype(np.float32))
    assert out["h"].dtype == np.float32
    g = k.backward(cache, {"h": np.ones(out["h"].shape, np.float32)})
    assert all(v.dtype == np.float32 for v in g.values())
