"""The array libraries a kernel is printed for (symbptt/array_module.py): looked up by name,
an unknown one named in the error, CuPy's kernel the NumPy text with its own import, and
each library's spellings as the kernels print them.

These tests came from a mutation run over ``symbptt/array_module.py`` (tools/mutation.py).
"""

from __future__ import annotations

import pytest

from symbptt import ops
from symbptt.array_module import CUPY, MODULES, NUMPY, TORCH, ArrayModule, array_module
from symbptt.codegen import kernel_text
from symbptt.derive import derive
from symbptt.loader import load


def test_modules_by_name():
    assert list(MODULES) == ["numpy", "cupy", "torch"]
    assert array_module("numpy") is NUMPY and array_module("cupy") is CUPY and array_module("torch") is TORCH
    assert array_module(TORCH) is TORCH
    custom = ArrayModule("mine", "import mine", "numpy", "numpy_kernel.py.j2", "my arrays")
    assert array_module(custom) is custom and custom.spellings == {}


@pytest.mark.parametrize("bad", ["jax", "NumPy", None, ["numpy"]])
def test_an_unknown_module_is_named_with_the_known_ones(bad):
    with pytest.raises(ValueError) as err:
        array_module(bad)
    assert str(err.value) == f"unknown array module {bad!r}; choose one of numpy, cupy, torch"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_cupy_kernel_is_the_numpy_text_with_cupy_imported_as_np():
    d = derive(load("gru"))
    numpy_lines = kernel_text(d, "gru.py", "numpy").splitlines()
    cupy_lines = kernel_text(d, "gru.py", "cupy").splitlines()
    assert len(numpy_lines) == len(cupy_lines)
    changed = [(a, b) for a, b in zip(numpy_lines, cupy_lines) if a != b]
    assert ("import numpy as np", "import cupy as np") in changed
    assert all(a == "import numpy as np" or "Regenerate" in a for a, _ in changed), changed
    assert CUPY.spellings is NUMPY.spellings and CUPY.template == NUMPY.template == "numpy_kernel.py.j2"
    assert CUPY.declarations == NUMPY.declarations == "numpy"


def test_spellings_fill_their_patterns():
    assert NUMPY.spell("concat", items="a, b", axis=NUMPY.spell("axis", n=1)) == "np.concatenate((a, b), axis=1)"
    assert TORCH.spell("concat", items="a, b", axis=TORCH.spell("axis", n=1)) == "torch.cat((a, b), dim=1)"
    assert NUMPY.spell("zeros", "(n, m)") == "np.zeros((n, m), dtype)"
    assert TORCH.spell("zeros", "(n, m)") == "torch.zeros((n, m), dtype=dtype, device=device)"
    assert TORCH.spell("empty", "(n, m)") == "torch.empty((n, m), dtype=dtype, device=device)"
    assert NUMPY.spell("empty", "(n, m)") == "np.empty((n, m), dtype)"
    assert NUMPY.spell("zero_matrix", rows="n", cols="m") == "np.zeros((n, m), dtype=dtype)"
    assert TORCH.spell("zero_matrix", rows="n", cols="m") == "torch.zeros((n, m), dtype=dtype, device=device)"
    assert NUMPY.spell("workspace", "g", "(T, n, m)") == '_workspace("g", (T, n, m), dtype, workspace)'
    assert TORCH.spell("workspace", "g", "(T, n, m)") == "torch.empty((T, n, m), dtype=dtype, device=device)"
    assert NUMPY.spell("upstream_context") == "dtype, workspace"
    assert TORCH.spell("upstream_context") == "dtype, device"
    assert NUMPY.spell("transpose", a="g", axes="1, 0, 2") == "g.transpose(1, 0, 2)"
    assert TORCH.spell("transpose", a="g", axes="1, 0, 2") == "g.permute(1, 0, 2)"
    assert NUMPY.spell("sum", a="g", axis=1) == "g.sum(axis=1, keepdims=True)"
    assert TORCH.spell("sum", a="g", axis=1) == "g.sum(dim=1, keepdim=True)"
    assert NUMPY.spell("copy", a="g") == "g.copy()" and TORCH.spell("copy", a="g") == "g.clone()"
    assert NUMPY.spell("matmul", "a", "b") == "np.matmul(a, b)"
    assert TORCH.spell("matmul", "a", "b") == "torch.matmul(a, b)"
    assert NUMPY.spell("matmul_into", a="a", b="b", out="o") == "np.matmul(a, b, out=o)"
    assert TORCH.spell("matmul_into", a="a", b="b", out="o") == "torch.matmul(a, b, out=o)"
    assert NUMPY.spell("multiply_into", a="a", b="b", out="o") == "np.multiply(a, b, out=o)"
    assert TORCH.spell("multiply_into", a="a", b="b", out="o") == "torch.mul(a, b, out=o)"
    assert TORCH.spell("apply_into", fn="f", a="a", out="o") == "f(a, out=o)"
    assert NUMPY.spell("apply_into", fn="f", a="a", out="o") == "f(a, out=o)"


def test_an_operation_is_spelled_by_its_own_declaration():
    assert NUMPY.function_name(ops.Tanh) == "np.tanh"
    assert TORCH.function_name(ops.Tanh) == "torch.tanh"
    assert NUMPY.function_name(ops.Sigmoid) == "sigmoid" and "def sigmoid" in NUMPY.helper(ops.Sigmoid)
    assert NUMPY.helper(ops.Tanh) == ""

    class Bare:
        pass

    assert NUMPY.function_name(Bare) == "" and TORCH.helper(Bare) == ""
    assert NUMPY.import_line == "import numpy as np" and TORCH.import_line == "import torch"
    assert TORCH.template == "torch_kernel.py.j2" and TORCH.declarations == "torch"
    assert [m.name for m in (NUMPY, CUPY, TORCH)] == ["numpy", "cupy", "torch"]
