"""Every operation a cell may use, each declared once: shape rule, VJP rule, renderings.

An operation is either one of SymPy's own matrix-expression classes (product, sum,
elementwise product, transpose, constant matrices) or one of the node classes below
(elementwise functions, softmax, stacking, row slices, bias broadcast, sums).

For each operation this module holds, in one place:

* ``shape``: the shape of the node given its operands' shapes, or a :class:`ShapeError`
  naming the operands and their shapes;
* ``vjp``: the vector-Jacobian product, as SymPy matrix expressions. Given the node, the
  symbol that names its forward value (pointwise functions reuse it: σ' = σ(1 − σ),
  tanh' = 1 − tanh²) and the adjoint ``G`` of the node, it returns one adjoint per operand
  (``None`` for an operand that receives nothing, such as a constant);
* ``numpy`` and ``latex``: how the node prints (our own nodes only; SymPy's classes are
  printed by :mod:`symbptt.printers`); a function's kernel name and helper per array
  library (``numpy_name``/``numpy_helper`` for NumPy and CuPy, ``torch_name``/``torch_helper``
  for PyTorch; :mod:`symbptt.array_module` chooses which);
* ``evaluate``: how the explicit-matrix evaluators of :mod:`symbptt.proof` (SymPy, NumPy)
  and :mod:`symbptt.torch_oracle` (PyTorch) compute it.

A function a cell may call (σ, tanh, softplus, …) is one class decorated with
:func:`function`; its declaration also carries the NumPy code of any helper the kernel
needs, the LaTeX of the function and of its derivative, its plain-text name, its names in
the hand-derivation parser and its definition as a SymPy scalar expression (against which
the symbolic proof checks the declared derivative). Every consumer reads these
declarations; none keeps its own table.

Adding an operation means adding one class here (or one entry in ``SYMPY_RULES``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixExpr

from .arith import NumberArithmetic
from .array_module import NUMPY, ArrayModule

Shape = tuple[sp.Expr, sp.Expr]

#: The batch dimension: every per-step value has ``m`` columns.
BATCH = sp.Symbol("m", integer=True, positive=True)


class ShapeError(ValueError):
    """Operands of an operation whose shapes do not fit together."""


class EvaluationError(TypeError):
    """An expression node an evaluator has no rule for; the message names it."""


#: Functions a cell may call, by name (the DSL's vocabulary), in declaration order; filled
#: by :func:`function`. ``symbptt`` exports one function per entry.
FUNCTIONS: dict[str, type[Node]] = {}


def function(cls: Any) -> Any:
    """Declare ``cls`` (an operation class with an ``op_name``) a function of the DSL."""
    FUNCTIONS[cls.op_name] = cls
    return cls


def same_dim(a: sp.Expr, b: sp.Expr) -> bool:
    """True when two symbolic sizes are provably equal."""
    return sp.expand(a - b) == 0


def fmt_shape(shape: Shape) -> str:
    """A shape as the user wrote it: ``(n_h, m)``."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def add(*terms: MatrixExpr) -> MatrixExpr:
    """Sum of matrix terms without SymPy's one-term ``MatAdd`` wrapper."""
    counts: dict = {}
    for t in terms:
        if t is not None:
            counts[t] = counts.get(t, 0) + 1
    if not counts:
        raise ValueError("add() needs at least one term")
    merged = [t if n == 1 else scale(n, t) for t, n in counts.items()]
    return merged[0] if len(merged) == 1 else MatAdd(*merged)


def scale(coeff, expr: MatrixExpr) -> MatrixExpr:
    """``coeff · expr`` with nested scalar coefficients multiplied out (−(−x) is x)."""
    if isinstance(expr, MatMul):
        inner, factors = _matmul_split(expr)
        coeff, expr = coeff * inner, (factors[0] if len(factors) == 1 else MatMul(*factors))
    return expr if coeff == 1 else MatMul(coeff, expr)


def matmul(*factors: MatrixExpr) -> MatrixExpr:
    """Matrix product of the factors, scalar coefficients pulled to the front."""
    coeff, flat = sp.Integer(1), list[MatrixExpr]()
    for f in factors:
        if isinstance(f, MatMul):
            c, inner = _matmul_split(f)
            coeff, flat = coeff * c, flat + inner
        else:
            flat.append(f)
    return scale(coeff, flat[0] if len(flat) == 1 else MatMul(*flat))


def hadamard(*factors: MatrixExpr) -> MatrixExpr:
    """Elementwise product ``a ⊙ b ⊙ …``, flattened, scalar coefficients pulled out."""
    coeff, flat = sp.Integer(1), []
    for f in factors:
        if isinstance(f, MatMul):
            c, inner = _matmul_split(f)
            if len(inner) == 1 and c != 1:
                coeff, f = coeff * c, inner[0]
        if isinstance(f, HadamardProduct):
            flat.extend(f.args)
        else:
            flat.append(f)
    return scale(coeff, flat[0] if len(flat) == 1 else HadamardProduct(*flat))


