"""symbptt.torch (symbptt/torch.py): the smallest sizes a CellRNN takes, the texts of the errors
for a wrong layer or input (in the module's own layout), the device of the nn.GRU it converts
to, and a torch state_dict missing its recurrent weights.

These tests came from ``tools/mutation.py symbptt/torch.py --sample 40``.
"""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from symbptt.torch import CellRNN, layer_from_torch

F64 = torch.float64


def test_sizes_of_one_are_allowed_and_run_like_torchs_own():
    model = CellRNN("gru_torch", input_size=1, hidden_size=1, dtype=F64)
    reference = model.to_torch()
    x = torch.randn(3, 2, 1, dtype=F64)
    out, h = model(x)
    expected, expected_h = reference(x)
    assert out.shape == (3, 2, 1) and torch.allclose(out, expected, atol=1e-12)
    assert torch.allclose(h, expected_h, atol=1e-12)


def test_a_layer_that_does_not_exist_says_which_without_a_reverse_direction():
    model = CellRNN("gru", 2, 3, dims={"n_y": 2}, dtype=F64)
    with pytest.raises(IndexError, match=r"^gru: no layer 1; the module has 1 layer\(s\), bidirectional=False$"):
        model.layer_parameters(1)
    with pytest.raises(IndexError, match=r"^gru: no layer 0 in reverse; "):
        model.layer_parameters(0, reverse=True)


@pytest.mark.parametrize("batch_first", [False, True])
def test_a_wrong_input_shape_names_the_modules_own_layout(batch_first):
    model = CellRNN("gru", 2, 3, dims={"n_y": 2}, batch_first=batch_first, dtype=F64)
    layout, expected = (("(B, T, input_size)", "(B, T, 2)") if batch_first else ("(T, B, input_size)", "(T, B, 2)"))
    message = f"gru: expected an input of shape {expected}, {layout}, got (4, 5, 7)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        model(torch.zeros(4, 5, 7, dtype=F64))


def test_to_torch_builds_the_module_on_the_parameters_device_not_the_default_one():
    model = CellRNN("gru_torch", 2, 3, dtype=F64)
    torch.set_default_device("meta")
    try:
        module = model.to_torch()
    finally:
        torch.set_default_device(None)
    assert module.weight_ih_l0.device.type == "cpu" and module.weight_ih_l0.dtype == F64
    assert torch.equal(module.weight_hh_l0, torch.cat([model.W_hr_l0, model.W_hz_l0, model.W_hn_l0]).detach())


def test_a_state_dict_without_its_recurrent_weights_is_refused_with_the_shapes():
    reference = torch.nn.GRU(2, 3)
    entries = {k: v for k, v in reference.state_dict().items() if k != "weight_hh_l0"}
    with pytest.raises(ValueError, match=r"^not an nn\.GRU state_dict: weight_hh_l0 has shape \(0,\) and "
                                         r"weight_ih_l0 \(9, 2\); nn\.GRU stacks 3 gates"):
        layer_from_torch("gru_torch", entries)


def test_the_modules_repr_names_its_sizes_and_the_options_set():
    plain = CellRNN("gru", 2, 3, dims={"n_y": 2}, dtype=F64)
    assert plain.extra_repr() == "'gru', input_size=2, hidden_size=3, num_layers=1, n_y=2"
    both = CellRNN("gru", 2, 3, dims={"n_y": 2}, bidirectional=True, batch_first=True, truncate=2, dtype=F64)
    assert both.extra_repr() == ("'gru', input_size=2, hidden_size=3, num_layers=1, n_y=2, bidirectional=True, "
                                 "batch_first=True, truncate=2")
    assert repr(both).startswith("CellRNN('gru', input_size=2")


def test_the_numpy_kernel_behind_torch_tensors_starts_from_the_given_states():
    import numpy as np

    from symbptt.codegen import kernel_module
    from symbptt.torch import NumpyKernel

    plain = kernel_module("gru")
    rng = np.random.default_rng(0)
    dims = {"n_x": 2, "n_h": 3, "n_y": 2}
    params = plain.init_parameters(dims, rng)
    x, h0 = rng.standard_normal((2, 2, 3)), rng.standard_normal((3, 2))
    expected, _ = plain.forward(params, x, {"h": h0})
    outputs, _ = NumpyKernel(plain).forward({k: torch.from_numpy(v) for k, v in params.items()},
                                            torch.from_numpy(x), {"h": torch.from_numpy(h0)})
    assert all(np.allclose(outputs[k].numpy(), v, rtol=0, atol=1e-14) for k, v in expected.items())


def test_two_sizes_for_the_input_name_the_input():
    with pytest.raises(ValueError, match=r"^cell gru: n_x is 4 and 3 at once \(the input x is n_x wide\); "):
        CellRNN("gru", input_size=3, dims={"n_x": 4, "n_y": 2})


def test_an_initial_state_that_is_not_a_tensor_names_its_type():
    model = CellRNN("gru", 2, 3, dims={"n_y": 2}, dtype=F64)
    with pytest.raises(ValueError, match=r"initial state h must be a tensor of the parameters' dtype "
                                         r"torch\.float64 on cpu, got list$"):
        model(torch.zeros(4, 1, 2, dtype=F64), {"h": [[0.0] * 3]})
    with pytest.raises(ValueError, match=r"torch\.float64 on cpu, got torch\.float32 on cpu$"):
        model(torch.zeros(4, 1, 2, dtype=F64), torch.zeros(1, 1, 3, dtype=torch.float32))


def test_per_unit_vectors_start_uniform_in_minus_one_one_and_weights_within_one_over_root_n():
    """reset_parameters: torch's U(−1/√n_h, 1/√n_h) for weights and biases, U(−1, 1) for a
    per-unit vector (lstm_peephole's peepholes)."""
    torch.manual_seed(0)
    model = CellRNN("lstm_peephole", input_size=3, hidden_size=400, dims={"n_y": 2}, dtype=F64)
    roles = {p.name: p.role for p in model.kernel.cell.parameters}
    assert "vector" in roles.values()
    for name, tensor in model.layer_parameters().items():
        width = 1.0 if roles[name] == "vector" else 1 / 20
        assert tensor.abs().max() <= width, name
        assert tensor.abs().max() > 0.9 * width, name


def test_cell_apply_names_the_parameters_it_lacks():
    from symbptt.torch import cell_apply

    with pytest.raises(KeyError, match=r"cell rnn: parameters lack Whh, bh"):
        cell_apply("rnn", {"Whx": torch.zeros(2, 2), "Wyh": torch.zeros(2, 2), "by": torch.zeros(2, 1)},
                   torch.zeros(2, 1, 3))


@pytest.mark.parametrize("cell", ["lstm_torch", "gru_torch"])
def test_a_state_dict_of_another_module_names_the_cell_it_expected(cell):
    from symbptt.torch import to_torch_state_dict

    with pytest.raises(KeyError, match=rf"not a CellRNN's of the {cell} cell"):
        to_torch_state_dict(cell, {"weight": torch.zeros(1)})
