"""symbptt.torch: derived cells as torch autograd Functions and nn.Modules, nn.LSTM/nn.GRU interop.

The references are independent of the derivation: the cell's own equations walked with
torch ops by symbptt.proof's evaluator (autograd differentiates them), and torch's own
nn.LSTM / nn.GRU with the same weights.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symbptt.proof import ExplicitProblem, dimension_values, run_forward
from symbptt.torch import (
    CellRNN,
    cell_apply,
    cell_kernel,
    from_torch_state_dict,
    layer_from_torch,
    layer_to_torch,
    to_torch_state_dict,
)
from symbptt.torch_oracle import TorchBackend

F64 = torch.float64

CUSTOM_CELL = '''
from symbptt import Cell, odot, softmax, tanh

cell = Cell("leaky", "A leaky tanh unit with a per-unit leak and a readout.")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
W, U, b = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h), cell.bias("b", n_h)
a = cell.vector("a", n_h, "leak")
h_new = cell.let("h_new", tanh(W @ x + U @ h_prev + b), "candidate")
h = cell.update("h", odot(a, h_prev) + odot(1 - a, h_new))
cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h + cell.bias("by", n_y)), "prediction")
'''

TIED_CELL = '''
from symbptt import Cell, odot, tanh

cell = Cell("tied", "An input as wide as the state: one dimension for both.")
(n_h,) = cell.dims("n_h")
x = cell.input("x", n_h, "input")
h_prev = cell.state("h", n_h, "hidden state")
U, b = cell.weight("U", n_h, n_h), cell.bias("b", n_h)
cell.update("h", tanh(U @ h_prev + b) + tanh(x))
'''


# -- references -------------------------------------------------------------------------------


def reference_layer(kernel, sizes, parameters, x, initial, truncate=None):
    """One pass of the cell's own equations in torch ops: x (T, B, F) -> outputs (T, B, rows)."""
    cell = kernel.cell
    T, B = x.shape[0], x.shape[1]
    dims = dimension_values(cell, {**sizes, "m": B})
    starts = {s: initial[s].t() if s in initial else
              torch.zeros(int(kernel.rows(s).subs(dims)), B, dtype=x.dtype) for s in kernel.states}
    problem = ExplicitProblem(dict(parameters), [{"x": x[t].t()} for t in range(T)], starts, [])
    steps = run_forward(cell, cell.equations, problem, TorchBackend(), dims,
                        detach=lambda v: v.detach(), truncate=truncate)
    return {name: torch.stack([env[name].t() for env in steps]) for name in kernel.outputs}


def reference_stack(model, parameters, x, hx, truncate=None):
    """CellRNN's semantics with reference_layer: layers, directions, concatenation, finals."""
    kernel, D = model.kernel, model.num_directions
    layer_input, finals, tops = x, {s: [] for s in kernel.states}, {}
    for layer in range(model.num_layers):
        outs = []
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            own = {p: parameters[p + suffix] for p in kernel.parameters}
            initial = {s: v[layer * D + d] for s, v in hx.items()}
            steps = layer_input.flip(0) if d else layer_input
            out = reference_layer(kernel, model.layer_sizes[layer], own, steps, initial, truncate)
            for s in kernel.states:
                finals[s].append(out[s][-1])
            outs.append({k: v.flip(0) if d else v for k, v in out.items()})
        layer_input = torch.cat([o[kernel.output] for o in outs], dim=2)
        tops = {r: torch.cat([o[r] for o in outs], dim=2) for r in kernel.readouts}
    return layer_input, {s: torch.stack(v) for s, v in finals.items()}, tops


def leaves(tensors):
    return {k: v.detach().clone().requires_grad_() for k, v in tensors.items()}


def weighted_loss(output, finals, readouts, weights):
    """Σ random ⊙ every output, so that every output's gradient is a different tensor."""
    total = (weights["output"] * output).sum()
    total = total + sum((weights[s] * v).sum() for s, v in finals.items())
    return total + sum((weights[r] * v).sum() for r, v in readouts.items())


def as_dict(model, final):
    return dict(zip(model.kernel.states, final if isinstance(final, tuple) else (final,)))


