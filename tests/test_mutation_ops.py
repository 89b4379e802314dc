"""Every operation of symbptt/ops.py on explicit matrices: each VJP rule against central
differences of the operation's own evaluator, each printed form (array code and LaTeX) read
back and evaluated to the same value, the shape errors and their messages, and the small
expression builders (add, scale, matmul, hadamard) by the values they build.

These tests came from a mutation run over ``symbptt/ops.py`` (tools/mutation.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, ZeroMatrix

from symbptt import handcheck, ops, proof
from symbptt.array_module import NUMPY, TORCH
from symbptt.printers import NumPyPrinter, TextbookLatexPrinter

N, M = 3, 4
A = MatrixSymbol("A", N, M)
B = MatrixSymbol("B", 2, M)
C = MatrixSymbol("C", N, M)
P = MatrixSymbol("P", M, 2)
c = MatrixSymbol("c", N, 1)
W = MatrixSymbol("W", 2, N)
D = MatrixSymbol("D", 1, M)
E = MatrixSymbol("E", N, M)
SYMBOLS = {s.name: s for s in (A, B, C, P, c, W, D, E)}


def values(seed: int = 0, positive: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in SYMBOLS.values():
        v = rng.normal(size=(s.shape[0], s.shape[1]))
        out[s.name] = np.abs(v) + 0.5 if positive else v
    return out


def evaluate(expr, env: dict[str, np.ndarray]) -> np.ndarray:
    value = proof.Evaluator(proof.NumpyBackend(), {ops.BATCH: M}, env)(expr)
    rows, cols = (int(sp.sympify(d).subs(ops.BATCH, M)) for d in expr.shape)
    return np.broadcast_to(np.asarray(value, dtype=float), (rows, cols))


#: (id, expression, operands the gradient is checked for, positive operands only)
CASES = [
    ("reciprocal", ops.Reciprocal(A), [A], True),
    ("feature_sum", ops.FeatureSum(A), [A], False),
    ("batch_sum", ops.BatchSum(A), [A], False),
    ("broadcast", ops.Broadcast(c, M), [c], False),
    ("stack", ops.Stack(A, B), [A, B], False),
    ("stack3", ops.Stack(B, A, D), [A, B, D], False),
    ("row_slice_middle", ops.RowSlice(A, 1, 2), [A], False),
    ("row_slice_top", ops.RowSlice(A, 0, 2), [A], False),
    ("row_slice_bottom", ops.RowSlice(A, 1, 3), [A], False),
    ("row_slice_all", ops.RowSlice(A, 0, 3), [A], False),
    ("softmax", ops.Softmax(A), [A], False),
    ("sigmoid", ops.Sigmoid(A), [A], False),
    ("tanh", ops.Tanh(A), [A], False),
    ("exp", ops.Exp(A), [A], False),
    ("log", ops.Log(A), [A], True),
    ("softplus", ops.Softplus(A), [A], False),
    ("elu", ops.Elu(A), [A], False),
    ("relu", ops.Relu(A), [A], False),
    ("matmul", MatMul(W, A), [W, A], False),
    ("matmul3", MatMul(sp.Integer(3), W, A, P), [W, A, P], False),
    ("matmul_scaled", MatMul(sp.Rational(-1, 2), A), [A], False),
    ("matadd", MatAdd(A, C, OneMatrix(N, M)), [A, C], False),
    ("hadamard", HadamardProduct(A, C), [A, C], False),
    ("hadamard3", HadamardProduct(A, C, ops.Tanh(E)), [A, C], False),
    ("hadamard_power2", HadamardPower(A, 2), [A], False),
    ("hadamard_power3", HadamardPower(A, 3), [A], False),
    ("hadamard_power1", HadamardPower(A, 1), [A], False),
    ("transpose", A.T, [A], False),
]


def _numeric_gradient(expr, operand, env, G, h=1e-6):
    grad = np.zeros(env[operand.name].shape)
    for idx in np.ndindex(grad.shape):
        shifted = {k: v.copy() for k, v in env.items()}
        shifted[operand.name][idx] += h
        up = np.sum(G * evaluate(expr, shifted))
        shifted[operand.name][idx] -= 2 * h
        down = np.sum(G * evaluate(expr, shifted))
        grad[idx] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("name,expr,operands,positive", CASES, ids=[c[0] for c in CASES])
def test_vjp_equals_central_differences(name, expr, operands, positive):
    """The adjoint each rule gives its operands, evaluated, is the slope of ⟨G, f(X)⟩."""
    env = values(1, positive)
    rows, cols = (int(sp.sympify(d).subs(ops.BATCH, M)) for d in expr.shape)
    out, G = MatrixSymbol("out", *expr.shape), MatrixSymbol("G", *expr.shape)
    env["out"] = evaluate(expr, env)
    env["G"] = np.random.default_rng(2).normal(size=(rows, cols))
    grads = ops.vjp(expr, out, G)
    assert len(grads) == len(expr.args)
    for arg, grad in zip(expr.args, grads):
        if not getattr(arg, "is_Matrix", False) or not isinstance(arg, MatrixSymbol):
            if not getattr(arg, "is_Matrix", False):
                assert grad is None, f"{name}: a non-matrix operand {arg} got an adjoint {grad}"
            continue
        if arg not in operands:
            continue
        assert grad is not None, f"{name}: operand {arg} got no adjoint"
        assert tuple(grad.shape) == tuple(arg.shape), f"{name}: adjoint of {arg} has shape {grad.shape}"
        numeric = _numeric_gradient(expr, arg, env, env["G"])
        given = evaluate(grad, env)
        assert np.allclose(given, numeric, rtol=1e-6, atol=1e-7), (
            f"{name}: adjoint of {arg} is {grad} =\n{given}\nfinite differences give\n{numeric}")


def test_constant_operands_receive_nothing():
    assert ops.vjp(MatAdd(A, OneMatrix(N, M)), A, C) == (C, None)
    assert ops.vjp(MatAdd(ZeroMatrix(N, M), A), A, C) == (None, C)
    assert ops.vjp(ops.Step(A), A, C) == (None,)
    assert ops.vjp(ops.Broadcast(c, M), A, C)[1] is None
    assert ops.vjp(ops.RowSlice(A, 0, 2), A, B)[1:] == (None, None, None)
    assert ops.vjp(HadamardPower(A, 2), A, C)[1] is None


def test_a_rule_with_the_wrong_number_of_adjoints_is_refused():
    class Two(ops.Node):
        op_name = "two"

        @property
        def shape(self):
            return self.args[0].shape

        def vjp(self, out, G):
            return (G,)

    with pytest.raises(AssertionError, match=r"^VJP rule of Two returned 1 adjoints for 2 operands$"):
        ops.vjp(Two(A, C), A, C)
    with pytest.raises(TypeError, match=r"^operation MatrixSymbol has no VJP rule$"):
        ops.vjp(A, A, C)


@pytest.mark.parametrize("k", [sp.Integer(0), sp.Integer(-1), sp.Rational(1, 2)])
def test_elementwise_power_needs_a_positive_integer(k):
    node = HadamardPower(A, k)
    with pytest.raises(TypeError, match=f"^elementwise power {re.escape(str(node))} needs a positive integer exponent$"):
        ops.vjp_hadamard_power(node, A, C)
    with pytest.raises(TypeError, match=f"^elementwise power {re.escape(str(node))} needs a positive integer exponent$"):
        ops.evaluate_hadamard_power(node, proof.Evaluator(proof.NumpyBackend(), {}, values()))


#: The hand-derivation parser reads neither a fraction (``-\frac{1}{2} A``) nor an elementwise
#: power (``A^{\odot 2}``); those are compared by their code only.
NOT_PARSED = ("matmul_scaled", "hadamard_power2", "hadamard_power3", "hadamard_power1")
PRINTED = [c for c in CASES if c[0] not in ("matadd",)] + [
    ("matadd_with_ones", MatAdd(A, C, OneMatrix(N, M)), [], False),
    ("difference", MatAdd(A, MatMul(-1, C)), [], False),
    ("step", ops.Step(A), [], False),
    ("stack_of_transposes", ops.Stack(A, P.T), [], False),
]


def _code_namespace(module=NUMPY):
    space: dict = {"np": np}
    for helper in ops.kernel_helpers([ops.FUNCTIONS[n](A) for n in ops.FUNCTIONS], module):
        exec(helper, space)  # noqa: S102 - the kernel helpers, as the kernel defines them
    return space


@pytest.mark.parametrize("name,expr,operands,positive", PRINTED, ids=[c[0] for c in PRINTED])
def test_printed_code_computes_the_value(name, expr, operands, positive):
    env = values(3, positive)
    code = NumPyPrinter().doprint(expr)
    value = eval(code, _code_namespace(), dict(env))
    shape = evaluate(expr, env).shape
    assert np.allclose(np.broadcast_to(np.asarray(value, dtype=float), shape), evaluate(expr, env)), (
        f"{name}: {code!r}")


@pytest.mark.parametrize("name,expr,operands,positive", [c for c in PRINTED if c[0] not in NOT_PARSED],
                         ids=[c[0] for c in PRINTED if c[0] not in NOT_PARSED])
def test_printed_latex_reads_back_as_the_same_value(name, expr, operands, positive):
    env = values(4, positive)
    written = TextbookLatexPrinter(lambda s: s).doprint(expr)
    parsed = handcheck.parse_latex(written, handcheck.Resolver(SYMBOLS))
    assert np.allclose(evaluate(parsed, env), evaluate(expr, env)), f"{name}: {written!r} read as {parsed}"


def test_row_slice_prints_its_bounds():
    assert NumPyPrinter().doprint(ops.RowSlice(A, 0, 3)) == "A[:]"
    assert NumPyPrinter().doprint(ops.RowSlice(A, 0, 2)) == "A[:2]"
    assert NumPyPrinter().doprint(ops.RowSlice(A, 1, 3)) == "A[1:]"
    assert NumPyPrinter().doprint(ops.RowSlice(A, 1, 2)) == "A[1:2]"
    # textbook rows are counted from 1: rows 2..3 of A
    assert TextbookLatexPrinter(lambda s: s).doprint(ops.RowSlice(A, 1, 3)) == r"\left[A\right]_{2:3}"


def test_torch_spellings_of_the_sums():
    from symbptt.printers import TorchPrinter

    assert TorchPrinter().doprint(ops.FeatureSum(A)) == TORCH.spell("sum", a="A", axis=0)
    assert TorchPrinter().doprint(ops.BatchSum(A)) == TORCH.spell("sum", a="A", axis=1)


def test_shape_errors_name_the_operands_and_their_shapes():
    n_h, n_x = sp.symbols("n_h n_x", integer=True, positive=True)
    h = MatrixSymbol("h", n_h, ops.BATCH)
    x = MatrixSymbol("x", n_x, ops.BATCH)
    b = MatrixSymbol("b", n_h, 1)
    U = MatrixSymbol("U", n_h, n_h)
    assert ops.fmt_shape((n_h, ops.BATCH)) == "(n_h, m)"
    with pytest.raises(ops.ShapeError) as err:
        ops.shape_of(ops.Stack(h, b, x))
    assert str(err.value) == "stack [h; b; x] needs equal columns; got h (n_h, m), b (n_h, 1), x (n_x, m)"
    for parts in [(h, x, b), (b, h, x), (b, h)]:
        with pytest.raises(ops.ShapeError, match="needs equal columns"):
            ops.shape_of(ops.Stack(*parts))
    assert ops.shape_of(ops.Stack(h, x)) == (n_h + n_x, ops.BATCH)
    with pytest.raises(ops.ShapeError) as err:
        ops.shape_of(ops.Broadcast(h))
    assert str(err.value) == "broadcast needs a column (n, 1); got h of shape (n_h, m)"
    assert ops.shape_of(ops.Broadcast(b)) == (n_h, ops.BATCH)
    with pytest.raises(ops.ShapeError) as err:
        ops.shape_of(MatMul(U, x))
    assert str(err.value) == ("matrix product U · x: U is (n_h, n_h) and x is (n_x, m); "
                              "the inner sizes n_h and n_x differ")
    assert ops.shape_of(MatMul(2, U, h)) == (n_h, ops.BATCH)
    with pytest.raises(ops.ShapeError) as err:
        ops.shape_of(MatAdd(h, b))
    assert str(err.value) == ("sum of operands with different shapes: h (n_h, m), b (n_h, 1); "
                              "a bias of shape (n, 1) is declared with cell.bias()")
    with pytest.raises(ops.ShapeError) as err:
        ops.shape_of(HadamardProduct(h, x))
    assert str(err.value) == "elementwise product of operands with different shapes: h (n_h, m), x (n_x, m)"
    with pytest.raises(ops.ShapeError, match="elementwise product"):
        ops.shape_of(HadamardProduct(h, MatrixSymbol("y", n_h, 2)))
    # an error deep inside is found: every operand is checked
    with pytest.raises(ops.ShapeError, match="matrix product"):
        ops.shape_of(ops.Tanh(MatAdd(h, MatMul(U, x))))
    assert ops.shape_of(ops.RowSlice(ops.Stack(h, x), n_h, n_h + n_x)) == (n_x, ops.BATCH)
    assert ops.shape_of(h.T) == (ops.BATCH, n_h)
    assert ops.shape_of(HadamardPower(h, 2)) == (n_h, ops.BATCH)
    with pytest.raises(TypeError, match=r"^operation Inverse is not supported \(no shape or VJP rule\)$"):
        ops.shape_of(sp.Inverse(U))


def test_a_stack_needs_two_parts():
    with pytest.raises(ValueError, match=r"^stack\(\) needs at least two matrices$"):
        ops.Stack(A)
    assert ops.Stack(A, B).offsets() == [(0, 3), (3, 5)]
    assert ops.Stack(A, B).shape == (5, M)


def test_operation_names_and_evaluation_errors():
    assert ops.operation_name(ops.Softplus(A)) == "softplus"
    assert ops.operation_name(ops.FeatureSum(A)) == "feature sum"
    assert ops.operation_name(HadamardPower(A, 2)) == "HadamardPower"

    class Opaque(ops.Node):
        op_name = "opaque"

    with pytest.raises(ops.EvaluationError) as err:
        ops.evaluate(Opaque(A), proof.Evaluator(proof.NumpyBackend(), {}, values()))
    assert str(err.value) == "operation opaque cannot be evaluated (no evaluation rule): Opaque(A)"
    with pytest.raises(ops.EvaluationError, match=r"^operation Inverse cannot be evaluated \(no evaluation rule\): U\*\*\(-1\)$"):
        ops.evaluate(sp.Inverse(MatrixSymbol("U", N, N)), proof.Evaluator(proof.NumpyBackend(), {}, values()))


def test_builders_fold_coefficients_and_repeated_terms():
    assert ops.add(A, None, A) == MatMul(2, A)
    assert ops.add(A, C) == MatAdd(A, C)
    assert ops.add(A) is A
    with pytest.raises(ValueError, match=r"^add\(\) needs at least one term$"):
        ops.add(None)
    assert ops.scale(-1, ops.scale(-1, A)) == A
    env = values(5)
    tripled = ops.scale(3, MatMul(2, W, A))
    assert [a for a in tripled.args if not a.is_Matrix] == [6]
    assert np.allclose(evaluate(tripled, env), 6 * env["W"] @ env["A"])
    assert ops.scale(1, A) is A
    product = ops.matmul(MatMul(2, W), MatMul(3, A))
    assert product == MatMul(6, MatMul(W, A)) or product == MatMul(6, W, A)
    assert np.allclose(evaluate(product, env), 6 * env["W"] @ env["A"])
    assert ops.matmul(A) is A
    assert ops.hadamard(MatMul(2, A), C) == MatMul(2, HadamardProduct(A, C))
    assert ops.hadamard(HadamardProduct(A, C), A) == HadamardProduct(A, C, A)
    # one factor is that factor, not a one-factor product (the planner unpacks products)
    assert ops.hadamard(MatMul(2, A)) == MatMul(2, A)
    assert ops.hadamard(A) is A
    assert ops.hadamard(MatMul(2, W.T, W, A), C) == HadamardProduct(MatMul(2, W.T, W, A), C)
    one_minus = evaluate(ops.one_minus(A), env)
    assert np.allclose(one_minus, 1 - env["A"])


def test_operations_in_preorder_and_helpers_in_declaration_order():
    expr = ops.Softplus(MatAdd(ops.Tanh(A), ops.Elu(ops.Sigmoid(C)), ops.Tanh(C)))
    assert ops.operations(expr) == [ops.Softplus, ops.Tanh, ops.Elu, ops.Sigmoid]
    helpers = ops.kernel_helpers([expr])
    names = [h.split("(")[0].removeprefix("def ") for h in helpers]
    assert names == ["sigmoid", "softmax", "relu", "softplus", "elu"]
    assert [h.split("(")[0].removeprefix("def ") for h in ops.kernel_helpers([A])] == ["sigmoid", "softmax", "relu"]
    assert [h.split("(")[0].removeprefix("def ") for h in ops.kernel_helpers([A], TORCH)] == ["softmax", "relu"]


def test_same_dim_is_provable_equality():
    n = sp.Symbol("n", integer=True, positive=True)
    assert ops.same_dim((n + 1) ** 2, n**2 + 2 * n + 1)
    assert not ops.same_dim(n, n + 1)
    assert ops.is_leaf(A) and ops.is_leaf(OneMatrix(2, 2)) and ops.is_leaf(ZeroMatrix(2, 2))
    assert not ops.is_leaf(ops.Tanh(A))
    assert ops.is_nonlinear(ops.Tanh(A)) and not ops.is_nonlinear(ops.Step(A)) and not ops.is_nonlinear(A)


def test_softmax_evaluator_is_stable_for_large_columns():
    """Each column is shifted by its own maximum: columns far apart keep finite values."""
    a = np.array([[1000.0, -1000.0], [1001.0, -1001.0]])
    e = np.e
    expected = np.array([[1 / (1 + e), e / (1 + e)], [e / (1 + e), 1 / (1 + e)]])
    assert np.allclose(ops.Softmax.numpy_eval(a), expected)
    space = _code_namespace()
    assert np.allclose(space["softmax"](a), expected)


def test_the_adjoint_of_a_stack_adjoint_puts_each_part_back_in_its_rows():
    """Stack's adjoint slices G; each slice's own adjoint pads back to the stacked height."""
    expr = ops.Stack(A, B, D)
    G = MatrixSymbol("G", 6, M)
    env = values(6)
    grads = ops.vjp(expr, G, G)
    total = np.zeros((6, M))
    for part, grad in zip(expr.args, grads):
        assert isinstance(grad, ops.RowSlice) and grad.args[3] == 6, grad
        back = ops.vjp(grad, part, part)[0]
        value = evaluate(back, env)
        assert value.shape == (6, M), f"{grad}: its adjoint {back} has shape {value.shape}"
        total += value
    assert np.allclose(total, evaluate(expr, env))


def test_a_node_without_rules_is_named():
    class Bare(ops.Pointwise):
        op_name = "bare"

    class Plain(ops.Node):
        op_name = "plain"

    with pytest.raises(NotImplementedError, match=r"^operation bare declares no derivative$"):
        ops.vjp(Bare(A), A, C)
    with pytest.raises(NotImplementedError, match=r"^operation plain has no VJP rule$"):
        ops.vjp(Plain(A), A, C)


def test_a_square_adjoint_has_no_power_of_one():
    """d(a∘2)/da = 2 G ⊙ a: the printed adjoint shows a, not a∘1."""
    [grad, _] = ops.vjp(HadamardPower(A, 2), A, C)
    assert not grad.atoms(HadamardPower), grad
