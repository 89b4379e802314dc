r"""Jupyter notebooks as submissions: the code cells as one module, the markdown's LaTeX as
derivation lines.

The module is the code cells in order, each after a ``# In[k]`` comment. IPython lines that are
not Python (``%magic``, ``%%cell magic``, ``!shell``) are dropped and reported; a cell that does
not parse (an unfinished exercise) is left out, reported with its SyntaxError, so the rest of
the notebook is still checked as handed in.

The derivation is read from the markdown cells' display math: ``$$ … $$``, ``\[ … \]`` and
``\begin{align} … \end{align}`` (``align*``, ``aligned``, ``eqnarray`` too). Each row
(rows split at ``\\``, ``&`` dropped) of the form ``target = expression`` is a line for
``handcheck``; a row that starts with ``=`` is another form of the previous row's target.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path


class NotebookError(ValueError):
    """A file that is not a readable notebook; says which file and why."""


def read(path: str | Path):
    """The notebook (nbformat 4), or a NotebookError naming the file."""
    try:
        import nbformat
    except ImportError:
        raise NotebookError(f"{path}: reading notebooks needs nbformat (pip install 'symbptt[grade]')") from None
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds for a broken file
        raise NotebookError(f"{path}: not a readable notebook ({type(error).__name__}: {str(error)[:200]})") from None


_MAGIC = re.compile(r"^\s*(%%?\w|!)")


def _cell_code(source: str, number: int, notes: list[str]) -> str:
    """A code cell's text with IPython-only lines turned into comments (line numbers kept)."""
    if source.lstrip().startswith("%%"):
        notes.append(f"cell {number}: a cell magic ({source.strip().splitlines()[0][:40]}); the cell was dropped")
        return "\n".join(f"# (dropped) {line}" for line in source.splitlines())
    lines = []
    for k, line in enumerate(source.splitlines(), 1):
        if _MAGIC.match(line):
            notes.append(f"cell {number}, line {k}: {line.strip()[:60]!r} is IPython, not Python; dropped")
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(f"{indent}pass  # (dropped) {line.strip()}")
        else:
            lines.append(line)
    return "\n".join(lines)


def code_module(path: str | Path) -> tuple[str, list[str]]:
    """The notebook's code cells as one module's text, and the notes on what was left out."""
    notebook = read(path)
    parts = ["import numpy as np  # (added: notebooks import it in their first cell)"]
    notes: list[str] = []
    for number, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        code = _cell_code(cell.source, number, notes)
        try:
            ast.parse(code)
        except SyntaxError as error:
            notes.append(f"cell {number} does not parse (SyntaxError: {error.msg}, line {error.lineno} of the cell); "
                         "it was left out")
            code = "\n".join(f"# (left out) {line}" for line in code.splitlines())
        parts.append(f"# In[{number}]\n{code}")
    return "\n\n".join(parts) + "\n", notes


def write_module(path: str | Path, directory: str | Path) -> tuple[Path, list[str]]:
    """Write the notebook's module as ``<stem>.py`` in ``directory``; its path and the notes."""
    text, notes = code_module(path)
    out = Path(directory) / (Path(path).stem.replace(" ", "_").replace("-", "_") + ".py")
    out.write_text(text, encoding="utf-8")
    return out, notes


_DISPLAY = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\begin\{(align\*?|aligned|eqnarray\*?|equation\*?)\}(.+?)"
                      r"\\end\{\3\}", re.DOTALL)
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\{(?:align\*?|aligned|eqnarray\*?|equation\*?|split|gathered)\}")


def _rows(block: str) -> list[str]:
    """The rows of a display block: split at ``\\``, without ``&``, labels and tags."""
    block = _ENVIRONMENT.sub(" ", block)
    block = re.sub(r"\\(?:label|tag|nonumber|notag)\{[^}]*\}|\\(?:nonumber|notag)", " ", block)
    return [" ".join(row.replace("&", " ").split()) for row in re.split(r"\\\\", block)]


def derivation_lines(path: str | Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(where, ``target = expression``) for every row of display math in the markdown cells,
    and the notes (rows without ``=``)."""
    notebook = read(path)
    out, notes = [], []
    for number, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "markdown":
            continue
        rows = [row for match in _DISPLAY.finditer(cell.source)
                for row in _rows(next(g for g in (match.group(1), match.group(2), match.group(4)) if g))]
        target = None
        for k, row in enumerate((r for r in rows if r), 1):
            where = f"cell {number}, row {k}"
            if row.startswith("="):
                if target is None:
                    notes.append(f"{where}: a row starting with '=' has no target before it")
                    continue
                row = f"{target} {row}"
            if "=" not in row:
                notes.append(f"{where}: not 'target = expression': {row[:60]!r}")
                continue
            target = row.split("=", 1)[0].strip()
            out.append((where, row.rstrip(" ,.;")))
    return out, notes