def compare_with_reference(model, x, truncate=None, seed=1):
    """Outputs and every gradient of a CellRNN against reference_stack: max relative error."""
    model.zero_grad()
    gen = torch.Generator().manual_seed(seed)
    L, B = model.num_layers * model.num_directions, x.shape[1]
    hx = {s: 0.5 * torch.randn(L, B, model._rows(s, 0), generator=gen, dtype=x.dtype)
          for s in model.kernel.states}
    x_ours, hx_ours = x.clone().requires_grad_(), leaves(hx)
    output, final, readouts = model(x_ours, hx_ours, readouts=True)
    final = as_dict(model, final)
    weights = {"output": torch.randn(output.shape, generator=gen, dtype=x.dtype)}
    weights.update({k: torch.randn(v.shape, generator=gen, dtype=x.dtype)
                    for k, v in {**final, **readouts}.items()})
    weighted_loss(output, final, readouts, weights).backward()

    params = leaves(dict(model.named_parameters()))
    x_ref, hx_ref = x.clone().requires_grad_(), leaves(hx)
    ref_out, ref_final, ref_readouts = reference_stack(model, params, x_ref, hx_ref, truncate)
    weighted_loss(ref_out, ref_final, ref_readouts, weights).backward()

    pairs = [(output, ref_out), (x_ours.grad, x_ref.grad)]
    pairs += [(final[s], ref_final[s]) for s in final]
    pairs += [(readouts[r], ref_readouts[r]) for r in readouts]
    pairs += [(hx_ours[s].grad, hx_ref[s].grad) for s in hx]
    # the readouts of a layer below the top are unused: zero gradients here, none in autograd
    pairs += [(p.grad, torch.zeros_like(p) if params[k].grad is None else params[k].grad)
              for k, p in model.named_parameters()]
    return max(rel(a, b) for a, b in pairs)


def rel(a, b):
    a, b = a.detach(), b.detach()
    assert a.shape == b.shape and a.dtype == b.dtype
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12)


# -- any cell: the derived backward equals autograd through the cell's equations ---------------


@pytest.mark.parametrize("name,layers,bidirectional,truncate", [
    ("gru", 1, False, None),
    ("lstm", 1, False, None),
    ("indrnn", 1, False, 2),
    ("mgu", 2, True, None),
    ("lstm_peephole", 2, False, 3),
])
def test_cell_rnn_matches_autograd_through_the_equations(name, layers, bidirectional, truncate):
    torch.manual_seed(0)
    model = CellRNN(name, 3, 4, layers, dims={"n_y": 2}, bidirectional=bidirectional,
                    truncate=truncate, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    assert compare_with_reference(model, x, truncate) <= 1e-10


def test_cell_apply_in_the_kernel_layout():
    """The functional form: (n_x, m, T) in, every state and readout (rows, m, T) out."""
    torch.manual_seed(0)
    model = CellRNN("gru", 3, 4, dims={"n_y": 2}, dtype=F64)
    params = leaves(model.layer_parameters())
    x = torch.randn(3, 2, 5, dtype=F64, requires_grad=True)
    outputs = cell_apply("gru", params, x)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"h": (4, 2, 5), "y": (2, 2, 5)}
    (outputs["h"].sin().sum() + outputs["y"][0].sum()).backward()
    ref_params, x_ref = leaves(params), x.detach().clone().requires_grad_()
    ref = reference_layer(model.kernel, model.layer_sizes[0], ref_params, x_ref.permute(2, 1, 0), {})
    (ref["h"].sin().sum() + ref["y"][:, :, 0].sum()).backward()
    assert rel(x.grad, x_ref.grad) <= 1e-10
    assert max(rel(params[k].grad, ref_params[k].grad) for k in params) <= 1e-10


def test_gradcheck_float64():
    torch.manual_seed(0)
    model = CellRNN("lstm", 2, 3, dims={"n_y": 2}, dtype=F64)
    names = model.kernel.parameters
    params = [p.detach().clone().requires_grad_() for p in model.layer_parameters().values()]
    x = torch.randn(2, 2, 3, dtype=F64, requires_grad=True)
    h0, c0 = (torch.randn(3, 2, dtype=F64, requires_grad=True) for _ in range(2))

    def f(x, h0, c0, *params):
        out = cell_apply(model.kernel, dict(zip(names, params)), x, {"h": h0, "c": c0})
        return out["h"], out["c"], out["y"]

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-8)


