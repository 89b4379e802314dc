"""The code generator's entry points (symbptt/codegen.py) in this process, compiling nothing:
which backend each request resolves to and the words when it cannot, what text each entry
point renders (defaults included), and the name and file name of an imported kernel.

These tests came from ``tools/mutation.py symbptt/codegen.py --sample 40``.
"""

from __future__ import annotations

import importlib.util

import pytest

from symbptt import codegen
from symbptt.array_module import NUMPY, TORCH
from symbptt.codegen import kernel_module, kernel_text, numpy_kernel, resolve_backend, torch_kernel
from symbptt.derive import derive
from symbptt.loader import load, resolve


def test_backends_resolve_to_numpy_or_numba():
    assert resolve_backend("numpy") == "numpy" and resolve_backend("numba") == "numba"
    assert resolve_backend("numpy", "torch") == "numpy" and resolve_backend("auto", TORCH) == "numpy"


def test_auto_is_numba_exactly_where_numba_is_installed(monkeypatch):
    asked = []
    monkeypatch.setattr(codegen.importlib.util, "find_spec", lambda name: asked.append(name) or object())
    assert resolve_backend("auto") == "numba" and resolve_backend("auto", "numpy") == "numba"
    assert asked == ["numba", "numba"]
    monkeypatch.setattr(codegen.importlib.util, "find_spec", lambda name: None)
    assert resolve_backend("auto") == "numpy"


def test_a_backend_that_cannot_be_is_a_value_error_that_says_why():
    with pytest.raises(ValueError) as caught:
        resolve_backend("fortran")
    assert str(caught.value) == "unknown backend 'fortran'; choose one of numpy, numba, auto"
    with pytest.raises(ValueError) as caught:
        resolve_backend("numba", "torch")
    assert str(caught.value) == "the numba backend compiles NumPy kernels; module 'torch' has none"


@pytest.fixture
def rnn():
    return derive(load(resolve("rnn")))


def test_kernel_text_defaults_to_numpys_plain_kernel_of_a_cell_without_a_file(rnn):
    text = kernel_text(rnn)
    assert text == kernel_text(rnn, "", NUMPY, "numpy") == numpy_kernel(rnn)
    assert "Source: a Cell built in Python" in text and "Source: ." not in text
    assert numpy_kernel(rnn, "derivations/rnn.py") == kernel_text(rnn, "derivations/rnn.py", "numpy")
    assert "Source: derivations/rnn.py." in numpy_kernel(rnn, "derivations/rnn.py")


def test_the_numba_backend_is_the_numpy_kernel_with_its_loops_fused(rnn):
    from symbptt.kernels.fused import fused_kernel

    plain = kernel_text(rnn, "derivations/rnn.py")
    fused = kernel_text(rnn, "derivations/rnn.py", NUMPY, "numba")
    assert fused == fused_kernel(plain, rnn) != plain
    if importlib.util.find_spec("numba"):
        assert kernel_text(rnn, "derivations/rnn.py", "numpy", "auto") == fused


def test_torch_kernel_is_the_torch_templates_text(rnn):
    text = torch_kernel(rnn)
    assert text == kernel_text(rnn, "", TORCH) and "import torch" in text and text != kernel_text(rnn)
    assert "Source: a Cell built in Python" in text
    assert torch_kernel(rnn, "derivations/rnn.py") == kernel_text(rnn, "derivations/rnn.py", "torch")
    assert kernel_text(rnn, "", TORCH, "auto") == text  # numba compiles NumPy kernels only
    with pytest.raises(ValueError, match="module 'torch' has none"):
        kernel_text(rnn, "", "torch", "numba")


def test_an_imported_kernel_is_named_after_its_cell_library_and_backend():
    plain = kernel_module("rnn")
    assert (plain.__name__, plain.__file__) == ("symbptt_kernel_rnn", "<generated kernel of rnn>")
    assert kernel_module("rnn", "mine").__name__ == "mine"
    fused = kernel_module("rnn", backend="numba")
    assert (fused.__name__, fused.__file__) == ("symbptt_kernel_rnn_numba", "<generated numba kernel of rnn>")
    assert callable(fused.forward) and "numba" in fused.__doc__ and "numba" not in plain.__doc__
    pytest.importorskip("torch")
    torch = kernel_module(load(resolve("rnn")), module="torch")
    assert (torch.__name__, torch.__file__) == ("symbptt_kernel_rnn_torch", "<generated torch kernel of rnn>")
