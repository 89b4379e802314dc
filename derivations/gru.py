"""GRU of the course notebook: the reset gate acts on h_prev before the candidate's product."""

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("gru", "Gated recurrent unit (Cho et al. 2014) as the course notebook writes it.",
            notebook_api=True)
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
Wz, bz = cell.weight("Wz", n_h, n_h + n_x, "update gate weights"), cell.bias("bz", n_h, "update gate bias")
Wr, br = cell.weight("Wr", n_h, n_h + n_x, "reset gate weights"), cell.bias("br", n_h, "reset gate bias")
Wh, bh = cell.weight("Wh", n_h, n_h + n_x, "candidate weights"), cell.bias("bh", n_h, "candidate bias")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")

u = cell.print_as(stack(h_prev, x), r"\mathbf{u}", "previous state and input, stacked")
z = cell.let("z", sigmoid(Wz @ u + bz), "update gate")
r = cell.let("r", sigmoid(Wr @ u + br), "reset gate")
s = cell.print_as(odot(r, h_prev), r"\mathbf{s}", "previous state after the reset gate")
v = cell.print_as(stack(s, x), r"\mathbf{v}", "reset state and input, stacked")
h_tilde = cell.let("h_tilde", tanh(Wh @ v + bh), "candidate state")
h = cell.update("h", odot(z, h_prev) + odot(1 - z, h_tilde))
cell.readout("y", softmax(Wy @ h + by), "prediction")
