"""LSTM with peephole connections (Gers & Schmidhuber 2000): the gates look at the cell state.

Why this cell: it is the first of the built-ins in which a gate reads *another* state through
an elementwise product with a learned per-unit vector (``p_i ⊙ c_prev``, ``p_f ⊙ c_prev``), and
in which a gate reads the *new* value of a state within the step (``p_o ⊙ c``). The states
are declared ``h`` first, as the course notebook's LSTM declares them, although ``c`` is
updated first; the kernel must name every value before it is read whatever that order.
The peephole weights are ``cell.vector`` parameters (one factor per unit), as in Gers,
Schraudolph & Schmidhuber (2002) and Graves (2013), eq. 7–11.
"""

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("lstm_peephole", "LSTM with peephole connections (Gers & Schmidhuber 2000): the "
            "input and forget gates see c_prev, the output gate sees the new c.")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
c_prev = cell.state("c", n_h, "cell state")
Wi, bi = cell.weight("Wi", n_h, n_h + n_x, "input gate weights"), cell.bias("bi", n_h, "input gate bias")
Wf, bf = cell.weight("Wf", n_h, n_h + n_x, "forget gate weights"), cell.bias("bf", n_h, "forget gate bias")
Wc, bc = cell.weight("Wc", n_h, n_h + n_x, "candidate weights"), cell.bias("bc", n_h, "candidate bias")
Wo, bo = cell.weight("Wo", n_h, n_h + n_x, "output gate weights"), cell.bias("bo", n_h, "output gate bias")
p_i = cell.vector("p_i", n_h, "input gate peephole")
p_f = cell.vector("p_f", n_h, "forget gate peephole")
p_o = cell.vector("p_o", n_h, "output gate peephole")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")

cell.print_as(stack(h_prev, x), r"\mathbf{u}", "previous state and input, stacked")
i = cell.let("i", sigmoid(Wi @ stack(h_prev, x) + odot(p_i, c_prev) + bi), "input gate")
f = cell.let("f", sigmoid(Wf @ stack(h_prev, x) + odot(p_f, c_prev) + bf), "forget gate")
c_tilde = cell.let("c_tilde", tanh(Wc @ stack(h_prev, x) + bc), "candidate cell state")
c = cell.update("c", odot(f, c_prev) + odot(i, c_tilde))
o = cell.let("o", sigmoid(Wo @ stack(h_prev, x) + odot(p_o, c) + bo), "output gate")
h = cell.update("h", odot(o, tanh(c)))
cell.readout("y", softmax(Wy @ h + by), "prediction")
