"""The cell DSL's messages, whole: each mistake's CellError says what is wrong, where, and how
to fix it, word for word; and what a cell reports about itself (its summary, its roles).

test_bad_cells.py checks the words that matter in each message; these tests came from a
mutation run over ``symbptt/cell.py`` (tools/mutation.py), where a message with a word
added or lost in between still passed.
"""

from __future__ import annotations

import pytest
import sympy as sp
from sympy import MatrixSymbol

from symbptt import Cell, CellError, odot, sigmoid, softmax, stack, tanh
from symbptt.cell import Symbol, check_name, prev_name, step_name
from symbptt.ops import BATCH, Broadcast


def small():
    cell = Cell("bad", "a cell with a mistake")
    n_x, n_h, _ = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W, U, b = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h), cell.bias("b", n_h)
    return cell, n_h, x, h_prev, W, U, b


def declared_twice():
    cell = Cell("ok")
    cell.dims("n")
    cell.weight("n", 2, 2)


def declared_twice_with_meaning():
    cell = Cell("ok")
    cell.weight("W", 2, 2, "first", "w_1")
    cell.bias("W", 2, "second")


def equation_name_taken():
    cell, _, _, h_prev, _, U, _ = small()
    cell.let("W", tanh(U @ h_prev))


def unknown_state():
    cell, _, x, _, W, _, _ = small()
    cell.update("z", tanh(W @ x))


def readout_shape():
    cell, _, _, _, _, U, _ = small()
    cell.readout("y", U)


def never_updated():
    small()[0].validate()


def unused_bias():
    cell, _, x, h_prev, W, U, _ = small()
    cell.update("h", tanh(W @ x + U @ h_prev))
    cell.validate()


def unused_input():
    cell = Cell("ok")
    n = cell.dims("n")[0]
    cell.input("x", n)
    h_prev = cell.state("h", n)
    cell.update("h", tanh(cell.weight("W", n, n) @ h_prev))
    cell.validate()


def let_named(name):
    """A valid cell plus a let called ``name`` (a name the kernel keeps for one of its arrays)."""
    def build():
        cell, _, x, h_prev, W, U, b = small()
        cell.let(name, tanh(W @ x))
        cell.update("h", tanh(W @ x + U @ h_prev + b))
        cell.validate()
    return build


def dimension_unused():
    cell = Cell("ok")
    n_x, n_h, _ = cell.dims("n_x", "n_h", "n_z")
    x = cell.input("x", n_x)
    cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("U", n_h, n_x) @ x))
    cell.validate()


def dimension_only_in_sums():
    cell = Cell("ok")
    n_h, n_z = cell.dims("n_h", "n_z")
    x, h_prev = cell.input("x", n_h + n_z), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_h + n_z) @ x) + h_prev)
    cell.validate()


def updated_twice():
    cell, _, x, h_prev, W, U, _ = small()
    cell.update("h", tanh(W @ x))
    cell.update("h", tanh(U @ h_prev))


def uses_itself():
    cell, n_h, _, _, _, U, _ = small()
    cell.update("h", tanh(U @ MatrixSymbol("h", n_h, BATCH)))


def state_shape():
    cell, _, x, _, _, _, _ = small()
    cell.update("h", tanh(x))


def let(make):
    """A let ``a`` in the small cell: ``make(n_h, x, h_prev, U)`` gives its expression."""
    def run():
        cell, n_h, x, h_prev, _, U, _ = small()
        cell.let("a", make(cell, n_h, x, h_prev, U))
    return run


def cell_weight(cell):
    """The small cell's weight W (n_h × n_x), as the DSL returns it."""
    return MatrixSymbol("W", *cell.symbols["W"].shape)


def sigmoid_gate_times(cell, n_h, x, h_prev, U):
    return cell.let("g", sigmoid(U @ h_prev)) * h_prev


NOT_IDENTIFIER = ("is not a Python identifier (letters, digits and underscores, not starting "
                  "with a digit, not a keyword); it names files and functions")
KERNEL_NAME = ("is a name the generated kernel uses for itself (or starts with an underscore or "
               "array_); choose another")