# -- nn.LSTM / nn.GRU ---------------------------------------------------------------------------


def torch_reference(kind, layers, bidirectional, batch_first=False, dtype=F64):
    torch.manual_seed(3)
    module = getattr(torch.nn, kind)(3, 4, layers, bidirectional=bidirectional,
                                     batch_first=batch_first, dtype=dtype)
    return module, CellRNN.from_torch(module)


def run_both(torch_module, ours, x, hx, weights):
    results = []
    for module in (torch_module, ours):
        module.zero_grad()
        xi, hi = x.clone().requires_grad_(), tuple(v.clone().requires_grad_() for v in hx)
        output, final = module(xi, hi if len(hi) > 1 else hi[0])
        final = final if isinstance(final, tuple) else (final,)
        loss = (weights[0] * output).sum() + sum((w * f).sum() for w, f in zip(weights[1:], final))
        loss.backward()
        results.append((output, final, xi.grad, [v.grad for v in hi]))
    return results


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, True)])
def test_equals_torch_module(kind, layers, bidirectional, batch_first):
    module, ours = torch_reference(kind, layers, bidirectional, batch_first)
    D, states = 1 + bidirectional, 2 if kind == "LSTM" else 1
    x = torch.randn((3, 6, 3) if batch_first else (6, 3, 3), dtype=F64)
    hx = tuple(torch.randn(layers * D, 3, 4, dtype=F64) for _ in range(states))
    weights = [torch.randn(x.shape[:2] + (D * 4,), dtype=F64)] + [torch.randn_like(h) for h in hx]
    (o1, f1, dx1, dh1), (o2, f2, dx2, dh2) = run_both(module, ours, x, hx, weights)
    assert rel(o2, o1) <= 1e-12 and max(rel(b, a) for a, b in zip(f1, f2)) <= 1e-12
    assert rel(dx2, dx1) <= 1e-10 and max(rel(b, a) for a, b in zip(dh1, dh2)) <= 1e-10
    grads = to_torch_state_dict(ours.cell, {k: p.grad for k, p in ours.named_parameters()})
    assert set(grads) == {k for k, _ in module.named_parameters()}
    for key, p in module.named_parameters():
        assert rel(grads[key], p.grad) <= 1e-10, key


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_truncated_equals_torch_detaching_every_k_steps(kind):
    """truncate=k is what a torch user gets by running k steps at a time, detaching the state."""
    module, _ = torch_reference(kind, 2, False)
    ours = CellRNN.from_torch(module, truncate=3)
    x = torch.randn(8, 2, 3, dtype=F64)
    weights = torch.randn(8, 2, 4, dtype=F64)

    xi, hidden, outs = x.clone().requires_grad_(), None, []
    for start in range(0, 8, 3):
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden) if kind == "LSTM" else hidden.detach()
        out, hidden = module(xi[start:start + 3], hidden)
        outs.append(out)
    (weights * torch.cat(outs)).sum().backward()

    x_ours = x.clone().requires_grad_()
    output, _ = ours(x_ours)
    (weights * output).sum().backward()
    assert rel(x_ours.grad, xi.grad) <= 1e-10
    grads = to_torch_state_dict(ours.cell, {k: p.grad for k, p in ours.named_parameters()})
    for key, p in module.named_parameters():
        assert rel(grads[key], p.grad) <= 1e-10, key
    full = CellRNN.from_torch(module)  # the cut matters: full BPTT gives another gradient
    output, _ = full(x.clone())
    (weights * output).sum().backward()
    name = "W_hf_l0" if kind == "LSTM" else "W_hz_l0"
    assert rel(getattr(ours, name).grad, getattr(full, name).grad) > 1e-3


def test_float32_against_torch():
    module, ours = torch_reference("GRU", 1, False, dtype=torch.float32)
    x = torch.randn(6, 3, 3)
    hx = (torch.randn(1, 3, 4),)
    weights = [torch.randn(6, 3, 4), torch.randn(1, 3, 4)]
    (o1, _, dx1, _), (o2, _, dx2, _) = run_both(module, ours, x, hx, weights)
    assert o2.dtype == torch.float32 and dx2.dtype == torch.float32
    assert all(p.grad.dtype == torch.float32 for p in ours.parameters())
    assert rel(o2, o1) <= 1e-5 and rel(dx2, dx1) <= 1e-4
    grads = to_torch_state_dict(ours.cell, {k: p.grad for k, p in ours.named_parameters()})
    assert max(rel(grads[k], p.grad) for k, p in module.named_parameters()) <= 1e-4


