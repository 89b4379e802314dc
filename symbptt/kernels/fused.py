"""The fused (Numba) backend: the NumPy kernel with its time loops compiled.

At small sizes a step's work is a few dozen NumPy calls of a few microseconds each, mostly
Python's and NumPy's per-call overhead. This backend prints the same plan's loop bodies
(:mod:`symbptt.kernels.forward`, :mod:`symbptt.kernels.backward`) a second time, for Numba:
the whole forward loop is one compiled call, and so is every chunk of the backward's steps
(the products over a chunk's steps and the batch stay NumPy's, after each call). Matrix
products inside the loops are ``np.dot`` (BLAS); elementwise functions are loops over rows
and batch of each operation's scalar spelling (``numba_scalar`` in :mod:`symbptt.ops`);
everything else is the NumPy kernel's own array statement, which Numba compiles.

The module is the NumPy kernel's text (:func:`symbptt.codegen.numpy_kernel`) with:

* an import of numba that may fail: without it the module warns once and runs its NumPy
  loops, which are kept, unchanged, as the ``else`` branch of every compiled call;
* the compiled functions (``_forward_steps``, ``_backward_steps``, the elementwise helpers),
  printed from the plan by :class:`FusedPrinter`, after the NumPy helpers;
* each loop replaced by ``if FUSED: <compiled call> else: <the NumPy loop>``.

The arguments of a compiled function are the names its body reads and does not assign
first (found with :mod:`ast`); what it assigns and the code after the loop reads (the
gradients carried back, ``dh_carry``) it returns.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

from .. import ops
from ..array_module import ArrayModule
from ..derive import Derivation
from . import code as c
from . import plan_kernel
from .array_printer import NUMPY_PRINTER, ArrayPrinter


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


class FusedPrinter(ArrayPrinter):
    """The loop bodies as Numba compiles them (``truncate`` arrives as 0 for none)."""

    def __init__(self) -> None:
        super().__init__(NUMBA)

    def value(self, v) -> str:  # type: ignore[override]
        if isinstance(v, c.TruncationCut):
            return "truncate > 0 and t > 0 and t % truncate == 0"
        return super().value(v)


    def statement(self, s) -> str:  # type: ignore[override]
        if isinstance(s, c.Update) and s.op in _UFUNCS:
            # a += b as np.add(a, b, a): Numba compiles a ufunc call far faster than an
            # augmented assignment to a slice
            target = self.value(s.target)
            note = f"  # {s.note}" if s.note else ""
            return f"{_UFUNCS[s.op]}({target}, {self.value(s.value)}, {target}){note}"
        return super().statement(s)


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
    """(names read before any assignment, names assigned) in a block of statements, in order."""
    tree = ast.parse("\n".join(lines))
    seen: dict[str, str] = {}
    assigned: dict[str, None] = {}
    # Within a statement the value is read before the targets are bound.
    for stmt in tree.body:
        loads = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        stores = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        for n in sorted(loads, key=lambda n: (n.lineno, n.col_offset)):
            seen.setdefault(n.id, "load")
        for n in stores:
            seen.setdefault(n.id, "store")
            assigned.setdefault(n.id, None)
        for aug in (x for x in ast.walk(stmt) if isinstance(x, ast.AugAssign)):
            if isinstance(aug.target, ast.Name):
                seen.setdefault(aug.target.id, "load")
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
    bwd_body = FUSED_PRINTER.lines(bwd_stmts)
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
    argument = {"truncate": "0 if truncate is None else truncate"}

    fwd_old = "\n".join(["    for t in range(T):"] + _indent(numpy_fwd, 8)) + "\n"
    fwd_new = "\n".join([
        "    if FUSED:  # every step in one compiled call",
        "        " + _call(fwd, argument),
        "    else:",
        "        for t in range(T):"] + _indent(numpy_fwd, 12)) + "\n"
    bwd_old = "\n".join(["    for t in reversed(range(T)):"] + _indent(
        NUMPY_PRINTER.lines(plan.backward.loop), 8)) + "\n"
    if chunk is not None:
        size = NUMPY_PRINTER.value(chunk.condition.size)
        fused = [f"        for first in reversed(range(0, T, {size})):  # chunks, the last first",
                 "            # the chunk's steps in one compiled call, the last first",
                 "            " + _call(bwd, argument | {"stop": f"min(first + {size}, T)"}),
                 "            t = first"] + _indent(chunk_lines, 12)
    else:
        fused = ["        " + _call(bwd, argument | {"first": "0", "stop": "T"})]
    bwd_new = "\n".join(["    if FUSED:  # the steps compiled, chunk by chunk"] + fused + [
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
    """A helper's source under its decorator: scalar functions are inlined into the loops."""
    return ("@_jit_scalar\n" if source.startswith("def scalar_") else "@_jit\n") + source


PRELUDE = '''try:
    import numba
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


def _jit(fn):
    """fn compiled by Numba (NumPy's division semantics; a*b + c may fuse), or as it is."""
    if numba is None:
        return fn
    return numba.njit(cache=_CACHE, error_model="numpy", fastmath={"contract"})(fn)


def _jit_scalar(fn):
    """A scalar function compiled into its callers, so that their loops vectorize."""
    if numba is None:
        return fn
    return numba.njit(cache=_CACHE, error_model="numpy", fastmath={"contract"}, inline="always")(fn)'''

DOC = '''Backend: numba. The loops of forward and backward are compiled by Numba (see FUSED below):
one call runs every step of the forward, one call every chunk of the backward's steps;
without numba the same module runs the NumPy loops it keeps beside them, with a warning.
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
