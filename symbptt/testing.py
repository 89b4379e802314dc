"""Assertion helpers for a course's (or anyone's) pytest suite: one line checks a hand-written cell.

Example, in a course's ``tests/test_my_gru.py``::

    from symbptt.testing import assert_cell_matches

    def test_my_gru():
        assert_cell_matches("my_gru.py", "gru")

or, with a module already imported::

    import my_gru
    from symbptt.testing import assert_cell_matches

    def test_my_gru():
        assert_cell_matches(my_gru, "gru")

On failure the AssertionError's message is the verdict table of ``symbptt check``, so pytest
shows which function, which output or gradient key, where it goes wrong and, when one of the
usual mistakes explains the numbers, which one.
"""

from __future__ import annotations

import types
from pathlib import Path

from .check import Report, check_module

__all__ = ["assert_cell_matches"]


def assert_cell_matches(module_or_path: str | Path | types.ModuleType, cell: str,
                        timeout: float = 10.0) -> Report:
    """Check a hand-written cell against the generated reference of ``cell``; raise if anything is off.

    ``module_or_path`` is the person's module (imported, or the path of its file); it must define
    the course notebook's functions (``gru_one_step_forward``, ``gru_forward``,
    ``gru_one_step_backward``, ``gru_backward``, …) or the generic ``forward``/``backward``.
    ``cell`` is a built-in cell (rnn, lstm, gru, lstm_torch, gru_torch) or a cell file.
    Each of the person's function calls is stopped after ``timeout`` seconds.

    Returns the :class:`~symbptt.check.Report` when everything is ok; otherwise raises
    ``AssertionError`` whose message is the verdict table.
    """
    report = check_module(module_or_path, cell, timeout=timeout)
    if not report.ok:
        raise AssertionError("\n" + report.table())
    return report
