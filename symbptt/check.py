"""``symbptt check``: a person's hand-written recurrent cell against the generated reference.

The person's module is imported from its file, each of its functions (the course notebook's
``<cell>_one_step_forward``, ``<cell>_forward``, ``<cell>_one_step_backward``,
``<cell>_backward``, and the generic ``forward``/``backward`` of design.md) is run on random
float64 inputs at several shapes, and every output and gradient key gets a verdict: ok, wrong
(where it starts, and which usual mistake explains it), missing or unexpected key, wrong
shape, raised, NaN/inf, hung, changed its inputs.

The checker goes on past the first bug, as a teacher reading the code would: a name the code
uses but never defines is supplied when its meaning is evident (a standard helper such as
``softmax``, a function called by a wrong name, a variable misspelt), and a gradient dict
with a misspelt key is read with the key fixed by the functions that call it. Each repair is
itself a verdict, so nothing is hidden by it.

Functions are checked one by one; a backward is fed the cache of the person's own forward
(cache formats are the person's business), and each call runs on copies of its inputs with
a timeout.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import functools
import io
import linecache
import re
import signal
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import check_diagnose as diagnose
from . import ops
from .codegen import kernel_module
from .fdcheck import dims_for

# (m, T) of the random problems: m = 1 and m > 1, T = 1 and T > 1. m = 5 differs from every
# dimension (n_x = 3, n_h = 4, n_y = 2, n_h + n_x = 7) so that a transpose or a sum over the
# wrong axis cannot hide behind equal sizes.
SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (1, 3), (5, 3))

# Statuses that do not make a report fail ("diagnosis" explains verdicts counted already).
PASSING = ("ok", "note", "diagnosis")

# Worst first: the status a key gets when its shapes disagree.
SEVERITY = ("hung", "raised", "missing function", "wrong return", "wrong type", "wrong shape",
            "NaN/inf", "missing key", "wrong", "unexpected key", "changed input", "not checked",
            "note", "ok")


# ---------------------------------------------------------------------------------------
# Verdicts and the report
# ---------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One line of the table: a function, the output or key it is about, status, detail, and
    the shapes (m, T) it was seen at when not every shape."""

    function: str
    item: str
    status: str
    detail: str = ""
    shapes: list[str] = field(default_factory=list)
    key: str = field(default="", repr=False, compare=False)  # what makes two shapes' verdicts one

    @property
    def ok(self) -> bool:
        return self.status in PASSING

    def text(self) -> str:
        if not self.shapes or len(self.shapes) == len(SHAPES):
            return self.detail
        return f"{self.detail} ({'; '.join(self.shapes)})".lstrip()


@dataclass
class Report:
    """Every verdict on a person's module, in the order the functions were checked."""

    path: str
    cell: str
    verdicts: list[Verdict] = field(default_factory=list)
    header: str = ""

    @property
    def ok(self) -> bool:
        """True when every verdict passes (notes included, repairs and mistakes not)."""
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)

    @property
    def problems(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def table(self) -> str:
        """The verdict table, one row per function and item, function names not repeated."""
        rows = [("function", "item", "verdict", "detail")]
        last = None
        for v in self.verdicts:
            rows.append((v.function if v.function != last else "", v.item, v.status, v.text()))
            last = v.function
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        lines = [self.header] if self.header else []
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        lines.append("all ok" if self.ok else f"{len(self.problems)} problem(s) found")
        return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------
# Running the person's code: timeout, copies, mutation, where it raised
# ---------------------------------------------------------------------------------------


class _Timeout(BaseException):
    """Raised into the person's code when its time is up (BaseException: not swallowed)."""


@dataclass
class Outcome:
    """What one call of a person's function did."""

    value: Any = None
    error: BaseException | None = None
    hung: bool = False
    local_values: dict[str, Any] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)


def _capture_locals(code: types.CodeType, sink: dict[str, Any]) -> Callable:
    """A trace function recording the locals of the outermost frame running ``code``."""

    def local_tracer(frame, event, arg):
        if event == "return":
            sink.update(frame.f_locals)
        return local_tracer

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is code and not sink.get("__entered__"):
            sink["__entered__"] = True
            return local_tracer
        return None

    return tracer


def _invoke(fn: Callable, args: tuple, outcome: Outcome) -> None:
    """Call ``fn(*args)`` and store its value or exception, and its final locals."""
    sink: dict[str, Any] = {}
    code = getattr(fn, "__code__", None)
    previous = sys.gettrace()
    if code is not None:
        sys.settrace(_capture_locals(code, sink))
    try:
        with np.errstate(all="ignore"):  # overflow or 0/0 shows as a NaN/inf verdict instead
            outcome.value = fn(*args)
    except _Timeout:
        outcome.hung = True
    except Exception as error:  # noqa: BLE001 - the person's exception is a verdict, not the checker's
        outcome.error = error
    finally:
        sys.settrace(previous)
    sink.pop("__entered__", None)
    outcome.local_values = sink


