"""The fused (Numba) backend: the NumPy kernel with its time loops compiled.

At small sizes a step's work is a few dozen NumPy calls of a few microseconds each, mostly
Python's and NumPy's per-call overhead. This backend prints the same plan's loop bodies
(:mod:`symbptt.kernels.forward`, :mod:`symbptt.kernels.backward`) a second time, for Numba:
the whole forward loop is one compiled call, and so is every chunk of the backward's steps
(the products over a chunk's steps and the batch stay NumPy's, after each call). Matrix
products inside the loops are ``np.dot`` (BLAS); an elementwise statement is a loop over the
entries it writes, one formula per entry printed from each operation's scalar spelling
(``numba_scalar`` in :mod:`symbptt.ops`) by :class:`ElementPrinter`, and consecutive ones on
the same rows share a loop (:class:`LoopPiece`); everything else is the NumPy kernel's own
array statement, which Numba compiles.

The module is the NumPy kernel's text (:func:`symbptt.codegen.numpy_kernel`) with:

* an import of numba that may fail: without it the module warns once and runs its NumPy
  loops, which are kept, unchanged, as the ``else`` branch of every compiled call;
* the compiled functions (``_forward_steps``, ``_backward_steps``, the elementwise helpers),
  printed from the plan by :class:`FusedPrinter`, after the NumPy helpers;
* each loop replaced by ``if _fused_for(parameters, m): <compiled call> else: <the NumPy
  loop>``: compiled where numba is there (``FUSED``) and the step is small
  (``FUSED_MAX_WORK``), since beyond that the NumPy loops are faster.

The arguments of a compiled function are the names its body reads and does not assign
first (found with :mod:`ast`); what it assigns and the code after the loop reads (the
gradients carried back, ``dh_carry``) it returns.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

import sympy as sp

from .. import ops
from ..array_module import ArrayModule
from ..derive import Derivation
from ..printers import NumPyPrinter
from . import code as c
from . import plan_kernel
from .array_printer import NUMPY_PRINTER, ArrayPrinter, _note


class FusedModule(ArrayModule):
    """NumPy's spellings as Numba compiles them: ``out`` positional, ``np.dot`` for products,
    elementwise functions through the compiled ``array_<op>`` helpers."""

    def function_name(self, op: type) -> str:
        declared = bool(getattr(op, "numba_scalar", "")) or bool(getattr(op, "numba_helper", ""))
        return f"array_{op.op_name}" if declared and issubclass(op, ops.Node) else ""

    def helper(self, op: type) -> str:
        return str(getattr(op, "numba_helper", ""))


NUMBA = FusedModule("numba", "import numpy as np", "numba", "numpy_kernel.py.j2",
                    "NumPy arrays (steps compiled by Numba)", {
                        "concat": "np.concatenate(({items}){axis})",
                        "axis": ", axis={n}",
                        "zeros": "np.zeros({0}, dtype)",
                        "empty": "np.empty({0}, dtype)",
                        "zero_matrix": "np.zeros(({rows}, {cols}), dtype)",
                        "workspace": "np.empty({1}, dtype)",
                        "upstream_context": "dtype",
                        "transpose": "{a}.transpose({axes})",
                        "sum": "sum_keepdims({a}, {axis})",
                        "copy": "{a}.copy()",
                        "matmul": "np.dot({0}, {1})",
                        "matmul_into": "np.dot({a}, {b}, {out})",
                        "multiply_into": "np.multiply({a}, {b}, {out})",
                        "apply_into": "{fn}({a}, {out})",
                    })


class NotElementwise(Exception):
    """A statement that is not one elementwise formula over its target's entries (it has a
    matrix product, a sum over an axis, a condition…): it keeps its array form."""


class ElementPrinter(NumPyPrinter):
    """A matrix expression as the formula of one entry ``[_i, _j]``: every matrix symbol is
    its array indexed there (row 0 or column 0 where it broadcasts), every operation its
    scalar spelling (``numba_scalar`` in :mod:`symbptt.ops`)."""

    def __init__(self, access):
        super().__init__()
        self.access = access  # (symbol name, its shape) → the entry's code

    def _print(self, expr, **kwargs):
        if isinstance(expr, ops.Pointwise):
            if not expr.numba_scalar:
                raise NotElementwise(expr.op_name)
            return "(" + in_precision(expr.numba_scalar).format(u=self.doprint(expr.arg)) + ")"
        if isinstance(expr, ops.Broadcast):  # a column over the batch: its entry [_i, 0]
            return self.doprint(expr.column)
        if isinstance(expr, ops.Node) and not isinstance(expr, ops.Elementwise):
            raise NotElementwise(type(expr).__name__)
        if isinstance(expr, (sp.Transpose, sp.Inverse, sp.Identity)):
            raise NotElementwise(type(expr).__name__)
        return super()._print(expr, **kwargs)

    def _print_MatrixSymbol(self, expr) -> str:
        return self.access(expr.name, expr.shape)

    def _print_MatMul(self, expr) -> str:
        if sum(1 for a in expr.args if a.is_Matrix) > 1:
            raise NotElementwise("a matrix product")
        return super()._print_MatMul(expr)

    def _print_ZeroMatrix(self, expr) -> str:
        return "_f(0.0)"

    def _print_OneMatrix(self, expr) -> str:
        return "_f(1.0)"

    def _print_Number(self, expr) -> str:
        return f"_f({float(expr)!r})"

    _print_Integer = _print_Float = _print_Rational = _print_Number
    _print_Zero = _print_One = _print_NegativeOne = _print_Half = _print_Number


@dataclass
class LoopPiece:
    """Elementwise statements as one loop over the entries of the rows they write."""

    target: str  # the rows written, as printed (``gates[:3*n_h]``)
    view: c.View  # the same rows, as a view
    out: str  # the name the loop writes through
    prelude: list[str]  # lines before the loop (the name's binding, a new array)
    body: list[str]  # one line per statement, in order
    reads: set[str]  # arrays the formulas read (besides the entry they write)
    new: bool = False  # the loop fills a new array
    base: str = ""  # the array (and step) the rows belong to, once views are resolved

    def joins(self, later: LoopPiece) -> bool:
        """Whether ``later`` can run in the same loop: the same rows, neither formula reads
        their array elsewhere, and it does not fill a new array."""
        return (later.target == self.target and not later.new
                and self.base not in self.reads | later.reads and self.out not in later.reads)

    @staticmethod
    def merged(pieces: list[LoopPiece]) -> LoopPiece:
        first = pieces[0]
        return LoopPiece(first.target, first.view, first.out, first.prelude,
                         [line for p in pieces for line in p.body],
                         set().union(*(p.reads for p in pieces)), first.new, first.base)

    def render(self) -> list[str]:
        return self.prelude + [f"for _i in range({self.out}.shape[0]):",
                               f"    for _j in range({self.out}.shape[1]):"] + [
            "        " + line for line in self.body]


class FusedPrinter(ArrayPrinter):
    """The loop bodies as Numba compiles them (``truncate`` arrives as 0 for none).

    An elementwise statement becomes an explicit loop over its target's rows and batch
    columns, one formula per entry: no temporary array per operator, and the compiler
    vectorizes it. Any other statement keeps the NumPy kernel's array form."""

    def __init__(self) -> None:
        super().__init__(NUMBA)

    def value(self, v) -> str:  # type: ignore[override]
        if isinstance(v, c.TruncationCut):
            return "truncate > 0 and t > 0 and t % truncate == 0"
        return super().value(v)

    def statement(self, s) -> str:  # type: ignore[override]
        piece = self.loop_piece(s)
        if piece is not None:
            return "\n".join(piece.render())
        if isinstance(s, c.Update) and s.op in _UFUNCS:
            # a += b as np.add(a, b, a): Numba compiles a ufunc call far faster than an
            # augmented assignment to a slice
            target = self.value(s.target)
            return f"{_UFUNCS[s.op]}({target}, {self.value(s.value)}, {target}){_note(s.note)}"
        return super().statement(s)

    def lines(self, statements) -> list[str]:  # type: ignore[override]
        """The lines of a loop body: consecutive elementwise statements that write the same
        rows share one loop over them (one pass instead of several) where none of them
        reads those rows' array anywhere but at the entry it writes."""
        out: list[str] = []
        aliases: dict[str, str] = {}  # a view's name → the array (and step) it is a view of
        group: list[LoopPiece] = []
        comments: list[str] = []

        def flush() -> None:
            if group:
                out.extend(LoopPiece.merged(group).render())
            out.extend(comments)
            group.clear()
            comments.clear()

        for s in statements:
            if isinstance(s, c.Assign):
                for target, value in zip(s.targets, s.values):
                    if isinstance(value, c.View):
                        aliases[target] = self._array_of(value, aliases)
            piece = self.loop_piece(s)
            if piece is None:
                if isinstance(s, c.Comment) and group:
                    comments.append(self.statement(s))
                    continue
                flush()
                out.extend(self.statement(s).split("\n"))
                continue
            piece.base = self._array_of(piece.view, aliases)
            piece.reads = {aliases.get(n, n) for n in piece.reads}
            if group and not group[-1].joins(piece):
                flush()
            elif group and comments:
                piece.body = comments + piece.body
                comments.clear()
            group.append(piece)
        flush()
        return out

    # ----------------------------------------------------------------------------------
    # Elementwise statements as loops over entries
    # ----------------------------------------------------------------------------------

    def loop_piece(self, s) -> LoopPiece | None:
        """The loop of an elementwise statement; None for a statement of another kind or a
        formula that is not elementwise."""
        try:
            return self._loop_piece(s)
        except NotElementwise:
            return None

    def _loop_piece(self, s) -> LoopPiece | None:
        if isinstance(s, c.Update) and s.op in ("=", "+", "-", "*"):
            return self._loop(s.target, "=" if s.op == "=" else f"{s.op}=", self.entry(s.value), s.note)
        if isinstance(s, c.MultiplyInto):
            return self._loop(s.out, "=", f"{self.entry(s.a, True)} * {self.entry(s.b, True)}")
        if isinstance(s, c.ApplyInPlace):
            op = ops.FUNCTIONS.get(s.fn)
            scalar = getattr(op, "numba_scalar", "")
            if not scalar:
                return None
            # in place, the entry is read through the target's own name: one array, so that
            # the compiler sees no overlap and vectorizes the loop
            source = None if s.source is None else self.entry(s.source)
            return self._loop(s.target, "=", lambda out: in_precision(scalar).format(
                u=source or f"{out}[_i, _j]"))
        if isinstance(s, c.Assign) and len(s.targets) == 1 and s.chain is None:
            return self._new_array(s)
        return None

    def _new_array(self, s: c.Assign) -> LoopPiece | None:
        """``name = formula`` (or ``formula if flag else zeros``, a carried gradient at a
        truncation cut) as a new array filled by a loop; None for a plain renaming."""
        value: object = s.values[0]
        zero_unless: object = None
        if isinstance(value, c.IfElse) and isinstance(value.otherwise, c.Call) and value.otherwise.fn == "zeros":
            zero_unless = value.condition
            value = value.then
        if not isinstance(value, c.Math) or isinstance(value.expr, sp.MatrixSymbol):
            return None
        rows, cols = (self.dim(d) for d in value.expr.shape)
        target = s.targets[0]
        formula = self.entry(value)
        if zero_unless is not None:
            formula = f"{formula} if {self.value(zero_unless)} else _f(0.0)"
        piece = self._loop(c.View(target), "=", formula)
        piece.prelude = [f"{target} = np.empty(({rows}, {cols}), dtype){_note(s.note)}"]
        piece.new = True
        return piece

    def _loop(self, target: c.View, op: str, formula, note: str = "") -> LoopPiece:
        """``formula``: the entry's code, or a function of the name the loop writes through."""
        out = self.value(target)
        prelude = []
        if not out.isidentifier():
            prelude.append(f"_out = {out}")
            out = "_out"
        text = formula(out) if callable(formula) else formula
        own = f"{out}[_i, _j]"
        reads = _loaded([text.replace(own, "0")]) - {"_i", "_j"}
        line = f"{out}[_i, _j] {op} {text}{_note(note)}"
        return LoopPiece(self.value(target), target, out, prelude, [line], reads)

    def _array_of(self, view: c.View, aliases: dict[str, str]) -> str:
        """The array a view is rows of, with its step: ``h_seq[t]`` for ``h_seq[t][:n_h]``
        (views of different steps of one sequence never overlap)."""
        steps = [self.value(i) for i in view.index if not isinstance(i, c.Rows) and i != ":"]
        base = aliases.get(view.base, view.base)
        return f"{base}[{', '.join(steps)}]" if steps else base

    def entry(self, v, operand: bool = False) -> str:
        """The code of entry [_i, _j] of a value (a matrix of the target's shape, or a number)."""
        if isinstance(v, str) and _is_number(v):
            return f"_f({float(v)!r})"
        if isinstance(v, (str, c.View)):
            return self.element(v, (2, 2))
        if isinstance(v, c.Math):
            names = dict(v.names)

            def access(name, shape):
                return self.element(names.get(name, name), tuple(shape))
            printer = ElementPrinter(access)
            return printer.parenthesize_operand(v.expr) if operand else printer.doprint(v.expr)
        raise NotElementwise(type(v).__name__)

    def element(self, v, shape: tuple) -> str:
        """Entry [_i, _j] of an array value; a dimension of size 1 is indexed at 0 (it broadcasts)."""
        if isinstance(v, str):
            v = c.View(v)
        if not isinstance(v, c.View):
            raise NotElementwise(type(v).__name__)
        loops = ["0" if ops.same_dim(n, 1) else i for n, i in zip(shape, ("_i", "_j"))]
        items = []
        for item in v.index:
            if isinstance(item, c.Rows) or item == ":":
                if not loops:
                    raise NotElementwise("a view of more than two axes")
                index = loops.pop(0)
                lo = item.lo if isinstance(item, c.Rows) else 0
                items.append(index if ops.same_dim(lo, 0) else f"{self.dim(lo)} + {index}")
            else:
                items.append(self.value(item))
        return f"{v.base}[{', '.join(items + loops)}]"