# --------------------------------------------------------------------------------------
# Our own nodes
# --------------------------------------------------------------------------------------


class Node(NumberArithmetic, MatrixExpr):
    """Base of symbptt's own matrix nodes: a name for messages and a shape rule."""

    #: Short name used in error messages, generated names and reports.
    op_name = "node"
    #: How reports write the operation's name ("" where the report spells the node itself).
    latex_name = ""

    @property
    def shape(self) -> Shape:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def vjp(self, out: MatrixExpr, G: MatrixExpr) -> tuple:  # pragma: no cover
        raise NotImplementedError(f"operation {self.op_name} has no VJP rule")


class Elementwise(Node):
    """A scalar function applied to every entry of one matrix (the shape is kept).

    Evaluators: ``numpy_eval(a)`` on a float64 array, ``torch_eval(a)`` on a tensor, and
    ``sympy_scalar(u)``, the function as a SymPy expression of one scalar.
    """

    numpy_eval: Callable | None = None
    torch_eval: Callable | None = None
    sympy_scalar: Callable | None = None

    def __new__(cls, arg):
        return super().__new__(cls, sp.sympify(arg))

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> Shape:
        return self.arg.shape

    def evaluate(self, ev) -> Any:
        """The value on explicit matrices: the backend applies this operation to the operand."""
        return ev.backend.apply(type(self), ev(self.arg))


class Pointwise(Elementwise):
    """An elementwise function f applied to every entry of one matrix, with a derivative.

    A subclass declares, besides :meth:`derivative` and the evaluators of
    :class:`Elementwise`, how every consumer shows or computes it (the attributes below).
    """

    is_nonlinear = True
    #: How the function is called in the generated NumPy code (a helper of the kernel).
    numpy_name = ""
    #: Whether the kernel's callable accepts ``out=`` (so it can work in place).
    numpy_out = False
    #: Source of the module-level helper ``def`` the kernel needs ("" for NumPy's own).
    numpy_helper = ""
    #: The same for the PyTorch kernel: its callable, which must accept ``out=`` wherever
    #: ``numpy_out`` is set (one plan is printed for both), and the source of its helper.
    torch_name = ""
    torch_helper = ""
    #: The fused (Numba) backend: the function of one scalar ``{u}`` as compiled code
    #: (``scalar_tanh({u})``), and the source of a scalar helper it calls ("" for none); see
    #: :mod:`symbptt.kernels.fused`, which builds the elementwise array function from it.
    numba_scalar = ""
    numba_helper = ""
    #: LaTeX of the function's name, applied as ``name(arg)``.
    latex_name = ""
    #: LaTeX of the derivative in terms of the output ``y`` (shown in reports).
    latex_derivative = ""
    #: The name in docstrings and comments (``σ`` for the sigmoid); empty: ``op_name``.
    text_name = ""
    #: The names the hand-derivation parser reads (a command, or ``\operatorname{…}``).
    parser_names: tuple[str, ...] = ()
    #: What it is, in words (a person's notebook that lacks it gets told so).
    summary = ""
    #: Where it is defined: "real" (every u) or "positive" (u > 0); tests draw operands there.
    domain = "real"

    def derivative(self, out: MatrixExpr) -> MatrixExpr:
        """f'(u) as an expression of the forward value ``out`` = f(u) (and u where needed)."""
        raise NotImplementedError(f"operation {self.op_name} declares no derivative")

    def vjp(self, out, G):
        return (hadamard(G, self.derivative(out)),)

    def _numpycode(self, printer) -> str:
        return f"{printer.module.function_name(type(self))}({printer.doprint(self.arg)})"

    def _latex(self, printer) -> str:
        return rf"{self.latex_name}\left({printer.doprint(self.arg)}\right)"


def one_minus(z: MatrixExpr) -> MatrixExpr:
    """``1 − z`` for a matrix z (SymPy itself refuses a scalar minus a matrix)."""
    return MatAdd(OneMatrix(*z.shape), scale(-1, z))


def _torch():
    """PyTorch, imported when an oracle first needs it (it is optional)."""
    import torch

    return torch


