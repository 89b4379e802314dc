"""Diagnoses for ``symbptt check``: which usual mistake explains a wrong array.

Two kinds of evidence name a mistake:

* the array alone, against the expected one: a sign flip, a transposed matrix, a sum over the
  wrong axis, a missing ``keepdims``, an array left at zeros, the value of another key;
* *mutants* of the generated reference kernel: the kernel's source with one usual mistake put
  in on purpose (the recurrence cut, one term of the carried gradient dropped, σ' written
  for tanh' or the reverse, a parameter gradient not summed over time). When the person's
  array equals a mutant's on the same inputs, the mutant's label is the diagnosis. Building
  mistakes into the reference, rather than guessing from the numbers, makes a diagnosis a
  checked fact: the person's numbers *are* those of the mistaken computation.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
import types
from dataclasses import dataclass

import numpy as np

from .codegen import numpy_kernel
from .derive import derive
from .loader import load, resolve, source_label

# Relative error below which two float64 arrays count as equal.
TOLERANCE = 1e-7


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got − expected| / max(max |expected|, 1e-8): one scale-free number per array."""
    if expected.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(expected))), 1e-8)
    return float(np.max(np.abs(got - expected))) / scale


def close(got: np.ndarray, expected: np.ndarray) -> bool:
    """Same shape and equal within :data:`TOLERANCE`."""
    return got.shape == expected.shape and relative_error(got, expected) < TOLERANCE


# ---------------------------------------------------------------------------------------
# Evidence from the array alone
# ---------------------------------------------------------------------------------------


def shape_diagnosis(got: np.ndarray, expected: np.ndarray) -> str | None:
    """Explain an array of the wrong shape: transposed, summed over the wrong axis, squeezed."""
    if got.shape == expected.shape[::-1] and close(got.T, expected):
        return "transposed: it equals the expected array's transpose (the product's factors swapped)"
    if got.size == expected.size and close(got.reshape(expected.shape), expected):
        return f"right values, wrong shape: reshape or keepdims=True missing ({got.shape} for {expected.shape})"
    if expected.ndim == 2 and expected.shape[1] == 1 and got.ndim >= 1:
        total_got, total_expected = float(np.sum(got)), float(np.sum(expected))
        scale = max(abs(total_expected), 1e-8)
        if got.shape[0] != expected.shape[0] and abs(total_got - total_expected) / scale < 1e-6:
            return "sum over the wrong axis: a bias gradient sums over the batch (axis=1, keepdims=True)"
    return None


def value_diagnosis(got: np.ndarray, expected: np.ndarray, others: dict[str, np.ndarray]) -> str | None:
    """Explain a wrong array of the right shape from its values alone."""
    if not np.any(got) and np.any(expected):
        return "left at zeros: the array is all zeros (initialised and never filled)"
    if close(-got, expected):
        return "sign flip: it equals minus the expected array"
    if got.ndim == 2 and got.shape[0] == got.shape[1] and close(got.T, expected):
        return "transposed: it equals the expected array's transpose (the product's factors swapped)"
    for name, value in others.items():
        if close(got, value):
            return f"holds the value expected under {name!r} (keys or variables swapped)"
    return None


def local_holding(item: str, expected: np.ndarray, local_values: dict[str, object],
                  returned: np.ndarray) -> str | None:
    """Name the local variable of the person's function that holds the expected value (the
    one whose name is nearest the item's, when several hold it)."""
    holders = [name for name, value in local_values.items()
               if isinstance(value, np.ndarray) and value is not returned and value.shape == expected.shape
               and value.dtype.kind in "fi" and np.any(expected) and close(value.astype(float), expected)]
    if not holders:
        return None
    return max(holders, key=lambda n: difflib.SequenceMatcher(None, n, item).ratio())


# ---------------------------------------------------------------------------------------
# Mutants of the reference kernel
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """The reference kernel with one usual mistake built in: a short name for the table's
    rows, a sentence explaining the mistake, and the mutated module."""

    name: str
    label: str
    module: types.ModuleType


def kernel_source(cell: str) -> str:
    """The generated kernel's text for a built-in cell (or a cell file)."""
    path = resolve(cell)
    return numpy_kernel(derive(load(path)), source_label(path))


