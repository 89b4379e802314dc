"""Prints a kernel plan (:mod:`symbptt.kernels.code`) as code of one array library, one line a
statement.

This is the only place that spells kernel code: calls, slicing, in-place updates. What a
library calls each thing comes from its :class:`~symbptt.array_module.ArrayModule` (NumPy,
CuPy, PyTorch); SymPy expressions inside a plan are printed by the module's expression
printer (:func:`symbptt.printers.code_printer`). :data:`NUMPY_PRINTER` prints the NumPy
kernel; ``ArrayPrinter(TORCH)`` the PyTorch one, from the same plan.
"""

from __future__ import annotations

from functools import singledispatchmethod

import sympy as sp

from .. import ops
from ..array_module import NUMPY, ArrayModule, array_module
from ..printers import code_printer
from . import code as c


class ArrayPrinter:
    """Prints values and statements of a kernel plan for one array library."""

    def __init__(self, module: str | ArrayModule = NUMPY):
        self.module = array_module(module)
        self._calls = {
            "concat": self._concat,
            "zeros": self._spelled("zeros"),
            "empty": self._spelled("empty"),
            "workspace": self._spelled("workspace"),
            "matmul": self._spelled("matmul"),
            "chunk_steps": _wrap("_chunk_steps(chunk, T, m)"),
            "readout_chunk": _wrap("_chunk_steps(None, T, m)"),
            "chunk_matrix": _wrap("{0}[:, :{2}].reshape({1}, -1)"),
            "chunk_len": _wrap("min({0}, T - t)"),
            "input_chunk": _wrap("{0}[:, {1}].reshape({0}.shape[0], -1)"),
            "flat": _wrap("_flat({0})"),
            "upstream": self._upstream,
            "reshape_steps": lambda args, kwargs: self.module.spell(
                "transpose", a=f"{args[0]}.reshape({args[1]}, T, m)", axes="1, 0, 2"),
            "input_matrix": _wrap("{0}.reshape({0}.shape[0], -1)"),
            "rowsum": lambda args, kwargs: self.module.spell("sum", a=args[0], axis=1),
            "copy": lambda args, kwargs: self.module.spell("copy", a=args[0]),
        }

    # ----------------------------------------------------------------------------------
    # Values
    # ----------------------------------------------------------------------------------

    def dim(self, expr) -> str:
        """A symbolic size as code: ``2*n_h``."""
        return code_printer(self.module).doprint(sp.sympify(expr))

    def rows_code(self, r: c.Rows) -> str:
        lo = "" if ops.same_dim(r.lo, 0) else self.dim(r.lo)
        hi = "" if ops.same_dim(r.hi, r.total) else self.dim(r.hi)
        return f"{lo}:{hi}"

    @singledispatchmethod
    def value(self, v) -> str:
        """The code of one value of a plan."""
        raise TypeError(f"the {self.module.name} printer has no rule for {type(v).__name__}")

    @value.register
    def _(self, v: str) -> str:
        return v

    @value.register
    def _(self, v: c.Name) -> str:
        return v.name

    @value.register
    def _(self, v: c.Dim) -> str:
        return self.dim(v.expr)

    @value.register
    def _(self, v: c.Rows) -> str:
        return self.rows_code(v)

    @value.register
    def _(self, v: c.View) -> str:
        items = [self.value(i) for i in v.index]
        while items and items[-1] == ":":
            items.pop()
        return f"{v.base}[{', '.join(items)}]" if items else v.base

    @value.register
    def _(self, v: c.Math) -> str:
        printer = code_printer(self.module, {k: self.value(x) for k, x in v.names})
        return printer.parenthesize_operand(v.expr) if v.operand else printer.doprint(v.expr)

    @value.register
    def _(self, v: c.Product) -> str:
        a = self.value(v.a) + (".T" if v.transpose_a else "")
        b = self.value(v.b) + (".T" if v.transpose_b else "")
        return f"{a} @ {b}"

    @value.register
    def _(self, v: c.Paren) -> str:
        return f"({self.value(v.a)})"

    @value.register
    def _(self, v: c.IsNone) -> str:
        return f"{self.value(v.a)} is None"

    @value.register
    def _(self, v: c.Not) -> str:
        return f"not {self.value(v.a)}"

    @value.register
    def _(self, v: c.TruncationCut) -> str:
        return "truncate is not None and t > 0 and t % truncate == 0"

    @value.register
    def _(self, v: c.Transposed) -> str:
        return self.module.spell("transpose", a=self.operand(v.a), axes=", ".join(str(a) for a in v.axes))

    @value.register
    def _(self, v: c.Sum) -> str:
        text = " + ".join(self.value(t) for t in v.terms)
        return f"({text})" if v.paren else text

    @value.register
    def _(self, v: c.Scaled) -> str:
        return f"{v.coeff} * {self.operand(v.a)}"

    @value.register
    def _(self, v: c.StepRange) -> str:
        return f"{self.value(v.first)}:{self.value(v.first)} + {self.value(v.count)}"

    @value.register
    def _(self, v: c.StepColumns) -> str:
        return f"{self.operand(v.first)} * m:({self.value(v.first)} + {self.value(v.count)}) * m"

    @value.register
    def _(self, v: c.ChunkSlot) -> str:
        return f"t % {self.operand(v.size)}"

    @value.register
    def _(self, v: c.ChunkStart) -> str:
        return f"t % {self.operand(v.size)} == 0"

    @value.register
    def _(self, v: c.Shape) -> str:
        items = [self.value(d) for d in v.dims]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    @value.register
    def _(self, v: c.IfElse) -> str:
        return f"{self.value(v.then)} if {self.value(v.condition)} else {self.value(v.otherwise)}"

    @value.register
    def _(self, v: c.Call) -> str:
        args = [self.value(a) for a in v.args]
        kwargs = {k: self.value(x) for k, x in v.kwargs}
        return self._calls.get(v.fn, _plain_call(v.fn))(args, kwargs)

    def operand(self, v) -> str:
        """A value as the operand of a method or an operator: parenthesized unless atomic."""
        text = self.value(v)
        atomic = isinstance(v, (str, c.Name, c.View, c.Call, c.Paren)) or (isinstance(v, c.Sum) and v.paren)
        return text if atomic or text.isidentifier() else f"({text})"

    def function(self, name: str) -> str:
        """How this library calls the elementwise function of the operation ``name``
        (``tanh``: ``np.tanh``, ``torch.tanh``); a name that is no operation's is printed as
        it is (a callable of the kernel itself)."""
        op = ops.FUNCTIONS.get(name)
        return name if op is None else self.module.function_name(op)

    def _spelled(self, role: str):
        return lambda args, kwargs: self.module.spell(role, *args)

    def _concat(self, args, kwargs) -> str:
        axis = self.module.spell("axis", n=kwargs["axis"]) if "axis" in kwargs else ""
        return self.module.spell("concat", items=", ".join(args), axis=axis)

    def _upstream(self, args, kwargs) -> str:
        plus = f", plus={kwargs['plus']}" if "plus" in kwargs else ""
        plus += f", into={kwargs['into']}" if "into" in kwargs else ""
        flat = ", flat=True" if "flat" in kwargs else ""
        context = self.module.spell("upstream_context")
        return f'_upstream(upstream, "{args[0]}", {args[1]}, m, T, {context}{flat}{plus})'

    # ----------------------------------------------------------------------------------
    # Statements
    # ----------------------------------------------------------------------------------

    @singledispatchmethod
    def statement(self, s) -> str:
        """The line of one statement."""
        raise TypeError(f"the {self.module.name} printer has no rule for {type(s).__name__}")

    @statement.register
    def _(self, s: c.Comment) -> str:
        return "# " + (s.text.format(*[self.value(v) for v in s.values]) if s.values else s.text)

    @statement.register
    def _(self, s: c.Assign) -> str:
        targets = ", ".join(self.value(t) for t in s.targets)
        values = ", ".join(self.value(v) for v in s.values)
        chain = f" = {self.value(s.chain)}" if s.chain is not None else ""
        return f"{targets}{chain} = {values}{_note(s.note)}"

    @statement.register
    def _(self, s: c.Update) -> str:
        target = self.value(s.target)
        if s.op == "=":
            return f"{target}{'' if '[' in target else '[...]'} = {self.value(s.value)}{_note(s.note)}"
        return f"{target} {s.op}= {self.value(s.value)}{_note(s.note)}"

    @statement.register
    def _(self, s: c.MatMulInto) -> str:
        return self.module.spell("matmul_into", a=self.value(s.a), b=self.value(s.b), out=self.value(s.out))

    @statement.register
    def _(self, s: c.ApplyInPlace) -> str:
        source = s.target if s.source is None else s.source
        return self.module.spell("apply_into", fn=self.function(s.fn), a=self.value(source),
                                 out=self.value(s.target))

    @statement.register
    def _(self, s: c.MultiplyInto) -> str:
        return self.module.spell("multiply_into", a=self.value(s.a), b=self.value(s.b), out=self.value(s.out))

    @statement.register
    def _(self, s: c.When) -> str:
        return self._block(f"if {self.value(s.condition)}:", s.body)

    @statement.register
    def _(self, s: c.ForChunks) -> str:
        return self._block(f"for t in range(0, T, {self.value(s.size)}):", s.body)

    @statement.register
    def _(self, s: c.Release) -> str:
        return f"del {', '.join(s.names)}{_note(s.note)}"

    def _block(self, header: str, body: tuple) -> str:
        return "\n".join([header] + ["    " + line for line in self.lines(body)])

    def lines(self, statements) -> list[str]:
        """The lines of a list of statements (a :class:`~symbptt.kernels.code.When` gives several)."""
        return [line for s in statements for line in self.statement(s).split("\n")]


def _note(text: str) -> str:
    return f"  # {text}" if text else ""


def _plain_call(fn: str):
    def call(args, kwargs):
        return f"{fn}(" + ", ".join(args + [f"{k}={x}" for k, x in kwargs.items()]) + ")"
    return call


def _wrap(fmt: str):
    """A call printed from a format of its (already printed) arguments."""
    return lambda args, kwargs: fmt.format(*args, **kwargs)


#: The NumPy kernel's printer.
NUMPY_PRINTER = ArrayPrinter(NUMPY)


def printer_for(module: str | ArrayModule) -> ArrayPrinter:
    """The statement printer of an array library (``"numpy"``, ``"cupy"``, ``"torch"``)."""
    module = array_module(module)
    return NUMPY_PRINTER if module is NUMPY else ArrayPrinter(module)