@function
class Sigmoid(Pointwise):
    """Logistic sigmoid σ(u) = 1 / (1 + e^{−u}); σ'(u) = σ(u)(1 − σ(u))."""

    op_name = "sigmoid"
    numpy_name = "sigmoid"
    numpy_out = True
    numpy_helper = '''def sigmoid(u, out=None):
    """Logistic function σ(u) = (1 + tanh(u / 2)) / 2: no overflow for any u; out may be u."""
    out = np.multiply(u, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out'''
    torch_name = "torch.sigmoid"
    numba_scalar = "0.5 + 0.5 * scalar_tanh(0.5 * {u})"
    latex_name = r"\sigma"
    latex_derivative = r"\sigma(u)\,(1 - \sigma(u))"
    text_name = "σ"
    parser_names = (r"\sigma", r"\operatorname{sigmoid}")
    summary = "logistic sigmoid 1/(1 + e^(−u))"

    numpy_eval = staticmethod(lambda a: 1 / (1 + np.exp(-a)))
    torch_eval = staticmethod(lambda a: _torch().sigmoid(a))
    sympy_scalar = staticmethod(lambda u: 1 / (1 + sp.exp(-u)))

    def derivative(self, out):
        return hadamard(out, one_minus(out))


@function
class Tanh(Pointwise):
    """Hyperbolic tangent; tanh'(u) = 1 − tanh²(u)."""

    op_name = "tanh"
    numpy_name = "np.tanh"
    numpy_out = True
    torch_name = "torch.tanh"
    numba_scalar = "scalar_tanh({u})"
    numba_helper = '''def scalar_tanh(u):
    """tanh(u) in arithmetic alone (no library call), so that the compiler vectorizes a loop of
    it: tanh(v), v = u/64, by a rational function (Cephes' coefficients over their constant
    term), then doubled six times with tanh(2v) = 2 tanh(v) / (1 + tanh²(v)), kept as a
    fraction p/q: one division. Within a few units in the last place of np.tanh."""
    v = np.minimum(np.maximum(u, -22.0), 22.0) * 0.015625  # tanh(±22) is ±1; NaN stays NaN
    z = v * v
    q = 1.0 + z * (0.46149035758330637 + z * (0.023288647825489308 + z * 0.00020643827072581487))
    p = v * q + v * z * (-0.3333333333333332 + z * (-0.02049678586110715 + z * -0.00019908889888990266))
    p, q = 2.0 * p * q, p * p + q * q
    p, q = 2.0 * p * q, p * p + q * q
    p, q = 2.0 * p * q, p * p + q * q
    p, q = 2.0 * p * q, p * p + q * q
    p, q = 2.0 * p * q, p * p + q * q
    p, q = 2.0 * p * q, p * p + q * q
    return p / q'''
    latex_name = r"\tanh"
    latex_derivative = r"1 - \tanh^2(u)"
    parser_names = (r"\tanh",)
    summary = "np.tanh"

    numpy_eval = staticmethod(np.tanh)
    torch_eval = staticmethod(lambda a: _torch().tanh(a))
    sympy_scalar = staticmethod(sp.tanh)

    def derivative(self, out):
        return one_minus(hadamard(out, out))


@function
class Relu(Pointwise):
    """Rectifier max(u, 0); its derivative is the step 1[u > 0] = 1[relu(u) > 0]."""

    op_name = "relu"
    numpy_name = "relu"
    numpy_out = True
    numpy_helper = '''def relu(u, out=None):
    return np.maximum(u, 0, out=out)'''
    torch_name = "relu"
    torch_helper = '''def relu(u, out=None):
    return torch.clamp_min(u, 0, out=out)'''
    numba_scalar = "max({u}, 0.0)"
    latex_name = r"\operatorname{relu}"
    latex_derivative = r"\mathbb{1}[u > 0]"
    parser_names = (r"\operatorname{relu}",)
    summary = "relu max(u, 0)"

    numpy_eval = staticmethod(lambda a: np.maximum(a, 0))
    torch_eval = staticmethod(lambda a: _torch().relu(a))
    sympy_scalar = staticmethod(lambda u: sp.Max(u, 0))

    def derivative(self, out):
        return Step(out)


@function
class Exp(Pointwise):
    """Exponential; exp' = exp, so the derivative is the forward value itself."""

    op_name = "exp"
    numpy_name = "np.exp"
    numpy_out = True
    torch_name = "torch.exp"
    numba_scalar = "math.exp({u})"
    latex_name = r"\exp"
    latex_derivative = r"\exp(u)"
    parser_names = (r"\exp",)
    summary = "exponential np.exp"

    numpy_eval = staticmethod(np.exp)
    torch_eval = staticmethod(lambda a: _torch().exp(a))
    sympy_scalar = staticmethod(sp.exp)

    def derivative(self, out):
        return out


