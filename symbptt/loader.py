"""Finding and loading cell files: a built-in name from ``derivations/`` or a path anywhere."""

from __future__ import annotations

import ast
import importlib.util
import sys
import traceback
import types
from pathlib import Path

from .arith import numpy_replacement
from .cell import Cell, CellError
from .ops import FUNCTIONS
from .paths import CHECKOUT, DERIVATIONS, ROOT

__all__ = ["DERIVATIONS", "ROOT", "LoadError", "builtin_cells", "explain", "load", "resolve",
           "source_label"]


class LoadError(ValueError):
    """A cell that cannot be found or whose file cannot be run; the message says which."""


def builtin_cells(directory: Path = DERIVATIONS) -> list[Path]:
    """Every cell file in ``derivations/``, sorted by name."""
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def resolve(spec: str, directory: Path = DERIVATIONS) -> Path:
    """A built-in cell's name (``gru``) or the path of a cell file."""
    path = Path(spec)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise LoadError(f"cell file {spec} does not exist")
        return path.resolve()
    candidate = directory / f"{spec}.py"
    if candidate.is_file():
        return candidate
    names = ", ".join(p.stem for p in builtin_cells(directory))
    raise LoadError(f"unknown cell {spec!r}: not a file and not one of the built-in cells ({names})")


def load(spec: str | Path, directory: Path = DERIVATIONS) -> Cell:
    """Run a cell file and return the :class:`Cell` it names ``cell``.

    A mistake in the file is reported as its file name, line and equation (see
    :func:`explain`), never as a traceback.
    """
    path = resolve(str(spec), directory)
    module_name = f"_symbptt_cell_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:  # not a Python source file
        raise LoadError(f"{path}: cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - a user's file: report where, not a traceback
        raise explain(err, path) from None
    finally:
        sys.modules.pop(module_name, None)
    cell = getattr(module, "cell", None)
    if not isinstance(cell, Cell):
        raise LoadError(f"{path}: defines no `cell = Cell(...)`")
    return cell


#: Methods of a cell that define an equation, whose first argument is its name.
EQUATION_METHODS = ("let", "update", "readout")


def explain(err: Exception, path: Path) -> Exception:
    """The error of running a cell file, as one line: file, line, equation, what and the fix.

    A CellError keeps its text (it names the equation) behind the file and line. Two other
    mistakes get their own words: a NumPy function applied to the cell's symbolic matrices
    (``np.tanh(h)``: use symbptt's ``tanh``) and a number added to a SymPy sum or product
    (``1 + W @ x``).
    """
    frames = [(frame, line) for frame, line in traceback.walk_tb(err.__traceback__)
              if Path(frame.f_code.co_filename).resolve() == path.resolve()]
    if not frames:
        where = str(path)
    else:
        source = path.read_text(encoding="utf-8")
        (_, outer), (inner_frame, inner) = frames[0], frames[-1]
        where = _where(path, source, outer, inner)
    if isinstance(err, CellError):  # its text names the equation already
        return CellError(f"{where.split(', equation ')[0]}: {err}")
    numpy_call = _numpy_call(source, inner, inner_frame) if frames else None
    if numpy_call is not None:
        return LoadError(f"{where}: {numpy_call} is NumPy's function on arrays of numbers and "
                         f"cannot act on a cell's symbolic matrices; use "
                         f"{numpy_replacement(numpy_call.rsplit('.', 1)[-1], FUNCTIONS)} from symbptt")
    if isinstance(err, TypeError) and "Mix of Matrix and Scalar" in str(err):
        return LoadError(f"{where}: a number added to or subtracted from a SymPy sum or product "
                         f"(such as 1 + W @ x or a + b - 1); put the number next to a named "
                         f"value or a symbptt function (1 + exp(u), 2 - z, h_prev - 1, "
                         f"-1 + a + b) or name the expression with cell.let first")
    return LoadError(f"{where}: {type(err).__name__}: {err}")


def _where(path: Path, source: str, outer_line: int, inner_line: int) -> str:
    """``peephole.py, line 12, equation h``: the statement's equation when it defines one."""
    text = f"{path.name}, line {inner_line}"
    name = _equation_at(source, outer_line)
    return f"{text}, equation {name}" if name else text


def _statement_at(source: str, line: int) -> ast.stmt | None:
    """The innermost statement of ``source`` that spans ``line``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    found: ast.stmt | None = None
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        spans = node.lineno <= line <= (node.end_lineno or line)
        if spans and (found is None or node.lineno >= found.lineno):
            found = node
    return found


def _equation_at(source: str, line: int) -> str | None:
    """The name given to ``cell.let/update/readout`` in the statement at ``line``, if any."""
    statement = _statement_at(source, line)
    for node in ast.walk(statement) if statement is not None else ():
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in EQUATION_METHODS and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            return node.args[0].value
    return None


def _numpy_call(source: str, line: int, frame) -> str | None:
    """``np.tanh`` when the statement at ``line`` calls a NumPy function, else None."""
    statement = _statement_at(source, line)
    for node in ast.walk(statement) if statement is not None else ():
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if _is_numpy(_lookup(name, frame)):
                return name
    return None


def _lookup(dotted: str, frame):
    """The object a dotted name refers to in ``frame`` (None when it cannot be resolved)."""
    head, *rest = dotted.split(".")
    scope = {**frame.f_builtins, **frame.f_globals, **frame.f_locals}
    value = scope.get(head)
    for attr in rest:
        value = getattr(value, attr, None)
    return value


def _is_numpy(value) -> bool:
    """A NumPy function or ufunc (not the module itself, not a number)."""
    if isinstance(value, types.ModuleType) or not callable(value):
        return False
    module = getattr(value, "__module__", None) or ""
    return module == "numpy" or module.startswith("numpy.")


def source_label(path: Path) -> str:
    """How a generated file names its source: ``derivations/<name>.py`` for a built-in cell
    (the same bytes from a wheel as from a checkout), a path relative to the checkout for
    another file inside it, else the file's name."""
    path = path.resolve()
    if path.parent == DERIVATIONS.resolve():
        return f"derivations/{path.name}"
    try:
        return path.relative_to(CHECKOUT).as_posix() if CHECKOUT is not None else path.name
    except ValueError:
        return path.name
