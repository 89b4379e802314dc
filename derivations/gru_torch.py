"""GRU as PyTorch's nn.GRU computes it: the reset gate acts after the hidden product."""

from symbptt import Cell, odot, sigmoid, tanh

cell = Cell("gru_torch", "One layer of torch.nn.GRU (gates r, z and candidate n; reset applied "
            "after the hidden matrix product); no readout.")
n_x, n_h = cell.dims("n_x", "n_h")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
W_i = {g: cell.weight(f"W_i{g}", n_h, n_x, f"input weights of {g}") for g in "rzn"}
W_h = {g: cell.weight(f"W_h{g}", n_h, n_h, f"hidden weights of {g}") for g in "rzn"}
b_i = {g: cell.bias(f"b_i{g}", n_h, f"input bias of {g}") for g in "rzn"}
b_h = {g: cell.bias(f"b_h{g}", n_h, f"hidden bias of {g}") for g in "rzn"}

r = cell.let("r", sigmoid(W_i["r"] @ x + b_i["r"] + W_h["r"] @ h_prev + b_h["r"]), "reset gate")
z = cell.let("z", sigmoid(W_i["z"] @ x + b_i["z"] + W_h["z"] @ h_prev + b_h["z"]), "update gate")
hn = cell.let("hn", W_h["n"] @ h_prev + b_h["n"], "hidden part of the candidate")
cell.print_as(odot(r, hn), r"\mathbf{s}", "hidden part after the reset gate")
n = cell.let("n", tanh(W_i["n"] @ x + b_i["n"] + odot(r, hn)), "candidate state")
cell.update("h", odot(1 - z, n) + odot(z, h_prev))