@function
class Log(Pointwise):
    """Natural logarithm; log'(u) = 1/u, written with the operand u."""

    op_name = "log"
    numpy_name = "np.log"
    numpy_out = True
    torch_name = "torch.log"
    numba_scalar = "math.log({u})"
    latex_name = r"\log"
    latex_derivative = r"1 / u"
    parser_names = (r"\log",)
    summary = "natural logarithm np.log"
    domain = "positive"

    numpy_eval = staticmethod(np.log)
    torch_eval = staticmethod(lambda a: _torch().log(a))
    sympy_scalar = staticmethod(sp.log)

    def derivative(self, out):
        return Reciprocal(self.arg)


@function
class Softplus(Pointwise):
    """Softplus log(1 + eᵘ), a smooth relu; softplus'(u) = σ(u) = 1 − e^{−softplus(u)}."""

    op_name = "softplus"
    numpy_name = "softplus"
    numpy_out = True
    numpy_helper = '''def softplus(u, out=None):
    """log(1 + e^u) = max(u, 0) + log(1 + e^(-|u|)): no overflow for any u; out may be u."""
    rest = np.abs(u)
    np.negative(rest, out=rest)
    np.exp(rest, out=rest)
    np.log1p(rest, out=rest)
    out = np.maximum(u, 0, out=out)
    out += rest
    return out'''
    torch_name = "softplus"
    torch_helper = '''def softplus(u, out=None):
    """log(1 + e^u) = max(u, 0) + log(1 + e^(-|u|)): no overflow for any u; out may be u."""
    rest = torch.abs(u)
    rest.neg_().exp_().log1p_()
    out = torch.clamp_min(u, 0, out=out)
    out += rest
    return out'''
    numba_scalar = "max({u}, 0.0) + math.log1p(math.exp(-abs({u})))"
    latex_name = r"\operatorname{softplus}"
    latex_derivative = r"1 - \exp(-\operatorname{softplus}(u))"
    parser_names = (r"\operatorname{softplus}",)
    summary = "softplus log(1 + e^u)"

    numpy_eval = staticmethod(lambda a: np.logaddexp(0, a))
    torch_eval = staticmethod(lambda a: _torch().logaddexp(a, _torch().zeros_like(a)))
    sympy_scalar = staticmethod(lambda u: sp.log(1 + sp.exp(u)))

    def derivative(self, out):
        return one_minus(Exp(scale(-1, out)))


@function
class Elu(Pointwise):
    """Exponential linear unit (alpha = 1): u where u > 0, else eᵘ − 1; elu' = 1 or elu + 1."""

    op_name = "elu"
    numpy_name = "elu"
    numpy_out = True
    numpy_helper = '''def elu(u, out=None):
    """u where u > 0, else e^u - 1 (alpha = 1); out may be u."""
    rest = np.minimum(u, 0)
    np.expm1(rest, out=rest)
    out = np.maximum(u, 0, out=out)
    out += rest
    return out'''
    torch_name = "elu"
    torch_helper = '''def elu(u, out=None):
    """u where u > 0, else e^u - 1 (alpha = 1); out may be u."""
    rest = torch.clamp_max(u, 0)
    rest.expm1_()
    out = torch.clamp_min(u, 0, out=out)
    out += rest
    return out'''
    numba_scalar = "max({u}, 0.0) + math.expm1(min({u}, 0.0))"
    latex_name = r"\operatorname{elu}"
    latex_derivative = r"\mathbb{1}[u > 0] + (1 - \mathbb{1}[u > 0])\,(\operatorname{elu}(u) + 1)"
    parser_names = (r"\operatorname{elu}",)
    summary = "elu: u where u > 0, else e^u − 1"

    numpy_eval = staticmethod(lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0))))
    torch_eval = staticmethod(lambda a: _torch().nn.functional.elu(a))
    sympy_scalar = staticmethod(lambda u: sp.Piecewise((u, u > 0), (sp.exp(u) - 1, True)))

    def derivative(self, out):
        """1 where y > 0, else y + 1: written 1 + y − 1[y > 0] ⊙ y (y = elu(u) > 0 iff u > 0)."""
        return add(OneMatrix(*out.shape), out, scale(-1, hadamard(Step(out), out)))


class Step(Elementwise):
    """Heaviside step 1[u > 0], the derivative of relu (no derivative of its own)."""

    op_name = "step"
    is_nonlinear = False

    numpy_eval = staticmethod(lambda a: (a > 0).astype(float))
    torch_eval = staticmethod(lambda a: (a > 0).to(a.dtype))
    sympy_scalar = staticmethod(lambda u: sp.Heaviside(u, 0))

    def vjp(self, out, G):
        return (None,)

    def _numpycode(self, printer):
        return f"({printer.doprint(self.args[0])} > 0)"

    def _latex(self, printer):
        return rf"\mathbb{{1}}\left[{printer.doprint(self.args[0])} > 0\right]"


