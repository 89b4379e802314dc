"""The PyTorch kernel (``templates/torch_kernel.py.j2``): the NumPy kernel's plan printed on
``torch.Tensor``. For every built-in cell and for drawn ones, its outputs and gradients equal
the NumPy kernel's (float64 to 1e-12, float32 loosely) and PyTorch autograd's through the
cell's own equations (``symbptt.torch_oracle``), in full and truncated BPTT with upstream on
every state and readout; dtype and device are kept; bad arguments are named.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings

from symbptt import Cell, fdcheck, odot, sigmoid, softmax, softplus, stack, tanh, torch_oracle
from symbptt.api import builtin_names, kernel_source
from symbptt.codegen import kernel_module

torch = pytest.importorskip("torch")

from tests.test_random_cells import DETERMINISTIC, literature_cells, random_cells

#: float64: the same operations as NumPy in nearly the same order (σ differs: torch.sigmoid).
TOLERANCE = 1e-12
#: float32 against the float64 NumPy kernel: single precision over a few steps.
FLOAT32_TOLERANCE = 1e-4
ORACLE_TOLERANCE = 1e-10

CELLS = builtin_names()
_kernels: dict = {}


def kernels(spec):
    """The NumPy and PyTorch kernels of a cell (built once per built-in cell)."""
    key = spec if isinstance(spec, str) else id(spec)
    if key not in _kernels:
        _kernels[key] = (kernel_module(spec), kernel_module(spec, module="torch"))
    return _kernels[key]


def tensors(arrays: dict, dtype=torch.float64, device="cpu") -> dict:
    return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in arrays.items()}


def run_both(numpy_kernel, torch_kernel, problem, truncate=None, chunk=None, dtype=torch.float64,
             device="cpu"):
    """(NumPy's outputs and gradients, the torch kernel's as tensors) for one problem."""
    outputs, cache = numpy_kernel.forward(problem.parameters, problem.x, problem.initial_states)
    grads = numpy_kernel.backward(cache, problem.upstream, truncate=truncate, chunk=chunk)
    t_outputs, t_cache = torch_kernel.forward(
        tensors(problem.parameters, dtype, device), torch.tensor(problem.x, dtype=dtype, device=device),
        tensors(problem.initial_states, dtype, device))
    t_grads = torch_kernel.backward(t_cache, tensors(problem.upstream, dtype, device),
                                    truncate=truncate, chunk=chunk)
    return (outputs, grads), (t_outputs, t_grads)


def worst_error(expected: dict, actual: dict) -> tuple[str, float]:
    assert set(expected) == set(actual), f"keys differ: {sorted(expected)} vs {sorted(actual)}"
    errors = {k: fdcheck.relative_error(expected[k], actual[k].detach().cpu().double().numpy())
              for k in expected}
    worst = max(errors, key=errors.get)
    return worst, errors[worst]


def assert_equal_to_numpy(spec, sizes=None, truncate=None, chunk=None, m=3, T=5, seed=0):
    numpy_kernel, torch_kernel = kernels(spec)
    problem = fdcheck.random_problem(numpy_kernel, fdcheck.dims_for(numpy_kernel, sizes), m, T, seed)
    (outputs, grads), (t_outputs, t_grads) = run_both(numpy_kernel, torch_kernel, problem, truncate, chunk)
    for what, expected, actual in (("output", outputs, t_outputs), ("gradient", grads, t_grads)):
        key, error = worst_error(expected, actual)
        assert error <= TOLERANCE, f"{what} {key}: relative error {error:.2e} (truncate={truncate})"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("truncate", [None, 2], ids=["full", "truncate2"])
def test_builtin_cell_equals_the_numpy_kernel(cell, truncate):
    assert_equal_to_numpy(cell, truncate=truncate)


@pytest.mark.parametrize("cell", CELLS)
def test_builtin_cell_equals_torch_autograd(cell):
    """Against autograd through the cell's own equations (nothing of the derivation)."""
    numpy_kernel, torch_kernel = kernels(cell)
    for truncate in (None, 3):
        problem = fdcheck.random_problem(numpy_kernel, fdcheck.dims_for(numpy_kernel), 2, 5, seed=1)
        expected = torch_oracle.gradients(cell, problem, truncate)
        _, (_, t_grads) = run_both(numpy_kernel, torch_kernel, problem, truncate)
        key, error = worst_error(expected, t_grads)
        assert error <= ORACLE_TOLERANCE, f"{key}: {error:.2e} from autograd (truncate={truncate})"


