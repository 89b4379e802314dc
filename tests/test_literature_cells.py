"""The two cells from the literature in ``derivations/``: IndRNN and the peephole LSTM.

Their generated kernels (the generic interface: ``forward(parameters, x, initial_states)``
and ``backward(cache, upstream, truncate)``) against references written by hand in plain
NumPy (``tests/reference/*_handwritten.py``, which import nothing of symbptt), against
central differences (full and truncated BPTT) and against the torch oracle. The peephole
LSTM declares ``h`` before ``c`` although ``c`` is updated first; a copy of its file with the
two declarations swapped must give the same kernel results.
"""

from __future__ import annotations

import numpy as np
import pytest

from symbptt import fdcheck, torch_oracle
from symbptt.codegen import kernel_module
from symbptt.loader import DERIVATIONS, load
from tests.reference import indrnn_handwritten, lstm_peephole_handwritten

REFERENCES = {"indrnn": indrnn_handwritten, "lstm_peephole": lstm_peephole_handwritten}
SHAPES = [(1, 1), (1, 5), (4, 1), (3, 6)]  # (m, T)
N_X, N_H, N_Y = 3, 5, 2  # all different, so a transposed gradient cannot pass

needs_torch = pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")


@pytest.fixture(scope="module")
def built() -> dict:
    """Each cell's kernel, generated in memory from its file in derivations/."""
    return {name: kernel_module(name) for name in REFERENCES}


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-12)


def run_reference(name, params, x, initial):
    if name == "indrnn":
        return indrnn_handwritten.forward(x, initial["h"], params)
    return lstm_peephole_handwritten.forward(x, initial["h"], initial["c"], params)


def compare_with_reference(kernel, name, m, T, seed=0) -> None:
    """Outputs and every gradient of ``kernel`` against the hand-written reference."""
    rng = np.random.default_rng(seed)
    params = REFERENCES[name].init_parameters(N_X, N_H, N_Y, rng)
    x = rng.standard_normal((N_X, m, T))
    initial = {s: 0.5 * rng.standard_normal((N_H, m)) for s in kernel.STATES}
    expected, caches = run_reference(name, params, x, initial)
    outputs, cache = kernel.forward(params, x, initial)
    assert set(outputs) == set(expected)
    for key, value in expected.items():
        assert rel(outputs[key], value) <= 1e-10, key
    upstream = {k: rng.standard_normal(v.shape) for k, v in expected.items()}
    ref_grads = REFERENCES[name].backward(upstream, caches)
    grads = kernel.backward(cache, upstream)
    assert set(grads) == set(ref_grads)
    for key, value in ref_grads.items():
        assert rel(grads[key], value) <= 1e-10, key


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("m,T", SHAPES)
def test_kernel_matches_the_handwritten_reference(built, name, m, T):
    compare_with_reference(built[name], name, m, T)


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "truncate=2"])
@pytest.mark.parametrize("name", REFERENCES)
def test_kernel_matches_finite_differences(built, name, truncate):
    errors = fdcheck.check(built[name], m=3, T=4, truncate=truncate)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-6, (worst, errors[worst])


@needs_torch
@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "truncate=2"])
@pytest.mark.parametrize("name", REFERENCES)
def test_kernel_matches_the_torch_oracle(built, name, truncate):
    errors = torch_oracle.compare_with_kernel(built[name], name, m=3, T=4, truncate=truncate)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-10, (worst, errors[worst])


def test_peephole_lstm_declares_h_first_and_uses_vectors():
    cell = load("lstm_peephole")
    assert cell.states == ["h", "c"]
    assert [e.name for e in cell.equations if e.kind == "update"] == ["c", "h"]
    assert {p.name for p in cell.parameters if p.role == "vector"} == {"p_i", "p_f", "p_o"}
    assert {p.name for p in load("indrnn").parameters if p.role == "vector"} == {"u"}


def test_peephole_lstm_with_c_declared_first_gives_the_same_results(tmp_path):
    source = (DERIVATIONS / "lstm_peephole.py").read_text()
    h_line = 'h_prev = cell.state("h", n_h, "hidden state")\n'
    c_line = 'c_prev = cell.state("c", n_h, "cell state")\n'
    assert h_line + c_line in source
    path = tmp_path / "lstm_peephole_c_first.py"
    path.write_text(source.replace(h_line + c_line, c_line + h_line))
    assert load(path).states == ["c", "h"]
    kernel = kernel_module(path)
    for m, T in SHAPES:
        compare_with_reference(kernel, "lstm_peephole", m, T)


def test_indrnn_gradient_through_time_is_diagonal(built):
    """dh0 of unit k depends only on unit k's upstream: no matrix mixes the units in time."""
    kernel = built["indrnn"]
    rng = np.random.default_rng(3)
    params = kernel.init_parameters({"n_x": N_X, "n_h": N_H, "n_y": N_Y}, rng)
    params["b"][:] = 10.0  # every relu on, so the only zeros are the ones the structure makes
    x, h0 = rng.standard_normal((N_X, 2, 4)), rng.standard_normal((N_H, 2))
    outputs, cache = kernel.forward(params, x, {"h": h0})
    upstream = {"h": np.zeros_like(outputs["h"]), "y": np.zeros_like(outputs["y"])}
    upstream["h"][1, :, -1] = 1.0  # only unit 1 at the last step
    dh0 = kernel.backward(cache, upstream)["dh0"]
    assert np.all(dh0[[0, 2, 3, 4]] == 0)
    np.testing.assert_allclose(dh0[1], np.full(2, params["u"][1, 0] ** 4), rtol=1e-12)


def test_report_holds_the_forget_gate_open_through_its_bias_not_its_peephole():
    """A peephole vector multiplies c_prev: shifting it would not hold the gate open."""
    from symbptt import derive
    from symbptt.report import keep_gates

    gates = keep_gates(derive(load("lstm_peephole")))
    assert gates == [{"state": "c", "gate": "f", "biases": ["bf"]}]
