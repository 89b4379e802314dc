"""Finding and loading cell files (symbptt/loader.py): the messages of a file that cannot be
found, run or read, and which statement a mistake is blamed on.

These tests came from ``tools/mutation.py symbptt/loader.py --sample 40``.
"""

from __future__ import annotations

import locale

import numpy as np
import pytest

from symbptt.loader import LoadError, _is_numpy, load, resolve

PREAMBLE = ("import numpy as np\n"
            "from symbptt import Cell, sigmoid\n"
            "cell = Cell('mistake', 'a cell with a mistake')\n"
            "n_x, n_h = cell.dims('n_x', 'n_h')\n"
            "x = cell.input('x', n_x)\n"
            "h_prev = cell.state('h', n_h)\n"
            "W = cell.weight('W', n_h, n_x)\n"
            "z = cell.let('z', sigmoid(W @ x))\n")


def write(tmp_path, body: str, name: str = "mistake.py"):
    path = tmp_path / name
    path.write_text(PREAMBLE + body, encoding="utf-8")
    return path


def message(path) -> str:
    with pytest.raises(LoadError) as caught:
        load(path)
    return str(caught.value)


def test_an_unknown_name_lists_the_cells_of_the_folder_it_looked_in(tmp_path):
    for name in ("b_cell", "a_cell", "_private"):
        (tmp_path / f"{name}.py").write_text("")
    with pytest.raises(LoadError) as caught:
        resolve("no_such_cell", tmp_path)
    assert str(caught.value) == ("unknown cell 'no_such_cell': not a file and not one of the built-in "
                                 "cells (a_cell, b_cell)")


def test_a_file_without_a_cell_says_so(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    assert message(path) == f"{path.resolve()}: defines no `cell = Cell(...)`"


def test_a_file_python_cannot_parse_is_named_by_its_path(tmp_path):
    """A syntax error happens before any line of the file runs: no frame names the file."""
    path = write(tmp_path, "h = cell.update('h', (W @ x\n")
    text = message(path)
    assert text.startswith(f"{path.resolve()}: SyntaxError: "), text


def test_a_failing_decorator_is_not_blamed_on_the_equation_above_it(tmp_path):
    """The line of a decorator belongs to no statement's span (a def starts at its `def`): the
    message names the line, not the last equation before it."""
    path = write(tmp_path, "\n\n@np.tanh\ndef helper(u):\n    return u\n")
    text = message(path)
    assert text.startswith("mistake.py, line 11: TypeError: "), text
    assert "equation" not in text


def test_a_cell_file_is_read_as_utf8_whatever_the_locale(tmp_path):
    path = write(tmp_path, "# δ: the gradient\nh = cell.update('h', np.tanh(W @ x))\n")
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # the locale's encoding is then ASCII
    try:
        text = message(path)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert text.startswith("mistake.py, line 10, equation h: np.tanh is NumPy's function"), text


def test_only_numpy_functions_count_as_numpy():
    assert _is_numpy(np.tanh) and _is_numpy(np.linalg.norm)
    assert not _is_numpy(np) and not _is_numpy(np.pi) and not _is_numpy(len)
    assert not _is_numpy(str.upper)  # a method descriptor has no __module__ at all


def test_a_method_without_a_module_in_the_failing_statement_is_no_numpy_call(tmp_path):
    path = write(tmp_path, "h = cell.update(str.lower('H'), 1 + W @ x)\n")
    text = message(path)
    assert text.startswith("mistake.py, line 9: a number added to or subtracted from"), text  # name not a str constant


# -- a fresh sample after the tests above (tools/mutation.py symbptt/loader.py --sample 40 --seed 1) --


def test_a_path_is_a_file_whatever_its_suffix_and_a_missing_py_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_cell.txt").write_text("")
    assert resolve("my_cell.txt", tmp_path / "none") == tmp_path / "my_cell.txt"
    with pytest.raises(LoadError) as caught:
        resolve("nowhere/missing.py", tmp_path)
    assert str(caught.value) == "cell file nowhere/missing.py does not exist"
    (tmp_path / "folder").mkdir()
    with pytest.raises(LoadError, match="^cell file folder does not exist$"):
        resolve("folder", tmp_path)


def test_a_numpy_function_two_dots_deep_is_named_by_its_last_part(tmp_path):
    path = write(tmp_path, "h = cell.update('h', np.emath.log(W @ x))\n")
    assert message(path) == ("mistake.py, line 9, equation h: np.emath.log is NumPy's function on arrays of "
                             "numbers and cannot act on a cell's symbolic matrices; use log from symbptt")


def test_an_instance_of_a_numpy_class_is_no_numpy_function():
    assert np.finfo(np.float64).__module__ == "numpy"  # not callable, though NumPy's
    assert not _is_numpy(np.finfo(np.float64)) and not _is_numpy(np.zeros(2))