UNDECLARED = ("which is not declared or not yet defined (equations run in order; a cycle within "
              "a step is not allowed)")
SCALARS = "which the cell does not declare; a coefficient must be a number, a learned one a parameter"
FUNCTIONS = "sigmoid, tanh, relu, exp, log, softplus, elu, softmax"

MESSAGES = [
    ("cell name", lambda: Cell("1bad"), f"cell name '1bad' {NOT_IDENTIFIER}"),
    ("cell name keyword", lambda: Cell("class"), f"cell name 'class' {NOT_IDENTIFIER}"),
    ("cell name not str", lambda: Cell(3), f"cell name 3 {NOT_IDENTIFIER}"),
    ("description", lambda: Cell("ok", 3), "cell ok: the description must be a string, got int"),
    ("identifier", lambda: Cell("ok").dims("a b"),
     ("dimension name 'a b' is not a Python identifier (letters, digits and underscores, not "
      "starting with a digit)")),
    ("keyword", lambda: Cell("ok").dims("for"), "dimension name 'for' is a Python keyword; choose another"),
    ("kernel name", lambda: Cell("ok").dims("np"), f"dimension name 'np' {KERNEL_NAME}"),
    ("underscore", lambda: Cell("ok").weight("_W", 2, 2), f"parameter name '_W' {KERNEL_NAME}"),
    ("input keyword", lambda: Cell("ok").input("for", 2), "input name 'for' is a Python keyword; choose another"),
    ("state kernel name", lambda: Cell("ok").state("np", 2), f"state name 'np' {KERNEL_NAME}"),
    ("array_ prefix", lambda: Cell("ok").weight("array_W", 2, 2), f"parameter name 'array_W' {KERNEL_NAME}"),
    ("input of an undefined size", lambda: Cell("ok").input("x", sp.Symbol("q")),
     "x: dimension q is never defined (declare it with cell.dims)"),
    ("state of an undefined size", lambda: Cell("ok").state("h", sp.Symbol("q")),
     "h: dimension q is never defined (declare it with cell.dims)"),
    ("declared twice", declared_twice,
     ("weight name 'n' is used twice in cell ok: first dim, now weight of shape (2, 2); declare it "
      "once (or start a new Cell)")),
    ("declared twice with meaning", declared_twice_with_meaning,
     ("bias name 'W' is used twice in cell ok: first weight of shape (2, 2), meaning 'first', latex "
      "'w_1', now bias of shape (2, 1), meaning 'second'; declare it once (or start a new Cell)")),
    ("equation name taken", equation_name_taken, "equation name 'W' is used twice in cell bad"),
    ("undefined dimension", lambda: Cell("ok").weight("W", sp.Symbol("q"), 2),
     "W: dimension q is never defined (declare it with cell.dims)"),
    ("unknown state", unknown_state, "update of 'z': no state of that name (declare it with cell.state)"),
    ("readout shape", readout_shape,
     "readout y: has shape (n_h, n_h); a readout needs one column per batch entry, (n, m)"),
    ("never updated", never_updated, "cell bad: state 'h' is never updated (add cell.update('h', ...))"),
    ("unused", unused_bias, "cell bad: bias 'b' is declared but never used in an equation"),
    ("unused input", unused_input, "cell ok: input 'xt' is declared but never used in an equation"),
    ("no equations", lambda: Cell("ok").validate(), "cell ok: no equations"),
    ("kernel's array", let_named("h_seq"),
     "cell bad: the name 'h_seq' is what the generated kernel calls its array for 'h'; rename one of them"),
    ("dimension unused", dimension_unused,
     ("cell ok: dimension 'n_z' is declared but no parameter, input or state uses it; remove it "
      "from cell.dims")),
    ("dimension only in sums", dimension_only_in_sums,
     ("cell ok: dimension 'n_z' appears only inside sums of sizes, so a kernel cannot read it from "
      "its arguments; give some parameter, input or state exactly that size")),
    ("a state's initial-value name", let_named("h0"),
     "cell bad: the name 'h0' is what the generated kernel calls its array for 'h'; rename one of them"),
    ("size never declared", let(lambda cell, n_h, x, h_prev, U: tanh(MatrixSymbol("h_prev", sp.Symbol("q"), BATCH))),
     "equation a (let): dimension q is never defined (declare it with cell.dims)"),
    ("updated twice", updated_twice, "equation h (update): state 'h' is updated twice"),
    ("uses itself", uses_itself, "equation h (update): uses the new value of h to define itself; use h_prev"),
    ("undeclared", let(lambda cell, n_h, x, h_prev, U: tanh(U @ MatrixSymbol("q", n_h, BATCH))),
     f"equation a (let): uses 'q', {UNDECLARED}"),
    ("state shape", state_shape, "equation h (update): has shape (n_x, m) but the state is (n_h, m)"),
    ("not a matrix", let(lambda *args: sp.Integer(3)), "equation a (let): needs a matrix expression, got Integer 3"),
    ("scalar symbol", let(lambda cell, n_h, x, h_prev, U: sp.Symbol("k") * (U @ h_prev)),
     f"equation a (let): uses the scalar symbol(s) 'k', {SCALARS}"),
    ("two scalar symbols", let(lambda cell, n_h, x, h_prev, U: sp.Symbol("k") * sp.Symbol("j") * (U @ h_prev)),
     f"equation a (let): uses the scalar symbol(s) 'j', 'k', {SCALARS}"),
    ("unknown function", let(lambda cell, n_h, x, h_prev, U: sp.Function("f")(U @ h_prev)),
     f"equation a (let): f is not an elementwise function symbptt knows; use one of {FUNCTIONS} from symbptt"),
    ("scalar function", let(lambda cell, n_h, x, h_prev, U: sp.sin(n_h) * (U @ h_prev)),
     f"equation a (let): sin is not a matrix operation; use the functions of symbptt ({FUNCTIONS})"),
    ("product meant as odot", let(sigmoid_gate_times),
     ("equation a (let): matrix product g · h_prev: g is (n_h, m) and h_prev is (n_h, m); the inner "
      "sizes m and n_h differ; if you meant the elementwise product, write odot(g, h_prev) (in SymPy "
      "`*` is the matrix product, like `@`)")),
    ("two sizes in a sum", let(lambda cell, n_h, x, h_prev, U: tanh(x) + U @ h_prev),
     ("equation a (let): sum of operands with different shapes: U*h_prev (n_h, m), Tanh(xt) (n_x, m); "
      "if n_h and n_x must be the same size (an input added to a hidden pre-activation), declare one "
      "dimension and use it for both (the kernel's DIMS then ask for it once)")),
    ("product of mismatched sizes", let(lambda cell, n_h, x, h_prev, U: cell_weight(cell) @ h_prev),
     ("equation a (let): matrix product W · h_prev: W is (n_h, n_x) and h_prev is (n_h, m); the "
      "inner sizes n_x and n_h differ")),
    ("bias of an undefined size", lambda: small()[0].bias("c", sp.Symbol("q")),
     "c: dimension q is never defined (declare it with cell.dims)"),
    ("vector of an undefined size", lambda: small()[0].vector("p", sp.Symbol("q")),
     "p: dimension q is never defined (declare it with cell.dims)"),
    ("bias shape", let(lambda cell, n_h, x, h_prev, U: U @ h_prev + MatrixSymbol("b", n_h, 1)),
     ("equation a (let): sum of operands with different shapes: U*h_prev (n_h, m), b (n_h, 1); a bias "
      "of shape (n, 1) is declared with cell.bias()")),
]


