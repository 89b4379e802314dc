"""Lowering: a cell's equations rewritten so every value a VJP rule needs has a name.

The derivation (:mod:`symbptt.derive`) reuses forward values, so before it runs:

* a nonlinear node (σ, tanh, softmax, …) stands alone at the top of an equation, and its
  operand is a symbol: ``z = σ(Wz·[h_prev; xt] + bz)`` becomes ``a_z = Wz·[h_prev; xt] + bz``
  and ``z = σ(a_z)``; a nested one gets its own equation (``tanh_c = tanh(c)``);
* a stack ``[a; b]``, a compound operand of a matrix product or of an elementwise product
  gets a name, once, however often it appears (the four LSTM gates share ``h_prev_xt``).

The result is a list of equations in the same order, the introduced ones marked ``auto``.
"""

from __future__ import annotations

from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from . import ops
from .cell import Cell, Equation, Var


def is_simple(expr) -> bool:
    """Values cheap enough to recompute wherever they are needed (no name of their own)."""
    if isinstance(expr, (MatrixSymbol, OneMatrix, ops.Broadcast)):
        return True
    if isinstance(expr, Transpose):
        return isinstance(expr.arg, MatrixSymbol)
    if isinstance(expr, MatMul):  # −v
        matrices = [a for a in expr.args if a.is_Matrix]
        return len(matrices) == 1 and is_simple(matrices[0])
    if isinstance(expr, MatAdd):  # 1 − v
        return len(expr.args) == 2 and any(isinstance(a, OneMatrix) for a in expr.args) and all(
            is_simple(a) for a in expr.args)
    return False


class _Lowerer:
    def __init__(self, cell: Cell):
        self.cell = cell
        self.taken = set(cell.symbols) | {e.name for e in cell.equations}
        self.memo: dict = {}
        self.out: list[Equation] = []
        self.params = {s.name for s in cell.parameters}

    def fresh(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def name(self, expr, base: str, meaning: str) -> Var:
        """Give ``expr`` a name (reusing the one an identical expression already has)."""
        if expr in self.memo:
            return self.memo[expr]
        var = Var(self.fresh(base), *ops.shape_of(expr))
        self.out.append(Equation(var.name, expr, "let", meaning, auto=True))
        self.memo[expr] = var
        return var

    def label(self, expr, eq: str) -> str:
        """A readable base name for an unnamed value."""
        if isinstance(expr, HadamardProduct) and all(isinstance(a, MatrixSymbol) for a in expr.args):
            return "_".join(a.name for a in expr.args)
        if isinstance(expr, ops.Stack) and all(isinstance(a, MatrixSymbol) for a in expr.args):
            return "_".join(a.name for a in expr.args)
        return f"{eq}_in"

    def operand(self, expr, eq: str):
        """Lower ``expr`` and name it unless it is simple."""
        expr = self.rewrite(expr, eq)
        if is_simple(expr):
            return expr
        return self.name(expr, self.label(expr, eq), f"operand in {eq}")

    def rewrite(self, expr, eq: str):
        if ops.is_leaf(expr):
            return expr
        if ops.is_nonlinear(expr):
            arg = self.rewrite(expr.args[0], eq)
            if not isinstance(arg, MatrixSymbol):
                arg = self.name(arg, f"a_{expr.op_name}_{eq}", f"operand of {expr.op_name} in {eq}")
            node = expr.func(arg)
            return self.name(node, f"{expr.op_name}_{arg.name}", f"{expr.op_name} of {arg.name}")
        if isinstance(expr, ops.Stack):
            parts = [self.operand(p, eq) for p in expr.args]
            stack = ops.Stack(*parts)
            return self.name(stack, self.label(stack, eq), "stacked rows")
        if isinstance(expr, MatMul):
            args = [a if (not a.is_Matrix or (isinstance(a, MatrixSymbol) and a.name in self.params))
                    else self.operand(a, eq) for a in expr.args]
            return MatMul(*args)
        if isinstance(expr, HadamardProduct):
            return ops.hadamard(*[self.operand(a, eq) for a in expr.args])
        return expr.func(*[self.rewrite(a, eq) if getattr(a, "is_Matrix", False) else a
                           for a in expr.args])

    def lower(self, eq: Equation) -> None:
        expr = eq.expr
        if ops.is_nonlinear(expr):
            arg = self.rewrite(expr.args[0], eq.name)
            if not isinstance(arg, MatrixSymbol):
                arg = self.name(arg, f"a_{eq.name}", f"pre-activation of {eq.name}")
            expr = expr.func(arg)
        else:
            expr = self.rewrite(expr, eq.name)
        self.out.append(Equation(eq.name, expr, eq.kind, eq.meaning, eq.latex))


def lower(cell: Cell) -> list[Equation]:
    """The cell's equations with every value a VJP rule reuses named (see module doc)."""
    lowerer = _Lowerer(cell)
    for eq in cell.equations:
        lowerer.lower(eq)
    return lowerer.out