_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d*(?:e[-+]?\d+)?)")


def in_precision(formula: str) -> str:
    """A scalar formula with its float constants as ``_f(c)``: ``_f`` is the kernel's float
    type (passed in by the caller), so that float32 entries are computed in float32, not
    promoted to float64 by a Python constant."""
    return _FLOAT_LITERAL.sub(r"_f(\1)", formula)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_UFUNCS = {"+": "np.add", "-": "np.subtract", "*": "np.multiply"}
FUSED_PRINTER = FusedPrinter()

#: Helpers every fused module may call, besides the operations' own.
_SUM_KEEPDIMS = '''def sum_keepdims(a, axis):
    """a.sum(axis=axis, keepdims=True) of a matrix."""
    if axis == 0:
        return a.sum(axis=0).reshape(1, a.shape[1])
    return a.sum(axis=1).reshape(a.shape[0], 1)'''


def _array_helper(op: type[ops.Pointwise]) -> str:
    """The compiled elementwise function of an operation, from its scalar spelling."""
    scalar = op.numba_scalar.format(u="v")
    return f'''def array_{op.op_name}(u, out=None):
    """{op.text_name or op.op_name} of every entry of the matrix u, into out (new when None): {scalar}."""
    if out is None:
        out = np.empty_like(u)
    if out.ctypes.data == u.ctypes.data:  # in place: one array, so that the loop vectorizes
        for i in range(u.shape[0]):
            for j in range(u.shape[1]):
                v = u[i, j]
                u[i, j] = {scalar}
        return u
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            v = u[i, j]
            out[i, j] = {scalar}
    return out'''