def test_chunked_products_give_the_same_gradients():
    for chunk in (1, 2, 7):
        assert_equal_to_numpy("lstm", truncate=3, chunk=chunk, T=7)


@pytest.mark.parametrize("cell", ["gru", "lstm_torch", "rnn"])
def test_float32_is_kept_and_close(cell):
    numpy_kernel, torch_kernel = kernels(cell)
    problem = fdcheck.random_problem(numpy_kernel, fdcheck.dims_for(numpy_kernel), 3, 6)
    (outputs, grads), (t_outputs, t_grads) = run_both(numpy_kernel, torch_kernel, problem,
                                                      truncate=None, dtype=torch.float32)
    for expected, actual in ((outputs, t_outputs), (grads, t_grads)):
        assert {v.dtype for v in actual.values()} == {torch.float32}
        key, error = worst_error(expected, actual)
        assert error <= FLOAT32_TOLERANCE, f"{key}: float32 relative error {error:.2e}"


def test_integer_inputs_compute_in_float64():
    _, torch_kernel = kernels("rnn")
    p = torch_kernel.init_parameters({"n_x": 2, "n_h": 3, "n_y": 2}, torch.Generator().manual_seed(0),
                                     torch.float64)
    outputs, _ = torch_kernel.forward(p, torch.ones((2, 1, 3), dtype=torch.int64))
    assert outputs["h"].dtype == torch.float64


def test_init_parameters_dtype_device_generator():
    _, gru = kernels("gru")
    dims = {"n_x": 3, "n_h": 4, "n_y": 5}
    p = gru.init_parameters(dims, torch.Generator().manual_seed(0), torch.float32, "cpu")
    again = gru.init_parameters(dims, torch.Generator().manual_seed(0), torch.float32, "cpu")
    assert set(p) == set(gru.PARAMETERS)
    for k, v in p.items():
        assert v.dtype == torch.float32 and v.device.type == "cpu"
        assert torch.equal(v, again[k]), f"{k}: the same generator seed gave other numbers"
    assert tuple(p["Wz"].shape) == (4, 7) and tuple(p["by"].shape) == (5, 1)
    assert gru.init_parameters(dims)["Wz"].dtype == torch.get_default_dtype()
    with pytest.raises(KeyError, match="n_y"):
        gru.init_parameters({"n_x": 3, "n_h": 4})


