"""Prints a kernel plan (:mod:`symbptt.kernels.code`) as NumPy code, one line a statement.

This is the only place that spells kernel code: array-library calls, slicing, in-place
updates. SymPy expressions inside a plan are printed by :class:`symbptt.printers.NumPyPrinter`.
"""

from __future__ import annotations

from functools import singledispatch

import sympy as sp

from .. import ops
from ..printers import NumPyPrinter, numpy_code
from . import code as c


def dim(expr) -> str:
    """A symbolic size as code: ``2*n_h``."""
    return NumPyPrinter().doprint(sp.sympify(expr))


def rows_code(r: c.Rows) -> str:
    lo = "" if ops.same_dim(r.lo, 0) else dim(r.lo)
    hi = "" if ops.same_dim(r.hi, r.total) else dim(r.hi)
    return f"{lo}:{hi}"


_ROLES = {
    "flat": "_flat",
    "workspace": "_workspace",
}


@singledispatch
def value(v) -> str:
    """The code of one value of a plan."""
    raise TypeError(f"the NumPy printer has no rule for {type(v).__name__}")


@value.register
def _(v: str) -> str:
    return v


@value.register
def _(v: c.Name) -> str:
    return v.name


@value.register
def _(v: c.Dim) -> str:
    return dim(v.expr)


@value.register
def _(v: c.Rows) -> str:
    return rows_code(v)


@value.register
def _(v: c.View) -> str:
    items = [value(i) for i in v.index]
    while items and items[-1] == ":":
        items.pop()
    return f"{v.base}[{', '.join(items)}]" if items else v.base


@value.register
def _(v: c.Math) -> str:
    names = {k: value(x) for k, x in v.names}
    if v.operand:
        return NumPyPrinter(names).parenthesize_operand(v.expr)
    return numpy_code(v.expr, names)


@value.register
def _(v: c.Product) -> str:
    a = value(v.a) + (".T" if v.transpose_a else "")
    b = value(v.b) + (".T" if v.transpose_b else "")
    return f"{a} @ {b}"


@value.register
def _(v: c.Paren) -> str:
    return f"({value(v.a)})"


@value.register
def _(v: c.IsNone) -> str:
    return f"{value(v.a)} is None"


@value.register
def _(v: c.Not) -> str:
    return f"not {value(v.a)}"


@value.register
def _(v: c.TruncationCut) -> str:
    return "truncate is not None and t > 0 and t % truncate == 0"


@value.register
def _(v: c.Transposed) -> str:
    return f"{operand(v.a)}.transpose({', '.join(str(a) for a in v.axes)})"


@value.register
def _(v: c.Sum) -> str:
    text = " + ".join(value(t) for t in v.terms)
    return f"({text})" if v.paren else text


@value.register
def _(v: c.Scaled) -> str:
    return f"{v.coeff} * {operand(v.a)}"


@value.register
def _(v: c.StepRange) -> str:
    return f"{value(v.first)}:{value(v.first)} + {value(v.count)}"


@value.register
def _(v: c.StepColumns) -> str:
    return f"{operand(v.first)} * m:({value(v.first)} + {value(v.count)}) * m"


@value.register
def _(v: c.ChunkSlot) -> str:
    return f"t % {operand(v.size)}"


@value.register
def _(v: c.ChunkStart) -> str:
    return f"t % {operand(v.size)} == 0"


@value.register
def _(v: c.Shape) -> str:
    items = [value(d) for d in v.dims]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


@value.register
def _(v: c.IfElse) -> str:
    return f"{value(v.then)} if {value(v.condition)} else {value(v.otherwise)}"


@value.register
def _(v: c.Call) -> str:
    args = [value(a) for a in v.args]
    kwargs = {k: value(x) for k, x in v.kwargs}
    return _CALLS.get(v.fn, _plain_call(v.fn))(args, kwargs)


def operand(v) -> str:
    """A value as the operand of a method or an operator: parenthesized unless atomic."""
    text = value(v)
    atomic = isinstance(v, (str, c.Name, c.View, c.Call, c.Paren)) or (isinstance(v, c.Sum) and v.paren)
    return text if atomic or text.isidentifier() else f"({text})"