class Reciprocal(Elementwise):
    """Elementwise 1/u (appears in the derivative of log)."""

    op_name = "reciprocal"
    is_nonlinear = True

    numpy_eval = staticmethod(lambda a: 1 / a)
    torch_eval = staticmethod(lambda a: 1 / a)
    sympy_scalar = staticmethod(lambda u: 1 / u)

    def vjp(self, out, G):
        return (scale(-1, hadamard(G, out, out)),)

    def _numpycode(self, printer):
        return f"(1 / {printer.parenthesize_operand(self.args[0])})"

    def _latex(self, printer):
        return rf"1 \oslash {printer.parenthesize_operand(self.args[0])}"


@function
class Softmax(Node):
    """Softmax over the feature axis (rows): each column sums to one.

    Its Jacobian-vector product needs only the output y: δu = y ⊙ (G − 1 1ᵀ (y ⊙ G)).
    Not elementwise, so its SymPy evaluator (``sympy_matrix``) takes the whole matrix.
    """

    op_name = "softmax"
    is_nonlinear = True
    numpy_name = "softmax"
    numpy_out = False
    numpy_helper = '''def softmax(u):
    """Softmax over the feature axis (axis 0): each column sums to one."""
    e = np.exp(u - u.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)'''
    torch_name = "softmax"
    torch_helper = '''def softmax(u):
    """Softmax over the feature axis (dim 0): each column sums to one."""
    return torch.softmax(u, dim=0)'''
    numba_helper = '''def array_softmax(u):
    """Softmax over the feature axis (axis 0), column by column."""
    out = np.empty_like(u)
    for j in range(u.shape[1]):
        top = u[:, j].max()
        for i in range(u.shape[0]):
            out[i, j] = math.exp(u[i, j] - top)
        out[:, j] /= out[:, j].sum()
    return out'''
    latex_name = r"\operatorname{softmax}"
    text_name = "softmax"
    parser_names = (r"\operatorname{softmax}",)
    summary = "softmax over axis 0 (each column sums to one)"

    @staticmethod
    def numpy_eval(a):
        e = np.exp(a - a.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)

    @staticmethod
    def torch_eval(a):
        return _torch().softmax(a, dim=0)

    @staticmethod
    def sympy_matrix(backend, a):
        """Each column's exponentials over their sum, with the backend's own eᵘ atoms."""
        e = backend.apply(Exp, a)
        sums = [sum(e[:, j]) for j in range(e.cols)]
        return sp.Matrix(e.rows, e.cols, lambda i, j: e[i, j] / sums[j])

    def evaluate(self, ev) -> Any:
        """The value on explicit matrices: the backend applies this operation to the operand."""
        return ev.backend.apply(Softmax, ev(self.arg))

    def __new__(cls, arg):
        return super().__new__(cls, sp.sympify(arg))

    @property
    def arg(self):
        return self.args[0]

    @property
    def shape(self):
        return self.arg.shape

    def vjp(self, out, G):
        return (hadamard(out, add(G, scale(-1, FeatureSum(hadamard(out, G))))),)

    def _numpycode(self, printer):
        return f"{printer.module.function_name(Softmax)}({printer.doprint(self.arg)})"

    def _latex(self, printer):
        return rf"\operatorname{{softmax}}\left({printer.doprint(self.arg)}\right)"


class FeatureSum(Node):
    """1 1ᵀ A: each column's sum over the features, repeated down the rows (shape of A)."""

    op_name = "feature sum"
    is_nonlinear = False

    def __new__(cls, arg):
        return super().__new__(cls, sp.sympify(arg))

    @property
    def shape(self):
        return self.args[0].shape

    def vjp(self, out, G):
        return (FeatureSum(G),)

    def evaluate(self, ev) -> Any:
        return ev.backend.feature_sum(ev(self.args[0]))

    def _numpycode(self, printer):
        return printer.module.spell("sum", a=printer.parenthesize_operand(self.args[0]), axis=0)

    def _latex(self, printer):
        return rf"\mathbf{{1}}\mathbf{{1}}^{{\top}}\left({printer.doprint(self.args[0])}\right)"


class BatchSum(Node):
    """A 1: the sum over the batch (columns), shape (n, 1); the adjoint of a broadcast bias."""

    op_name = "batch sum"
    is_nonlinear = False

    def __new__(cls, arg):
        return super().__new__(cls, sp.sympify(arg))

    @property
    def shape(self):
        return (self.args[0].shape[0], sp.Integer(1))

    def vjp(self, out, G):
        return (Broadcast(G, self.args[0].shape[1]),)

    def evaluate(self, ev) -> Any:
        return ev.backend.batch_sum(ev(self.args[0]))

    def _numpycode(self, printer):
        return printer.module.spell("sum", a=printer.parenthesize_operand(self.args[0]), axis=1)

    def _latex(self, printer):
        return rf"{printer.parenthesize_operand(self.args[0])}\,\mathbf{{1}}"


