"""The order in which a cell file writes the terms of its sums, for reports to print them so.

SymPy sorts the terms of a sum (``odot(z, h_prev) + odot(1 - z, h_tilde)`` becomes
``(1 − z) ⊙ h̃ + h ⊙ z``). When a cell declares an equation (``cell.let``, ``cell.update``,
``cell.readout``), :func:`source_sums` finds the declaring call in its caller's source (the
exact call, from the frame's instruction position), takes every sum written in the
expression argument (``a + b - c``, also inside ``sigmoid(…)``), and evaluates each term in
the caller's namespace, so each term becomes the SymPy expression the equation holds. The
report then prints a sum's terms in that order (:func:`ordered`). A cell built where no
source can be read (``exec`` of a string, a console) records nothing and prints in SymPy's
order. Only plain expressions are evaluated again: a term that calls a method (``cell.…``),
calls a function that is not symbptt's or SymPy's (a helper of the cell file may declare
parameters: evaluating it again would declare them twice over), or holds anything but names,
subscripts, constants, operators and function calls is skipped.

Nothing here imports the rest of symbptt but :func:`~symbptt.notation.canonical`, lazily.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import sys
from pathlib import Path
from types import FrameType

#: Node types a term may contain to be evaluated again (no method calls, no lambdas).
_PLAIN = (ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop,
          ast.Subscript, ast.Attribute, ast.Call, ast.keyword, ast.Tuple, ast.Slice)

_CELL_FILE = str(Path(__file__).with_name("cell.py"))
_TREES: dict[tuple[str, int], ast.AST | None] = {}


def _tree(filename: str) -> ast.AST | None:
    """The parsed source of a file (cached while its text is unchanged), or None."""
    linecache.checkcache(filename)  # a file rewritten since it was last read
    lines = linecache.getlines(filename)
    key = (filename, hash("".join(lines)))
    if key not in _TREES:
        try:
            _TREES[key] = ast.parse("".join(lines)) if lines else None
        except SyntaxError:
            _TREES[key] = None
    return _TREES[key]


def _declaring_call(frame) -> ast.Call | None:
    """The call the frame is executing (``cell.let(…)``), found by its exact source span."""
    tree = _tree(frame.f_code.co_filename)
    if tree is None:
        return None
    positions = list(frame.f_code.co_positions())
    index = frame.f_lasti // 2
    if index >= len(positions) or positions[index][0] is None:
        return None
    line, end_line, col, end_col = positions[index]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset)
                == (line, end_line, col, end_col)):
            return node
    return None


def _expression(call: ast.Call) -> ast.expr | None:
    """The equation's expression argument: the second positional one, or ``expr=``."""
    if len(call.args) >= 2:
        return call.args[1]
    return next((k.value for k in call.keywords if k.arg == "expr"), None)


def _chains(node: ast.AST) -> list[list[ast.expr]]:
    """Every sum written in ``node``, outermost first, as its signed terms in source order."""
    out: list[list[ast.expr]] = []

    def terms(n: ast.expr) -> list[tuple[ast.expr, bool]]:
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            return terms(n.left) + [(n.right, isinstance(n.op, ast.Sub))]
        return [(n, False)]

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            chain = terms(n)
            out.append([ast.UnaryOp(ast.USub(), t) if negative else t for t, negative in chain])
            for t, _ in chain:
                visit(t)
            return
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return out


def _ours(name: str, frame: FrameType) -> bool:
    """True if ``name`` is, in the frame, one of symbptt's or SymPy's functions: those are
    free of side effects; a cell file's own helper need not be."""
    missing = object()
    value = frame.f_locals.get(name, frame.f_globals.get(name, getattr(builtins, name, missing)))
    module = getattr(value, "__module__", None) or ""
    return module.split(".")[0] in ("symbptt", "sympy")


def _plain(node: ast.expr, frame: FrameType) -> bool:
    if not all(isinstance(n, _PLAIN) for n in ast.walk(node)):
        return False
    return all(isinstance(n.func, ast.Name) and _ours(n.func.id, frame)
               for n in ast.walk(node) if isinstance(n, ast.Call))


def source_sums() -> tuple[tuple, ...]:
    """The sums of the equation being declared, each a tuple of its terms' canonical keys.

    Called from inside :class:`~symbptt.cell.Cell`: the first frame outside ``cell.py``, above
    the Cell method that asks, is the cell file's (frames between this function and that method,
    such as a wrapper's, are passed over). Returns ``()`` when the source or a term cannot be
    read, or when no Cell method asks.
    """
    from .notation import canonical

    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != _CELL_FILE:  # up to the Cell method
        frame = frame.f_back
    while frame is not None and frame.f_code.co_filename == _CELL_FILE:  # out of cell.py
        frame = frame.f_back
    if frame is None:
        return ()
    try:
        call = _declaring_call(frame)
        expr = _expression(call) if call is not None else None
        if expr is None:
            return ()
        sums = []
        for chain in _chains(expr):
            keys = []
            for term in chain:
                if not _plain(term, frame):
                    break
                code = compile(ast.fix_missing_locations(ast.Expression(term)), "<term>", "eval")
                keys.append(canonical(eval(code, frame.f_globals, frame.f_locals)))
            else:
                sums.append(tuple(keys))
        return tuple(sums)
    except Exception:  # noqa: BLE001 - an order is a nicety; SymPy's order is the fallback
        return ()
    finally:
        del frame


def expanded(d, expr):
    """``expr`` with the names a derivation's lowering gave (stacks, products) replaced by
    their definitions, recursively: the expression as the cell file wrote it."""
    from sympy import MatrixSymbol

    auto = {s: d.equation(s.name).expr for s in expr.atoms(MatrixSymbol)
            if any(e.name == s.name and e.auto for e in d.forward)}
    return expanded(d, expr.xreplace(auto)) if auto else expr


def ordered(terms, sums, key) -> list:
    """``terms`` of one sum in the order a recorded sum writes them (else as given).

    ``sums``: the recorded sums of the cell's equations; ``key(term)``: its canonical key.
    The recorded sum holding every term decides; terms keep their order otherwise.
    """
    keys = [key(t) for t in terms]
    for written in sums:
        if len(written) == len(keys) and set(written) == set(keys):
            return [t for _, t in sorted(zip((written.index(k) for k in keys), terms), key=lambda p: p[0])]
    return list(terms)


__all__ = ["expanded", "ordered", "source_sums"]
