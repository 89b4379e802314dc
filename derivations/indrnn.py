"""Independently recurrent network, IndRNN (Li et al. 2018): each unit sees only its own past.

Why this cell: its recurrence is not a matrix product but an elementwise one with a learned
per-unit vector, h = relu(W·x + u ⊙ h_prev + b), so the gradient through time is a product
of diagonal factors u ⊙ 1[a > 0] rather than of Uᵀ; none of the built-ins has that shape,
nor a relu state. ``u`` is a ``cell.vector`` parameter (initialised in [−1, 1], where the
paper keeps |u| bounded so the recurrence neither explodes nor vanishes).
"""

from symbptt import Cell, odot, relu, softmax

cell = Cell("indrnn", "Independently recurrent neural network (Li et al. 2018): a relu unit "
            "whose recurrent weight is one number per unit.")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
W = cell.weight("W", n_h, n_x, "input weights")
u = cell.vector("u", n_h, "recurrent weights, one per unit")
b = cell.bias("b", n_h, "hidden bias")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")

h = cell.update("h", relu(W @ x + odot(u, h_prev) + b))
cell.readout("y", softmax(Wy @ h + by), "prediction")