class Broadcast(Node):
    """A column vector b of shape (n, 1) repeated over the batch: b 1ᵀ, shape (n, m)."""

    op_name = "broadcast"
    is_nonlinear = False

    def __new__(cls, column, cols=BATCH):
        return super().__new__(cls, sp.sympify(column), sp.sympify(cols))

    @property
    def column(self):
        return self.args[0]

    @property
    def shape(self):
        return (self.column.shape[0], self.args[1])

    def check(self) -> None:
        if not same_dim(self.column.shape[1], 1):
            raise ShapeError(
                f"broadcast needs a column (n, 1); got {self.column} of shape "
                f"{fmt_shape(self.column.shape)}"
            )

    def vjp(self, out, G):
        return (BatchSum(G), None)

    def evaluate(self, ev) -> Any:
        return ev.backend.broadcast(ev(self.column), ev.size(self.args[1]))

    def _numpycode(self, printer):
        return printer.doprint(self.column)

    def _latex(self, printer):
        return printer.doprint(self.column)


class Stack(Node):
    """Row concatenation [a; b; …] of matrices with the same number of columns."""

    op_name = "stack"
    is_nonlinear = False

    def __new__(cls, *parts):
        if len(parts) < 2:
            raise ValueError("stack() needs at least two matrices")
        return super().__new__(cls, *[sp.sympify(p) for p in parts])

    @property
    def shape(self):
        return (sp.Add(*[p.shape[0] for p in self.args]), self.args[0].shape[1])

    def check(self) -> None:
        cols = self.args[0].shape[1]
        for part in self.args[1:]:
            if not same_dim(part.shape[1], cols):
                raise ShapeError(
                    "stack [" + "; ".join(str(p) for p in self.args) + "] needs equal columns; got "
                    + ", ".join(f"{p} {fmt_shape(p.shape)}" for p in self.args)
                )

    def offsets(self) -> list[tuple[sp.Expr, sp.Expr]]:
        """(start, stop) row range of every part."""
        start, ranges = sp.Integer(0), []
        for part in self.args:
            ranges.append((start, start + part.shape[0]))
            start = start + part.shape[0]
        return ranges

    def vjp(self, out, G):
        total = self.shape[0]
        return tuple(RowSlice(G, a, b, total) for a, b in self.offsets())

    def evaluate(self, ev) -> Any:
        return ev.backend.stack([ev(p) for p in self.args])

    def _numpycode(self, printer):
        items = ", ".join(printer.doprint(p) for p in self.args)
        return printer.module.spell("concat", items=items, axis="")

    def _latex(self, printer):
        return r"\left[" + r";\, ".join(printer.doprint(p) for p in self.args) + r"\right]"


class RowSlice(Node):
    """Rows start…stop−1 of A (``A[start:stop]``); ``total`` is A's row count."""

    op_name = "row slice"
    is_nonlinear = False

    def __new__(cls, arg, start, stop, total=None):
        arg = sp.sympify(arg)
        total = arg.shape[0] if total is None else total
        return super().__new__(cls, arg, sp.sympify(start), sp.sympify(stop), sp.sympify(total))

    @property
    def arg(self):
        return self.args[0]

    @property
    def bounds(self):
        return self.args[1], self.args[2]

    @property
    def shape(self):
        return (self.args[2] - self.args[1], self.arg.shape[1])

    def vjp(self, out, G):
        start, stop = self.bounds
        total = self.args[3]
        parts = []
        if not same_dim(start, 0):
            parts.append(ZeroMatrix(start, G.shape[1]))
        parts.append(G)
        if not same_dim(stop, total):
            parts.append(ZeroMatrix(total - stop, G.shape[1]))
        return (parts[0] if len(parts) == 1 else Stack(*parts), None, None, None)

    def evaluate(self, ev) -> Any:
        start, stop = (ev.size(b) for b in self.bounds)
        return ev.backend.row_slice(ev(self.arg), start, stop)

    def _numpycode(self, printer):
        start, stop = self.bounds
        lo = "" if same_dim(start, 0) else printer.doprint(start)
        hi = "" if same_dim(stop, self.args[3]) else printer.doprint(stop)
        return f"{printer.parenthesize_operand(self.arg)}[{lo}:{hi}]"

    def _latex(self, printer):
        start, stop = self.bounds
        rows = rf"{printer.doprint(start + 1)}:{printer.doprint(stop)}"
        return rf"\left[{printer.doprint(self.arg)}\right]_{{{rows}}}"


