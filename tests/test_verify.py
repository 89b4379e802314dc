"""The torch oracle against the generated kernels, and `symbptt verify`'s table."""

from __future__ import annotations

import numpy as np
import pytest

from symbptt import Cell, fdcheck, tanh, torch_oracle, verify
from symbptt.codegen import kernel_module
from symbptt.loader import load

BUILTIN = ("rnn", "gru", "lstm", "lstm_torch", "gru_torch")

needs_torch = pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")


@pytest.fixture(scope="module")
def built():
    """Each built-in cell's kernel, generated in memory once for this module."""
    return {name: kernel_module(name) for name in BUILTIN}


@needs_torch
@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "truncate=2"])
@pytest.mark.parametrize("name", BUILTIN)
def test_torch_oracle_agrees_with_the_kernel(built, name, truncate):
    errors = torch_oracle.compare_with_kernel(built[name], name, m=3, T=5, truncate=truncate)
    assert set(errors) >= {"dx", "dh0"}
    assert max(errors.values()) <= 1e-10, errors


@needs_torch
def test_truncation_changes_the_gradients(built):
    """A sanity check of the oracle's detach: truncate=2 differs from full BPTT."""
    kernel = built["gru"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), m=2, T=5)
    full = torch_oracle.gradients("gru", problem)
    cut = torch_oracle.gradients("gru", problem, truncate=2)
    assert not np.allclose(full["dWz"], cut["dWz"])
    assert np.allclose(full["dWy"], cut["dWy"])  # the readout sees no recurrence
    assert np.allclose(full["dx"][:, :, -1], cut["dx"][:, :, -1])  # the last step: nothing after it


@needs_torch
def test_torch_oracle_agrees_with_finite_differences(built):
    """Independent of the kernel's backward: oracle against central differences."""
    kernel = built["lstm"]
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), m=2, T=3, seed=3)
    numeric = fdcheck.numerical_gradients(kernel, problem, truncate=2)
    oracle = torch_oracle.gradients("lstm", problem, truncate=2)
    for key, value in numeric.items():
        assert fdcheck.relative_error(oracle[key], value) <= 1e-6, key


@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "truncate=2"])
@pytest.mark.parametrize("name", BUILTIN)
def test_derived_equations_evaluated_directly_agree_with_the_kernel(built, name, truncate):
    rows = verify.derivation_rows(built[name], load(name), truncate)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]


@needs_torch
def test_derived_equations_agree_with_torch_on_a_linear_readout():
    """Independent of the code generator: derivation and oracle agree (see the xfail in
    test_random_cells.py for the kernel's bug with this readout)."""
    cell = Cell("linear_readout", "h = tanh(W·x + U·h_prev); y = Wy·h + by")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    h = cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev))
    cell.readout("y", cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y))
    kernel = kernel_module(cell)  # its forward is right; only its backward is in question
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), m=2, T=4)
    for truncate in (None, 2):
        derived = verify.derived_gradients(cell, problem, truncate)
        oracle = torch_oracle.gradients(cell, problem, truncate)
        for key, value in oracle.items():
            assert fdcheck.relative_error(derived[key], value) <= 1e-10, (key, truncate)


def test_verify_rnn_rows_are_all_ok():
    rows = verify.verify("rnn")
    checks = {r.check for r in rows}
    assert {"finite differences (full)", "finite differences (truncate=2)",
            "symbolic proof (T=3)"} <= checks
    if torch_oracle.available():
        assert {"torch autograd (full)", "torch autograd (truncate=2)"} <= checks
    assert {"derived equations (NumPy) (full)", "derived equations (NumPy) (truncate=2)"} <= checks
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert {r.key for r in rows if r.check == "symbolic proof (T=3)"} == {
        "dWhx", "dWhh", "dbh", "dWyh", "dby", "dx", "dh0"}


def test_main_prints_the_table_and_exits_zero(capsys):
    assert verify.main("rnn") == 0
    out = capsys.readouterr().out
    assert "check" in out and "verdict" in out
    assert "symbolic proof (T=3)" in out and "dWhh" in out and "FAIL" not in out


def test_torch_rows_are_skipped_with_a_reason_without_torch(monkeypatch, built):
    monkeypatch.setattr(torch_oracle, "available", lambda: False)
    rows = verify.torch_rows(built["rnn"], "rnn", None)
    assert len(rows) == 1 and rows[0].ok is None and "PyTorch" in rows[0].result
    assert "skipped" in verify.format_table(rows)


def test_a_check_that_raises_becomes_a_failed_row():
    def broken():
        raise KeyError("backward() lacks gradient(s) dWz")

    rows = verify._guarded("finite differences (full)", broken)
    assert len(rows) == 1 and rows[0].ok is False and "KeyError" in rows[0].result


def test_a_wrong_kernel_fails_finite_differences_and_torch(built):
    """A kernel whose backward forgets the carry (truncated BPTT): the table says FAIL."""
    real = built["rnn"]

    class Wrong:
        DIMS, STATES, READOUTS, INPUTS = real.DIMS, real.STATES, real.READOUTS, real.INPUTS
        PARAMETERS = real.PARAMETERS
        init_parameters, rows, forward = real.init_parameters, real.rows, real.forward

        @staticmethod
        def backward(cache, upstream, truncate=None):
            return real.backward(cache, upstream, truncate=1)

    rows = verify.finite_difference_rows(Wrong, None)
    assert any(r.ok is False and r.key == "dWhh" for r in rows)
    if torch_oracle.available():
        rows = verify.torch_rows(Wrong, "rnn", None)
        assert any(r.ok is False for r in rows)


def test_proof_steps_keep_small_cells_at_three():
    assert verify.proof_steps(load("rnn")) == 3
    assert verify.proof_steps(load("lstm")) == 2