@dataclass
class StepFunction:
    """A compiled loop: its source, the names it takes and the names it returns."""

    name: str
    source: str
    args: list[str] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)


def _names(lines: list[str]) -> tuple[list[str], list[str]]:
    """(names read before any assignment, names assigned) in a block of statements, in the
    order they run: a value is read before its targets are bound, a loop's variable is bound
    before its body runs."""
    seen: dict[str, str] = {}
    assigned: dict[str, None] = {}

    def loads(node) -> None:
        names = [n for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        for n in sorted(names, key=lambda n: (n.lineno, n.col_offset)):
            seen.setdefault(n.id, "load")

    def stores(node) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                seen.setdefault(n.id, "store")
                assigned.setdefault(n.id, None)

    def run(stmt) -> None:
        if isinstance(stmt, ast.For):
            loads(stmt.iter)
            stores(stmt.target)
            for inner in stmt.body:
                run(inner)
            return
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            seen.setdefault(stmt.target.id, "load")
        loads(stmt)
        stores(stmt)

    for stmt in ast.parse("\n".join(lines)).body:
        run(stmt)
    return [n for n, how in seen.items() if how == "load"], list(assigned)


def _loaded(lines: list[str]) -> set[str]:
    tree = ast.parse("\n".join(lines) or "pass")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def step_function(name: str, header: str, body: list[str], after: list[str],
                  fixed: tuple[str, ...], known: set[str], doc: str) -> StepFunction:
    """A compiled function whose loop (``header``) runs ``body``; ``after`` is the code that
    runs after it (its reads decide what the function returns); ``fixed`` are its first
    arguments; ``known`` are module-level names (not arguments)."""
    reads, assigned = _names(body)
    skip = known | set(fixed) | {"t"} | set(dir(builtins))
    args = list(fixed) + [n for n in reads if n not in skip]
    later = _loaded(after)
    returns = [n for n in assigned if n in reads or n in later]
    lines = [f"def {name}({', '.join(args)}):", f'    """{doc}"""', f"    {header}"]
    lines += ["        " + line for line in body]
    if returns:
        lines.append(f"    return {', '.join(returns)}{',' if len(returns) == 1 else ''}")
    return StepFunction(name, "\n".join(lines), args, returns)


def _call(fn: StepFunction, argument: dict[str, str]) -> str:
    args = ", ".join(argument.get(a, a) for a in fn.args)
    call = f"{fn.name}({args})"
    if not fn.returns:
        return call
    return f"{', '.join(fn.returns)}{',' if len(fn.returns) == 1 else ''} = {call}"


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + line if line else line for line in lines]