# --------------------------------------------------------------------------------------
# SymPy's own classes: shape and VJP rules
# --------------------------------------------------------------------------------------


def _matmul_split(node: MatMul) -> tuple[sp.Expr, list[MatrixExpr]]:
    coeff, factors = sp.Integer(1), []
    for a in node.args:
        if a.is_Matrix:
            factors.append(a)
        else:
            coeff = coeff * a
    return coeff, factors


def shape_matmul(node: MatMul) -> Shape:
    _, factors = _matmul_split(node)
    for left, right in itertools.pairwise(factors):
        if not same_dim(left.shape[1], right.shape[0]):
            raise ShapeError(
                f"matrix product {left} · {right}: {left} is {fmt_shape(left.shape)} and {right} "
                f"is {fmt_shape(right.shape)}; the inner sizes {left.shape[1]} and "
                f"{right.shape[0]} differ"
            )
    return (factors[0].shape[0], factors[-1].shape[1])


def vjp_matmul(node: MatMul, out, G):
    """d(A B C)/dB applied to G: Aᵀ G Cᵀ (and the scalar coefficient carried along)."""
    coeff, factors = _matmul_split(node)
    grads: list = []
    for a in node.args:
        if not a.is_Matrix:
            grads.append(None)
            continue
        i = factors.index(a)
        left, right = factors[:i], factors[i + 1:]
        parts = []
        if left:
            parts.append(matmul(*left).T)
        parts.append(G)
        if right:
            parts.append(matmul(*right).T)
        grads.append(scale(coeff, matmul(*parts)))
    return tuple(grads)


def shape_elementwise(node) -> Shape:
    shapes = [a.shape for a in node.args]
    for other in shapes[1:]:
        if not (same_dim(other[0], shapes[0][0]) and same_dim(other[1], shapes[0][1])):
            kind = "sum" if isinstance(node, MatAdd) else "elementwise product"
            raise ShapeError(
                f"{kind} of operands with different shapes: "
                + ", ".join(f"{a} {fmt_shape(a.shape)}" for a in node.args)
                + ("; a bias of shape (n, 1) is declared with cell.bias()" if any(
                    same_dim(s[1], 1) for s in shapes) else "")
            )
    return shapes[0]


def vjp_matadd(node: MatAdd, out, G):
    """Every term of a sum receives the sum's adjoint unchanged."""
    return tuple(None if _is_constant(a) else G for a in node.args)


def vjp_hadamard(node: HadamardProduct, out, G):
    """d(a ⊙ b)/da applied to G: G ⊙ b (one entry per factor, the others multiplied in)."""
    return tuple(
        hadamard(G, *[b for j, b in enumerate(node.args) if j != i]) for i in range(len(node.args))
    )


def vjp_hadamard_power(node: HadamardPower, out, G):
    """d(a∘k)/da applied to G: k · G ⊙ a∘(k−1) (SymPy writes a ⊙ a inside a sum as a∘2)."""
    base, k = node.args
    if not (k.is_Integer and k >= 1):
        raise TypeError(f"elementwise power {node} needs a positive integer exponent")
    rest = base if k == 2 else HadamardPower(base, k - 1)
    return (scale(k, hadamard(G, rest)) if k > 1 else G, None)


def vjp_transpose(node: Transpose, out, G):
    """The adjoint of Aᵀ is Gᵀ."""
    return (G.T,)


def _is_constant(expr) -> bool:
    return isinstance(expr, (OneMatrix, ZeroMatrix))


def _fold(combine: Callable, values: list) -> Any:
    out = values[0]
    for v in values[1:]:
        out = combine(out, v)
    return out


def evaluate_matmul(node: MatMul, ev) -> Any:
    """The product of the operands' values, times the scalar coefficient."""
    coeff, factors = _matmul_split(node)
    value = _fold(ev.backend.matmul, [ev(f) for f in factors])
    return value if coeff == 1 else ev.backend.scale(coeff, value)


def evaluate_hadamard_power(node: HadamardPower, ev) -> Any:
    """a∘k as k − 1 elementwise products (k a positive integer)."""
    base, k = node.args
    if not (k.is_Integer and k >= 1):
        raise TypeError(f"elementwise power {node} needs a positive integer exponent")
    return _fold(ev.backend.hadamard, [ev(base)] * int(k))


@dataclass(frozen=True)
class Rule:
    """Shape, VJP and evaluation rule of one of SymPy's matrix-expression classes.

    ``evaluate(node, ev)``: the node's value on explicit matrices, where ``ev(operand)``
    evaluates an operand, ``ev.backend`` holds the matrix operations and ``ev.size(dim)``
    turns a symbolic size into an int.
    """

    shape: Callable
    vjp: Callable
    evaluate: Callable


