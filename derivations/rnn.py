"""Vanilla RNN of the course notebook."""

from symbptt import Cell, softmax, tanh

cell = Cell("rnn", "Vanilla (Elman) recurrent network as the course notebook writes it.",
            notebook_api=True)
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
Whx = cell.weight("Whx", n_h, n_x, "input-to-hidden weights")
Whh = cell.weight("Whh", n_h, n_h, "hidden-to-hidden weights")
bh = cell.bias("bh", n_h, "hidden bias")
Wyh = cell.weight("Wyh", n_y, n_h, "hidden-to-output weights")
by = cell.bias("by", n_y, "output bias")

h = cell.update("h", tanh(Whx @ x + Whh @ h_prev + bh))
cell.readout("y", softmax(Wyh @ h + by), "prediction")
