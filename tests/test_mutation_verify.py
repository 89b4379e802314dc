"""``symbptt verify``'s rows and table (symbptt/verify.py): the proof's number of steps, the
rows of a check that raised, of a cell too large for the exact proof, of each operation's
derivative rule, of the proof itself (run here, not in a child, so a mutant of it is seen),
and the printed table read back into its rows.

These tests came from ``tools/mutation.py symbptt/verify.py --sample 40``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symbptt import verify
from symbptt.loader import load
from symbptt.verify import Row


@pytest.mark.parametrize(("name", "steps"), [("rnn", 3), ("indrnn", 3), ("mgu", 2), ("gru_torch", 2), ("lstm", 2)])
def test_the_proof_runs_three_steps_only_for_cells_with_at_most_two_nonlinear_operations(name, steps):
    assert verify.proof_steps(load(name)) == steps


@pytest.mark.parametrize(("truncate", "check"), [(None, "finite differences (full)"),
                                                 (2, "finite differences (truncate=2)")])
def test_a_check_that_raises_is_a_failed_row_naming_it(truncate, check):
    [row] = verify.finite_difference_rows(object(), truncate)  # not a kernel: fdcheck raises
    assert (row.check, row.key, row.ok) == (check, "-", False)
    assert row.result.startswith("raised AttributeError: ")


EXPECTED_OPERATIONS = [
    Row("derivative rule (symbolic)", "softmax",
        "skipped: not elementwise (no scalar definition); checked by the differences above", None),
    Row("derivative rule (symbolic)", "tanh", "d/du of its definition", True),
]


def test_each_operation_is_one_row():
    assert verify.operation_rows(load("rnn")) == EXPECTED_OPERATIONS


def test_a_cell_too_large_for_the_proof_is_a_skipped_row(monkeypatch):
    monkeypatch.setattr(verify, "PROOF_MAX_EQUATIONS", 2)
    rows = verify.proof_rows(load("rnn"))
    assert rows[0].check == "symbolic proof" and rows[0].key == "-" and rows[0].ok is None
    assert rows[0].result.startswith("skipped: the cell has 4 equations and 5 parameters")
    assert rows[1:] == EXPECTED_OPERATIONS


def test_the_proof_rows_say_proved_for_every_key():
    rows = verify._prove(load("rnn"), 1, "symbolic proof (T=1)")
    assert {r.key for r in rows} == {"dWhx", "dWhh", "dbh", "dWyh", "dby", "dx", "dh0"}
    assert all(r.ok is True and re.fullmatch(r"exact, \d+ entries", r.result) for r in rows)


def test_the_table_reads_back_as_its_rows():
    rows = [Row("finite differences (full)", "dW", "1.2e-09", True),
            Row("torch autograd (full)", "-", "skipped: PyTorch cannot be imported", None),
            Row("symbolic proof (T=2)", "dbias_long_name", "differs at entry (0, 1)", False)]
    lines = verify.format_table(rows).split("\n")
    assert len(lines) == len(rows) + 2 and set(lines[1]) == {"-", " "}
    verdict = {True: "ok", False: "FAIL", None: "skipped"}
    read = [tuple(re.split(r"\s{2,}", line)) for line in lines[2:]]
    assert read == [(r.check, r.key, r.result, verdict[r.ok]) for r in rows]
    assert re.split(r"\s{2,}", lines[0]) == ["check", "key", "result", "verdict"]
    starts = {line.index(r.key) for line, r in zip(lines[2:], rows)}
    assert len(starts) == 1  # the key column is aligned


@pytest.mark.parametrize(("truncate", "check"), [(None, "derived equations (NumPy) (full)"),
                                                 (2, "derived equations (NumPy) (truncate=2)")])
def test_a_derivation_check_that_raises_is_a_failed_row_naming_it(truncate, check):
    [row] = verify.derivation_rows(object(), load("rnn"), truncate)  # not a kernel
    assert (row.check, row.key, row.ok) == (check, "-", False)
    assert row.result.startswith("raised AttributeError: ")


def test_missing_initial_states_are_zero_in_the_derived_gradients():
    """derived_gradients gives a state without an initial value zeros of its own shape, as the
    kernel does when forward gets no initial state."""
    import numpy as np

    from symbptt import fdcheck, load_kernel

    kernel = load_kernel("lstm")
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel), 2, 3, seed=2)
    problem = fdcheck.Problem(problem.parameters, problem.x, {}, problem.upstream)
    _, cache = kernel.forward(problem.parameters, problem.x, {})
    expected = kernel.backward(cache, problem.upstream)
    got = verify.derived_gradients(load("lstm"), problem)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert np.allclose(got[key], value), key


def test_the_proof_in_a_child_has_no_memory_limit():
    """The parent may have mapped more than the limited children's 2 GiB (PyTorch reserves
    gigabytes it never touches): the proof's child must still allocate."""
    import numpy as np

    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc to read the process's address space")
    mapped = int(re.search(r"VmSize:\s+(\d+) kB", status.read_text())[1]) * 1024
    # address space only, never touched: enough to take the process past 2.25 GiB mapped
    reserved = np.empty(max(0, 2**31 + 2**28 - mapped), dtype=np.uint8)
    rows = verify._in_child(lambda: [Row("work", "-", str(np.ones(10**6).sum()), True)], 60)
    assert rows == [Row("work", "-", "1000000.0", True)]
    del reserved