@pytest.mark.parametrize("make, message", [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
def test_each_mistake_has_its_whole_message(make, message):
    with pytest.raises(CellError) as err:
        make()
    assert str(err.value) == message


def test_a_cell_reports_its_declarations():
    cell = Cell("gru_like", "doc")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x, h_prev = cell.input("x", n_x, "input"), cell.state("h", n_h, "hidden", r"\mathbf{h}")
    Wz, bz = cell.weight("Wz", n_h, n_h + n_x, "update weights"), cell.bias("bz", n_h)
    p = cell.vector("p", n_h, "peephole")
    z = cell.let("z", sigmoid(Wz @ stack(h_prev, x) + bz + odot(p, h_prev)), "update gate", "z")
    h = cell.update("h", odot(z, h_prev))
    cell.readout("y", softmax(cell.weight("Wy", n_y, n_h) @ h))
    assert repr(cell) == ("Cell('gru_like', dims=[n_x, n_h, n_y], inputs=[x], states=[h], "
                          "parameters=[Wz, bz, p, Wy], equations=[z, h, y])")
    assert cell.states == ["h"] and cell.inputs == ["x"] and cell.readouts == ["y"]
    assert [(s.name, s.role) for s in cell.parameters] == [
        ("Wz", "weight"), ("bz", "bias"), ("p", "vector"), ("Wy", "weight")]
    assert cell.symbols["p"] == Symbol("p", "vector", (n_h, sp.Integer(1)), "peephole")
    assert cell.symbols["bz"].shape == (n_h, sp.Integer(1))
    assert cell.symbols["xt"] == Symbol("xt", "input", (n_x, BATCH), "input")
    assert cell.symbols["h_prev"] == Symbol("h_prev", "state", (n_h, BATCH), "hidden", r"\mathbf{h}")
    # The new state takes the state's meaning unless the update gives one.
    assert cell.symbols["h"] == Symbol("h", "next", (n_h, BATCH), "hidden")
    assert cell.symbols["z"] == Symbol("z", "intermediate", (n_h, BATCH), "update gate", "z")
    assert cell.symbols["y"].role == "readout"
    assert [e.kind for e in cell.equations] == ["let", "update", "readout"]
    assert isinstance(cell.bias("bz", n_h), Broadcast) and isinstance(cell.vector("p", n_h, "peephole"), Broadcast)
    assert cell.by_role("weight") == [cell.symbols["Wz"], cell.symbols["Wy"]]
    assert (prev_name("c"), step_name("u")) == ("c_prev", "ut")
    cell.validate()


def test_declaring_again_identically_returns_the_same_symbols():
    cell, n_h, x, h_prev, W, U, b = small()
    n_x = cell.dimensions["n_x"]
    assert cell.dims("n_x", "n_h") == (n_x, n_h)
    assert cell.input("x", n_x) == x and cell.state("h", n_h) == h_prev
    assert cell.weight("W", n_h, n_x) == W and cell.bias("b", n_h) == b
    a = cell.let("a", tanh(W @ x + b))
    assert cell.let("a", tanh(W @ x + b)) == a
    assert [e.name for e in cell.equations] == ["a"]
    cell.update("h", tanh(a + U @ h_prev))
    cell.update("h", tanh(a + U @ h_prev))
    assert [e.name for e in cell.equations] == ["a", "h"]
    assert len(cell.symbols) == 10


def test_print_as_names_an_operand_for_reports_only():
    cell, _, x, h_prev, _, _, _ = small()
    u = stack(h_prev, x)
    assert cell.print_as(u, r"\mathbf{u}", "stacked") is u
    assert cell.printed_names == {u: (r"\mathbf{u}", "stacked")}


def test_check_name_accepts_an_ordinary_name():
    check_name("W_h2", "weight")
    with pytest.raises(CellError, match="^weight name 3 is not a Python identifier"):
        check_name(3, "weight")


def test_meanings_and_latex_reach_the_symbols_and_equations():
    cell = Cell("described", "")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h, n_x)
    b = cell.bias("b", n_h, "bias", r"\mathbf{b}")
    b2 = cell.bias("b2", n_h)
    v = cell.vector("v", n_h)
    g = cell.let("g", tanh(W @ x + b), "gate", "g")
    plain = cell.let("plain", tanh(W @ x + b2))
    h = cell.update("h", odot(g, h_prev) + odot(v, plain))
    cell.readout("y", softmax(h), "prediction", r"\hat{y}")
    cell.readout("y2", softmax(h))
    n1 = sp.Integer(1)
    assert cell.symbols["b"] == Symbol("b", "bias", (n_h, n1), "bias", r"\mathbf{b}")
    assert cell.symbols["b2"] == Symbol("b2", "bias", (n_h, n1), "", "")
    assert cell.symbols["v"] == Symbol("v", "vector", (n_h, n1), "", "")
    eq = {e.name: e for e in cell.equations}
    assert (eq["g"].meaning, eq["g"].latex) == ("gate", "g")
    assert (eq["plain"].meaning, eq["plain"].latex) == ("", "")
    assert (eq["y"].meaning, eq["y"].latex) == ("prediction", r"\hat{y}")
    assert (eq["y2"].meaning, eq["y2"].latex) == ("", "")
    assert cell.symbols["y"] == Symbol("y", "readout", (n_h, BATCH), "prediction", r"\hat{y}")
    assert cell.symbols["y2"] == Symbol("y2", "readout", (n_h, BATCH), "", "")
    u = cell.print_as(stack(h_prev, x), "u")
    assert cell.printed_names[u] == ("u", "")


def test_a_cell_shows_its_equations_in_latex():
    cell, _, x, h_prev, W, U, b = small()
    cell.update("h", tanh(W @ x + U @ h_prev + b))
    assert cell._repr_latex_() == (
        r"$$\begin{aligned}\mathbf{h}_{t} &= \tanh\left(\mathbf{U} \mathbf{h}_{t-1} + \mathbf{W} "
        r"\mathbf{x}_{t} + \mathbf{b}\right)\end{aligned}$$")


def test_state_forms_are_refused_only_for_states():
    cell = Cell("g_zero", "a gate g and a value named g0")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    W = cell.weight("W", n_h, n_x)
    g = cell.let("g", tanh(W @ x))
    g0 = cell.let("g0", sigmoid(W @ x))
    cell.update("h", odot(g, g0) + h_prev)
    cell.validate()  # g0 and dg_next are only the kernel's names for a state's arrays


def test_equations_declared_again_with_their_meaning_are_the_same():
    cell, _, x, h_prev, W, U, b = small()
    a = cell.let("a", tanh(W @ x + b), "gate", "a")
    assert cell.let("a", tanh(W @ x + b), "gate", "a") == a
    cell.update("h", tanh(a + U @ h_prev), "new state", r"\mathbf{h}")
    cell.update("h", tanh(a + U @ h_prev), "new state", r"\mathbf{h}")
    assert [(e.name, e.meaning, e.latex) for e in cell.equations] == [
        ("a", "gate", "a"), ("h", "new state", r"\mathbf{h}")]


def test_each_equation_records_its_sums_in_source_order():
    # Reports print a sum's terms in the order the cell file writes them (issue 9).
    cell, _, x, h_prev, W, U, b = small()
    cell.let("a", tanh(W @ x + U @ h_prev + b))
    cell.let("c", tanh(U @ h_prev + W @ x))
    assert cell.term_order["a"] == ((("MatMul", "W", "xt"), ("MatMul", "U", "h_prev"), ("Broadcast", "b", "m")),)
    assert cell.term_order["c"] == ((("MatMul", "U", "h_prev"), ("MatMul", "W", "xt")),)


def test_dimensions_are_positive_integers_and_inputs_states_have_empty_defaults():
    cell = Cell("defaults", "")
    (n,) = cell.dims("n")
    assert n.is_integer is True and n.is_positive is True
    cell.input("x", n)
    cell.state("h", n)
    assert cell.symbols["xt"] == Symbol("xt", "input", (n, BATCH), "", "")
    assert cell.symbols["h_prev"] == Symbol("h_prev", "state", (n, BATCH), "", "")
    # Declared again with the same meaning and LaTeX: the same symbol, no error.
    described = Cell("described_again", "")
    (k,) = described.dims("k")
    first = described.state("c", k, "cell state", "c")
    assert described.state("c", k, "cell state", "c") == first
    assert described.input("u", k, "input", "u") == described.input("u", k, "input", "u")
