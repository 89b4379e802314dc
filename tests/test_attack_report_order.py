"""Attacks on ``symbptt/report_order.py``: the report prints each forward sum's terms in the
order the cell file writes them, by reading the declaring call's source again and evaluating
each term in the caller's namespace. Whatever the source looks like (loops, helpers,
comments, line continuations, the same term twice, no source at all, a file edited since it
was imported), declaring a cell must not change it, never crash, and the report must never
print a wrong equation (``check_report`` finds no failure).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

import pytest

from symbptt import derive
from symbptt.loader import load
from symbptt.report import report_tex
from symbptt.report_check import check_report

HEADER = '''from symbptt import Cell, odot, sigmoid, tanh
import symbptt as S
'''

SIDE_EFFECTS = HEADER + '''import itertools

cell = Cell("side", "a helper that declares its own weight")
n_x, n_h = cell.dims("n_x", "n_h")
x = cell.input("x", n_x)
h_prev = cell.state("h", n_h)
count = itertools.count()
calls = []


def term(v):
    calls.append(v)
    return cell.weight(f"W{next(count)}", n_h, v.shape[0]) @ v


h = cell.update("h", tanh(term(x) + term(h_prev)))
'''


def forward_rows(tex: str) -> list[str]:
    block = tex[tex.index(r"\begin{align}"):tex.index(r"\end{align}")]
    return [re.sub(r" \\label.*", "", row).rstrip(" \\") for row in block.splitlines()[1:]]


def assert_true_report(cell) -> list[str]:
    """The report's forward rows, after checking every printed equation against the derivation."""
    d = derive(cell)
    tex = report_tex(d, "en")
    verdict = check_report(d, tex)
    assert not verdict.failures, verdict.failures
    return forward_rows(tex)


def test_a_helper_that_declares_a_weight_is_not_called_again(tmp_path):
    """A term calling the file's own helper was evaluated again: the helper declared two more
    weights, never used, and the valid cell was refused by validate()."""
    path = tmp_path / "side.py"
    path.write_text(SIDE_EFFECTS, encoding="utf-8")
    cell = load(path)
    cell.validate()
    assert [p.name for p in cell.parameters] == ["W0", "W1"]
    assert cell.term_order == {"h": ()}  # the helper's terms are not evaluated: SymPy's order


LOOPS = HEADER + '''
cell = Cell("loops", "gates declared in a loop, comments, continuations, a repeated term")
n_x, n_h = cell.dims("n_x", "n_h")
x = cell.input("x", n_x)
h_prev = cell.state("h", n_h)
W = {g: cell.weight(f"W{g}", n_h, n_x) for g in "zr"}
U = {g: cell.weight(f"U{g}", n_h, n_h) for g in "zr"}
b = {g: cell.bias(f"b{g}", n_h) for g in "zr"}
gates = {}
for g in "zr":
    gates[g] = cell.let(g, sigmoid(b[g] +  # a comment inside the call
                                   U[g] @ h_prev \\
                                   + W[g] @ x))
d = cell.let("d", S.tanh(W["z"] @ x + W["z"] @ x))  # the same term twice, a module's attribute
cell.update("h", d - odot(gates["r"], h_prev) + odot(gates["z"], h_prev))
'''

NESTED = LOOPS.replace('''d = cell.let("d", S.tanh(W["z"] @ x + W["z"] @ x))  # the same term twice, a module's attribute
cell.update("h", d''', '''cell.update("h", S.tanh(W["z"] @ x + W["z"] @ x)''')


def test_loops_comments_continuations_and_a_repeated_term(tmp_path):
    path = tmp_path / "loops.py"
    path.write_text(LOOPS, encoding="utf-8")
    cell = load(path)
    assert cell.term_order["z"] == ((("Broadcast", "bz", "m"), ("MatMul", "Uz", "h_prev"),
                                     ("MatMul", "Wz", "xt")),)
    rows = assert_true_report(cell)
    assert rows[0] == r"\mathbf{a}_{z,t} &= \mathbf{b}_{z} + \mathbf{U}_{z} \mathbf{h}_{t-1} + \mathbf{W}_{z} \mathbf{x}_{t}"
    assert rows[2] == r"\mathbf{a}_{r,t} &= \mathbf{b}_{r} + \mathbf{U}_{r} \mathbf{h}_{t-1} + \mathbf{W}_{r} \mathbf{x}_{t}"


STALE = HEADER + '''

def build():
    cell = Cell("stale", "built by a function, the file edited before it is called")
    n_x, n_h = cell.dims("n_x", "n_h")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    W, U, b = cell.weight("W", n_h, n_x), cell.weight("U", n_h, n_h), cell.bias("b", n_h)
    cell.update("h", tanh(W @ x + U @ h_prev + b))
    return cell
'''


@pytest.mark.parametrize("edited", [
    "cell.update(\"h\", tanh(W @ x - U @ h_prev + b))",   # other terms, the same span
    "cell.update(\"h\", tanh(b + U @ h_prev + W @ x))",   # the same terms, another order
    "cell.update(\"h\", tanh(Q @ x + U @ h_prev + b))",   # a name that does not exist
])
def test_a_file_edited_after_import_never_prints_a_wrong_equation(tmp_path, edited):
    path = tmp_path / "stale_cell.py"
    path.write_text(STALE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("stale_cell_attack", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = 'cell.update("h", tanh(W @ x + U @ h_prev + b))'
    assert len(edited) == len(original)
    path.write_text(STALE.replace(original, edited), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # linecache sees a new file
    rows = assert_true_report(module.build())
    assert rows[0].startswith(r"\mathbf{a}_{h,t} &= ")


def test_code_compiled_under_another_files_name_never_prints_a_wrong_equation(tmp_path):
    """exec of a cell whose code claims to be another existing file (as a notebook tool may do):
    the positions point into that file's text, which is not this code."""
    other = tmp_path / "other.py"
    other.write_text(LOOPS, encoding="utf-8")
    source = LOOPS.replace('"zr"', '"rz"').replace("b[g] +", "W[g] @ x +").replace(
        "+ W[g] @ x))", "+ b[g]))")
    namespace: dict = {}
    exec(compile(source, str(other), "exec"), namespace)  # noqa: S102 - the attack itself
    assert_true_report(namespace["cell"])


def test_a_cell_built_without_source_records_nothing(tmp_path):
    namespace: dict = {}
    exec(compile(LOOPS, "<no source>", "exec"), namespace)  # noqa: S102 - no source to read
    assert set(namespace["cell"].term_order.values()) == {()}
    assert sys.modules.get("<no source>") is None


def test_an_unnamed_nonlinearity_inside_an_update_reads_back():
    namespace: dict = {}
    exec(compile(NESTED, "<no source>", "exec"), namespace)  # noqa: S102 - no source order
    assert_true_report(namespace["cell"])
