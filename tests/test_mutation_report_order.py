"""The pieces of ``symbptt/report_order.py`` on their own: reading a file's tree, finding the
call a frame executes, the expression argument, the sums written in it, which terms may be
evaluated again, a derivation's lowered names expanded back, and terms put in the written order.

(``source_sums`` itself finds the cell file's frame by climbing out of cell.py; under mutmut it
runs inside mutmut's trampoline, so it is tested through whole cells in
tests/test_attack_report_order.py, outside the mutation subset. The helpers here take their
frame as an argument and run the same under mutmut.)"""

from __future__ import annotations

import ast
import os
import sys

import pytest
import sympy

from symbptt import derive, tanh
from symbptt.loader import load
from symbptt.report_order import (
    _chains,
    _declaring_call,
    _expression,
    _ours,
    _plain,
    _tree,
    expanded,
    ordered,
)


def test_tree_parses_a_file_and_follows_its_edits(tmp_path):
    path = tmp_path / "cellfile.py"
    path.write_text("x = 1 + 2\n", encoding="utf-8")
    tree = _tree(str(path))
    assert isinstance(tree, ast.Module)
    assert ast.unparse(tree) == "x = 1 + 2"
    assert _tree(str(path)) is tree  # the same text: the cached tree
    path.write_text("y = 3 - 4  # edited\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert ast.unparse(_tree(str(path))) == "y = 3 - 4"
    path.write_text("def broken(:\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert _tree(str(path)) is None
    assert _tree(str(tmp_path / "missing.py")) is None


class _Grab:
    """Stands for a Cell: its methods return the call their caller is executing."""

    def let(self, name, expr=None):
        return _declaring_call(sys._getframe(1))


def test_declaring_call_is_the_exact_call_the_frame_executes():
    grab, a, b, c = _Grab(), 1, 2, 3
    first = grab.let("h", a + b)
    second = grab.let("z",
                      expr=b - c)  # over two lines, with a keyword
    assert ast.unparse(first) == "grab.let('h', a + b)"
    assert ast.unparse(second) == "grab.let('z', expr=b - c)"
    assert (first.lineno, second.end_lineno) == (second.lineno - 1, second.lineno + 1)


def test_declaring_call_without_source_is_none():
    namespace = {"grab": _Grab()}
    exec(compile("call = grab.let('h', 1 + 2)", "<no source>", "exec"), namespace)  # noqa: S102 - no source
    assert namespace["call"] is None


def _call(source: str) -> ast.Call:
    return ast.parse(source, mode="eval").body


def test_expression_argument():
    assert ast.unparse(_expression(_call("cell.let('h', a + b)"))) == "a + b"
    assert ast.unparse(_expression(_call("cell.let('h', a + b, 'meaning')"))) == "a + b"
    assert ast.unparse(_expression(_call("cell.let('h', meaning='m', expr=c - d)"))) == "c - d"
    assert _expression(_call("cell.let('h')")) is None
    assert _expression(_call("cell.let('h', meaning='m')")) is None


def test_chains_are_every_sum_outermost_first_with_signs():
    chains = _chains(ast.parse("tanh(a + b - c) - odot(d, e + f) + g", mode="eval").body)
    assert [[ast.unparse(t) for t in chain] for chain in chains] == [
        ["tanh(a + b - c)", "-odot(d, e + f)", "g"], ["a", "b", "-c"], ["e", "f"]]
    assert _chains(ast.parse("odot(a, b)", mode="eval").body) == []


def _helper(v):
    return v


def test_ours_is_symbptt_or_sympy_only():
    frame = sys._getframe()
    sin = sympy.sin  # noqa: F841 - read from the frame
    assert _ours("tanh", frame)  # symbptt's, a global of this module
    assert _ours("sin", frame)  # SymPy's, a local
    assert not _ours("_helper", frame)  # this file's own
    assert not _ours("len", frame)  # a builtin
    assert not _ours("no_such_name", frame)
    tanh = _helper  # noqa: F841 - a local shadows the global
    assert not _ours("tanh", sys._getframe())


def test_plain_terms_only():
    frame = sys._getframe()

    def plain(source: str) -> bool:
        return _plain(ast.parse(source, mode="eval").body, frame)

    assert plain("W @ x + b[0] * 2")
    assert plain("tanh(W @ x)")
    assert plain("sympy.sin(x)") is False  # a call through an attribute: a method, maybe
    assert not plain("cell.weight('W', 3, 3) @ x")
    assert not plain("_helper(x)")
    assert not plain("(lambda: x)()")
    assert not plain("[x for x in y]")


def test_expanded_gives_back_what_the_cell_file_wrote():
    """gru's and lstm's lowered equations (stacks, products and pre-activations named) expand
    back to the expressions the cell declared."""
    for name in ("gru", "lstm"):
        d = derive(load(name))
        auto = {e.name for e in d.forward if e.auto}
        for eq in d.cell.equations:
            lowered = d.equation(eq.name).expr
            back = expanded(d, lowered)
            assert back == eq.expr, (name, eq.name)
            assert not {s.name for s in back.atoms(sympy.MatrixSymbol)} & auto
    d = derive(load("gru"))
    assert expanded(d, d.equation("a_z").expr) != d.equation("a_z").expr  # u_t = [h; x] expanded


def test_ordered_follows_the_recorded_sum_holding_every_term():
    terms = ("b", "c", "a")
    assert ordered(terms, [("a", "b"), ("c", "a", "b")], str) == ["c", "a", "b"]
    assert ordered(terms, [("a", "b", "c", "d")], str) == ["b", "c", "a"]  # another sum
    assert ordered(terms, [("a", "b", "d")], str) == ["b", "c", "a"]
    assert ordered(terms, [], str) == ["b", "c", "a"]
    assert ordered(["x", "y"], [("Y", "X")], str.upper) == ["y", "x"]  # by the key of each term
    a, b = sympy.MatrixSymbol("a", 2, 2), sympy.MatrixSymbol("b", 2, 2)
    assert ordered([b, a], [("k", "k")], lambda t: "k") == [b, a]  # equal keys: the given order, no comparing terms


@pytest.mark.parametrize("written", ["W @ x + U @ h + b", "b + U @ h + W @ x"])
def test_ordered_puts_sympy_terms_in_the_order_written(written):
    from symbptt.notation import canonical

    W, U = sympy.MatrixSymbol("W", 3, 2), sympy.MatrixSymbol("U", 3, 3)
    x, h, b = sympy.MatrixSymbol("x", 2, 4), sympy.MatrixSymbol("h", 3, 4), sympy.MatrixSymbol("b", 3, 4)
    names = {"W": W, "U": U, "x": x, "h": h, "b": b}
    expr = tanh(eval(written, {}, names)).args[0]
    chain = _chains(ast.parse(written, mode="eval").body)[0]
    keys = tuple(canonical(eval(compile(ast.Expression(t), "<t>", "eval"), {}, names)) for t in chain)
    shown = ordered(expr.args, [keys], canonical)
    assert " + ".join(str(t) for t in shown) == written.replace(" @ ", "*")
