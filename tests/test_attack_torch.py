"""Attacks on ``symbptt.torch`` (CellRNN, cell_apply, CellFunction) as a careless user and an
adversary: cells whose names are not the built-ins' (an input not called ``x``), empty
sequences, sizes of zero, initial states of another dtype, layers that do not exist,
non-contiguous and batch-first inputs, copies and pickles; double-precision gradcheck on a
cell of odd names against the derived backward.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from symbptt import Cell, odot, sigmoid, tanh

torch = pytest.importorskip("torch")

import symbptt.torch as interop
from symbptt.torch import CellRNN, cell_apply

F64 = torch.float64


def odd_cell() -> Cell:
    """Two states, input ``u`` (not ``x``), state ``s`` first and ``h`` second."""
    c = Cell("odd_names", "an input that is not x, states in an unusual order")
    n_u, n_h = c.dims("n_u", "n_h")
    u = c.input("u", n_u, "input")
    s_prev = c.state("s", n_h, "memory")
    h_prev = c.state("h", n_h, "hidden")
    A, B, C_ = c.weight("A", n_h, n_u), c.weight("B", n_h, n_h), c.weight("Cw", n_h, n_h)
    bias = c.bias("bias", n_h)
    g = c.let("g", sigmoid(A @ u + B @ h_prev + bias))
    s = c.update("s", odot(g, s_prev) + odot(1 - g, tanh(C_ @ h_prev + A @ u)))
    c.update("h", tanh(s) + odot(g, h_prev))
    return c


@pytest.fixture(scope="module")
def odd():
    return odd_cell()


@pytest.mark.parametrize("kernel", ["torch", "numpy"])
def test_a_cell_whose_input_is_not_named_x_gets_its_gradients(odd, kernel, monkeypatch):
    """CellFunction.backward read the input's gradient as "d" + input name; every kernel
    returns it as "dx": a KeyError for any cell whose input is not x."""
    monkeypatch.setattr(interop, "KERNEL", kernel)
    torch.manual_seed(0)
    model = CellRNN(odd, input_size=3, hidden_size=4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    output, (s_n, _) = model(x)
    (output.sum() + s_n.sum()).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is not None for p in model.parameters())


def test_gradcheck_on_a_cell_of_odd_names(odd):
    torch.manual_seed(1)
    kernel = interop.cell_kernel(odd)
    sizes = {"A": (2, 2), "B": (2, 2), "Cw": (2, 2), "bias": (2, 1)}
    params = [torch.randn(sizes[p], dtype=F64, requires_grad=True) for p in kernel.parameters]
    x = torch.randn(2, 2, 3, dtype=F64, requires_grad=True)
    s0 = torch.randn(2, 2, dtype=F64, requires_grad=True)

    def f(x, s0, *params):
        out = cell_apply(odd, dict(zip(kernel.parameters, params)), x, {"s": s0})
        return out["h"], out["s"]

    assert torch.autograd.gradcheck(f, (x, s0, *params), eps=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def gru():
    torch.manual_seed(2)
    return CellRNN("gru", 3, 4, dims={"n_y": 2}, dtype=F64)


@pytest.mark.parametrize("batch_first", [False, True])
def test_an_empty_sequence_is_an_error_that_says_so(gru, batch_first):
    """T = 0 was an IndexError from inside forward; torch's RNNs refuse it by name too."""
    gru.batch_first = batch_first
    try:
        with pytest.raises(ValueError, match=r"no steps \(T = 0"):
            gru(torch.zeros((2, 0, 3) if batch_first else (0, 2, 3), dtype=F64))
    finally:
        gru.batch_first = False


@pytest.mark.parametrize("hx_dtype", [torch.float32, torch.bool, torch.int64])
def test_an_initial_state_of_another_dtype_is_an_error(gru, hx_dtype):
    """An initial state of another dtype was silently converted (a bool or float32 start
    for a float64 model); torch's RNNs refuse it, as this module refuses such an input."""
    x = torch.randn(5, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match="initial state h must be a tensor of the parameters' dtype"):
        gru(x, torch.zeros(1, 2, 4, dtype=hx_dtype))
    with pytest.raises(ValueError, match="must be a tensor"):
        gru(x, {"h": [[0.0] * 4] * 2})


@pytest.mark.parametrize("sizes", [{"input_size": 3, "hidden_size": 0, "dims": {"n_y": 2}},
                                   {"input_size": 0, "hidden_size": 4, "dims": {"n_y": 2}},
                                   {"input_size": 3, "hidden_size": 4, "dims": {"n_y": 0}}])
def test_a_size_of_zero_is_an_error_naming_it(sizes):
    """hidden_size=0 was a ZeroDivisionError; input_size=0 built a module of empty weights."""
    with pytest.raises(ValueError, match="every size must be at least 1"):
        CellRNN("gru", **sizes)


def test_a_layer_that_does_not_exist_is_an_index_error(gru):
    with pytest.raises(IndexError, match="no layer 3"):
        gru.layer_parameters(3)
    with pytest.raises(IndexError, match="in reverse"):
        gru.layer_parameters(0, reverse=True)


def test_non_contiguous_batch_first_and_batch_one_inputs(gru):
    torch.manual_seed(3)
    x = torch.randn(3, 2, 5, dtype=F64).permute(2, 1, 0)  # (5, 2, 3), not contiguous
    assert not x.is_contiguous()
    out, h = gru(x)
    out_c, h_c = gru(x.contiguous())
    assert torch.equal(out, out_c) and torch.equal(h, h_c)
    one, h_one = gru(x[:, 1:2])
    assert torch.allclose(one, out[:, 1:2], atol=1e-14) and torch.allclose(h_one, h[:, 1:2], atol=1e-14)
    gru.batch_first = True
    try:
        first, _ = gru(x.transpose(0, 1))
    finally:
        gru.batch_first = False
    assert torch.equal(first.transpose(0, 1), out)


def test_copies_and_pickles_of_a_module_built_from_a_cell_object(odd):
    torch.manual_seed(4)
    model = CellRNN(odd, 3, 4, num_layers=2, bidirectional=True, dtype=F64, truncate=2)
    x = torch.randn(4, 2, 3, dtype=F64)
    expected = model(x)[0]
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.equal(clone(x)[0], expected)
        assert clone.truncate == 2


def test_a_state_dict_of_the_other_module_is_refused():
    """nn.GRU's weights read as lstm_torch's gave an "LSTM" of hidden size 3 with (3, 4)
    hidden weights (12 rows split in 4 gates), silently; a CellRNN state_dict of the other
    cell converted to an empty dict."""
    from symbptt.torch import from_torch_state_dict, layer_from_torch, to_torch_state_dict

    with pytest.raises(ValueError, match="not an nn.LSTM state_dict"):
        layer_from_torch("lstm_torch", torch.nn.GRU(3, 4).state_dict())
    with pytest.raises(ValueError, match="not an nn.GRU state_dict"):
        from_torch_state_dict("gru_torch", torch.nn.LSTM(3, 6).state_dict())
    with pytest.raises(KeyError, match="no weight_ih_l0"):
        from_torch_state_dict("gru_torch", {})
    with pytest.raises(KeyError, match="no W_ii_l0"):
        to_torch_state_dict("lstm_torch", CellRNN("gru_torch", 3, 4).state_dict())