@dataclass
class FusedParts:
    """What the fused module adds to the NumPy kernel's text."""

    functions: list[str]
    forward: tuple[str, str]  # (the NumPy loop's text, its replacement)
    backward: tuple[str, str]


def _helper_names(exprs) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^def (\w+)\(", "\n\n".join(exprs), re.MULTILINE)]


def _contiguous_slot(statements: list) -> list:
    """The backward's step with its column of the chunk's buffer (``dgates_seq[:, t % C]``,
    strided) computed in a fresh contiguous matrix and copied there at the step's end: the
    compiler vectorizes loops over contiguous rows only."""
    out = list(statements)
    for k, s in enumerate(statements):
        if (isinstance(s, c.Assign) and len(s.targets) == 1 and isinstance(s.values[0], c.View)
                and any(isinstance(i, c.ChunkSlot) for i in s.values[0].index)):
            slot, name = s.values[0], s.targets[0]
            out[k] = c.Assign(s.targets, (f"np.empty(({slot.base}.shape[0], {slot.base}.shape[2]), dtype)",),
                              "this step's column of the chunk, contiguous (copied there below)")
            out.append(c.Update(slot, "=", name, "the step's column of the chunk"))
    return out


def fused_parts(derivation: Derivation) -> FusedParts:
    """The compiled loops of one cell and the text they replace."""
    plan = plan_kernel(derivation)
    numpy_fwd = NUMPY_PRINTER.lines(plan.forward.loop)
    fwd_body = FUSED_PRINTER.lines(plan.forward.loop)
    bwd_stmts = list(plan.backward.loop)
    chunk = bwd_stmts.pop() if bwd_stmts and isinstance(bwd_stmts[-1], c.When) else None
    notes: list[c.Statement] = []  # the comment that introduces the chunk's products goes with them
    while chunk is not None and bwd_stmts and isinstance(bwd_stmts[-1], c.Comment):
        notes.insert(0, bwd_stmts.pop())
    numpy_bwd = NUMPY_PRINTER.lines(plan.backward.loop)
    bwd_body = FUSED_PRINTER.lines(_contiguous_slot(bwd_stmts))
    chunk_lines = NUMPY_PRINTER.lines(notes + list(chunk.body)) if chunk is not None else []

    helpers = _used_helpers("\n".join(fwd_body + bwd_body))
    known = set(_helper_names(helpers)) | {"np", "math"}
    fwd_after = (NUMPY_PRINTER.lines(plan.forward.after) + plan.forward.cache)
    fwd = step_function("_forward_steps", "for t in range(T):", fwd_body, fwd_after, ("T",), known,
                        "Every step of forward's loop, compiled (the NumPy loop in forward "
                        "says the same).")
    bwd_after = chunk_lines + NUMPY_PRINTER.lines(plan.backward.after) + [
        NUMPY_PRINTER.value(v) for _, v, _ in plan.backward.grads] + [
        f"d{s}_carry" for s in derivation.cell.states]
    bwd = step_function("_backward_steps", "for t in range(stop - 1, first - 1, -1):", bwd_body,
                        bwd_after, ("first", "stop"), known,
                        "Steps stop - 1 down to first of backward's loop, compiled (the NumPy "
                        "loop in backward says the same).")
    argument = {"truncate": "0 if truncate is None else truncate", "_f": "dtype.type"}

    fwd_old = "\n".join(["    for t in range(T):"] + _indent(numpy_fwd, 8)) + "\n"
    fwd_new = "\n".join([
        "    if _fused_for(parameters, m):  # every step in one compiled call",
        "        " + _call(fwd, argument),
        "    else:",
        "        for t in range(T):"] + _indent(numpy_fwd, 12)) + "\n"
    bwd_old = "\n".join(["    for t in reversed(range(T)):"] + _indent(
        NUMPY_PRINTER.lines(plan.backward.loop), 8)) + "\n"
    if chunk is not None:
        size = NUMPY_PRINTER.value(chunk.condition.size)
        fused = [f"        for first in reversed(range(0, T, max({size}, 1))):  # chunks, the last first",
                 "            # the chunk's steps in one compiled call, the last first",
                 "            " + _call(bwd, argument | {"stop": f"min(first + {size}, T)"}),
                 "            t = first"] + _indent(chunk_lines, 12)
    else:
        fused = ["        " + _call(bwd, argument | {"first": "0", "stop": "T"})]
    bwd_new = "\n".join(["    if _fused_for(parameters, m):  # the steps compiled, chunk by chunk"] + fused + [
        "    else:", "        for t in reversed(range(T)):"] + _indent(numpy_bwd, 12)) + "\n"
    functions = [_decorate(h) for h in helpers] + [
        "@_jit\n" + fwd.source, "@_jit\n" + bwd.source]
    return FusedParts(functions, (fwd_old, fwd_new), (bwd_old, bwd_new))


def _used_helpers(text: str) -> list[str]:
    """Sources of the helpers ``text`` calls, and of those they call, each once, callees first."""
    available: dict[str, str] = {"sum_keepdims": _SUM_KEEPDIMS}
    for op in ops.FUNCTIONS.values():
        if issubclass(op, ops.Pointwise) and op.numba_scalar:
            available[f"array_{op.op_name}"] = _array_helper(op)
        if getattr(op, "numba_helper", ""):
            src = op.numba_helper
            available[_helper_names([src])[0]] = src
    used: dict[str, str] = {}
    seen: set[str] = set()

    def visit(source: str) -> None:
        for name, src in available.items():
            if name not in seen and re.search(rf"(?<!def )\b{name}\(", source):
                seen.add(name)
                visit(src)
                used[name] = src
    visit(text)
    return list(used.values())


def _decorate(source: str) -> str:
    """A helper's source under its decorator. A scalar function ``scalar_f`` is printed twice,
    as ``_scalar_f_f64`` and as ``_scalar_f_f32`` with its constants in float32, and
    ``scalar_f`` compiles into its callers as the one of its argument's precision: float32
    stays float32 (twice the lanes of a vector), not promoted to float64 by a constant."""
    match = re.match(r"def (scalar_\w+)\(", source)
    if match is None:
        return "@_jit\n" + source
    name = match.group(1)
    f64 = source.replace(f"def {name}(", f"def _{name}_f64(", 1)
    f32 = _FLOAT_LITERAL.sub(r"np.float32(\1)", source.replace(f"def {name}(", f"def _{name}_f32(", 1))
    return f"{f64}\n\n\n{f32}\n\n\n{name} = _by_precision(_{name}_f64, _{name}_f32)"


PRELUDE = '''try:
    import numba
    import numba.extending
except ImportError:  # optional: without it the NumPy loops below run
    numba = None
else:  # a product of a column slice of a weight is as fast as it can be here: no note
    warnings.filterwarnings("ignore", message=".* is faster on contiguous arrays",
                            category=numba.NumbaPerformanceWarning)

#: True: forward and backward run their steps compiled by Numba; False: the NumPy loops
#: (without numba installed, or set by hand to compare).
FUSED = numba is not None
if numba is None:
    warnings.warn("numba is not installed: this kernel runs its plain NumPy loops "
                  "(install numba, or symbptt[numba], for the compiled steps)", RuntimeWarning, stacklevel=2)
_CACHE = os.path.isfile(globals().get("__file__") or "")  # compiled code cached beside a file

#: The compiled steps pay only while a step is small: where the weights' entries times the
#: batch's columns exceed this, a call runs the NumPy loops. Beyond it the per-step products
#: are big enough for BLAS to use several threads, and the products Numba calls (through
#: SciPy's copy of OpenBLAS, with threads of its own) then contend with NumPy's for the
#: cores: measured, the compiled steps ran up to 6× slower than the NumPy loops there.
#: math.inf compiles at every size, 0 never.
FUSED_MAX_WORK = 1 << 20


def _fused_for(parameters, m):
    """True when this call runs its steps compiled: FUSED, and the weights' entries (biases
    and other columns left out) times the m batch columns at most FUSED_MAX_WORK."""
    work = m * sum(w.size for w in parameters.values() if w.ndim == 2 and w.shape[1] != 1)
    return FUSED and work <= FUSED_MAX_WORK


def _jit(fn):
    """fn compiled by Numba (NumPy's division semantics; a*b + c may fuse), or as it is."""
    if numba is None:
        return fn
    return numba.njit(cache=_CACHE, error_model="numpy", fastmath={"contract"})(fn)


def _by_precision(f64, f32):
    """A scalar function that Numba compiles into its callers as f32 for a float32 argument
    and f64 for any other (so that their loops vectorize); from Python, f64."""
    def fn(u):
        return f64(u)
    if numba is not None:
        def choose(u):
            return f32 if isinstance(u, numba.types.Float) and u.bitwidth == 32 else f64
        numba.extending.overload(fn, inline="always", jit_options={
            "error_model": "numpy", "fastmath": {"contract"}})(choose)
    return fn'''

DOC = '''Backend: numba. The loops of forward and backward are compiled by Numba (see FUSED below):
one call runs every step of the forward, one call every chunk of the backward's steps;
without numba the same module runs the NumPy loops it keeps beside them, with a warning.
Compiled steps pay at small sizes only: a call whose weights' entries times batch columns
exceed FUSED_MAX_WORK runs the NumPy loops.
'''


def fused_kernel(numpy_text: str, derivation: Derivation) -> str:
    """The fused module's text from the NumPy kernel's text of the same derivation."""
    parts = fused_parts(derivation)
    text = numpy_text
    for old, new in (parts.forward, parts.backward):
        if text.count(old) != 1:
            raise AssertionError(f"fused backend: a loop of the NumPy kernel of "
                                 f"{derivation.cell.name} is not where the plan puts it")
        text = text.replace(old, new)
    text = text.replace("\nInterface: forward(", "\n" + DOC + "\nInterface: forward(", 1)
    text = text.replace("\nimport sys\nimport threading\n", "\nimport math\nimport os\nimport sys\n"
                        "import threading\nimport warnings\n", 1)
    block = PRELUDE + "\n\n\n" + "\n\n\n".join(parts.functions) + "\n\n\n"
    anchor = "_workspaces = threading.local()\n"
    return text.replace(anchor, block + anchor, 1)
