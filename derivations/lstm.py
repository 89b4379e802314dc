"""LSTM of the course notebook: four gates on the stacked [h_prev; x]."""

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("lstm", "Long short-term memory (Hochreiter & Schmidhuber 1997) as the course "
            "notebook writes it.", notebook_api=True)
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
c_prev = cell.state("c", n_h, "cell state")
Wf, bf = cell.weight("Wf", n_h, n_h + n_x, "forget gate weights"), cell.bias("bf", n_h, "forget gate bias")
Wi, bi = cell.weight("Wi", n_h, n_h + n_x, "input gate weights"), cell.bias("bi", n_h, "input gate bias")
Wc, bc = cell.weight("Wc", n_h, n_h + n_x, "candidate weights"), cell.bias("bc", n_h, "candidate bias")
Wo, bo = cell.weight("Wo", n_h, n_h + n_x, "output gate weights"), cell.bias("bo", n_h, "output gate bias")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")

cell.print_as(stack(h_prev, x), r"\mathbf{u}", "previous state and input, stacked")
f = cell.let("f", sigmoid(Wf @ stack(h_prev, x) + bf), "forget gate")
i = cell.let("i", sigmoid(Wi @ stack(h_prev, x) + bi), "input gate")
c_tilde = cell.let("c_tilde", tanh(Wc @ stack(h_prev, x) + bc), "candidate cell state")
c = cell.update("c", odot(f, c_prev) + odot(i, c_tilde))
o = cell.let("o", sigmoid(Wo @ stack(h_prev, x) + bo), "output gate")
h = cell.update("h", odot(o, tanh(c)))
cell.readout("y", softmax(Wy @ h + by), "prediction")
