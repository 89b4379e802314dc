"""lstm_torch and gru_torch against torch.nn.LSTM / torch.nn.GRU with the same weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

GATES = {"lstm_torch": "ifgo", "gru_torch": "rzn"}


def torch_module(name, params, n_x, n_h):
    cls = torch.nn.LSTM if name == "lstm_torch" else torch.nn.GRU
    module = cls(n_x, n_h).double()
    gates = GATES[name]
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.concatenate([params[f"W_i{g}"] for g in gates])))
        module.weight_hh_l0.copy_(torch.from_numpy(np.concatenate([params[f"W_h{g}"] for g in gates])))
        module.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([params[f"b_i{g}"][:, 0] for g in gates])))
        module.bias_hh_l0.copy_(torch.from_numpy(np.concatenate([params[f"b_h{g}"][:, 0] for g in gates])))
    return module


def torch_run(name, module, x, states, upstream, truncate=None):
    """Outputs and autograd gradients; with truncate=k the state is detached every k steps."""
    xt = torch.from_numpy(x.transpose(2, 1, 0).copy()).requires_grad_()
    init = {s: torch.from_numpy(v.T[None].copy()).requires_grad_() for s, v in states.items()}
    T = x.shape[2]
    k = truncate or T
    hidden = (init["h"], init["c"]) if name == "lstm_torch" else init["h"]
    hs, cs = [], []
    for start in range(0, T, k):
        if start:
            hidden = tuple(v.detach() for v in hidden) if name == "lstm_torch" else hidden.detach()
        for t in range(start, min(T, start + k)):
            out, hidden = module(xt[t:t + 1], hidden)
            hs.append(out[0].T)
            if name == "lstm_torch":
                cs.append(hidden[1][0].T)
    H = torch.stack(hs, dim=2)
    loss = (H * torch.from_numpy(upstream["h"])).sum()
    outputs = {"h": H.detach().numpy()}
    if name == "lstm_torch":
        C = torch.stack(cs, dim=2)
        loss = loss + (C * torch.from_numpy(upstream["c"])).sum()
        outputs["c"] = C.detach().numpy()
    loss.backward()
    grads = {"dx": xt.grad.numpy().transpose(2, 1, 0)}
    grads.update({f"d{s}0": v.grad.numpy()[0].T for s, v in init.items()})
    gates = GATES[name]
    for kind, tensor in (("W_i", module.weight_ih_l0), ("W_h", module.weight_hh_l0),
                         ("b_i", module.bias_ih_l0), ("b_h", module.bias_hh_l0)):
        for g, block in zip(gates, tensor.grad.numpy().reshape(len(gates), -1, *tensor.shape[1:])):
            grads[f"d{kind}{g}"] = block if kind.startswith("W") else block[:, None]
    return outputs, grads


def rel(a, b):
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-12)


@pytest.mark.parametrize("name", GATES)
@pytest.mark.parametrize("m,T,truncate", [(1, 1, None), (3, 5, None), (2, 7, 3), (2, 6, 2), (1, 4, 1)])
def test_matches_pytorch(kernels, name, m, T, truncate):
    kernel = kernels[name]
    rng = np.random.default_rng(7)
    n_x, n_h = 3, 5
    params = kernel.init_parameters({"n_x": n_x, "n_h": n_h}, rng)
    x = rng.standard_normal((n_x, m, T))
    states = {s: rng.standard_normal((n_h, m)) for s in kernel.STATES}
    outputs, cache = kernel.forward(params, x, states)
    upstream = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    grads = kernel.backward(cache, upstream, truncate=truncate)
    expected_out, expected = torch_run(name, torch_module(name, params, n_x, n_h), x, states,
                                       upstream, truncate)
    for key in expected_out:
        assert rel(outputs[key], expected_out[key]) <= 1e-10, key
    assert set(expected) == set(grads)
    for key in expected:
        assert rel(grads[key], expected[key]) <= 1e-10, key