def test_state_dict_round_trip():
    module, ours = torch_reference("LSTM", 2, True)
    original = module.state_dict()
    back = to_torch_state_dict("lstm_torch", ours.state_dict())
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    again = ours.to_torch().state_dict()
    assert all(torch.equal(again[k], original[k]) for k in original)
    assert set(ours.state_dict()) == set(from_torch_state_dict("lstm_torch", original))


def test_one_layer_parameters_from_numpy_and_back():
    """A kernel's own NumPy parameters become nn.GRU weights and come back identical."""
    kernel = cell_kernel("gru_torch")
    rng = np.random.default_rng(0)
    params = {p.name: rng.standard_normal(tuple(int(d.subs({kernel.cell.dimensions["n_x"]: 3,
                                                             kernel.cell.dimensions["n_h"]: 4}))
                                                  for d in p.shape))
              for p in kernel.cell.parameters}
    entries = layer_to_torch("gru_torch", params, layer=1, reverse=True)
    assert entries["weight_ih_l1_reverse"].shape == (12, 3)
    assert entries["bias_hh_l1_reverse"].shape == (12,)
    assert torch.equal(entries["weight_hh_l1_reverse"][4:8], torch.from_numpy(params["W_hz"]))
    back = layer_from_torch("gru_torch", entries, layer=1, reverse=True)
    assert all(np.array_equal(back[k].numpy(), v) for k, v in params.items())
    assert back["b_in"].shape == (4, 1)


def test_torch_module_without_bias_gives_zero_biases():
    module = torch.nn.GRU(3, 4, bias=False)
    params = layer_from_torch("gru_torch", module.state_dict())
    assert params["b_hn"].shape == (4, 1) and not params["b_hn"].any()
    model = CellRNN.from_torch(module)
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"b_{k}{g}_l0" for k in "ih" for g in "rzn"}
    x = torch.randn(4, 2, 3)
    assert rel(model(x)[0], module(x)[0]) <= 1e-6
    with pytest.warns(UserWarning, match="no dropout"):
        CellRNN.from_torch(torch.nn.LSTM(3, 4, 2, dropout=0.5))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_module_without_bias_round_trips_without_bias(kind):
    module = getattr(torch.nn, kind)(3, 4, 2, bias=False, bidirectional=True)
    back = CellRNN.from_torch(module).to_torch()
    assert not back.bias and set(back.state_dict()) == set(module.state_dict())
    for key, value in module.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    x = torch.randn(5, 2, 3)
    assert rel(back(x)[0], module(x)[0]) <= 1e-6
    # biases that train, or that are not zero, keep the module's biases
    model = CellRNN.from_torch(module)
    with torch.no_grad():
        next(p for k, p in model.named_parameters() if k.startswith("b_")).add_(0.5)
    assert model.to_torch().bias
    assert CellRNN.from_torch(getattr(torch.nn, kind)(3, 4)).to_torch().bias


@pytest.mark.parametrize("call", [
    lambda: layer_from_torch("gru", torch.nn.GRU(3, 4).state_dict()),
    lambda: to_torch_state_dict("lstm", {}),
    lambda: CellRNN("indrnn", 3, 4, dims={"n_y": 2}).to_torch(),
])
def test_cell_without_torch_equivalent_is_named(call):
    with pytest.raises(ValueError, match=r"cell '(gru|lstm|indrnn)' has no torch.nn equivalent"):
        call()


# -- training ----------------------------------------------------------------------------------


def next_symbol_task(gen, T=12, B=8, n=4):
    """Sequences of one-hot symbols; the target at t is the symbol at t + 1 (a fixed cycle)."""
    start = torch.randint(0, n, (B,), generator=gen)
    symbols = (start[None, :] + torch.arange(T + 1)[:, None]) % n
    return torch.nn.functional.one_hot(symbols[:-1], n).double(), symbols[1:]


