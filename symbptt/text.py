"""Equations as a person writes them in a docstring or a code comment: ``z = σ(Wz·[h_prev; xt] + bz)``."""

from __future__ import annotations

from .printers import NumPyPrinter


class TextPrinter(NumPyPrinter):
    """The equations as a person writes them in a docstring: ``z = σ(Wz·[h_prev; xt] + bz)``."""

    printmethod = "_text"
    hadamard_sep = " ⊙ "
    matmul_sep = "·"
    scalar_sep = "·"

    def _print_Node(self, expr) -> str:
        """Our nodes without a text form of their own print as in NumPy."""
        return expr._numpycode(self)

    def _print_Pointwise(self, expr) -> str:
        name = expr.text_name or expr.op_name
        return f"{name}({self.doprint(expr.arg)})"

    def _print_Softmax(self, expr) -> str:
        return f"softmax({self.doprint(expr.arg)})"

    def _print_Stack(self, expr) -> str:
        return "[" + "; ".join(self.doprint(a) for a in expr.args) + "]"

    def _print_Broadcast(self, expr) -> str:
        return self.doprint(expr.column)

    def _print_Transpose(self, expr) -> str:
        return f"{self.parenthesize_operand(expr.arg)}ᵀ"

    def _print_RowSlice(self, expr) -> str:
        start, stop = expr.bounds
        return f"{self.parenthesize_operand(expr.arg)}[{self.doprint(start)}:{self.doprint(stop)}]"

    def _print_FeatureSum(self, expr) -> str:
        return f"colsum({self.doprint(expr.args[0])})"

    def _print_BatchSum(self, expr) -> str:
        return f"rowsum({self.doprint(expr.args[0])})"


def text(expr) -> str:
    return TextPrinter().doprint(expr)
