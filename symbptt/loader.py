"""Finding and loading cell files: a built-in name from ``derivations/`` or a path anywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .cell import Cell, CellError

ROOT = Path(__file__).resolve().parent.parent
DERIVATIONS = ROOT / "derivations"


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
    """Run a cell file and return the :class:`Cell` it names ``cell``."""
    path = resolve(str(spec), directory)
    module_name = f"_symbptt_cell_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except CellError as err:
        raise CellError(f"{path.name}: {err}") from None
    except Exception as err:  # noqa: BLE001 - a user's file: report where, not a traceback
        raise LoadError(f"{path}: {type(err).__name__}: {err}") from None
    finally:
        sys.modules.pop(module_name, None)
    cell = getattr(module, "cell", None)
    if not isinstance(cell, Cell):
        raise LoadError(f"{path}: defines no `cell = Cell(...)`")
    return cell


def source_label(path: Path) -> str:
    """How a generated file names its source: relative to the project when inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name
