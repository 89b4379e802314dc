"""Every printed equation of every built-in cell's report, read back and checked (issue 9).

The report's .tex is split into displayed equations; each side is parsed with the
hand-derivation parser and compared with the derivation (symbolically and numerically), see
:mod:`symbptt.report_check`. A dropped ``+`` or a flipped sign in any printed line fails here.
"""

from __future__ import annotations

import pytest

from symbptt import derive
from symbptt.loader import builtin_cells, load
from symbptt.report import LANGS, report_tex
from symbptt.report_check import NOT_STEP_EQUATIONS, check_report, displayed_sides, unshift

CELLS = tuple(p.stem for p in builtin_cells())


@pytest.fixture(scope="module")
def derivations() -> dict:
    return {name: derive(load(name)) for name in CELLS}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", CELLS)
def test_every_printed_equation_equals_the_derivation(derivations, name, lang):
    d = derivations[name]
    verdict = check_report(d, report_tex(d, lang))
    problems = "\n\n".join(f"{side.label or '(no label)'}: {side.lhs} = {side.rhs}\n  {why}"
                           for side, why in verdict.failures)
    assert not verdict.failures, f"{name} ({lang}):\n{problems}"
    assert {why for _, why in verdict.skipped} <= set(NOT_STEP_EQUATIONS.values())
    assert len(verdict.checked) >= 3 * len(d.backward), f"{name}: only {len(verdict.checked)} sides checked"


def test_a_dropped_plus_fails(derivations):
    """A planted change: the ``+`` before a chain-rule term dropped, as issue 9 found it."""
    d = derivations["gru"]
    tex = report_tex(d)
    chain = next(line for line in tex.splitlines()
                 if line.startswith(r"\delta^{(t)} \mathbf{h}_{t-1} &= \left(\frac"))
    broken = chain.replace(r"\right)^{\!\top} \delta \mathbf{s}_{t} + \left(", r"\right)^{\!\top} \delta \mathbf{s}_{t} \left(", 1)
    assert broken != chain
    verdict = check_report(d, tex.replace(chain, broken))
    assert [side.label for side, _ in verdict.failures] == ["eq:bwd:h-prev"]


def test_a_flipped_sign_fails(derivations):
    d = derivations["gru"]
    tex = report_tex(d)
    row = r"\delta \mathbf{z}_{t} &= \delta \mathbf{h}_{t} \odot \mathbf{h}_{t-1} - \delta \mathbf{h}_{t} \odot \tilde{\mathbf{h}}_{t}"
    assert row in tex
    verdict = check_report(d, tex.replace(row, row.replace(" - ", " + ")))
    assert verdict.failures and all("NOT equivalent" in why for _, why in verdict.failures)


def test_sides_and_shift():
    tex = "\\begin{align}\na &= b \\nonumber \\\\\n&= c && \\text{via} \\label{eq:x:y}\n\\end{align}"
    assert [(s.lhs, s.rhs, s.label) for s in displayed_sides(tex)] == [("a", "b", "eq:x:y"), ("a", "c", "eq:x:y")]
    assert unshift(r"\delta^{(t+1)} \mathbf{h}_{t} = \mathbf{z}_{t+1} \odot \mathbf{a}_{z,t}") == \
        r"\delta^{(t)} \mathbf{h}_{t-1} = \mathbf{z}_{t} \odot \mathbf{a}_{z,t-1}"