def train(model, steps=15, lr=0.05):
    gen = torch.Generator().manual_seed(0)
    x, target = next_symbol_task(gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        _, _, readouts = model(x, readouts=True)
        loss = -(readouts["y"].clamp_min(1e-12).log().gather(2, target[..., None])).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_adam_training_lowers_the_loss():
    torch.manual_seed(0)
    losses = train(CellRNN("gru", 4, 8, dims={"n_y": 4}, dtype=F64))
    assert losses[-1] < 0.5 * losses[0], losses


def test_cell_file_trained_through_the_module(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(CUSTOM_CELL)
    torch.manual_seed(0)
    model = CellRNN(str(path), 4, 8, dims={"n_y": 4}, dtype=F64)
    assert {k for k, _ in model.named_parameters()} == {f"{p}_l0" for p in
                                                         ("W", "U", "b", "a", "Wy", "by")}
    losses = train(model)
    assert losses[-1] < 0.7 * losses[0], losses
    model.truncate = 4
    assert compare_with_reference(model, torch.randn(6, 2, 4, dtype=F64), truncate=4) <= 1e-10


def test_kernel_is_derived_once_per_cell(tmp_path):
    assert cell_kernel("gru") is cell_kernel("gru")
    path = tmp_path / "leaky.py"
    path.write_text(CUSTOM_CELL)
    first = cell_kernel(path)
    assert cell_kernel(str(path)) is first
    path.write_text(CUSTOM_CELL.replace("tanh(W @ x", "tanh(2 * W @ x"))
    assert cell_kernel(path) is not first


def test_deepcopy_and_torch_save_keep_the_module(tmp_path):
    torch.manual_seed(0)
    model = CellRNN("lstm_torch", 3, 4, bidirectional=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    torch.save(model, tmp_path / "model.pt")
    for other in (copy.deepcopy(model), torch.load(tmp_path / "model.pt", weights_only=False)):
        assert other.kernel is model.kernel
        assert torch.equal(other(x)[0], model(x)[0])
        other(x)[0].sum().backward()
        assert other.W_hi_l0_reverse.grad is not None and model.W_hi_l0_reverse.grad is None


# -- errors ------------------------------------------------------------------------------------


def test_wrong_feature_size_names_the_expected_shape():
    model = CellRNN("gru_torch", 3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"expected an input of shape \(T, B, 3\).*got \(5, 2, 4\)"):
        model(torch.zeros(5, 2, 4, dtype=F64))
    batch_first = CellRNN("gru_torch", 3, 4, batch_first=True, dtype=F64)
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        batch_first(torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"initial state h must have shape .* \(1, 2, 4\)"):
        model(torch.zeros(5, 2, 3, dtype=F64), torch.zeros(2, 2, 4, dtype=F64))
    with pytest.raises(ValueError, match="float32.*float64"):
        model(torch.zeros(5, 2, 3))
    with pytest.raises(KeyError, match="unknown state"):
        model(torch.zeros(5, 2, 3, dtype=F64), {"c": torch.zeros(1, 2, 4, dtype=F64)})


def test_bad_sizes_and_options():
    with pytest.raises(ValueError, match="needs the size of n_y"):
        CellRNN("gru", 3, 4)
    with pytest.raises(ValueError, match="no dimension n_z"):
        CellRNN("gru", 3, 4, dims={"n_y": 2, "n_z": 1})
    with pytest.raises(ValueError, match="truncate must be a positive integer"):
        CellRNN("gru_torch", 3, 4, truncate=0)
    with pytest.raises(ValueError, match="num_layers"):
        CellRNN("gru_torch", 3, 4, 0)


def test_tied_input_cell_stacks_only_unidirectionally(tmp_path):
    path = tmp_path / "tied.py"
    path.write_text(TIED_CELL)
    with pytest.raises(ValueError, match="n_h is 4 and 3 at once"):
        CellRNN(path, 3, 4)
    model = CellRNN(path, hidden_size=4, num_layers=2, dtype=F64)
    assert model.input_size == 4
    assert compare_with_reference(model, torch.randn(4, 2, 4, dtype=F64)) <= 1e-10
    with pytest.raises(ValueError, match="tied to the state's size.*bidirectional=False"):
        CellRNN(path, hidden_size=4, num_layers=2, bidirectional=True)
    assert CellRNN(path, hidden_size=4, bidirectional=True).num_directions == 2


def test_in_place_change_before_backward_is_an_error():
    model = CellRNN("gru_torch", 3, 4, dtype=F64)
    output, _ = model(torch.randn(4, 2, 3, dtype=F64))
    with torch.no_grad():
        model.W_hz_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        output.sum().backward()
    outputs = cell_apply("gru_torch", leaves(model.layer_parameters()), torch.randn(3, 2, 4, dtype=F64))
    # the output may share memory with the kernel's cache: refused when changed (a view made
    # inside the Function, the torch kernel's) or at backward (the NumPy kernel's)
    with pytest.raises(RuntimeError, match="inplace"):
        outputs["h"].mul_(2.0)
        outputs["h"].sum().backward()


def test_symbptt_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import symbptt, symbptt.api, symbptt.codegen; "
            "symbptt.load_cell('gru'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_torch_kernel_never_goes_through_numpy(monkeypatch):
    """With the torch kernel (the default) tensors stay tensors on their device: no .numpy()."""
    import symbptt.torch as interop

    assert interop.KERNEL == "torch"
    assert not isinstance(cell_kernel("lstm_torch").kernel, interop.NumpyKernel)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor went through NumPy")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    _, ours = torch_reference("LSTM", 1, True)
    output, _ = ours(torch.randn(4, 2, 3, dtype=F64))
    output.sum().backward()
    assert all(p.grad is not None for p in ours.parameters())


def test_numpy_kernel_adapter_equals_the_torch_kernel(monkeypatch):
    """The NumPy kernel behind NumpyKernel (KERNEL = "numpy") gives the same gradients."""
    import symbptt.torch as interop

    results = []
    for kind in ("torch", "numpy"):
        monkeypatch.setattr(interop, "KERNEL", kind)
        torch.manual_seed(0)
        model = CellRNN("lstm", 3, 4, 2, dims={"n_y": 2}, truncate=2, dtype=F64)
        assert isinstance(model.kernel.kernel, interop.NumpyKernel) == (kind == "numpy")
        x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
        output, _, readouts = model(x, readouts=True)
        (output.sin().sum() + readouts["y"][..., 0].sum()).backward()
        results.append([x.grad] + [p.grad for p in model.parameters()])
    assert max(rel(a, b) for a, b in zip(*results)) <= 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    module, ours = torch_reference("LSTM", 2, True)
    x = torch.randn(5, 2, 3, dtype=F64)
    gpu = CellRNN.from_torch(module.cuda())
    out_cpu, _ = ours(x)
    out_gpu, _ = gpu(x.cuda())
    out_cpu.sum().backward()
    out_gpu.sum().backward()
    assert out_gpu.device.type == "cuda" and rel(out_gpu.cpu(), out_cpu) <= 1e-12
    for (k, a), (_, b) in zip(ours.named_parameters(), gpu.named_parameters()):
        assert b.grad.device.type == "cuda" and rel(b.grad.cpu(), a.grad) <= 1e-10, k


# -- DistributedDataParallel -------------------------------------------------------------------


def ddp_batch():
    gen = torch.Generator().manual_seed(5)
    return torch.randn(6, 4, 3, generator=gen, dtype=F64), torch.randn(6, 4, 4, generator=gen,
                                                                        dtype=F64)


def ddp_model():
    torch.manual_seed(11)
    return CellRNN("gru_torch", 3, 4, dtype=F64)


def batch_mean_loss(model, x, weights):
    output, _ = model(x)
    return (weights * output).sum() / x.shape[1]


def ddp_worker(rank, world, port, folder):
    """One DDP process: half the batch, mean over its half; DDP averages the two halves."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        model = torch.nn.parallel.DistributedDataParallel(ddp_model())
        x, weights = ddp_batch()
        half = slice(rank * 2, rank * 2 + 2)
        batch_mean_loss(model, x[:, half], weights[:, half]).backward()
        grads = {k: p.grad for k, p in model.module.named_parameters()}
        torch.save(grads, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_process(tmp_path):
    context = torch.multiprocessing.start_processes(
        ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False,
        start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP processes did not finish in 120 s")
    model = ddp_model()
    batch_mean_loss(model, *ddp_batch()).backward()
    for rank in range(2):
        grads = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(grads) == {k for k, _ in model.named_parameters()}
        for key, p in model.named_parameters():
            assert rel(grads[key], p.grad) <= 1e-12, (rank, key)
