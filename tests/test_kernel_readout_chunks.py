"""The readouts run C steps at a time, and no whole sequence is copied (issue 13).

The forward's readouts are computed a chunk of C steps after another (C from the batch size:
about 2048 columns), reading each state's steps one chunk at a time; the gradients that the
stacked products do not give (readout weights, per-unit vectors, peepholes) are sums over
the backward's chunks. With m = 64 a chunk is 32 steps, so T = 70 runs three chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

from symbptt.codegen import kernel_module
from symbptt.loader import builtin_cells

CELLS = [p.stem for p in builtin_cells()]
M, T, SPLIT = 64, 70, 37  # 70 = 32 + 32 + 6 steps; 37 = 32 + 5 and 33 = 32 + 1


def _problem(kernel, seed=0):
    rng = np.random.default_rng(seed)
    dims = {d: 2 + i for i, d in enumerate(kernel.DIMS)}
    p = kernel.init_parameters(dims, rng)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows["x"], M, T))
    h0 = {s: rng.standard_normal((rows[s], M)) for s in kernel.STATES}
    up = {k: rng.standard_normal((rows[k], M, T)) for k in kernel.STATES + kernel.READOUTS}
    return p, x, h0, up


def _assert_same_as_two_calls(k) -> None:
    """Outputs of T steps (three chunks) equal those of the first SPLIT steps, then the rest
    run from the states they end in (other chunk bounds)."""
    p, x, h0, _ = _problem(k)
    whole, _ = k.forward(p, x, h0)
    first, _ = k.forward(p, x[:, :, :SPLIT], h0)
    rest, _ = k.forward(p, x[:, :, SPLIT:], {s: first[s][:, :, -1] for s in k.STATES})
    for name in whole:
        joined = np.concatenate([first[name], rest[name]], axis=2)
        np.testing.assert_allclose(whole[name], joined, rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_readouts_of_several_chunks_are_those_of_the_steps_run_in_two_calls(cell):
    """A readout depends on its own step only: running the first SPLIT steps, then the rest
    from the states they end in, gives the same outputs, whatever the chunks' bounds."""
    k = kernel_module(cell)
    assert k._chunk_steps(None, T, M) == 32
    _assert_same_as_two_calls(k)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_summed_over_chunks_match_one_chunk(cell):
    """Every gradient, the readouts' and per-unit vectors' included, is the same with the
    default three chunks as with one chunk of every step."""
    k = kernel_module(cell)
    p, x, h0, up = _problem(k)
    _, cache = k.forward(p, x, h0)
    one = k.backward(cache, up, chunk=T)
    for chunk in (None, 1, 9):
        got = k.backward(cache, up, chunk=chunk)
        for key in one:
            np.testing.assert_allclose(got[key], one[key], rtol=1e-11, atol=1e-11, err_msg=f"{key} chunk={chunk}")


def _owned(a: np.ndarray) -> np.ndarray:
    while a.base is not None:
        a = a.base
    return a


@pytest.mark.parametrize("cell", CELLS)
def test_the_cache_holds_each_state_sequence_once(cell):
    """No array of the cache is a second copy of a state's sequence (the (rows, (T + 1)·m)
    matrix the readouts and weight gradients once read)."""
    k = kernel_module(cell)
    p, x, h0, _ = _problem(k)
    _, cache = k.forward(p, x, h0)
    arrays = [v for v in cache.values() if isinstance(v, np.ndarray)]
    for s in k.STATES:
        seq = cache[f"{s}_seq"]
        rows_first = np.ascontiguousarray(seq.transpose(1, 0, 2)).reshape(seq.shape[1], -1)
        for a in arrays:
            if _owned(a) is _owned(seq) or a.size < rows_first[:, M:].size:
                continue
            for copy in (rows_first, rows_first[:, M:], rows_first[:, :-M]):
                assert not (a.size == copy.size and np.array_equal(a.ravel(), copy.ravel())), s