SYMPY_RULES: dict[type, Rule] = {
    MatMul: Rule(shape_matmul, vjp_matmul, evaluate_matmul),
    MatAdd: Rule(shape_elementwise, vjp_matadd,
                 lambda n, ev: _fold(ev.backend.add, [ev(a) for a in n.args])),
    HadamardProduct: Rule(shape_elementwise, vjp_hadamard,
                          lambda n, ev: _fold(ev.backend.hadamard, [ev(a) for a in n.args])),
    HadamardPower: Rule(lambda n: n.args[0].shape, vjp_hadamard_power, evaluate_hadamard_power),
    Transpose: Rule(lambda n: (n.arg.shape[1], n.arg.shape[0]), vjp_transpose,
                    lambda n, ev: ev.backend.transpose(ev(n.arg))),
}

#: Helpers every kernel carries, whether its cell calls them or not (tests, notebooks and
#: the report's check of its summary call them by name), in this order.
ALWAYS_HELPERS: tuple[type, ...] = (Sigmoid, Softmax, Relu)


def is_leaf(expr) -> bool:
    """Symbols and constants: nodes without operands of their own."""
    return isinstance(expr, (MatrixSymbol, OneMatrix, ZeroMatrix))


def is_nonlinear(expr) -> bool:
    """Nodes whose VJP needs their own forward value (they get a name of their own)."""
    return getattr(expr, "is_nonlinear", False)


def shape_of(expr) -> Shape:
    """Check every node of ``expr`` and return its shape (raises :class:`ShapeError`)."""
    if is_leaf(expr):
        return expr.shape
    for a in expr.args:
        if getattr(a, "is_Matrix", False):
            shape_of(a)
    if isinstance(expr, Node):
        check = getattr(expr, "check", None)
        if check:
            check()
        return expr.shape
    rule = SYMPY_RULES.get(type(expr))
    if rule is None:
        raise TypeError(f"operation {type(expr).__name__} is not supported (no shape or VJP rule)")
    return rule.shape(expr)


def vjp(expr, out, G) -> Sequence:
    """Adjoints of ``expr``'s operands given its adjoint G; one entry per operand."""
    if isinstance(expr, Node):
        grads = expr.vjp(out, G)
    else:
        rule = SYMPY_RULES.get(type(expr))
        if rule is None:
            raise TypeError(f"operation {type(expr).__name__} has no VJP rule")
        grads = rule.vjp(expr, out, G)
    if len(grads) != len(expr.args):
        raise AssertionError(f"VJP rule of {type(expr).__name__} returned {len(grads)} adjoints "
                             f"for {len(expr.args)} operands")
    return grads


def operation_name(expr: sp.Basic) -> str:
    """How messages name the operation of a node: ``softplus``, ``HadamardPower``."""
    return getattr(expr, "op_name", type(expr).__name__)


def evaluate(expr: sp.Basic, ev: Any) -> Any:
    """The value of one operation node on explicit matrices (see :class:`Rule` for ``ev``).

    Raises :class:`EvaluationError` naming the operation when it declares no rule.
    """
    if isinstance(expr, Node):
        method = getattr(expr, "evaluate", None)
        if method is not None:
            return method(ev)
    else:
        rule = SYMPY_RULES.get(type(expr))
        if rule is not None:
            return rule.evaluate(expr, ev)
    raise EvaluationError(f"operation {operation_name(expr)} cannot be evaluated "
                          f"(no evaluation rule): {expr}")


def operations(expr: sp.Basic) -> list[type]:
    """The classes of our nodes in ``expr``, each once, in first-seen (preorder) order."""
    found: dict[type, None] = {}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Node):
            found.setdefault(type(node), None)
        stack.extend(reversed([a for a in node.args if isinstance(a, sp.Basic)]))
    return list(found)


def kernel_helpers(exprs: Iterable, module: ArrayModule = NUMPY) -> list[str]:
    """Source of every helper ``def`` a kernel computing ``exprs`` needs, in a fixed order.

    The helpers of :data:`ALWAYS_HELPERS` first, then those of the other operations used,
    in declaration order (never hash order), each once; ``module`` is the array library the
    kernel is printed for (its declarations: ``numpy_helper`` or ``torch_helper``).
    """
    used: set[Any] = set()  # operation classes (their declared attributes are read below)
    for expr in exprs:
        used.update(operations(expr))
    declared = [op for op in FUNCTIONS.values() if op in used and op not in ALWAYS_HELPERS]
    helpers: list[Any] = [*ALWAYS_HELPERS, *declared]
    return [module.helper(op) for op in helpers if module.helper(op)]
