"""The Python API (symbptt/api.py), called in each test: what each call passes on (cell,
source label, array library, backend, module name) and its defaults.

These tests came from ``tools/mutation.py symbptt/api.py --sample 40``.
"""

from __future__ import annotations

import pytest

import symbptt
from symbptt.codegen import kernel_text
from symbptt.derive import derive
from symbptt.loader import DERIVATIONS, load

RNN = DERIVATIONS / "rnn.py"


def test_builtin_names_are_the_stems_of_the_cell_files_sorted():
    names = symbptt.builtin_names()
    assert names == sorted(p.stem for p in DERIVATIONS.glob("*.py") if not p.name.startswith("_"))
    assert {"rnn", "gru", "lstm"} <= set(names)


def test_load_cell_loads_a_name_or_a_path_and_returns_a_cell_as_it_is():
    cell = symbptt.load_cell("rnn")
    assert cell.name == "rnn" and symbptt.load_cell(RNN).name == "rnn"
    assert symbptt.load_cell(cell) is cell


def test_kernel_source_of_a_cell_is_numpys_plain_kernel_without_a_file():
    cell = load(RNN)
    assert symbptt.kernel_source(cell) == kernel_text(derive(cell), "", "numpy", "numpy")
    torch_text = symbptt.kernel_source(cell, "torch")
    assert torch_text == kernel_text(derive(cell), "", "torch", "numpy") and "import torch" in torch_text
    numba_text = symbptt.kernel_source(cell, backend="numba")
    assert numba_text == kernel_text(derive(cell), "", "numpy", "numba") != kernel_text(derive(cell), "")


def test_kernel_source_of_a_name_names_its_file():
    text = symbptt.kernel_source("rnn")
    assert text == kernel_text(derive(load(RNN)), "derivations/rnn.py", "numpy", "numpy")
    assert symbptt.kernel_source(str(RNN), "torch") == kernel_text(derive(load(RNN)), "derivations/rnn.py", "torch")
    assert symbptt.kernel_source("rnn", backend="numba") == kernel_text(derive(load(RNN)), "derivations/rnn.py",
                                                                       "numpy", "numba")


def test_load_kernel_passes_name_library_and_backend_on():
    kernel = symbptt.load_kernel("rnn")
    assert kernel.__name__ == "symbptt_kernel_rnn" and kernel.__file__ == "<generated kernel of rnn>"
    assert symbptt.load_kernel(load(RNN), "mine").__name__ == "mine"
    assert symbptt.load_kernel("rnn", backend="numba").__name__ == "symbptt_kernel_rnn_numba"
    pytest.importorskip("torch")
    assert symbptt.load_kernel("rnn", module="torch").__name__ == "symbptt_kernel_rnn_torch"


def test_adjoint_names_are_the_steps_then_the_parameters():
    derivation = derive(load(RNN))
    names = symbptt.adjoint_names("rnn")
    assert names == [a.symbol.name for a in derivation.backward] + [a.symbol.name for a in derivation.parameters]
    assert symbptt.adjoint_names(load(RNN)) == names and names[-1].startswith("d") and "dh_prev" in names
