"""The backward's chunked products and the kernels' workspace control (issue 13).

The weight and input gradients are products over chunks of C steps inside the backward loop;
whatever C, the numbers are those of one product over every step, to rounding. Reused
buffers can be kept in a dict the caller owns, not kept at all, or released.
"""

import gc

import numpy as np
import pytest

from symbptt.codegen import kernel_module
from symbptt.loader import builtin_cells

CELLS = [p.stem for p in builtin_cells()]


@pytest.fixture(scope="module")
def modules():
    return {name: kernel_module(name) for name in CELLS}


def problem(k, m=3, T=7, seed=0):
    rng = np.random.default_rng(seed)
    dims = {d: 4 + i for i, d in enumerate(k.DIMS)}
    params = k.init_parameters(dims, rng)
    rows = k.rows(dims)
    x = rng.standard_normal((rows["x"], m, T))
    up = {o: rng.standard_normal((rows[o], m, T)) for o in k.STATES + k.READOUTS}
    return params, x, up


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("truncate", [None, 3])
def test_every_chunk_size_gives_the_same_gradients(modules, name, truncate):
    k = modules[name]
    params, x, up = problem(k)
    _, cache = k.forward(params, x)
    whole = k.backward(cache, up, truncate=truncate, chunk=7)
    for chunk in (None, 1, 2, 3, 5, 100):
        got = k.backward(cache, up, truncate=truncate, chunk=chunk)
        assert got.keys() == whole.keys()
        for key in whole:
            np.testing.assert_allclose(got[key], whole[key], rtol=1e-12, atol=1e-12, err_msg=f"{key} chunk={chunk}")


@pytest.mark.parametrize("chunk", [0, -1, 1.5])
def test_a_bad_chunk_is_refused(modules, chunk):
    k = modules["lstm"]
    params, x, up = problem(k)
    _, cache = k.forward(params, x)
    with pytest.raises(ValueError, match="chunk"):
        k.backward(cache, up, chunk=chunk)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_workspace_the_caller_owns(modules, name):
    k = modules[name]
    params, x, up = problem(k)
    k.release_workspace()
    mine: dict = {}
    out, cache = k.forward(params, x, workspace=mine)
    grads = k.backward(cache, up, workspace=mine)
    assert mine and not k._workspaces.__dict__, "buffers go to the caller's dict, not the module"
    ref_out, ref_cache = k.forward(params, x, workspace=False)
    ref = k.backward(ref_cache, up, workspace=False)
    assert not k._workspaces.__dict__, "workspace=False keeps nothing"
    for key in ref:
        np.testing.assert_allclose(grads[key], ref[key], rtol=1e-12, atol=1e-12)
    for key in ref_out:
        np.testing.assert_allclose(out[key], ref_out[key], rtol=1e-12, atol=1e-12)


def test_release_workspace_drops_the_kept_buffers(modules):
    k = modules["lstm"]
    params, x, up = problem(k)
    _, cache = k.forward(params, x)
    k.backward(cache, up)
    assert k._workspaces.__dict__
    del cache
    gc.collect()
    k.release_workspace()
    assert not k._workspaces.__dict__


def test_default_chunk_keeps_fewer_steps_than_the_sequence(modules):
    k = modules["lstm"]
    assert k._chunk_steps(None, 100, 128) == 16
    assert k._chunk_steps(None, 50, 16) == 50
    assert k._chunk_steps(4, 50, 16) == 4