def _call_with_alarm(fn: Callable, args: tuple, timeout: float) -> Outcome:
    """Main thread on Unix: an interval timer raises :class:`_Timeout` in the person's code."""
    outcome = Outcome()

    def on_alarm(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the person's prints would break the table
            _invoke(fn, args, outcome)
    except _Timeout:  # the alarm fired after the call returned, before the timer was cleared
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return outcome


def _call_in_thread(fn: Callable, args: tuple, timeout: float) -> Outcome:
    """Elsewhere: a daemon thread, abandoned (and reported) when it outlives the timeout."""
    outcome = Outcome()
    worker = threading.Thread(target=_invoke, args=(fn, args, outcome), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        outcome.hung = True
    return outcome


def call_with_timeout(fn: Callable, args: tuple, timeout: float) -> Outcome:
    """Run ``fn(*args)`` for at most ``timeout`` seconds; a hang is an outcome, not a hang."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _call_with_alarm(fn, args, timeout)
    return _call_in_thread(fn, args, timeout)


def _same(a: Any, b: Any) -> bool:
    """Deep equality of nested arrays, dicts, lists and tuples (NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - any failure here only means "cannot tell"
        return True


def _changes(before: Any, after: Any, name: str) -> list[str]:
    """Names of the parts of an argument that the call changed (``parameters['Wz']``)."""
    if _same(before, after):
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        added = [f"{name}[{k!r}] (added)" for k in after if k not in before]
        removed = [f"{name}[{k!r}] (removed)" for k in before if k not in after]
        inner = [c for k in before if k in after for c in _changes(before[k], after[k], f"{name}[{k!r}]")]
        return inner + added + removed
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) and len(before) == len(after):
        return [c for k, (x, y) in enumerate(zip(before, after)) for c in _changes(x, y, f"{name}[{k}]")]
    return [name]


def _copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - any failure here only means "cannot tell"
        return value


# ---------------------------------------------------------------------------------------
# The person's module, and the repairs that let the checks go on
# ---------------------------------------------------------------------------------------


# Helpers a course assumes: name → (function, what it is), one per operation of ops.py.
HELPERS: dict[str, tuple[Callable, str]] = {
    name: (op.numpy_eval, op.summary or name) for name, op in ops.FUNCTIONS.items()
}


def _undefined_name(error: NameError) -> str | None:
    name = getattr(error, "name", None)
    if name:
        return name
    match = re.search(r"'(\w+)'", str(error))
    return match.group(1) if match else None


def _similarity(a: str, b: str) -> float:
    """difflib's ratio, also with the notebook's synonym ``cell`` ↔ ``one_step``."""
    plain = difflib.SequenceMatcher(None, a, b).ratio()
    synonym = difflib.SequenceMatcher(None, a.replace("_cell_", "_one_step_"), b).ratio()
    return max(plain, synonym)


def _best(name: str, candidates: list[str], cutoff: float) -> str | None:
    scored = sorted(((round(_similarity(name, c), 6), c) for c in candidates), key=lambda p: (-p[0], p[1]))
    return scored[0][1] if scored and scored[0][0] >= cutoff else None


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            node.id = self.new
        return node


class Person:
    """The person's module, loaded from its file into a namespace the checker may patch."""

    def __init__(self, source: str | Path | types.ModuleType, timeout: float = 10.0):
        self.verdicts: list[Verdict] = []
        self.hung: set[str] = set()
        self.renamed_keys: dict[str, dict[str, str]] = {}
        self._tried: set[tuple[str, str]] = set()
        self.tree: ast.Module | None = None
        self.parameter_names: tuple[str, ...] = ()
        file = getattr(source, "__file__", None) if isinstance(source, types.ModuleType) else source
        if not isinstance(source, types.ModuleType) and not Path(file).is_file():
            raise FileNotFoundError(f"no such file: {file}")
        if file and Path(file).is_file():
            self.path = str(Path(file).resolve())
            self.namespace: dict[str, Any] = {"__name__": f"symbptt_checked_{Path(file).stem}",
                                              "__file__": self.path, "__builtins__": __builtins__}
            self._exec_file(timeout)
        else:
            self.path = getattr(source, "__name__", "<module>")
            self.namespace = dict(vars(source))

    def _exec_file(self, timeout: float) -> None:
        """Import the file; a SyntaxError or an error at import is a verdict."""
        text = Path(self.path).read_text(encoding="utf-8")
        linecache.checkcache(self.path)
        try:
            self.tree = ast.parse(text, filename=self.path)
            code = compile(self.tree, self.path, "exec")
        except SyntaxError as error:
            self.verdicts.append(Verdict("(module)", "import", "raised",
                                         f"SyntaxError: {error.msg} (line {error.lineno})"))
            return
        run = lambda: exec(code, self.namespace)  # noqa: S102 - the person's file, run by design
        outcome = call_with_timeout(run, (), timeout)
        if outcome.hung:
            self.verdicts.append(Verdict("(module)", "import", "hung", f"stopped after the {timeout:g} s timeout"))
        elif outcome.error is not None:
            self.verdicts.append(Verdict("(module)", "import", "raised", self.describe(outcome.error)))

    def function(self, name: str) -> Callable | None:
        value = self.namespace.get(name)
        return value if callable(value) else None

    def where(self, error: BaseException) -> tuple[str | None, int | None]:
        """The person's function and line where ``error`` was raised (the innermost such frame)."""
        tb, found = error.__traceback__, (None, None)
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.path:
                found = (tb.tb_frame.f_code.co_name, tb.tb_lineno)
            tb = tb.tb_next
        return found

    def describe(self, error: BaseException) -> str:
        """``NameError: name 'x' is not defined (line 12: y = x + 1)``."""
        _, line = self.where(error)
        text = f"{type(error).__name__}: {error}"
        if line is not None:
            code = linecache.getline(self.path, line).strip()
            if code.count("(") > code.count(")") or code.count("[") > code.count("]"):
                code += " …"
            text += f" (line {line}: {code})" if code else f" (line {line})"
        return text

    # -- repairs ---------------------------------------------------------------------------

    def repair(self, error: BaseException) -> bool:
        """Supply what an undefined name evidently means; record the verdict. False if none."""
        if not isinstance(error, NameError):
            return False
        name = _undefined_name(error)
        owner, _ = self.where(error)
        if name is None or owner is None or (owner, name) in self._tried:
            return False
        self._tried.add((owner, name))
        for attempt in (self._supply_helper, self._supply_function, self._supply_parameter, self._supply_local):
            fix = attempt(name, owner)
            if fix:
                self.verdicts.append(Verdict(owner, "(call)", "raised", f"{self.describe(error)}; {fix}"))
                return True
        return False

    def _supply_helper(self, name: str, owner: str) -> str | None:
        if name not in HELPERS:
            return None
        helper, what = HELPERS[name]
        self.namespace[name] = helper
        return f"{name} is never defined: the standard {what} was supplied and the checks went on"

    def _defs(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in (self.tree.body if self.tree else []) if isinstance(n, ast.FunctionDef)}

    def _call_arity(self, owner: str, name: str) -> set[int]:
        node = self._defs().get(owner)
        return {len(c.args) for c in ast.walk(node) if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name) and c.func.id == name} if node else set()

    def _supply_function(self, name: str, owner: str) -> str | None:
        """A call by a wrong name: the person's own function with the nearest name and arity."""
        arity = self._call_arity(owner, name)
        candidates = []
        for fname, node in self._defs().items():
            if fname == owner:
                continue
            total, required = len(node.args.args), len(node.args.args) - len(node.args.defaults)
            if not arity or any(required <= n <= total for n in arity):
                candidates.append(fname)
        target = _best(name, candidates, 0.6)
        if target is None:
            return None
        namespace = self.namespace

        def forward_call(*args, **kwargs):
            return namespace[target](*args, **kwargs)

        forward_call.__name__ = name
        self.namespace[name] = forward_call
        return f"{name} is not a function of the module: it evidently means {target}, which was called instead"

    def _recompile(self, node: ast.FunctionDef) -> None:
        """Replace a function of the namespace by its (repaired) definition, same file and lines."""
        code = compile(ast.fix_missing_locations(ast.Module(body=[node], type_ignores=[])), self.path, "exec")
        exec(code, self.namespace)  # noqa: S102 - the person's own file, which check runs by design

    def _supply_parameter(self, name: str, owner: str) -> str | None:
        """A parameter used but never read from the ``parameters`` dict the function holds."""
        node = self._defs().get(owner)
        if node is None or name not in self.parameter_names:
            return None
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {a.arg for a in node.args.args}
        if "parameters" not in names:
            return None

        class Lookup(ast.NodeTransformer):
            def visit_Name(self, n: ast.Name) -> ast.expr:
                if n.id == name and isinstance(n.ctx, ast.Load):
                    return ast.copy_location(ast.parse(f"parameters[{name!r}]", mode="eval").body, n)
                return n

        Lookup().visit(node)
        self._recompile(node)
        return f"{name} is never read from the parameters: it evidently means parameters[{name!r}], used instead"

    def _supply_local(self, name: str, owner: str) -> str | None:
        """A misspelt variable: rename it to the nearest variable the function assigns."""
        node = self._defs().get(owner)
        if node is None:
            return None
        stores = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        stores |= {a.arg for a in node.args.args}
        loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        stores.discard(name)
        # A variable assigned but never read is the likeliest meaning of a misspelt one.
        target = _best(name, sorted(stores - loads), 0.6) or _best(name, sorted(stores), 0.75)
        if target is None:
            return None
        _Rename(name, target).visit(node)
        self._recompile(node)
        line = next((n.lineno for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == target
                     and isinstance(n.ctx, ast.Store)), None)
        at = f" (assigned at line {line})" if line else ""
        return f"it evidently means {target}{at}: {owner} was checked as if it said {target}"

    def rename_keys(self, fname: str, renames: dict[str, str]) -> None:
        """Let callers of ``fname`` read its misspelt keys under their intended names."""
        inner = self.namespace[fname]

        def renamed(*args, **kwargs):
            out = inner(*args, **kwargs)
            if isinstance(out, dict):
                out = {renames.get(k, k): v for k, v in out.items()}
            return out

        renamed.__name__ = fname
        self.namespace[fname] = renamed
        self.renamed_keys[fname] = dict(renames)

    def call(self, fname: str, args: tuple, argnames: tuple[str, ...], timeout: float) -> Outcome:
        """Call the person's function on copies of ``args``, repairing undefined names as it goes."""
        for _ in range(12):
            fn = self.namespace[fname]
            given, pristine = _copy(args), _copy(args)
            outcome = call_with_timeout(fn, given, timeout)
            if outcome.hung:
                self.hung.add(fname)
                return outcome
            if outcome.error is not None and self.repair(outcome.error):
                continue
            outcome.changed = [c for b, a, n in zip(pristine, given, argnames) for c in _changes(b, a, n)]
            return outcome
        return outcome


# ---------------------------------------------------------------------------------------
# What each function is given and what it must return
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One function to check: its name, kind, argument names and named outputs."""

    name: str
    kind: str  # step_forward, forward, step_backward, backward, generic_forward, generic_backward
    argnames: tuple[str, ...]
    outputs: tuple[str, ...] = ()  # named tuple outputs before the cache; empty for dicts

    @property
    def backward(self) -> bool:
        return "backward" in self.kind


@dataclass
class Problem:
    """One random instance at one shape: everything every function needs."""

    m: int
    T: int
    parameters: dict[str, np.ndarray]
    x: np.ndarray
    prev: dict[str, np.ndarray]  # initial / previous states, (n, m)
    d_next: dict[str, np.ndarray]  # one step's upstream per state, (n, m)
    dh: np.ndarray  # notebook backward's upstream, (n_h, m, T)
    upstream: dict[str, np.ndarray]  # generic backward's upstream per output, (n, m, T)

    @property
    def label(self) -> str:
        return f"m={self.m}, T={self.T}"


def make_problem(kernel: types.ModuleType, m: int, T: int, seed: int) -> Problem:
    """A random float64 instance; the readout's and every state's upstream nonzero."""
    rng = np.random.default_rng(seed)
    dims = dims_for(kernel)
    rows = kernel.rows(dims)
    parameters = kernel.init_parameters(dims, rng, np.float64)
    x = rng.standard_normal((rows[kernel.INPUTS[0]], m, T))
    prev = {s: 0.5 * rng.standard_normal((rows[s], m)) for s in kernel.STATES}
    d_next = {s: rng.standard_normal((rows[s], m)) for s in kernel.STATES}
    first = kernel.STATES[0]
    dh = rng.standard_normal((rows[first], m, T))
    names = kernel.STATES + kernel.READOUTS
    upstream = {k: rng.standard_normal((rows[k], m, T)) for k in names}
    return Problem(m, T, parameters, x, prev, d_next, dh, upstream)


def notebook_prefix(kernel: types.ModuleType) -> str | None:
    names = [n[: -len("_one_step_forward")] for n in vars(kernel) if n.endswith("_one_step_forward")]
    return names[0] if names else None


def specs_for(kernel: types.ModuleType) -> list[Spec]:
    """The notebook functions (when the cell has them) and the generic interface."""
    states, readouts = kernel.STATES, kernel.READOUTS
    specs = []
    p = notebook_prefix(kernel)
    if p:
        step_out = tuple(f"{s}_next" for s in states) + tuple(f"{r}t_hat" for r in readouts)
        seq_out = (states[0].upper(),) + tuple(r.upper() for r in readouts) + tuple(s.upper() for s in states[1:])
        specs += [
            Spec(f"{p}_one_step_forward", "step_forward",
                 ("xt",) + tuple(f"{s}_prev" for s in states) + ("parameters",), step_out),
            Spec(f"{p}_forward", "forward", ("x", f"{states[0]}0", "parameters"), seq_out),
            Spec(f"{p}_one_step_backward", "step_backward", tuple(f"d{s}_next" for s in states) + ("cache",)),
            Spec(f"{p}_backward", "backward", (f"d{states[0]}", "caches")),
        ]
    specs += [Spec("forward", "generic_forward", ("parameters", "x", "initial_states")),
              Spec("backward", "generic_backward", ("cache", "upstream"))]
    return specs


def forward_args(spec: Spec, problem: Problem) -> tuple:
    """Arguments of a forward-kind function (the same for the person and the reference)."""
    if spec.kind == "step_forward":
        return (problem.x[:, :, 0], *problem.prev.values(), problem.parameters)
    if spec.kind == "forward":
        return (problem.x, next(iter(problem.prev.values())), problem.parameters)
    return (problem.parameters, problem.x, dict(problem.prev))


def backward_args(spec: Spec, problem: Problem, cache: Any) -> tuple:
    """Arguments of a backward-kind function, given the cache of the matching forward."""
    if spec.kind == "step_backward":
        return (*problem.d_next.values(), cache)
    if spec.kind == "backward":
        return (problem.dh, cache)
    return (cache, dict(problem.upstream))


FORWARD_OF = {"step_backward": "step_forward", "backward": "forward", "generic_backward": "generic_forward"}


def split_result(spec: Spec, value: Any) -> tuple[dict[str, Any] | None, Any, str | None]:
    """(named outputs, cache, complaint) from what a function returned."""
    if spec.kind in ("step_forward", "forward"):
        want = spec.outputs + ("cache" if spec.kind == "step_forward" else "caches",)
        if not isinstance(value, (tuple, list)) or len(value) != len(want):
            got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
            return None, None, f"returns {got}, expected {len(want)}: ({', '.join(want)})"
        return dict(zip(spec.outputs, value)), value[-1], None
    if spec.kind == "generic_forward":
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], dict)):
            return None, None, "returns something other than (outputs dict, cache)"
        return dict(value[0]), value[1], None
    if not isinstance(value, dict):
        return None, None, f"returns a {type(value).__name__}, expected a dict of gradients"
    return dict(value), None, None


def reference_outputs(module: types.ModuleType, spec: Spec, problem: Problem) -> dict[str, np.ndarray]:
    """The reference (or a mutant of it) on the same inputs, as named arrays."""
    fn = getattr(module, spec.name)
    if spec.backward:
        forward_spec = next(s for s in specs_for(module) if s.kind == FORWARD_OF[spec.kind])
        _, cache, _ = split_result(forward_spec, getattr(module, forward_spec.name)(
            *_copy(forward_args(forward_spec, problem))))
        if spec.kind == "generic_backward":
            return dict(fn(cache, dict(problem.upstream)))
        return dict(fn(*backward_args(spec, problem, cache)))
    outputs, _, _ = split_result(spec, fn(*_copy(forward_args(spec, problem))))
    return {k: np.asarray(v) for k, v in outputs.items()}


# ---------------------------------------------------------------------------------------
# Comparing one array
# ---------------------------------------------------------------------------------------


@dataclass
class Finding:
    """The verdict on one output or key at one shape; for "wrong", where and why."""

    status: str
    problem: Problem
    error: float = 0.0
    detail: str = ""
    hints: tuple[str, ...] = ()
    diagnoses: tuple[tuple[str, str], ...] = ()  # (short name, explanation) of mutants matched


def _span(indices: list[int]) -> str:
    """[0, 1, 2, 5] → '0-2, 5'."""
    parts, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(parts)


def locate(bad: np.ndarray, backward: bool) -> str:
    """Where a boolean mask of wrong entries starts: the time step (for sequences; backward
    errors start at the latest step, forward ones at the earliest) and the rows."""
    rows = sorted({int(i) for i in np.nonzero(bad)[0]})
    text = f"rows {_span(rows)} of 0-{bad.shape[0] - 1}"
    if bad.ndim == 3:
        steps = sorted({int(t) for t in np.nonzero(bad)[2]})
        start = steps[-1] if backward else steps[0]
        text = f"starts at t={start} (wrong at t={_span(steps)} of 0-{bad.shape[2] - 1}), {text}"
    return text


def compare(got: Any, expected: np.ndarray, backward: bool, problem: Problem) -> tuple[Finding, np.ndarray | None]:
    """ok / wrong type / wrong shape / NaN/inf / wrong, and the person's value as an array."""
    try:
        array = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return Finding("wrong type", problem, detail=f"got {type(got).__name__}, expected an array"), None
    if array.shape != expected.shape:
        hint = diagnose.shape_diagnosis(array, expected)
        detail = f"got {array.shape}, expected {expected.shape}" + (f"; {hint}" if hint else "")
        return Finding("wrong shape", problem, detail=detail), array
    finite = np.isfinite(array)
    if not finite.all():
        where = locate(~finite, backward)
        return Finding("NaN/inf", problem, float("inf"), f"{int((~finite).sum())} non-finite entries; {where}"), array
    error = diagnose.relative_error(array, expected)
    if error < diagnose.TOLERANCE:
        return Finding("ok", problem, error), array
    scale = max(float(np.max(np.abs(expected))), 1e-8)
    where = locate(np.abs(array - expected) > diagnose.TOLERANCE * scale, backward)
    return Finding("wrong", problem, error, where), array


def summarize(findings: list[Finding]) -> tuple[Finding, float, list[str]]:
    """For one item over all shapes: the finding to show (worst status, then largest shape),
    the worst relative error, and the shapes that had that status."""
    rank = {s: k for k, s in enumerate(SEVERITY)}
    status = min((f.status for f in findings), key=lambda s: rank.get(s, 0))
    same = [f for f in findings if f.status == status]
    shown = max(same, key=lambda f: (f.problem.T, f.problem.m))
    return shown, max(f.error for f in same), [f.problem.label for f in same]


# ---------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------


WRONG_VALUES = ("wrong", "wrong shape", "wrong type", "NaN/inf")


class Checker:
    """Checks one person's module against one cell's reference kernel."""

    def __init__(self, person: Person, cell: str, timeout: float):
        self.person, self.cell, self.timeout = person, cell, timeout
        self.kernel = _kernel(cell)
        person.parameter_names = tuple(getattr(self.kernel, "PARAMETERS", ()))
        self.prefix = notebook_prefix(self.kernel)
        self.specs = specs_for(self.kernel)
        self.problems = [make_problem(self.kernel, m, T, seed) for seed, (m, T) in enumerate(SHAPES)]
        self.caches: dict[tuple[str, int], Any] = {}  # (forward kind, problem index) → person's cache
        self.wrong: set[str] = set()  # functions with a wrong output or gradient
        self.verdicts: list[Verdict] = []
        self.locals: dict[str, Any] = {}

    def spec_of(self, kind: str) -> Spec:
        return next(s for s in self.specs if s.kind == kind)

    def run(self) -> list[Verdict]:
        """Check every function the module defines; the notebook's four go together."""
        present = [s for s in self.specs if self.person.function(s.name)]
        notebook = [s for s in self.specs if not s.kind.startswith("generic")]
        if not present:
            wanted = ", ".join(s.name for s in notebook + self.specs[-2:])
            self.verdicts.append(Verdict("(module)", "functions", "missing function",
                                         f"none of the expected functions is defined ({wanted})"))
        uses_notebook = any(s in notebook for s in present)
        for spec in self.specs:
            if spec in present or (uses_notebook and spec in notebook):
                self.check(spec)
        self.take_repairs()
        return self.verdicts

    def add(self, function: str, item: str, status: str, detail: str = "", shape: str | None = None,
            key: str | None = None) -> None:
        """Add a verdict, or add ``shape`` to the same verdict seen at another shape."""
        key = key or detail
        for v in self.verdicts:
            if (v.function, v.item, v.status, v.key or v.detail) == (function, item, status, key):
                if shape and shape not in v.shapes:
                    v.shapes.append(shape)
                return
        self.verdicts.append(Verdict(function, item, status, detail, [shape] if shape else [], key))
        if status in WRONG_VALUES:
            self.wrong.add(function)

    def take_repairs(self) -> None:
        """Move the person's repair verdicts (made while running) into the table."""
        self.verdicts.extend(self.person.verdicts)
        self.person.verdicts.clear()

    def check(self, spec: Spec) -> None:
        """Run one function at every shape and add its verdicts."""
        self.take_repairs()
        if self.person.function(spec.name) is None:
            self.add(spec.name, "(function)", "missing function", f"{spec.name} is not defined")
            return
        findings: dict[str, list[Finding]] = {}
        returned: set[str] = set()
        for index, problem in enumerate(self.problems):
            if spec.name in self.person.hung:
                break
            outputs = self.run_once(spec, index, problem)
            if outputs is not None:
                returned.update(outputs)
                expected = reference_outputs(self.kernel, spec, problem)
                self.match(spec, problem, outputs, expected, findings)
        self.take_repairs()
        self.report(spec, findings, returned)

    # -- inputs --------------------------------------------------------------------------

    def person_cache(self, spec: Spec, index: int) -> tuple[Any, str | None]:
        """The cache the person's own forward made for this problem, or why there is none."""
        kind = FORWARD_OF[spec.kind]
        if (kind, index) in self.caches:
            return self.caches[(kind, index)], None
        if kind == "forward" and ("step_forward", index) in self.caches:
            built = self.caches_from_steps(index)
            if built is not None:
                return built, None
        return None, f"needs the cache of {self.spec_of(kind).name}, which did not run"

    def caches_from_steps(self, index: int) -> Any:
        """The notebook's ``(caches, x)`` built by running the person's one-step forward."""
        problem = self.problems[index]
        step = self.spec_of("step_forward")
        first = self.kernel.STATES[0]
        states = {s: (v if s == first else np.zeros_like(v)) for s, v in problem.prev.items()}
        caches = []
        for t in range(problem.T):
            args = (problem.x[:, :, t], *states.values(), problem.parameters)
            outcome = self.person.call(step.name, args, step.argnames, self.timeout)
            outputs, cache, complaint = split_result(step, outcome.value)
            if outcome.error is not None or outcome.hung or complaint:
                return None
            states = {s: outputs[f"{s}_next"] for s in states}
            caches.append(cache)
        self.add(self.spec_of("backward").name, "(inputs)", "note",
                 f"caches built as (caches, x) from {step.name}, step by step")
        return (caches, problem.x.copy())

    def run_once(self, spec: Spec, index: int, problem: Problem) -> dict[str, Any] | None:
        """Call the person's function on one problem; verdicts for raising, hanging, mutating."""
        if spec.backward:
            cache, why = self.person_cache(spec, index)
            if why:
                self.add(spec.name, "(inputs)", "not checked", why, problem.label)
                return None
            args = backward_args(spec, problem, cache)
        else:
            args = forward_args(spec, problem)
        outcome = self.person.call(spec.name, args, spec.argnames, self.timeout)
        self.take_repairs()
        if outcome.hung:
            self.add(spec.name, "(call)", "hung", f"stopped after the {self.timeout:g} s timeout", problem.label)
            return None
        if outcome.changed:
            self.add(spec.name, "(inputs)", "changed input",
                     f"the call changed {', '.join(outcome.changed)} in place; a function must leave "
                     "its inputs and the parameters as it found them", problem.label)
        if outcome.error is not None:
            error = outcome.error
            key = f"{type(error).__name__} {self.person.where(error)}"
            blame = self.blame(spec)
            detail = self.person.describe(error) + (f"; {blame}" if blame else "")
            self.add(spec.name, "(call)", "raised", detail, problem.label, key)
            return None
        outputs, cache, complaint = split_result(spec, outcome.value)
        if complaint:
            self.add(spec.name, "(return)", "wrong return", complaint, problem.label)
            return None
        if not spec.backward:
            self.caches[(spec.kind, index)] = cache
        self.locals = outcome.local_values
        return outputs

    # -- outputs -------------------------------------------------------------------------

    def match(self, spec: Spec, problem: Problem, outputs: dict[str, Any], expected: dict[str, Any],
              findings: dict[str, list[Finding]]) -> None:
        """Compare every expected item at one shape; keep the findings per item."""
        extra = sorted(set(outputs) - set(expected))
        for item, want in expected.items():
            want = np.asarray(want)
            if item not in outputs:
                findings.setdefault(item, []).append(self.missing(spec, problem, item, want, outputs, extra))
                continue
            finding, got = compare(outputs[item], want, spec.backward, problem)
            if finding.status == "wrong":
                self.explain(finding, spec, problem, item, got, want, expected)
            findings.setdefault(item, []).append(finding)

    def missing(self, spec: Spec, problem: Problem, item: str, want: np.ndarray, outputs: dict[str, Any],
                extra: list[str]) -> Finding:
        """A missing key; when a returned key evidently means it, that key's value is checked."""
        alias = _best(item, extra, 0.5)
        if not alias:
            return Finding("missing key", problem, detail="not returned")
        value, _ = compare(outputs[alias], want, spec.backward, problem)
        verdict = value.status + (f", max rel. error {value.error:.1e}" if value.status == "ok" else "")
        return Finding("missing key", problem,
                       detail=f"not returned; the returned key {alias!r} evidently means it (its value: {verdict})")

    def explain(self, finding: Finding, spec: Spec, problem: Problem, item: str, got: np.ndarray,
                want: np.ndarray, expected: dict[str, Any]) -> None:
        """Diagnose a wrong array: from its values, from a mutant of the reference, from a local."""
        others = {k: np.asarray(v) for k, v in expected.items() if k != item}
        hints = []
        value_hint = diagnose.value_diagnosis(got, want, others)
        if value_hint:
            hints.append(value_hint)
        else:
            finding.diagnoses = self.mutant_diagnoses(spec, problem, item, got)
            hints += [name for name, _ in finding.diagnoses]
        holder = diagnose.local_holding(item, want, self.locals, got)
        if holder:
            hints.append(f"the local variable {holder} holds the expected value but is not returned")
        finding.hints = tuple(hints)

    def mutant_diagnoses(self, spec: Spec, problem: Problem, item: str, got: np.ndarray) -> tuple:
        """The first mutant of the reference whose value for ``item`` equals the person's."""
        for mutant in diagnose.mutants(self.cell, self.prefix, tuple(self.kernel.STATES)):
            try:
                value = reference_outputs(mutant.module, spec, problem).get(item)
            except Exception:  # noqa: BLE001, S112 - a mutant that cannot run explains nothing
                continue
            if value is not None and diagnose.close(got, np.asarray(value)):
                return ((mutant.name, mutant.label),)
        return ()

    def source_evidence(self, spec: Spec, diagnosis: str) -> str:
        """For a loss of the carried gradient in a sequence backward, the line of reasoning in
        the person's loop (which variable is never carried)."""
        node = self.person._defs().get(spec.name)
        if node is None or not spec.kind.endswith("backward") or spec.kind == "step_backward":
            return ""
        if not diagnosis.startswith(("truncated", "contribution")):
            return ""
        evidence = diagnose.carry_in_loop(node)
        return f"; {evidence}" if evidence else ""

    def blame(self, spec: Spec) -> str | None:
        """A backward's numbers also depend on the person's forward (its cache) and one step."""
        blamed = []
        if spec.backward:
            source = self.spec_of(FORWARD_OF[spec.kind]).name
            if source in self.wrong:
                blamed.append(f"its cache comes from {source}, which has wrong outputs")
        if spec.kind in ("forward", "backward") and self.prefix:
            step = self.spec_of("step_backward" if spec.backward else "step_forward").name
            node = self.person._defs().get(spec.name)
            calls = node is not None and any(isinstance(n, ast.Name) and n.id == step for n in ast.walk(node))
            if (calls or node is None) and step in self.wrong:
                blamed.append(f"it calls {step}, which has wrong outputs")
        return "; ".join(blamed) or None

    def report(self, spec: Spec, findings: dict[str, list[Finding]], returned: set[str]) -> None:
        """One verdict per item (worst over shapes), unexpected keys with their likely meaning,
        then the diagnoses' explanations and the blame on the functions it depends on."""
        for item, fs in findings.items():
            shown, error, shapes = summarize(fs)
            detail = shown.detail
            if shown.status in ("ok", "wrong"):
                detail = f"max rel. error {error:.1e}" + (f"; {detail}" if detail else "")
            detail += "".join(f"; {h}" for h in shown.hints)
            self.add(spec.name, item, shown.status, detail, None if shown.status == "ok" else shapes[0])
            for shape in shapes[1:] if shown.status != "ok" else ():
                self.add(spec.name, item, shown.status, detail, shape)
        self.report_keys(spec, findings, returned)
        explained = {d for fs in findings.values() for f in fs if f.status == "wrong" for d in f.diagnoses}
        for name, label in sorted(explained):
            self.add(spec.name, "(diagnosis)", "diagnosis", f"{name}: {label}{self.source_evidence(spec, name)}")
        blame = self.blame(spec)
        if blame and any(v.function == spec.name and v.status in WRONG_VALUES for v in self.verdicts):
            self.add(spec.name, "(inputs)", "note", blame)

    def report_keys(self, spec: Spec, findings: dict[str, list[Finding]], returned: set[str]) -> None:
        """Keys the function returns that the cell does not have; misspelt ones are read with
        the intended name by the functions that call it."""
        if spec.outputs:
            return
        missing = [k for k, fs in findings.items() if any(f.status == "missing key" for f in fs)]
        renames = {}
        for key in sorted(returned - set(findings)):
            meant = _best(key, missing, 0.5)
            self.add(spec.name, key, "unexpected key",
                     "not a gradient the cell has" + (f"; did you mean {meant!r}?" if meant else ""))
            if meant:
                renames[key] = meant
        if renames and spec.kind == "step_backward":
            self.person.rename_keys(spec.name, renames)
            text = ", ".join(f"{k!r} as {v!r}" for k, v in renames.items())
            self.add(spec.name, "(callers)", "note", f"functions that call it read {text} from here on")


@functools.cache
def _kernel(cell: str) -> types.ModuleType:
    return kernel_module(cell)


def check_module(path: str | Path | types.ModuleType, cell: str, timeout: float = 10.0) -> Report:
    """Check a person's module (a file path or an imported module) against ``cell``'s reference.

    Never raises for the person's mistakes: every one of them is a verdict in the report.
    """
    _kernel(cell)  # an unknown cell is the user's mistake, reported before running their code
    person = Person(path, timeout)
    import_verdicts = list(person.verdicts)
    person.verdicts.clear()
    checker = Checker(person, cell, timeout)
    verdicts = import_verdicts + checker.run()
    sizes = ", ".join(f"{d}={n}" for d, n in dims_for(checker.kernel).items())
    shapes = "; ".join(f"m={m}, T={T}" for m, T in SHAPES)
    shown = person.path if isinstance(path, types.ModuleType) else str(path)
    header = f"symbptt check {shown} --cell {cell}   (float64; {sizes}; shapes {shapes})"
    return Report(str(person.path), cell, verdicts, header)


def main(path: str, cell: str, timeout: float = 10.0) -> int:
    """Print the verdict table; the exit status is 0 only when everything is ok, else 1."""
    report = check_module(path, cell, timeout)
    print(report.table())
    return 0 if report.ok else 1