def test_main_prints_the_table_and_counts_what_failed(monkeypatch, capsys):
    rows = [Row("finite differences (full)", "dWhh", "1e-9", True),
            Row("symbolic proof", "-", "skipped: --skip-proof", None),
            Row("torch autograd (full)", "dx", "0.3", False)]
    monkeypatch.setattr(verify, "verify", lambda *args, **kwargs: rows)
    assert verify.main("rnn") == 1
    out = capsys.readouterr().out
    assert verify.format_table(rows) in out
    assert re.search(r"\nrnn: 2 of 3 rows ok or skipped, 1 failed \(\d+\.\d s\)\n$", out)
    monkeypatch.setattr(verify, "verify", lambda *args, **kwargs: rows[:2])
    assert verify.main(load("gru")) == 0
    assert re.search(r"\ngru: 2 of 2 rows ok or skipped, 0 failed", capsys.readouterr().out)


def test_without_the_proof_the_rows_say_it_was_skipped(monkeypatch):
    for check in ("finite_difference_rows", "torch_rows", "derivation_rows"):
        monkeypatch.setattr(verify, check, lambda *args, **kwargs: [])
    rows = verify.verify("rnn", prove=False)
    assert rows[0] == Row("symbolic proof", "-", "skipped: --skip-proof", None)
    assert rows[1:] == verify.operation_rows(load("rnn"))


def test_a_proof_that_does_not_finish_in_time_is_a_skipped_row_naming_it(monkeypatch):
    monkeypatch.setattr(verify, "_in_child", lambda work, timeout: None)  # as a child past its time
    rows = verify.proof_rows(load("rnn"), T=2, timeout=7.5)
    assert rows[0] == Row("symbolic proof (T=2)", "-", "skipped: not finished within 7.5 s (see --proof-timeout)",
                          None)
    assert rows[1:] == verify.operation_rows(load("rnn"))


def test_a_proof_child_that_fails_says_how():
    with pytest.raises(RuntimeError, match=r"^the proof's process: failed: ZeroDivisionError: division by zero$"):
        verify._in_child(lambda: 1 / 0, 30)


def test_the_truncated_torch_rows_compare_the_truncated_backward(monkeypatch):
    """A kernel whose backward ignores truncate passes the full rows and fails the truncated
    ones: the torch oracle is asked for the same truncation as the kernel."""
    pytest.importorskip("torch")
    import types

    from symbptt import load_kernel

    kernel = load_kernel("rnn")
    ignoring = types.SimpleNamespace(**{k: getattr(kernel, k) for k in dir(kernel) if not k.startswith("__")})
    ignoring.backward = lambda cache, upstream, truncate=None, **kw: kernel.backward(cache, upstream, **kw)
    assert all(r.ok for r in verify.torch_rows(ignoring, load("rnn"), None))
    assert not all(r.ok for r in verify.torch_rows(ignoring, load("rnn"), 2))
    assert all(r.ok for r in verify.torch_rows(kernel, load("rnn"), 2))
