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

The person's file runs in a child process (:mod:`symbptt.grading.sandbox`) that holds no
reference result and is limited in CPU, wall time, memory, processes and files; it sends back
plain arrays and names only. The comparison, the verdict and the exit status are decided
here, so nothing the file does (patching NumPy or this module, exiting, crashing, hanging)
can make a wrong file pass. A module object without a file is run in this process.
"""

from __future__ import annotations

import ast
import functools
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import check_diagnose as diagnose
from . import ops
from .cell import CellError
from .codegen import kernel_module
from .fdcheck import dims_for
from .grading.person import Person, _best, _copy, call_with_timeout, status_of
from .grading.sandbox import RemotePerson
from .grading.wire import Opaque
from .loader import LoadError

__all__ = ["HELPERS", "SHAPES", "Report", "Verdict", "call_with_timeout", "check_module", "compare", "main"]

# (m, T) of the random problems: m = 1 and m > 1, T = 1 and T > 1. m = 5 differs from every
# dimension (n_x = 3, n_h = 4, n_y = 2, n_h + n_x = 7) so that a transpose or a sum over the
# wrong axis cannot hide behind equal sizes.
SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (1, 3), (5, 3))

# Statuses that do not make a report fail ("diagnosis" explains verdicts counted already).
PASSING = ("ok", "note", "diagnosis")

# Worst first: the status a key gets when its shapes disagree.
SEVERITY = ("crashed", "out of memory", "hung", "raised", "missing function", "wrong return", "wrong type", "wrong shape",
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
    printed: str = ""  # what the person's code wrote to stdout and stderr (captured, capped)

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
# The person's code: in a child process (grading.sandbox), or here for a module object
# ---------------------------------------------------------------------------------------

# Helpers a course assumes: name → (function, what it is), one per operation of ops.py.
HELPERS: dict[str, tuple[Callable, str]] = {
    name: (op.numpy_eval, op.summary or name)
    for name, op in cast("dict[str, type[ops.Node]]", ops.FUNCTIONS).items()  # operation classes
}


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
    outputs, _, complaint = split_result(spec, fn(*_copy(forward_args(spec, problem))))
    assert outputs is not None, complaint  # the reference returns what its spec names
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
    if isinstance(got, Opaque):
        return Finding("wrong type", problem, detail=f"got {got}, expected an array"), None
    if np.iscomplexobj(got):
        return Finding("wrong type", problem, detail="got a complex array, expected real float64 values"), None
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

    def __init__(self, person: Person | RemotePerson, cell: str, timeout: float):
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
        self.verdicts.extend(Verdict(*row) for row in self.person.verdicts)
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
            if (outcome.error is not None or outcome.hung or outcome.crashed or outcome.not_checked or complaint
                    or outputs is None):  # None only with a complaint
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
        if outcome.not_checked and spec.backward and self.refresh_cache(spec, index, problem):
            return self.run_once(spec, index, problem)  # the cache was lost with a killed child
        self.take_repairs()
        if self.failed(spec, outcome, problem):
            return None
        if outcome.changed:
            self.add(spec.name, "(inputs)", "changed input",
                     f"the call changed {', '.join(outcome.changed)} in place; a function must leave "
                     "its inputs and the parameters as it found them", problem.label)
        if outcome.error is not None:
            error = outcome.error
            kind = getattr(error, "type_name", type(error).__name__)
            key = f"{kind} {self.person.where(error)}"
            blame = self.blame(spec)
            detail = self.person.describe(error) + (f"; {blame}" if blame else "")
            self.add(spec.name, "(call)", status_of(kind), detail, problem.label, key)
            return None
        outputs, cache, complaint = split_result(spec, outcome.value)
        if complaint:
            self.add(spec.name, "(return)", "wrong return", complaint, problem.label)
            return None
        if not spec.backward:
            self.caches[(spec.kind, index)] = cache
        self.locals = outcome.local_values
        return outputs

    def refresh_cache(self, spec: Spec, index: int, problem: Problem) -> bool:
        """Run the forward again (silently) for a cache lost when the child was restarted."""
        kind = FORWARD_OF[spec.kind]
        if self.caches.pop((kind, index), None) is None:
            return False
        forward = self.spec_of(kind)
        outcome = self.person.call(forward.name, forward_args(forward, problem), forward.argnames, self.timeout)
        _, cache, complaint = split_result(forward, outcome.value)
        if outcome.error is not None or outcome.hung or outcome.crashed or outcome.not_checked or complaint:
            return False
        self.caches[(kind, index)] = cache
        return True

    def failed(self, spec: Spec, outcome, problem: Problem) -> bool:
        """A call that hung, crashed its process or could not be made: its verdict; True then."""
        if outcome.not_checked:
            self.add(spec.name, "(inputs)", "not checked", outcome.not_checked, problem.label)
        elif outcome.crashed:
            self.add(spec.name, "(call)", "crashed", outcome.crashed, problem.label)
        elif outcome.hung:
            detail = outcome.detail or f"stopped after the {self.timeout:g} s timeout"
            self.add(spec.name, "(call)", "hung", detail, problem.label)
        return bool(outcome.not_checked or outcome.crashed or outcome.hung)

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
            if finding.status == "wrong" and got is not None:  # a wrong value is always an array
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
    """The reference kernel of a built-in cell or cell file; a LoadError names a bad one."""
    if Path(cell).suffix not in ("", ".py") or Path(cell).is_dir():
        raise LoadError(f"--cell {cell}: not a cell (a built-in name or a .py cell file)")
    try:
        return kernel_module(cell)
    except (LoadError, CellError, OSError):
        raise
    except Exception as error:  # noqa: BLE001 - any other failure means it is not a cell file
        raise LoadError(f"--cell {cell}: not a cell file ({type(error).__name__}: {error})") from None


def _person(path: str | Path | types.ModuleType, kernel: types.ModuleType, timeout: float,
            isolated: bool) -> Person | RemotePerson:
    """The person's module: a file (or a module's file) in a child process, else in this one."""
    file = getattr(path, "__file__", None) if isinstance(path, types.ModuleType) else path
    if isolated and file and Path(file).suffix == ".py" and Path(file).is_file():
        return RemotePerson(file, timeout, tuple(getattr(kernel, "PARAMETERS", ())))
    if not isinstance(path, types.ModuleType) and not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return Person(path, timeout, HELPERS)


def check_module(path: str | Path | types.ModuleType, cell: str, timeout: float = 10.0,
                 isolated: bool = True) -> Report:
    """Check a person's module (a file path or an imported module) against ``cell``'s reference.

    The file runs in a limited child process unless ``isolated`` is False (or the module has
    no file). Never raises for the person's mistakes: every one of them is a verdict in the
    report; what it printed is in ``report.printed``.
    """
    kernel = _kernel(cell)  # an unknown cell is the user's mistake, reported before running their code
    if not isinstance(path, types.ModuleType) and Path(path).suffix == ".ipynb":
        return _check_notebook(Path(path), cell, timeout)
    person = _person(path, kernel, timeout, isolated)
    try:
        import_verdicts = [Verdict(*row) for row in person.verdicts]
        person.verdicts.clear()
        checker = Checker(person, cell, timeout)
        verdicts = import_verdicts + checker.run()
    finally:
        printed = person.close() if isinstance(person, RemotePerson) else ""
    sizes = ", ".join(f"{d}={n}" for d, n in dims_for(checker.kernel).items())
    shapes = "; ".join(f"m={m}, T={T}" for m, T in SHAPES)
    shown = person.path if isinstance(path, types.ModuleType) else str(path)
    header = f"symbptt check {shown} --cell {cell}   (float64; {sizes}; shapes {shapes})"
    return Report(str(person.path), cell, verdicts, header, printed)


def _check_notebook(path: Path, cell: str, timeout: float) -> Report:
    """A notebook: its code cells as one module (magics and unparsable cells left out, noted)."""
    from .grading.notebook import write_module

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with tempfile.TemporaryDirectory(prefix="symbptt-notebook-") as directory:
        module, notes = write_module(path, directory)
        report = check_module(module, cell, timeout)
    report.verdicts[:0] = [Verdict("(notebook)", "cells", "note", note) for note in notes]
    report.header = report.header.replace(str(module), str(path))
    report.path = str(path)
    return report


def main(path: str, cell: str, timeout: float = 10.0) -> int:
    """Print the verdict table; the exit status is 0 only when everything is ok, else 1."""
    report = check_module(path, cell, timeout)
    print(report.table())
    return 0 if report.ok else 1