def _plain_call(fn: str):
    def call(args, kwargs):
        return f"{fn}(" + ", ".join(args + [f"{k}={x}" for k, x in kwargs.items()]) + ")"
    return call


def _concat(args, kwargs):
    axis = f", axis={kwargs['axis']}" if "axis" in kwargs else ""
    return "np.concatenate((" + ", ".join(args) + f"){axis})"


def _upstream(args, kwargs):
    plus = f", plus={kwargs['plus']}" if "plus" in kwargs else ""
    plus += f", into={kwargs['into']}" if "into" in kwargs else ""
    flat = ", flat=True" if "flat" in kwargs else ""
    return f'_upstream(upstream, "{args[0]}", {args[1]}, m, T, dtype, workspace{flat}{plus})'


def _wrap(fmt: str):
    """A call printed from a format of its (already printed) arguments."""
    return lambda args, kwargs: fmt.format(*args, **kwargs)


_CALLS = {
    "concat": _concat,
    "zeros": _wrap("np.zeros({0}, dtype)"),
    "empty": _wrap("np.empty({0}, dtype)"),
    "workspace": _wrap('_workspace("{0}", {1}, dtype, workspace)'),
    "chunk_steps": _wrap("_chunk_steps(chunk, T, m)"),
    "chunk_matrix": _wrap("{0}[:, :{2}].reshape({1}, -1)"),
    "chunk_len": _wrap("min({0}, T - t)"),
    "input_chunk": _wrap("{0}[:, {1}].reshape({0}.shape[0], -1)"),
    "flat": _wrap("_flat({0})"),
    "upstream": _upstream,
    "reshape_steps": _wrap("{0}.reshape({1}, T, m).transpose(1, 0, 2)"),
    "as_matrix": _wrap("{0}.reshape({1}, T * m)"),
    "input_matrix": _wrap("{0}.reshape({0}.shape[0], -1)"),
    "rowsum": _wrap("{0}.sum(axis=1, keepdims=True)"),
    "copy": _wrap("{0}.copy()"),
}


# --------------------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------------------


def _note(text: str) -> str:
    return f"  # {text}" if text else ""


@singledispatch
def statement(s) -> str:
    """The line of one statement."""
    raise TypeError(f"the NumPy printer has no rule for {type(s).__name__}")


@statement.register
def _(s: c.Comment) -> str:
    return "# " + (s.text.format(*[value(v) for v in s.values]) if s.values else s.text)


@statement.register
def _(s: c.Assign) -> str:
    targets = ", ".join(value(t) for t in s.targets)
    values = ", ".join(value(v) for v in s.values)
    chain = f" = {value(s.chain)}" if s.chain is not None else ""
    return f"{targets}{chain} = {values}{_note(s.note)}"


@statement.register
def _(s: c.Update) -> str:
    target = value(s.target)
    if s.op == "=":
        return f"{target}{'' if '[' in target else '[...]'} = {value(s.value)}{_note(s.note)}"
    return f"{target} {s.op}= {value(s.value)}{_note(s.note)}"


@statement.register
def _(s: c.MatMulInto) -> str:
    return f"np.matmul({value(s.a)}, {value(s.b)}, out={value(s.out)})"


@statement.register
def _(s: c.ApplyInPlace) -> str:
    source = s.target if s.source is None else s.source
    return f"{s.fn}({value(source)}, out={value(s.target)})"


@statement.register
def _(s: c.MultiplyInto) -> str:
    return f"np.multiply({value(s.a)}, {value(s.b)}, out={value(s.out)})"


@statement.register
def _(s: c.When) -> str:
    body = [line for inner in s.body for line in statement(inner).split("\n")]
    return "\n".join([f"if {value(s.condition)}:"] + ["    " + line for line in body])


def lines(statements) -> list[str]:
    """The lines of a list of statements (a :class:`~symbptt.kernels.code.When` gives several)."""
    return [line for s in statements for line in statement(s).split("\n")]
