"""Minimal gated unit (Zhou et al. 2016): one forget gate does the work of the GRU's two."""

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("mgu", "Minimal gated unit (Zhou et al. 2016): a single forget gate f both resets "
            "h_prev inside the candidate and mixes the candidate in.")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
Wf, bf = cell.weight("Wf", n_h, n_h + n_x, "forget gate weights"), cell.bias("bf", n_h, "forget gate bias")
Wh, bh = cell.weight("Wh", n_h, n_h + n_x, "candidate weights"), cell.bias("bh", n_h, "candidate bias")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")

cell.print_as(stack(h_prev, x), r"\mathbf{u}", "previous state and input, stacked")
f = cell.let("f", sigmoid(Wf @ stack(h_prev, x) + bf), "forget gate")
cell.print_as(odot(f, h_prev), r"\mathbf{s}", "previous state after the forget gate")
cell.print_as(stack(odot(f, h_prev), x), r"\mathbf{v}", "gated state and input, stacked")
h_tilde = cell.let("h_tilde", tanh(Wh @ stack(odot(f, h_prev), x) + bh), "candidate state")
h = cell.update("h", odot(1 - f, h_prev) + odot(f, h_tilde))
cell.readout("y", softmax(Wy @ h + by), "prediction")