def test_the_readouts_upstream_is_not_kept_for_the_loop():
    """rnn's backward frees its (n_y, T·m) copy of the readout's upstream once the readout's
    backward has read it, so the loop, which fills dx (as large here), holds two such
    arrays (the readout's adjoint and dx), not three."""
    import tracemalloc

    k = kernel_module("rnn")
    rng = np.random.default_rng(1)
    p = k.init_parameters({"n_x": 200, "n_h": 4, "n_y": 200}, rng)
    _, cache = k.forward(p, rng.standard_normal((200, M, T)), workspace=False)
    up = {"y": rng.standard_normal((200, M, T))}
    block = 200 * M * T * 8  # one (200, T·m) float64 array
    tracemalloc.start()
    k.backward(cache, up, workspace=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2.5 * block, peak / block  # with the copy kept through the loop: 3.03


def _readouts_read_everything():
    """A readout of h, h_prev, x, a gate kept in the stacked rows and c_prev."""
    from symbptt import Cell, odot, sigmoid, softmax, stack, tanh
    cell = Cell("odd_readouts", "readouts read h, h_prev, x, a gate and c_prev")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev, c_prev = cell.input("x", n_x), cell.state("h", n_h), cell.state("c", n_h)
    g = cell.let("g", sigmoid(cell.weight("Wg", n_h, n_h + n_x) @ stack(h_prev, x) + cell.bias("bg", n_h)))
    c = cell.update("c", odot(g, c_prev) + tanh(cell.weight("Wc", n_h, n_x) @ x))
    h = cell.update("h", tanh(c) + odot(g, h_prev))
    cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h + cell.weight("Uy", n_y, n_h) @ h_prev
                              + cell.weight("Vy", n_y, n_x) @ x + cell.weight("Gy", n_y, n_h) @ g
                              + cell.weight("Cy", n_y, n_h) @ c_prev))
    return cell


@pytest.mark.parametrize("truncate", [None, 3])
def test_readouts_of_every_kind_of_value_over_several_chunks_match_finite_differences(truncate):
    """Each kind of value a chunk copies or views (a state read as s and as s_prev, a previous
    state alone, an input, a gate's rows), over two chunks (m = 64, T = 40)."""
    from symbptt import fdcheck
    kernel = kernel_module(_readouts_read_everything())
    assert kernel._chunk_steps(None, 40, 64) == 32
    errors = fdcheck.check(kernel, m=64, T=40, truncate=truncate, seed=1)
    assert max(errors.values()) < 1e-6, errors


def _readout_of_a_kept_value():
    """y = log(1 + exp(Wy·h + by)): the readout reads the named 1 + exp(…), which the backward reads
    too (log′(u) = 1 ⊘ u), so it is kept for every step, a chunk's columns at a time."""
    from symbptt import Cell, exp, log, stack, tanh
    cell = Cell("log_readout", "a readout whose pre-activation the backward reads")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    h = cell.update("h", tanh(cell.weight("W", n_h, n_h + n_x) @ stack(h_prev, x) + cell.bias("b", n_h)))
    cell.readout("y", log(1 + exp(cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y))))
    return cell


def _product_readout():
    """A readout whose backward reads loop values: y = h ⊙ h_prev (dh += dy ⊙ h_prev)."""
    from symbptt import Cell, odot, stack, tanh
    cell = Cell("product_readout", "a readout that multiplies h by h_prev")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    h = cell.update("h", tanh(cell.weight("W", n_h, n_h + n_x) @ stack(h_prev, x) + cell.bias("b", n_h)))
    cell.readout("y", odot(h, h_prev))
    return cell


def _product_of_gate_and_input_readout():
    """h = g ⊙ tanh(…), y = h ⊙ g ⊙ x: the readout's backward reads the gate (a loop value)
    and the input (as wide as the state) over every step."""
    from symbptt import Cell, odot, sigmoid, stack, tanh
    cell = Cell("gate_input_readout", "a readout that multiplies h by a gate and the input")
    n_h, = cell.dims("n_h")
    x, h_prev = cell.input("x", n_h), cell.state("h", n_h)
    g = cell.let("g", sigmoid(cell.weight("Wg", n_h, 2 * n_h) @ stack(h_prev, x) + cell.bias("bg", n_h)))
    h = cell.update("h", odot(g, tanh(cell.weight("W", n_h, 2 * n_h) @ stack(h_prev, x) + cell.bias("b", n_h))))
    cell.readout("y", odot(odot(h, g), x))
    return cell


@pytest.mark.parametrize("make", [_readout_of_a_kept_value, _product_readout,
                                  _product_of_gate_and_input_readout])
def test_readouts_reading_readouts_or_loop_values_over_chunks(make):
    """Outputs over two chunks against the steps run in two calls; gradients against finite
    differences (one chunk and two)."""
    from symbptt import fdcheck
    k = kernel_module(make())
    _assert_same_as_two_calls(k)
    for m, T in ((2, 5), (64, 40)):
        errors = fdcheck.check(k, m=m, T=T, seed=1)
        assert max(errors.values()) < 1e-6, (m, T, errors)
