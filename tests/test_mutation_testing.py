"""The pytest helper (symbptt/testing.py) in this process: what it passes to the checker, its
default time per call, and the message of a failure word for word.

These tests came from ``tools/mutation.py symbptt/testing.py --sample 40``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symbptt import testing
from symbptt.check import check_module

REFERENCE = Path(__file__).parent / "reference"


class FakeReport:
    def __init__(self, ok: bool):
        self.ok = ok

    def table(self) -> str:
        return "function  verdict\nforward   wrong"


def test_it_checks_the_module_against_the_cell_with_ten_seconds_a_call(monkeypatch):
    calls = []
    report = FakeReport(True)
    monkeypatch.setattr(testing, "check_module", lambda *a, **k: calls.append((a, k)) or report)
    assert testing.assert_cell_matches("my_gru.py", "gru") is report
    assert testing.assert_cell_matches("my_gru.py", "lstm", timeout=2.5) is report
    assert calls == [(("my_gru.py", "gru"), {"timeout": 10.0}), (("my_gru.py", "lstm"), {"timeout": 2.5})]


def test_a_failure_is_an_assertion_whose_message_is_the_table_on_its_own_lines(monkeypatch):
    monkeypatch.setattr(testing, "check_module", lambda *a, **k: FakeReport(False))
    with pytest.raises(AssertionError) as failure:
        testing.assert_cell_matches("my_gru.py", "gru")
    assert str(failure.value) == "\nfunction  verdict\nforward   wrong"


def test_a_correct_file_passes_with_the_checkers_own_report():
    report = testing.assert_cell_matches(REFERENCE / "rnn_notebook.py", "rnn", timeout=5)
    assert report.ok and report.table() == check_module(REFERENCE / "rnn_notebook.py", "rnn", timeout=5).table()
