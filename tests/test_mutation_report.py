"""A fast subset for the mutation runs of the report modules (printers, notation, report,
report_steps): every printed equation of a few cells' reports read back and checked against
the derivation (as test_report_roundtrip does for every cell, there ~2 min), without PDFs.

rnn and gru in both languages, mgu and lstm_peephole (other gates, a peephole) in English;
each report is rendered once per module.
"""

from __future__ import annotations

import pytest

from symbptt import derive
from symbptt.loader import load
from symbptt.report import LANGS, report_tex
from symbptt.report_check import NOT_STEP_EQUATIONS, check_report

CASES = [("rnn", lang) for lang in LANGS] + [("gru", lang) for lang in LANGS] + [("mgu", "en")]


@pytest.fixture(scope="module")
def derivations() -> dict:
    return {name: derive(load(name)) for name in {name for name, _ in CASES}}


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_printed_equations_read_back_as_the_derivation(derivations, name, lang):
    d = derivations[name]
    verdict = check_report(d, report_tex(d, lang))
    problems = "\n".join(f"{side.label}: {side.lhs} = {side.rhs}: {why}" for side, why in verdict.failures)
    assert not verdict.failures, problems
    assert {why for _, why in verdict.skipped} <= set(NOT_STEP_EQUATIONS.values())
    assert len(verdict.checked) >= 3 * len(d.backward)
