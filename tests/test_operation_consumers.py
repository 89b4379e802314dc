"""Every declared operation through every consumer, so a missing piece fails by name.

The operations come from the registry (``symbptt.ops.FUNCTIONS``), never from a list kept
here: declaring a new one in ``symbptt/ops.py`` is enough for it to be walked through the
generated kernel (against finite differences), the PyTorch kernel (against the NumPy one),
the symbolic proof (and the check of its
declared derivative), the PyTorch oracle, the LaTeX printer and the hand-derivation parser,
the docstring printer and the report's gradient-norm plot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from symbptt import Cell, derive, fdcheck, handcheck, odot, ops, proof, torch_oracle
from symbptt.array_module import TORCH
from symbptt.codegen import kernel_module, torch_kernel
from symbptt.notation import latex_printer
from symbptt.report import gradient_norms
from symbptt.text import text
from symbptt.verify import verify

OPERATIONS = list(ops.FUNCTIONS.items())
NAMES = [name for name, _ in OPERATIONS]


def make_cell(name: str, op: type) -> Cell:
    """g = op(W x + U h_prev + b), h = tanh(g): the operand kept in the operation's domain,
    the state bounded (so that long runs, as in the report's plot, stay finite)."""
    cell = Cell(f"uses_{name}")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    u = (cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev
         + cell.bias("b", n_h))
    if getattr(op, "domain", "real") == "positive":
        u = cell.let("u", u)
        u = ops.add(sp.OneMatrix(*u.shape), odot(u, u))
    cell.update("h", ops.Tanh(cell.let("g", op(u))))
    return cell


@pytest.fixture(scope="module", params=OPERATIONS, ids=NAMES)
def operation(request):
    name, op = request.param
    return name, op, make_cell(name, op)


def test_registry_is_not_empty_and_names_match():
    assert {"sigmoid", "tanh", "softmax"} <= set(ops.FUNCTIONS)
    for name, op in OPERATIONS:
        assert op.op_name == name, f"{name}: registered under another name than its op_name"


def test_declaration_is_complete(operation):
    name, op, _ = operation
    missing = [field for field in ("numpy_name", "latex_name", "parser_names", "numpy_eval",
                                   "torch_eval") if not getattr(op, field, None)]
    if issubclass(op, ops.Pointwise):
        missing += [f for f in ("latex_derivative", "sympy_scalar") if not getattr(op, f, None)]
    assert not missing, f"operation {name} declares no {', '.join(missing)}"
    assert isinstance(op.numpy_out, bool), f"operation {name}: numpy_out must be a bool"
    if not op.numpy_name.startswith("np."):
        assert f"def {op.numpy_name}(" in op.numpy_helper, (
            f"operation {name}: kernel callable {op.numpy_name} needs a helper def")


def test_torch_declaration_is_complete(operation):
    """The PyTorch kernel's spelling: a torch function, or a helper ``def`` of that name
    written with torch (never NumPy); ``out=`` wherever the NumPy one takes it."""
    name, op, _ = operation
    assert op.torch_name, f"operation {name} declares no torch_name"
    if op.torch_name.startswith("torch."):
        assert not op.torch_helper, f"operation {name}: torch's own {op.torch_name} needs no helper"
        return
    assert f"def {op.torch_name}(" in op.torch_helper, (
        f"operation {name}: kernel callable {op.torch_name} needs a torch_helper def")
    assert "np." not in op.torch_helper, f"operation {name}: torch_helper calls NumPy"
    if op.numpy_out:
        assert f"def {op.torch_name}(u, out=None)" in op.torch_helper, (
            f"operation {name}: the plan applies it in place, so its torch helper takes out=")


@pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")
def test_torch_kernel_equals_the_numpy_kernel(operation):
    import torch

    name, _, cell = operation
    source = torch_kernel(derive(cell))
    assert "np." not in source, f"operation {name}: NumPy in the torch kernel"
    kernel, tkernel = kernel_module(cell), kernel_module(cell, module="torch")
    problem = fdcheck.random_problem(kernel, fdcheck.dims_for(kernel, {"n_x": 3, "n_h": 4}), 2, 3)
    as_tensors = lambda arrays: {k: torch.tensor(v) for k, v in arrays.items()}
    for truncate in (None, 2):
        _, cache = kernel.forward(problem.parameters, problem.x, problem.initial_states)
        expected = kernel.backward(cache, problem.upstream, truncate=truncate)
        _, tcache = tkernel.forward(as_tensors(problem.parameters), torch.tensor(problem.x),
                                    as_tensors(problem.initial_states))
        actual = tkernel.backward(tcache, as_tensors(problem.upstream), truncate=truncate)
        errors = {k: fdcheck.relative_error(v, actual[k].numpy()) for k, v in expected.items()}
        assert max(errors.values()) <= 1e-12, f"operation {name} (truncate={truncate}): {errors}"


def test_kernel_matches_finite_differences(operation):
    name, _, cell = operation
    kernel = kernel_module(cell)
    for truncate in (None, 2):
        errors = fdcheck.check(kernel, m=2, T=3, truncate=truncate, sizes={"n_x": 3, "n_h": 4})
        assert max(errors.values()) <= 1e-6, f"operation {name} (truncate={truncate}): {errors}"


def test_kernel_helpers_are_emitted_in_a_fixed_order(operation):
    name, op, cell = operation
    d = derive(cell)
    exprs = [e.expr for e in d.forward] + [a.expr for a in d.backward + d.parameters]
    helpers = ops.kernel_helpers(exprs)
    assert helpers == ops.kernel_helpers(list(reversed(exprs))), name
    assert helpers[:2] == [ops.Sigmoid.numpy_helper, ops.Softmax.numpy_helper], name
    if op.numpy_helper:
        assert helpers.count(op.numpy_helper) == 1, f"operation {name}: helper missing or twice"
    torch_helpers = ops.kernel_helpers(exprs, TORCH)
    if op.torch_helper:
        assert torch_helpers.count(op.torch_helper) == 1, f"operation {name}: torch helper missing or twice"


def test_declared_derivative_is_the_derivative_of_the_definition(operation):
    name, op, _ = operation
    if issubclass(op, ops.Pointwise):
        assert proof.check_derivative(op) == "", f"operation {name}: {proof.check_derivative(op)}"


def test_symbolic_proof(operation):
    name, _, cell = operation
    results = proof.prove_keys(cell, sizes={"n_x": 1, "n_h": 2}, T=2)
    wrong = [f"{r.key}: {r.counterexample}" for r in results if not r.proved]
    assert results and not wrong, f"operation {name}: not proved: {wrong}"


@pytest.mark.skipif(not torch_oracle.available(), reason="PyTorch is not installed")
def test_torch_oracle(operation):
    name, _, cell = operation
    for truncate in (None, 2):
        errors = torch_oracle.compare_with_kernel(kernel_module(cell), cell, truncate=truncate)
        assert max(errors.values()) <= 1e-10, f"operation {name} (truncate={truncate}): {errors}"


def test_latex_reads_back_through_the_hand_derivation_parser(operation):
    name, op, cell = operation
    d = derive(cell)
    expr = d.equation("g").expr
    assert isinstance(expr, op), f"operation {name}: the derivation lowered g to {expr}"
    written = latex_printer(d).doprint(expr)
    try:
        parsed = handcheck.parse_latex(written, handcheck.Resolver(handcheck._symbols(d)))
    except handcheck.HandParseError as err:
        pytest.fail(f"operation {name}: the parser cannot read its LaTeX {written!r}: {err}")
    same = (type(parsed) is type(expr) and parsed.args[0].name == expr.args[0].name
            and ops.same_dim(parsed.shape[0], expr.shape[0]))
    assert same, f"operation {name}: {written!r} read back as {parsed}, not {expr}"


#: Where a printed derivative is compared with the function's slope (away from kinks at 0).
SLOPE_POINTS = (-2.3, -0.7, -0.1, 0.2, 0.9, 2.6)


@pytest.mark.parametrize("name,op", [(n, o) for n, o in OPERATIONS if issubclass(o, ops.Pointwise)],
                         ids=[n for n, o in OPERATIONS if issubclass(o, ops.Pointwise)])
def test_printed_derivative_is_the_slope_of_the_function(name, op):
    """The report prints ``latex_derivative`` as d f(u)/du: read back by the hand-derivation
    parser and evaluated, it must equal the central difference of the NumPy function."""
    u = sp.MatrixSymbol("u", 1, 1)
    try:
        parsed = handcheck.parse_latex(op.latex_derivative, handcheck.Resolver({"u": u}))
    except handcheck.HandParseError as err:
        pytest.fail(f"operation {name}: the parser cannot read its printed derivative "
                    f"{op.latex_derivative!r}: {err}")
    points = [p for p in SLOPE_POINTS if getattr(op, "domain", "real") != "positive" or p > 0]
    for p in points:
        value = float(proof.Evaluator(proof.NumpyBackend(), {}, {"u": np.array([[p]])})(parsed)[0, 0])
        h = 1e-6
        slope = float((op.numpy_eval(np.array(p + h)) - op.numpy_eval(np.array(p - h))) / (2 * h))
        assert value == pytest.approx(slope, rel=1e-6, abs=1e-8), (
            f"operation {name}: printed derivative {op.latex_derivative!r} gives {value} at u = {p}, "
            f"the function's slope is {slope}")


def test_derived_adjoint_in_latex_is_accepted_as_a_hand_derivation(operation):
    """The operand's adjoint (the declared derivative at work), printed, parsed and checked."""
    name, _, cell = operation
    d = derive(cell)
    operand = d.equation("g").expr.args[0].name
    [adjoint] = [a for a in d.backward if a.target == operand]
    written = latex_printer(d).doprint(adjoint.expr)
    [result] = handcheck.check_hand_derivation(d, {adjoint.symbol.name: written})
    assert result.equivalent, f"operation {name}: {result.report()}"
    wrong = r"\delta g_t \odot g_t \odot g_t"  # f'(u) taken as f(u)²: no operation's derivative
    [result] = handcheck.check_hand_derivation(d, {adjoint.symbol.name: wrong})
    assert not result.equivalent, f"operation {name}: a wrong derivative was accepted"


def test_text_and_report_labels(operation):
    name, op, cell = operation
    d = derive(cell)
    shown = text(d.equation("g").expr)
    assert shown.startswith(f"{getattr(op, 'text_name', '') or name}("), (
        f"operation {name}: docstring form {shown!r}")
    norms = gradient_norms(cell, steps=6)
    assert len(norms) == 6 and all(math.isfinite(v) for v in norms), f"operation {name}: {norms}"


def test_a_missing_evaluator_is_named():
    class Broken(ops.Pointwise):
        op_name = "broken"

        def derivative(self, out):
            return out

    u = sp.MatrixSymbol("u", 2, 1)
    evaluate = proof.Evaluator(proof.NumpyBackend(), {}, {"u": [[1.0], [2.0]]})
    with pytest.raises(proof.EvaluationError, match="broken"):
        evaluate(Broken(u))
    assert "broken" in proof.check_derivative(Broken)


def test_verify_evaluates_an_elementwise_power_inside_a_sum():
    """SymPy writes c ⊙ c inside a sum as HadamardPower(c, 2); every check evaluates it."""
    cell = Cell("square")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    c = cell.let("c", cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev)
    gate = ops.Sigmoid(cell.weight("V", n_h, n_x) @ x)
    expr = 0.5 * odot(c, c) + odot(gate, h_prev)
    assert expr.atoms(sp.HadamardPower), expr
    cell.update("h", ops.Tanh(expr))
    rows = verify(cell)
    failed = [r for r in rows if r.ok is False]
    assert not failed, failed
    assert {r.check.split(" (")[0] for r in rows} >= {"finite differences", "symbolic proof",
                                                       "torch autograd", "derived equations"}
