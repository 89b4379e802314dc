"""The overall mutation score that ``tools/mutation.py --overall`` computes from the README's
per-module table, and the README's own statement of it."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TABLE = """\
| module | mutants | now | how |
| --- | --- | --- | --- |
| `a.py` | 100 | 90.0 % [80–95] | fresh |
| `b.py` | 1 000 | first 70.0 % | seed 0 |
| `c.py` | 300 | 100.0 % | full run |
"""


def test_the_overall_score_weighs_each_module_by_its_mutants():
    overall = _tool().readme_overall("intro\n" + TABLE + "\nafter\n")
    assert (overall.modules, overall.mutants) == (3, 1400)
    assert overall.score == pytest.approx((100 * 90 + 1000 * 70 + 300 * 100) / 1400)
    assert overall.under_80 == ["b.py"] and overall.first_only == ["b.py"]
    assert overall.line().startswith("3 modules, 1400 mutants: 77.9 % overall")


def test_a_readme_without_the_table_is_named():
    with pytest.raises(SystemExit, match="no mutation table rows"):
        _tool().readme_overall("# symbptt\n")


def test_the_readme_states_the_overall_score_of_its_own_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    overall = _tool().readme_overall(text)
    stated = re.search(r"the \"now\"\s+column\s+gives\s+\*\*(\d+\.\d) %\*\*", text)
    assert stated, "the README's sentence with the overall score is missing"
    assert float(stated.group(1)) == round(overall.score, 1)
    assert overall.modules == len(_tool().MODULES)