def test_outputs_and_gradients_stay_on_the_input_device():
    """Every tensor is on x's device (a CUDA run is in test_cuda_equals_cpu)."""
    _, gru = kernels("gru")
    p = gru.init_parameters({"n_x": 3, "n_h": 4, "n_y": 3}, dtype=torch.float64)
    x = torch.randn((3, 2, 4), dtype=torch.float64)
    outputs, cache = gru.forward(p, x)
    grads = gru.backward(cache, {"h": torch.ones_like(outputs["h"])})
    assert {v.device for v in [*outputs.values(), *grads.values()]} == {x.device}
    assert tuple(outputs["y"].shape) == (3, 2, 4) and tuple(grads["dx"].shape) == (3, 2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    _, lstm = kernels("lstm")
    dims = {"n_x": 5, "n_h": 8, "n_y": 5}
    p = lstm.init_parameters(dims, torch.Generator().manual_seed(0), torch.float64)
    x = torch.randn((5, 4, 9), dtype=torch.float64)
    up = {"h": torch.randn((8, 4, 9), dtype=torch.float64), "y": torch.randn((5, 4, 9), dtype=torch.float64)}
    results = []
    for device in ("cpu", "cuda"):
        outputs, cache = lstm.forward({k: v.to(device) for k, v in p.items()}, x.to(device))
        grads = lstm.backward(cache, {k: v.to(device) for k, v in up.items()}, truncate=4)
        assert {v.device.type for v in [*outputs.values(), *grads.values()]} == {device}
        results.append({k: v.cpu() for k, v in {**outputs, **grads}.items()})
    for k, v in results[0].items():
        assert torch.allclose(v, results[1][k], rtol=1e-10, atol=1e-12), k


def test_cross_entropy_and_its_upstream():
    numpy_kernel, torch_kernel = kernels("gru")
    rng = np.random.default_rng(0)
    y_hat = rng.dirichlet(np.ones(3), size=(2, 4)).transpose(2, 0, 1)  # (3, 2, 4), columns sum to 1
    y = np.eye(3)[:, rng.integers(0, 3, size=(2, 4))]
    loss = torch_kernel.cross_entropy(torch.tensor(y_hat), torch.tensor(y))
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0
    assert float(loss) == pytest.approx(numpy_kernel.cross_entropy(y_hat, y), rel=1e-14)
    up = torch_kernel.cross_entropy_upstream(torch.tensor(y_hat), torch.tensor(y)).numpy()
    np.testing.assert_allclose(up, numpy_kernel.cross_entropy_upstream(y_hat, y), rtol=1e-15)


def test_workspace_arguments_are_accepted_and_release_workspace_exists():
    numpy_kernel, rnn = kernels("rnn")
    problem = fdcheck.random_problem(numpy_kernel, fdcheck.dims_for(numpy_kernel), 2, 3)
    p, x = tensors(problem.parameters), torch.tensor(problem.x)
    first, _ = rnn.forward(p, x, workspace={})
    second, cache = rnn.forward(p, x, workspace=False)
    assert torch.equal(first["h"], second["h"])
    rnn.backward(cache, tensors(problem.upstream), workspace={})
    assert rnn.release_workspace() is None


def test_the_kernel_runs_with_tensors_that_require_grad():
    """forward and backward run under no_grad: parameters of an nn.Module can go straight in."""
    numpy_kernel, rnn = kernels("rnn")
    problem = fdcheck.random_problem(numpy_kernel, fdcheck.dims_for(numpy_kernel), 2, 3)
    p = {k: v.requires_grad_() for k, v in tensors(problem.parameters).items()}
    outputs, cache = rnn.forward(p, torch.tensor(problem.x))
    grads = rnn.backward(cache, tensors(problem.upstream))
    assert not outputs["h"].requires_grad and not grads["dWhh"].requires_grad


# -- argument errors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gru_problem():
    _, gru = kernels("gru")
    p = gru.init_parameters({"n_x": 3, "n_h": 4, "n_y": 3}, torch.Generator().manual_seed(0), torch.float64)
    return gru, p, torch.randn((3, 2, 5), dtype=torch.float64)


def test_an_array_is_refused_with_a_pointer_to_the_numpy_kernel(gru_problem):
    gru, p, x = gru_problem
    with pytest.raises(TypeError, match=r"x is a ndarray, expected a torch\.Tensor"):
        gru.forward(p, x.numpy())
    with pytest.raises(TypeError, match="parameter Wz is a list"):
        gru.forward({**p, "Wz": p["Wz"].tolist()}, x)


@pytest.mark.parametrize("change,error,message", [
    (lambda p, x: (p, x[0]), ValueError, r"x has 2 axes"),
    (lambda p, x: (p, x[:2]), ValueError,  # the GRU reads n_x from x
     r"parameter Wz has shape \(4, 7\), expected \(n_h, n_h \+ n_x\) = \(4, 6\), where n_x = x.shape\[0\]"),
    (lambda p, x: ({**p, "Wz": p["Wz"][:, :5]}, x), ValueError, r"parameter Wz has shape \(4, 5\), expected"),
    (lambda p, x: ({k: v for k, v in p.items() if k != "by"}, x), KeyError, "parameters lack by"),
    (lambda p, x: ({**p, "extra": p["by"]}, x), KeyError, "unknown key"),
    (lambda p, x: (p, x.to(torch.complex128)), TypeError, "complex"),
    (lambda p, x: ({**p, "Wz": p["Wz"].to("meta")}, x), ValueError, "parameter Wz is on meta, x is on cpu"),
], ids=["x 2-D", "x rows", "weight shape", "missing", "unknown", "complex", "device"])
def test_bad_forward_arguments_are_named(gru_problem, change, error, message):
    gru, p, x = gru_problem
    p, x = change(p, x)
    with pytest.raises(error, match=message):
        gru.forward(p, x)


def test_bad_initial_states_are_named(gru_problem):
    gru, p, x = gru_problem
    with pytest.raises(ValueError, match=r'initial_states\["h"\] has shape \(4, 3\)'):
        gru.forward(p, x, {"h": torch.zeros((4, 3), dtype=torch.float64)})
    with pytest.raises(KeyError, match="unknown state"):
        gru.forward(p, x, {"c": torch.zeros((4, 2), dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"initial_states\['h'\] is on meta"):
        gru.forward(p, x, {"h": torch.zeros((4, 2), device="meta")})


@pytest.mark.parametrize("kwargs,error,message", [
    ({"truncate": 0}, ValueError, "truncate must be a positive integer"),
    ({"truncate": True}, ValueError, "truncate must be a positive integer"),
    ({"truncate": 2.0}, ValueError, "truncate must be a positive integer"),
    ({"chunk": 0}, ValueError, "chunk must be a positive integer"),
    ({"upstream": {"q": None}}, KeyError, "unknown output"),
    ({"upstream": {"h": torch.zeros((4, 2, 4), dtype=torch.float64)}}, ValueError, r"expected \(4, 2, 5\)"),
    ({"upstream": {"h": torch.zeros((4, 2, 5), device="meta")}}, ValueError, "upstream\\['h'\\] is on meta"),
    ({"upstream": [1]}, TypeError, "upstream must be a dict"),
], ids=["truncate 0", "truncate True", "truncate 2.0", "chunk 0", "unknown", "shape", "device", "not a dict"])
def test_bad_backward_arguments_are_named(gru_problem, kwargs, error, message):
    gru, p, x = gru_problem
    _, cache = gru.forward(p, x)
    upstream = kwargs.pop("upstream", {"h": torch.zeros((4, 2, 5), dtype=torch.float64)})
    with pytest.raises(error, match=message):
        gru.backward(cache, upstream, **kwargs)


def test_a_numpy_integer_is_a_step_count(gru_problem):
    """truncate and chunk as NumPy integers (from a config array, a range) count steps, as
    in the NumPy kernel, and give the numbers of the same Python ints."""
    gru, p, x = gru_problem
    _, cache = gru.forward(p, x)
    up = {"h": torch.ones((4, 2, 5), dtype=torch.float64)}
    plain = gru.backward(cache, up, truncate=2, chunk=3)
    numpy_ints = gru.backward(cache, up, truncate=np.int64(2), chunk=np.int32(3))
    for key in plain:
        assert torch.equal(plain[key], numpy_ints[key]), key
    assert not torch.equal(plain["dWz"], gru.backward(cache, up)["dWz"])  # truncation counted


# -- drawn cells ---------------------------------------------------------------------------------


@settings(max_examples=6, **DETERMINISTIC)
@given(random_cells())
def test_random_cell_equals_the_numpy_kernel(case):
    assert_equal_to_numpy(case.cell, case.sizes, case.truncate, m=2, T=4)


@settings(max_examples=6, **DETERMINISTIC)
@given(literature_cells())
def test_literature_cell_equals_the_numpy_kernel(case):
    assert_equal_to_numpy(case.cell, case.sizes, case.truncate, m=2, T=4)


def test_a_cell_with_softplus_a_stack_and_a_softmax_readout():
    cell = Cell("mixed", "softplus gate on a stack, σ gate, softmax readout")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    g = cell.let("g", softplus(cell.weight("W", n_h, n_h + n_x) @ stack(h_prev, x) + cell.bias("b", n_h)))
    z = cell.let("z", sigmoid(cell.weight("U", n_h, n_x) @ x))
    h = cell.update("h", tanh(odot(z, g) + odot(h_prev, z)))
    cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y)))
    for truncate in (None, 2):
        assert_equal_to_numpy(cell, {"n_x": 2, "n_h": 3, "n_y": 4}, truncate)


# -- the module's text -----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_the_kernel_computes_with_torch_only(cell):
    source = kernel_source(cell, module="torch")
    assert "import torch" in source
    for numpy_spelling in ("import numpy", "np.", ".transpose(", "keepdims", "axis="):
        assert numpy_spelling not in source, f"{cell}: the torch kernel contains {numpy_spelling!r}"
    compile(source, cell, "exec")


def test_torch_kernel_text_is_generated_without_torch_installed():
    """Generating the text needs no torch: symbptt imports and prints without it."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import symbptt\n"
            "text = symbptt.kernel_source('gru', module='torch')\n"
            "assert 'import torch' in text\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_an_unknown_module_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown array module 'jax'; choose one of numpy, cupy, torch"):
        kernel_source("rnn", module="jax")
