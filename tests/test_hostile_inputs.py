"""Careless and hostile input to the generator: names that would break a kernel or escape
generated/, texts that would inject code, sizes the kernel could not read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from symbptt import Cell, derive, sigmoid, tanh
from symbptt.cell import CellError
from symbptt.codegen import kernel_module, numpy_kernel


def small_cell(name: str = "c", doc: str = "A cell.", weight: str = "W", extra_dim: bool = False,
               meaning: str = "") -> Cell:
    cell = Cell(name, doc)
    dims = cell.dims("n_x", "n_h", *(["n_y"] if extra_dim else []))
    n_x, n_h = dims[0], dims[1]
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h, meaning)
    W, U = cell.weight(weight, n_h, n_x, meaning), cell.weight("U", n_h, n_h)
    cell.update("h", tanh(W @ x + U @ h_prev + cell.bias("b", n_h)))
    return cell


@pytest.mark.parametrize("name", ["../../ESCAPED", "/tmp/abs", "a b", "a%b", "a$b", "a/b",
                                  "a\nb", "lambda", "", "1cell", None])
def test_a_cell_name_that_is_not_an_identifier_is_refused(name):
    with pytest.raises(CellError, match="cell name"):
        Cell(name, "doc")


@pytest.mark.parametrize("name", ["lambda", "class", "np", "T", "m", "t", "dtype", "parameters",
                                  "cache", "upstream", "truncate", "range", "len", "_hidden"])
def test_a_parameter_name_the_kernel_needs_is_refused(name):
    with pytest.raises(CellError, match=repr(name)):
        small_cell(weight=name)


@pytest.mark.parametrize("name", ["x_seq", "h_seq", "dh_carry", "h_flat"])
def test_a_name_that_collides_with_a_kernel_array_is_refused(name):
    with pytest.raises(CellError, match=f"'{name}' is what the generated kernel calls"):
        derive(small_cell(weight=name))


def test_an_unused_dimension_is_named():
    with pytest.raises(CellError, match="dimension 'n_y' is declared but no parameter"):
        derive(small_cell(extra_dim=True))


def test_a_dimension_only_inside_sums_is_named():
    cell = Cell("sums", "")
    n_a, n_b = cell.dims("n_a", "n_b")
    x = cell.input("x", n_a + n_b)
    h_prev = cell.state("h", n_a + n_b)
    cell.update("h", sigmoid(cell.weight("W", n_a + n_b, n_a + n_b) @ (x + h_prev)))
    with pytest.raises(CellError, match="appears only inside sums"):
        derive(cell)


HOSTILE_DOCS = [
    'Ends here."""\nimport os; os._exit(3)\n"""',
    r"See \url{https://example.org/\u00e9} and \N{GREEK SMALL LETTER SIGMA}.",
    "Trailing backslash \\",
    "σ, ⊙ and ŷ in Unicode; quotes ' \" '''",
]


@pytest.mark.parametrize("doc", HOSTILE_DOCS)
def test_a_description_cannot_inject_code_or_break_the_kernel(doc, tmp_path):
    cell = small_cell(doc=doc)
    code = numpy_kernel(derive(cell), "cell.py")
    compile(code, "kernel.py", "exec")
    path = tmp_path / "kernel.py"
    path.write_text(code)
    script = f"import runpy; m = runpy.run_path({str(path)!r}); print(m['__doc__'].count('Ends here'))"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    module = kernel_module(cell)
    assert doc in module.__doc__  # the text survives, as text


def test_a_meaning_with_a_newline_stays_in_the_kernel_as_text():
    cell = small_cell(meaning='input weights\nimport os; os._exit(3)')
    module = kernel_module(cell)
    assert hasattr(module, "forward")


def test_control_characters_in_a_description_keep_the_kernel_valid_python():
    """A NUL (or a form feed, a line separator) pasted into a description was written into
    the kernel's docstring as it was: a NUL is a SyntaxError in Python source."""
    import ast

    from symbptt import Cell, tanh
    from symbptt.codegen import kernel_module, numpy_kernel
    from symbptt.derive import derive

    cell = Cell("ctrl", "a NUL \x00, a form feed \x0c, a line separator \u2028 and σ kept")
    n_x, n_h = cell.dims("n_x", "n_h")
    x, h_prev = cell.input("x", n_x), cell.state("h", n_h)
    cell.update("h", tanh(cell.weight("W", n_h, n_x) @ x + cell.weight("U", n_h, n_h) @ h_prev))
    source = numpy_kernel(derive(cell))
    ast.parse(source)
    assert "\\x00" in source and "\\x0c" in source and "\\u2028" in source and "σ kept" in source
    assert "\x00" not in source
    assert kernel_module(cell).__doc__.count("\x00") == 1  # the docstring itself still says it
