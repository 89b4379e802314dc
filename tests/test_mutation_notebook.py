r"""Notebooks as submissions (symbptt/grading/notebook.py): the code cells as one module (IPython
lines and cell magics dropped and noted, cells that do not parse left out and noted), the
module's file name, and the derivation rows read from the markdown's display math.

These tests came from ``tools/mutation.py symbptt/grading/notebook.py --sample 40``.
"""

from __future__ import annotations

import ast
import locale
import sys

import pytest

nbformat = pytest.importorskip("nbformat")

from symbptt.grading import notebook
from symbptt.grading.notebook import NotebookError

HEADER = "import numpy as np  # (added: notebooks import it in their first cell)"


def _notebook(tmp_path, cells, name="hw.ipynb"):
    book = nbformat.v4.new_notebook()
    for kind, source in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        book.cells.append(make(source))
    path = tmp_path / name
    nbformat.write(book, str(path))
    return path


def test_a_file_that_is_not_a_notebook_is_named_with_the_reason(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(NotebookError, match=r"^.*broken\.ipynb: not a readable notebook \(NotJSONError: "
                                            r"Notebook does not appear to be JSON: '\{not json'\)$"):
        notebook.read(path)
    with pytest.raises(NotebookError, match="missing.ipynb: not a readable notebook"):
        notebook.code_module(tmp_path / "missing.ipynb")


def test_without_nbformat_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbformat", None)
    with pytest.raises(NotebookError, match=r"hw\.ipynb: reading notebooks needs nbformat \(pip install 'symbptt\[grade\]'\)"):
        notebook.read(tmp_path / "hw.ipynb")


def test_the_code_cells_become_one_module_numbered_by_cell(tmp_path):
    path = _notebook(tmp_path, [("markdown", "# Homework"), ("code", "a = 1"), ("code", "   \n"),
                                ("code", "def f(x):\n    return x + a")])
    text, notes = notebook.code_module(path)
    assert text == f"{HEADER}\n\n# In[2]\na = 1\n\n# In[4]\ndef f(x):\n    return x + a\n"
    assert notes == []
    namespace: dict = {}
    exec(compile(text, "hw", "exec"), namespace)  # noqa: S102
    assert namespace["f"](2) == 3


def test_ipython_lines_are_dropped_in_place_and_noted(tmp_path):
    source = "%matplotlib inline\nx = 7 % 4\nif x:\n    !pip install numpy\n    %time y = 2\nz = x != 1"
    path = _notebook(tmp_path, [("code", source)])
    text, notes = notebook.code_module(path)
    cell = text.split("# In[1]\n", 1)[1]
    assert cell.splitlines() == ["pass  # (dropped) %matplotlib inline", "x = 7 % 4", "if x:",
                                 "    pass  # (dropped) !pip install numpy", "    pass  # (dropped) %time y = 2",
                                 "z = x != 1"]
    assert notes == ["cell 1, line 1: '%matplotlib inline' is IPython, not Python; dropped",
                     "cell 1, line 4: '!pip install numpy' is IPython, not Python; dropped",
                     "cell 1, line 5: '%time y = 2' is IPython, not Python; dropped"]
    long = "%" + "x" * 100
    _, notes = notebook.code_module(_notebook(tmp_path, [("code", long)], "long.ipynb"))
    assert notes == [f"cell 1, line 1: {long[:60]!r} is IPython, not Python; dropped"]


def test_a_cell_magic_drops_the_whole_cell(tmp_path):
    path = _notebook(tmp_path, [("code", "a = 1"), ("code", "\n  %%timeit -n 3 some very long options here\nb = 2\nc = 3")])
    text, notes = notebook.code_module(path)
    assert text.endswith("# In[2]\n# (dropped) \n# (dropped)   %%timeit -n 3 some very long options here\n"
                         "# (dropped) b = 2\n# (dropped) c = 3\n")
    assert notes == ["cell 2: a cell magic (%%timeit -n 3 some very long options her); the cell was dropped"]
    assert "b" not in ast.parse(text).body[-1].__dict__.get("targets", [])


def test_a_cell_that_does_not_parse_is_left_out_and_the_rest_is_kept(tmp_path):
    path = _notebook(tmp_path, [("code", "a = 1"), ("code", "def f(:\n    pass"), ("code", "b = a + 1")])
    text, notes = notebook.code_module(path)
    assert "# In[2]\n# (left out) def f(:\n# (left out)     pass\n" in text
    namespace: dict = {}
    exec(compile(text, "hw", "exec"), namespace)  # noqa: S102
    assert namespace["b"] == 2
    assert len(notes) == 1
    assert notes[0].startswith("cell 2 does not parse (SyntaxError: ")
    assert notes[0].endswith(", line 1 of the cell); it was left out")


def test_the_module_is_written_under_the_notebooks_name(tmp_path):
    path = _notebook(tmp_path, [("code", "%pylab\nw = 3")], "my hw-1 final.ipynb")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    module, notes = notebook.write_module(path, out_dir)
    assert module == out_dir / "my_hw_1_final.py"
    assert module.read_text(encoding="utf-8") == notebook.code_module(path)[0]
    assert notes == ["cell 1, line 1: '%pylab' is IPython, not Python; dropped"]


def test_the_module_is_written_as_utf8_whatever_the_locale(tmp_path):
    path = _notebook(tmp_path, [("code", "delta = 1  # δ, the adjoint")], "greek.ipynb")
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # the locale's encoding is then ASCII
    try:
        module, _ = notebook.write_module(path, tmp_path)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert "# δ, the adjoint" in module.read_text(encoding="utf-8")


def test_the_derivation_rows_come_from_every_kind_of_display_math(tmp_path):
    markdown = [
        r"Inline $a = b$ is prose. $$\delta z_t = \delta h_t \odot (1 - z_t)$$",
        r"\[ da = \delta z_t \odot z_t \]",
        "\\begin{align}\nq &= r + s \\label{eq:q} \\\\\n  &= s + r, \\nonumber \\\\\nu &= v.\n\\end{align}",
        "\\begin{align*} m = n \\tag{3} \\end{align*}",
        "\\begin{equation} e = f; \\end{equation}\n\\begin{eqnarray} g &=& h \\end{eqnarray}",
        "$$\n\\begin{aligned}\np = 1 \\\\\n\\end{aligned}\n$$",
    ]
    path = _notebook(tmp_path, [("code", "x = 1")] + [("markdown", m) for m in markdown])
    rows, notes = notebook.derivation_lines(path)
    assert rows == [("cell 2, row 1", r"\delta z_t = \delta h_t \odot (1 - z_t)"),
                    ("cell 3, row 1", r"da = \delta z_t \odot z_t"),
                    ("cell 4, row 1", "q = r + s"),
                    ("cell 4, row 2", "q = s + r"),
                    ("cell 4, row 3", "u = v"),
                    ("cell 5, row 1", "m = n"),
                    ("cell 6, row 1", "e = f"),
                    ("cell 6, row 2", "g = h"),
                    ("cell 7, row 1", "p = 1")]
    assert notes == []


def test_rows_that_are_not_equations_are_noted(tmp_path):
    path = _notebook(tmp_path, [("markdown", r"$$= x + 1 \\ \sigma(a) \\ y = 2 \\ = 3$$"),
                                ("code", "a = 1"),
                                ("markdown", "$$" + "w" * 80 + "$$"),
                                ("markdown", r"$$= 4$$")])
    rows, notes = notebook.derivation_lines(path)
    assert rows == [("cell 1, row 3", "y = 2"), ("cell 1, row 4", "y = 3")]
    chained, _ = notebook.derivation_lines(_notebook(tmp_path, [("markdown", r"$$a = b = c \\ = d$$")], "chain.ipynb"))
    assert chained == [("cell 1, row 1", "a = b = c"), ("cell 1, row 2", "a = d")]  # the target: before the first =
    assert notes == ["cell 1, row 1: a row starting with '=' has no target before it",
                     r"cell 1, row 2: not 'target = expression': '\\sigma(a)'",
                     f"cell 3, row 1: not 'target = expression': {'w' * 60!r}",
                     "cell 4, row 1: a row starting with '=' has no target before it"]
