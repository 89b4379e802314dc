"""The person's module loaded into a namespace the checker may patch, and their functions
called with a timeout, on copies, with the checker's repairs.

This module runs inside the child process that holds the person's code (see
:mod:`symbptt.grading.child`), and also in-process for a module object without a file. It
imports nothing of symbptt (only the standard library and NumPy), so that, in the child, no
reference kernel or derivation is reachable from the person's code.

Repairs: a name the code uses but never defines is supplied when its meaning is evident (a
standard helper such as ``softmax``, a function called by a wrong name, a variable misspelt,
a weight never read from ``parameters``). Each repair is itself a verdict, kept as a tuple
``(function, item, status, detail)``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
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

#: One verdict as plain data: (function, item, status, detail).
Row = tuple[str, str, str, str]

#: Exceptions whose meaning is not "raised": the status they get instead.
SPECIAL_STATUS = {"MemoryError": "out of memory"}

#: What an exception that ends a program means when the person's code raises it.
ENDS_PROGRAM = {
    "SystemExit": "the code tried to end the checker (sys.exit / SystemExit); a function must return",
    "KeyboardInterrupt": "the code raised KeyboardInterrupt; a function must return",
}


#: Whether prints are swallowed here (in-process); the child leaves them to its captured stdout.
CAPTURE_HERE = True


def status_of(error_type: str) -> str:
    """The verdict for an exception of this type: ``out of memory`` or ``raised``."""
    return SPECIAL_STATUS.get(error_type, "raised")


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
    crashed: str = ""  # the child process died during the call: how (signal, exit status)
    detail: str = ""  # for hung or crashed: where it was, when known
    not_checked: str = ""  # the call could not be made (its cache was lost with a dead child)


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
    except _Timeout as stop:
        outcome.hung = True
        outcome.error = stop  # only to say where it was stopped
    except BaseException as error:  # noqa: BLE001 - SystemExit too: the person's exception is a verdict
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
        quiet = contextlib.redirect_stdout(io.StringIO()) if CAPTURE_HERE else contextlib.nullcontext()
        with quiet:  # in-process, the person's prints would break the table
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


#: Largest source file read (bytes): a submission is a page of code, not a data file.
MAX_SOURCE = 2_000_000


def parse_source(data: bytes, path: str) -> tuple[ast.Module | None, str]:
    """The file's syntax tree, or why it has none, in one line.

    The bytes are decoded as Python does (UTF-8, or the encoding its ``# -*- coding: … -*-``
    line declares: a Spanish course writes Latin-1 comments); a binary file, a file that is
    neither UTF-8 nor declares its encoding, or one nested too deeply is named as such.
    """
    if len(data) > MAX_SOURCE:
        return None, f"the file is too large to be a submission ({len(data)} bytes; at most {MAX_SOURCE})"
    if b"\0" in data:
        return None, "not a Python source file: it contains NUL bytes (a binary file?)"
    try:
        return ast.parse(data, filename=path), ""
    except SyntaxError as error:
        if "codec can't decode" in str(error.msg):
            return None, (f"SyntaxError: the file is not UTF-8 and declares no encoding (line {error.lineno}); "
                          "save it as UTF-8 or add a first line such as # -*- coding: latin-1 -*-")
        return None, f"SyntaxError: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:
        return None, f"SyntaxError: the file cannot be parsed ({type(error).__name__}: {str(error)[:200]})"


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            node.id = self.new
        return node


class Person:
    """The person's module, loaded from its file into a namespace the checker may patch."""

    def __init__(self, source: str | Path | types.ModuleType, timeout: float = 10.0,
                 helpers: dict[str, tuple[Callable, str]] | None = None):
        self.verdicts: list[Row] = []
        self.helpers = dict(helpers or {})
        self.hung: set[str] = set()
        self.renamed_keys: dict[str, dict[str, str]] = {}
        self._tried: set[tuple[str, str]] = set()
        self.tree: ast.Module | None = None
        self.parameter_names: tuple[str, ...] = ()
        file: str | Path | None
        if isinstance(source, types.ModuleType):
            file = getattr(source, "__file__", None)
        else:
            file = source
            if not Path(file).is_file():
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
        linecache.checkcache(self.path)
        self.tree, error = parse_source(Path(self.path).read_bytes(), self.path)
        if self.tree is None:
            self.verdicts.append(("(module)", "import", "raised", error))
            return
        try:
            code = compile(self.tree, self.path, "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
            self.verdicts.append(("(module)", "import", "raised", f"SyntaxError: {str(err)[:200]}"))
            return
        run = lambda: exec(code, self.namespace)  # noqa: S102 - the person's file, run by design
        outcome = call_with_timeout(run, (), timeout)
        if outcome.hung:
            self.verdicts.append(("(module)", "import", "hung", self.stopped(outcome, timeout)))
        elif outcome.error is not None:
            kind = type(outcome.error).__name__
            self.verdicts.append(("(module)", "import", status_of(kind), self.describe(outcome.error)))

    def stopped(self, outcome: Outcome, timeout: float) -> str:
        """``stopped after the 0.5 s timeout (line 12: while True:)`` for a call that hung."""
        text = f"stopped after the {timeout:g} s timeout"
        if outcome.error is not None:
            _, line = self.where(outcome.error)
            if line is not None:
                text += f" ({self.line_text(line)})"
        return text

    def line_text(self, line: int) -> str:
        """``line 12: y = x + 1`` (with … where the statement goes on)."""
        code = linecache.getline(self.path, line).strip()
        if code.count("(") > code.count(")") or code.count("[") > code.count("]"):
            code += " …"
        return f"line {line}: {code}" if code else f"line {line}"

    def function(self, name: str) -> Callable | None:
        value = self.namespace.get(name)
        return value if callable(value) else None

    def where(self, error: BaseException) -> tuple[str | None, int | None]:
        """The person's function and line where ``error`` was raised (the innermost such frame)."""
        tb = error.__traceback__
        found: tuple[str | None, int | None] = (None, None)
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.path:
                found = (tb.tb_frame.f_code.co_name, tb.tb_lineno)
            tb = tb.tb_next
        return found

    def describe(self, error: BaseException) -> str:
        """``NameError: name 'x' is not defined (line 12: y = x + 1)``."""
        _, line = self.where(error)
        kind = type(error).__name__
        try:
            message = str(error)[:300]
        except BaseException:  # noqa: BLE001 - a hostile __str__ says nothing
            message = "(its message cannot be read)"
        text = f"{kind}: {message}"
        if kind in ENDS_PROGRAM:
            text += f"; {ENDS_PROGRAM[kind]}"
        if line is not None:
            text += f" ({self.line_text(line)})"
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
                self.verdicts.append((owner, "(call)", "raised", f"{self.describe(error)}; {fix}"))
                return True
        return False

    def _supply_helper(self, name: str, owner: str) -> str | None:
        if name not in self.helpers:
            return None
        helper, what = self.helpers[name]
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
                outcome.detail, outcome.error = self.stopped(outcome, timeout), None
                return outcome
            if outcome.error is not None and self.repair(outcome.error):
                continue
            try:
                outcome.changed = [c for b, a, n in zip(pristine, given, argnames) for c in _changes(b, a, n)]
            except BaseException:  # noqa: BLE001 - a hostile __eq__ hides a change, it decides nothing
                outcome.changed = []
            return outcome
        return outcome


