"""What a cell from the literature needs of the DSL, and the messages when it is misused.

* A number next to a matrix means that number times the all-ones matrix (``1 + exp(u)``,
  ``2 - z``, ``z - 1``, ``0.5 * h``); next to a SymPy sum or product (``1 + W @ x``) the
  loader names the file, line and equation and says how to write it.
* ``cell.vector`` declares a per-unit vector parameter (peepholes, IndRNN's u): role
  "vector", shape (n, 1), broadcast over the batch, a gradient of its own.
* A cell whose input size must equal the hidden size uses one dimension for both; the
  kernel's DIMS then ask for it once. Two different sizes in one sum get a hint.
* NumPy's functions on the symbolic matrices (``np.tanh(h)``) and ``*`` meant as ``odot``
  are named with the line, the equation and the symbptt function to use; ``symbptt
  codegen`` prints that as one line on stderr.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from sympy import OneMatrix

from symbptt import Cell, CellError, exp, fdcheck, log, odot, relu, sigmoid, softmax, tanh, torch_oracle
from symbptt.cell import Var
from symbptt.codegen import kernel_module
from symbptt.loader import LoadError, load
from symbptt.ops import Broadcast
from symbptt.report import Printers, symbol_rows

TOLERANCE = 1e-6

needs_torch = pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")


def max_errors(kernel, cell: Cell, truncate=None) -> tuple[float, float]:
    """Worst relative error against finite differences and against the torch oracle."""
    fd = fdcheck.check(kernel, m=2, T=3, truncate=truncate)
    oracle = (torch_oracle.compare_with_kernel(kernel, cell, m=2, T=3, truncate=truncate)
              if torch_oracle.available() else {"skipped": 0.0})
    return max(fd.values()), max(oracle.values())


# -- numbers next to matrices ----------------------------------------------------------------

Z = Var("z", 2, 3)


ONES = sp.ones(2, 3)


@pytest.mark.parametrize("make, expected", [
    (lambda z: 1 + z, lambda a: ONES + a),
    (lambda z: z + 1, lambda a: a + ONES),
    (lambda z: 2 - z, lambda a: 2 * ONES - a),
    (lambda z: z - 2, lambda a: a - 2 * ONES),
    (lambda z: 1 - z, lambda a: ONES - a),
    (lambda z: 0.5 + z, lambda a: 0.5 * ONES + a),
    (lambda z: sp.Rational(1, 3) - z, lambda a: sp.Rational(1, 3) * ONES - a),
    (lambda z: 0.5 * z, lambda a: 0.5 * a),
    (lambda z: z / 2, lambda a: a / 2),
], ids=["1+z", "z+1", "2-z", "z-2", "1-z", "0.5+z", "1/3-z", "0.5*z", "z/2"])
def test_a_number_next_to_a_matrix_means_that_number_times_ones(make, expected):
    got = make(Z).as_explicit()
    assert sp.simplify(got - expected(Z.as_explicit())) == sp.zeros(2, 3)


@pytest.mark.parametrize("make, terms", [
    (lambda u: 1 + exp(u), lambda u: [OneMatrix(2, 3), exp(u)]),
    (lambda u: exp(u) + 1, lambda u: [OneMatrix(2, 3), exp(u)]),
    (lambda u: 3 - tanh(u), lambda u: [sp.MatMul(3, OneMatrix(2, 3)), sp.MatMul(-1, tanh(u))]),
    (lambda u: sigmoid(u) - 1, lambda u: [sp.MatMul(-1, OneMatrix(2, 3)), sigmoid(u)]),
    (lambda u: 0.5 + relu(u), lambda u: [sp.MatMul(0.5, OneMatrix(2, 3)), relu(u)]),
], ids=["1+exp(u)", "exp(u)+1", "3-tanh(u)", "sigmoid(u)-1", "0.5+relu(u)"])
def test_a_number_next_to_a_function_is_a_sum_with_ones(make, terms):
    expr = make(Z)
    assert isinstance(expr, sp.MatAdd) and set(expr.args) == set(terms(Z))


def test_one_minus_is_unchanged():
    """``1 - z`` keeps the form every built-in cell (and generated/) was derived from."""
    from symbptt.ops import one_minus

    assert (1 - Z) == one_minus(Z)
    assert 0 + Z == Z and Z - 0 == Z


def numbers_cell() -> Cell:
    """Numbers next to named values, functions and inputs, in every position."""
    cell = Cell("numbers", "numbers plus or minus matrices")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h)
    z = cell.let("z", sigmoid(W @ x + U @ h_prev))
    s = cell.let("s", log(1 + exp(U @ h_prev)))  # softplus
    q = cell.let("q", 2 - z)
    cell.update("h", odot(q, 0.5 * h_prev) + (tanh(s) - 1) + odot(z - 0.25, s))
    return cell


@pytest.mark.parametrize("truncate", [None, 2])
def test_numbers_cell_matches_differences_and_torch(truncate):
    cell = numbers_cell()
    fd, oracle = max_errors(kernel_module(cell), cell, truncate)
    assert fd <= TOLERANCE and oracle <= 1e-10, (fd, oracle)


def write_cell(tmp_path, body: str, name: str = "mistake.py"):
    """A cell file with a small preamble (dims n_x, n_h; x, h_prev, W, U, z) and ``body``."""
    preamble = (
        "import numpy as np\n"
        "from symbptt import Cell, odot, sigmoid, tanh\n"
        "cell = Cell('mistake', 'a cell with a mistake')\n"
        "n_x, n_h = cell.dims('n_x', 'n_h')\n"
        "x = cell.input('x', n_x)\n"
        "h_prev = cell.state('h', n_h)\n"
        "W, U = cell.weight('W', n_h, n_x), cell.weight('U', n_h, n_h)\n"
        "z = cell.let('z', sigmoid(W @ x + U @ h_prev))\n"
    )
    path = tmp_path / name
    path.write_text(preamble + body)
    return path


def load_error(path) -> str:
    with pytest.raises((CellError, LoadError)) as info:
        load(path)
    return str(info.value)


def test_a_number_plus_a_sympy_product_names_line_equation_and_fix(tmp_path):
    path = write_cell(tmp_path, "h = cell.update('h', 1 + W @ x + U @ h_prev)\n")
    message = load_error(path)
    assert message.startswith("mistake.py, line 9, equation h: ")
    assert "number" in message and "cell.let" in message and "1 + exp(u)" in message


# -- per-unit vectors -------------------------------------------------------------------------


def indrnn_like() -> Cell:
    """h = relu(W·x + u ⊙ h_prev + b): u is a per-unit vector, b a bias."""
    cell = Cell("indrnn_like", "IndRNN-like")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    u = cell.vector("u", n_h, "recurrent weights of each unit")
    h = cell.update("h", relu(cell.weight("W", n_h, n_x) @ x + odot(u, h_prev)
                              + cell.bias("b", n_h)))
    cell.readout("y", tanh(cell.weight("Wy", n_h, n_h) @ h))
    return cell


def test_vector_is_declared_as_its_own_role():
    cell = Cell("v")
    (n_h,) = cell.dims("n_h")
    u = cell.vector("u", n_h, "per-unit factor", latex=r"\mathbf{u}")
    assert isinstance(u, Broadcast) and u.shape == (n_h, sp.Symbol("m", integer=True, positive=True))
    sym = cell.symbols["u"]
    assert (sym.role, sym.shape, sym.meaning, sym.latex) == ("vector", (n_h, 1), "per-unit factor",
                                                             r"\mathbf{u}")
    assert [p.name for p in cell.parameters] == ["u"]


def test_parameters_keep_declaration_order_with_vectors():
    cell = Cell("order")
    (n_h,) = cell.dims("n_h")
    cell.weight("W", n_h, n_h), cell.vector("p", n_h), cell.bias("b", n_h), cell.vector("q", n_h)
    assert [p.name for p in cell.parameters] == ["W", "p", "b", "q"]


@pytest.mark.parametrize("bad, words", [
    (lambda c, n: c.vector("u", n, "another meaning"), ("'u'", "used twice", "another meaning")),
    (lambda c, n: c.vector("2u", n), ("'2u'", "not a Python identifier")),
    (lambda c, n: c.vector("v", sp.Symbol("n_z", integer=True, positive=True)),
     ("v", "dimension n_z", "never defined")),
], ids=["twice", "identifier", "undeclared dimension"])
def test_vector_declaration_errors_name_it(bad, words):
    cell = Cell("bad")
    (n_h,) = cell.dims("n_h")
    cell.vector("u", n_h)
    with pytest.raises(CellError, match="".join(f"(?=.*{re.escape(w)})" for w in words)):
        bad(cell, n_h)


def test_unused_vector_is_reported():
    cell = Cell("bad")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    cell.state("h", n_h)
    cell.vector("u", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x))
    with pytest.raises(CellError, match="vector 'u' is declared but never used"):
        cell.validate()


def test_vector_kernel_has_its_key_shape_and_gradient():
    kernel = kernel_module(indrnn_like())
    params = kernel.init_parameters({"n_x": 3, "n_h": 4}, np.random.default_rng(0))
    assert params["u"].shape == (4, 1) and params["b"].shape == (4, 1)
    big = kernel.init_parameters({"n_x": 3, "n_h": 2000}, np.random.default_rng(0))["u"]
    assert np.abs(big).max() <= 1 and big.std() > 0.5  # U(−1, 1): per-unit, |u| ≤ 1
    problem = fdcheck.random_problem(kernel, {"n_x": 3, "n_h": 4}, m=5, T=3)
    _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
    grads = kernel.backward(cache, problem.upstream)
    assert grads["du"].shape == (4, 1)
    assert np.abs(grads["du"]).max() > 0  # u is used: a zero gradient would be a lost term


@pytest.mark.parametrize("truncate", [None, 2])
def test_vector_cell_matches_differences_and_torch(truncate):
    cell = indrnn_like()
    fd, oracle = max_errors(kernel_module(cell), cell, truncate)
    assert fd <= TOLERANCE and oracle <= 1e-10, (fd, oracle)


def test_report_lists_the_vector_with_its_role():
    from symbptt import derive

    derivation = derive(indrnn_like())
    rows = symbol_rows(derivation, Printers.of(derivation))
    kinds = {row["meaning"]: row["kind"] for row in rows if row["meaning"]}
    assert kinds["recurrent weights of each unit"] == "vector"


# -- input size equal to the hidden size ------------------------------------------------------


def same_size_cell() -> Cell:
    """h = tanh(tanh(x) + U·h_prev): x is added to a hidden pre-activation, so n_x is n_h."""
    cell = Cell("same_size", "input as wide as the state")
    n_h, n_y = cell.dims("n_h", "n_y")
    x, h_prev = cell.input("x", n_h), cell.state("h", n_h)
    h = cell.update("h", tanh(tanh(x) + cell.weight("U", n_h, n_h) @ h_prev))
    cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h))
    return cell


def test_one_dimension_for_input_and_state_is_what_dims_ask_for():
    cell = same_size_cell()
    kernel = kernel_module(cell)
    assert kernel.DIMS == ("n_h", "n_y")
    assert kernel.rows({"n_h": 3, "n_y": 2}) == {"x": 3, "h": 3, "y": 2}
    fd, oracle = max_errors(kernel, cell)
    assert fd <= TOLERANCE and oracle <= 1e-10, (fd, oracle)


def test_two_sizes_in_one_sum_suggest_one_dimension():
    cell = Cell("bad")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    with pytest.raises(CellError, match=r"equation h .*n_h and n_x must be the same size.*one "
                                        r"dimension"):
        cell.update("h", tanh(x) + cell.weight("U", n_h, n_h) @ h_prev)


# -- NumPy by mistake, * for odot -------------------------------------------------------------


@pytest.mark.parametrize("body, line, function, replacement", [
    ("h = cell.update('h', np.tanh(W @ x + U @ h_prev))\n", 9, "np.tanh", "use tanh"),
    ("h = cell.update('h', odot(z, np.tanh(h_prev)))\n", 9, "np.tanh", "use tanh"),
    ("h = cell.update(\n    'h',\n    np.maximum(W @ x + U @ h_prev, 0))\n", 11, "np.maximum",
     "use relu"),
    ("from numpy import exp\nh = cell.update('h', exp(U @ h_prev))\n", 10, "exp", "use exp"),
    ("def sig(u):\n    return 1 / (1 + np.exp(-u))\n\n\nh = cell.update('h', sig(W @ x))\n",
     10, "np.exp", "use exp"),
    ("h = cell.update('h', tanh(np.dot(W, x)))\n", 9, "np.dot", "@ operator"),
    ("h = cell.update('h', np.sin(h_prev))\n", 9, "np.sin", "sigmoid, tanh, relu"),
], ids=["np.tanh(sum)", "np.tanh(state)", "np.maximum multiline", "from numpy import",
        "inside a helper", "np.dot", "np.sin (no counterpart)"])
def test_numpy_function_names_line_equation_and_replacement(tmp_path, body, line, function,
                                                            replacement):
    message = load_error(write_cell(tmp_path, body))
    assert message.startswith(f"mistake.py, line {line}, equation h: {function} is NumPy's")
    assert replacement in message and "from symbptt" in message


def test_numpy_function_on_a_named_value_outside_a_file():
    """Without the loader, NumPy on one of symbptt's matrices still says what to use."""
    with pytest.raises(TypeError, match="np.tanh is NumPy's function.*use tanh from symbptt"):
        np.tanh(Z)


def test_star_for_odot_names_line_equation_and_odot(tmp_path):
    message = load_error(write_cell(tmp_path, "h = cell.update('h', z * h_prev)\n"))
    assert message.startswith("mistake.py, line 9: equation h (update): matrix product z · h_prev")
    assert "odot(z, h_prev)" in message


def test_codegen_prints_one_line_and_fails(tmp_path):
    path = write_cell(tmp_path, "h = cell.update('h', odot(z, np.tanh(h_prev)))\n")
    result = subprocess.run([sys.executable, "-m", "symbptt.cli", "codegen", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "line 9, equation h: np.tanh" in result.stderr and "use tanh" in result.stderr


def test_cell_error_in_a_file_gets_its_line(tmp_path):
    message = load_error(write_cell(tmp_path, "h = cell.update('h', U @ x)\n"))
    assert message.startswith("mistake.py, line 9: equation h (update): matrix product U · xt")
