"""LSTM as PyTorch's nn.LSTM computes it: separate input and hidden weights and biases."""

from symbptt import Cell, odot, sigmoid, tanh

cell = Cell("lstm_torch", "One layer of torch.nn.LSTM (gates i, f, g, o; two biases per gate); "
            "no readout.")
n_x, n_h = cell.dims("n_x", "n_h")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
c_prev = cell.state("c", n_h, "cell state")
W_i = {g: cell.weight(f"W_i{g}", n_h, n_x, f"input weights of gate {g}") for g in "ifgo"}
W_h = {g: cell.weight(f"W_h{g}", n_h, n_h, f"hidden weights of gate {g}") for g in "ifgo"}
b_i = {g: cell.bias(f"b_i{g}", n_h, f"input bias of gate {g}") for g in "ifgo"}
b_h = {g: cell.bias(f"b_h{g}", n_h, f"hidden bias of gate {g}") for g in "ifgo"}


def pre(g):
    return W_i[g] @ x + b_i[g] + W_h[g] @ h_prev + b_h[g]


i = cell.let("i", sigmoid(pre("i")), "input gate")
f = cell.let("f", sigmoid(pre("f")), "forget gate")
g = cell.let("g", tanh(pre("g")), "candidate cell state")
o = cell.let("o", sigmoid(pre("o")), "output gate")
c = cell.update("c", odot(f, c_prev) + odot(i, g))
cell.update("h", odot(o, tanh(c)))