def _module_from(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated text
    return module


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def _terms(expr: ast.expr) -> list[ast.expr]:
    """The summands of a chain of ``+``: ``a + b + c`` → [a, b, c]."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _terms(expr.left) + _terms(expr.right)
    return [expr]


def _sum(terms: list[ast.expr]) -> ast.expr:
    out = terms[0]
    for term in terms[1:]:
        out = ast.BinOp(left=out, op=ast.Add(), right=term)
    return out


def _without_term(expr: ast.expr, index: int) -> ast.expr:
    """``expr`` with its ``index``-th summand left out (times zero when it is the only one)."""
    terms = _terms(expr)
    if len(terms) == 1:
        return ast.BinOp(left=ast.Constant(0), op=ast.Mult(), right=expr)
    return _sum([t for k, t in enumerate(terms) if k != index])


#: Where a carried gradient is formed: (a dict's values, index) or (an ``… if … else …``, "body").
_Site = tuple[list[ast.expr], int] | tuple[ast.IfExp, str]


def _carry_sites(tree: ast.Module, prefix: str | None, state: str) -> list[_Site]:
    """Where the gradient carried to the previous step is formed for ``state``.

    Returns (holder, attribute) pairs: the one-step backward's ``"d<state>_prev"`` dict value
    and the generic backward's ``d<state>_carry = … if not cut else …`` body.
    """
    sites: list[_Site] = []
    if prefix:
        step = _function(tree, f"{prefix}_one_step_backward")
        for node in ast.walk(step) if step else ():
            if isinstance(node, ast.Dict):
                for k, (key, _) in enumerate(zip(node.keys, node.values)):
                    if isinstance(key, ast.Constant) and key.value == f"d{state}_prev":
                        sites.append((node.values, k))
    generic = _function(tree, "backward")
    for node in ast.walk(generic) if generic else ():
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == f"d{state}_carry" and isinstance(node.value, ast.IfExp)):
            sites.append((node.value, "body"))
    return sites


def _get(site: _Site) -> ast.expr:
    if isinstance(site[1], int):
        return site[0][site[1]]
    return getattr(site[0], site[1])


def _set(site: _Site, value: ast.expr) -> None:
    if isinstance(site[1], int):
        site[0][site[1]] = value
    else:
        setattr(site[0], site[1], value)


def _truncated(source: str, prefix: str | None) -> str:
    """No gradient carried back across any step: the generic ``cut`` always on, and the
    notebook backward calling its one-step backward without the carried gradients."""
    tree = ast.parse(source)
    generic = _function(tree, "backward")
    for node in ast.walk(generic) if generic else ():
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "cut":
            node.value = ast.parse("t > 0", mode="eval").body
    loop = _function(tree, f"{prefix}_backward") if prefix else None
    for node in ast.walk(loop) if loop else ():
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == f"{prefix}_one_step_backward":
            node.args = [_zero_carry(arg) for arg in node.args]
    return ast.unparse(ast.fix_missing_locations(tree))


class _ZeroPrev(ast.NodeTransformer):
    """Replace every ``d<state>_prev`` read by zeros of its shape."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id.startswith("d") and node.id.endswith("_prev") and isinstance(node.ctx, ast.Load):
            return ast.parse(f"np.zeros_like({node.id})", mode="eval").body
        return node


def _zero_carry(arg: ast.expr) -> ast.expr:
    return _ZeroPrev().visit(arg)


def _term_drops(source: str, prefix: str | None, states: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """One mutant per summand of each state's carried gradient, that summand left out."""
    out = []
    for state in states:
        probe = ast.parse(source)
        sites = _carry_sites(probe, prefix, state)
        if not sites:
            continue
        counts = {len(_terms(_get(site))) for site in sites}
        if len(counts) != 1:
            continue
        first = _get(sites[0])
        for index, term in enumerate(_terms(first)):
            tree = ast.parse(source)
            for site in _carry_sites(tree, prefix, state):
                _set(site, _without_term(_get(site), index))
            if len(_terms(first)) == 1:
                name = f"contribution from step t+1 missing (d{state}_prev not carried)"
                label = (f"d{state}_prev is never carried back, so the part of the gradient that reaches "
                         f"{state} from step t+1 is lost at every step")
            else:
                name = f"contribution from step t+1 missing (d{state}_prev lacks {ast.unparse(term)})"
                label = (f"d{state}_prev lacks the term {ast.unparse(term)}, so that part of the gradient "
                         f"from step t+1 never reaches step t")
            out.append((name, label, ast.unparse(ast.fix_missing_locations(tree))))
    return out


_SIGMOID_PRIME = r"\b{x} \* \(1 - {x}\)"
_TANH_PRIME = r"\(1 - {x} \* {x}\)"


def _derivative_swaps(source: str) -> list[tuple[str, str, str]]:
    """One mutant per activation: σ' written where tanh' belongs, or the reverse."""
    out = []
    sig = sorted(set(re.findall(r"\b(\w+) \* \(1 - \1\)", source)))
    tanh = sorted(set(re.findall(r"\(1 - (\w+) \* \1\)", source)))
    for x in sig:
        mutated = re.sub(_SIGMOID_PRIME.format(x=re.escape(x)), f"(1 - {x} * {x})", source)
        label = f"the derivative through {x} = σ(·) is written as tanh' (1 − {x}²) instead of σ' {x}(1 − {x})"
        out.append((f"σ' and tanh' confused ({x})", label, mutated))
    for x in tanh:
        mutated = re.sub(_TANH_PRIME.format(x=re.escape(x)), f"{x} * (1 - {x})", source)
        label = f"the derivative through {x} = tanh(·) is written as σ' {x}(1 − {x}) instead of tanh' (1 − {x}²)"
        out.append((f"σ' and tanh' confused ({x})", label, mutated))
    return out


def _not_accumulated(source: str, prefix: str | None) -> list[tuple[str, str, str]]:
    """The notebook backward keeping one step's parameter gradient instead of the sum."""
    if not prefix:
        return []
    out = []
    variants = (
        ("grads[key]", "gradient not accumulated over time (step t=0 only)",
         "the parameter gradient equals the first step's (t=0) alone: assigned, not added, in the loop"),
        ("totals[key] if key in totals else grads[key]", "gradient not accumulated over time (step t=T-1 only)",
         "the parameter gradient equals the last step's (t=T-1) alone: the steps before it are not added"),
    )
    for replacement, name, label in variants:
        tree = ast.parse(source)
        loop = _function(tree, f"{prefix}_backward")
        for node in ast.walk(loop) if loop else ():
            if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                    and getattr(node.targets[0].value, "id", "") == "totals"):
                node.value = ast.parse(replacement, mode="eval").body
        out.append((name, label, ast.unparse(ast.fix_missing_locations(tree))))
    return out


@functools.cache
def mutants(cell: str, prefix: str | None, states: tuple[str, ...]) -> tuple[Mutant, ...]:
    """Every mutant of a cell's reference kernel, most telling first."""
    source = kernel_source(cell)
    truncated = ("no gradient is carried back from step t+1 to step t: the numbers equal the reference's "
                 "with the recurrence cut at every step (truncate=1)")
    variants = [("truncated BPTT", truncated, _truncated(source, prefix))]
    variants += _term_drops(source, prefix, states)
    variants += _derivative_swaps(source)
    variants += _not_accumulated(source, prefix)
    return tuple(Mutant(name, label, _module_from(text, f"symbptt_mutant_{cell}_{k}"))
                 for k, (name, label, text) in enumerate(variants))


# ---------------------------------------------------------------------------------------
# Evidence from the person's source: the loop of a sequence backward
# ---------------------------------------------------------------------------------------


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _loop_names(function: ast.FunctionDef, loop: ast.For) -> tuple[set[str], set[str], set[str]]:
    """Names assigned before the loop, assigned inside it, and passed to a call inside it."""
    before: set[str] = set()
    for statement in function.body:
        if statement is loop:
            break
        before |= _names(statement, ast.Store)
    stored = _names(ast.Module(body=loop.body, type_ignores=[]), ast.Store)
    calls = [c for c in ast.walk(loop) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
             and c.func.id not in ("range", "reversed", "len")]
    passed: set[str] = set()
    for call in calls:
        passed |= _names(ast.Module(body=[ast.Expr(a) for a in call.args], type_ignores=[]), ast.Load)
    return before, stored, passed


def carry_in_loop(function: ast.FunctionDef) -> str | None:
    """Say how a backward's time loop loses the carried gradient, from its source.

    Two shapes of the mistake are recognised: a carry variable initialised before the loop and
    passed to the step call but never updated inside it (the notebook's LSTM), and one updated
    inside the loop but never passed to the step call.
    """
    loops = [n for n in ast.walk(function) if isinstance(n, ast.For)]
    if not loops:
        return None
    before, stored, passed = _loop_names(function, loops[0])
    carries = sorted(n for n in before if "prev" in n or "carry" in n or n.endswith("_next"))
    frozen = [n for n in carries if n in passed and n not in stored]
    if frozen:
        return (f"in {function.name}, {' and '.join(frozen)} {'is' if len(frozen) == 1 else 'are'} passed to the "
                f"step call but never updated in the loop")
    unused = [n for n in carries if n in stored and n not in passed]
    if unused:
        return (f"in {function.name}, {' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} updated in the "
                f"loop but never passed to the step call")
    return None
