"""What a user outside the checkout relies on: package data, the Python API, the version,
``build -o`` and one-line errors. The wheel itself is tested by ``tools/wheel_smoke.sh``
(CI runs it: a fresh venv, an empty folder)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import jinja2
import pytest

import symbptt
from symbptt import cli, paths
from symbptt.cell import Cell
from symbptt.loader import DERIVATIONS, source_label

ROOT = Path(__file__).resolve().parent.parent


def test_from_a_checkout_the_top_level_folders_are_used():
    assert paths.CHECKOUT == ROOT
    assert paths.TEMPLATES == ROOT / "templates" and paths.DERIVATIONS == ROOT / "derivations"
    assert paths.default_output() == ROOT / "generated"


def test_packaged_folders_come_first(tmp_path, monkeypatch):
    """Inside a wheel, symbptt/templates exists beside the modules and is the one used."""
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(paths.resources, "files", lambda package: tmp_path)
    assert paths.data_folder("templates") == tmp_path / "templates"
    assert paths.data_folder("derivations") == ROOT / "derivations"  # not packaged: the checkout's


def test_setup_ships_both_folders_inside_the_package():
    text = (ROOT / "setup.py").read_text()
    assert '"symbptt.templates": "templates"' in text and '"symbptt.derivations": "derivations"' in text


def test_a_builtin_cell_names_its_source_the_same_way_installed_or_not():
    assert source_label(DERIVATIONS / "gru.py") == "derivations/gru.py"


def test_version_is_single_sourced():
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]\n", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.MULTILINE)
    assert re.search(r'^dynamic = \["version"\]', project, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+", symbptt.__version__)
    assert importlib.metadata.version("symbptt") == symbptt.__version__
    assert (ROOT / "symbptt" / "py.typed").exists()


def test_python_api():
    assert "gru" in symbptt.builtin_names()
    cell = symbptt.load_cell("rnn")
    assert symbptt.load_cell(cell) is cell
    assert "Source: derivations/rnn.py." in symbptt.kernel_source("rnn")
    text = symbptt.kernel_source(cell)
    assert "Source: a Cell built in Python" in text and "Source: ." not in text
    kernel = symbptt.load_kernel("rnn")
    assert kernel.DIMS == ("n_x", "n_h", "n_y") and callable(kernel.backward)


def test_cell_repr_is_a_short_summary():
    text = repr(symbptt.load_cell("gru"))
    assert text.startswith("Cell('gru', dims=[n_x, n_h, n_y]") and "equations=[z, r, h_tilde, h, y]" in text
    assert len(text) < 200 and "Symbol(" not in text
    assert repr(Cell("empty")) == "Cell('empty', dims=[], inputs=[], states=[], parameters=[], equations=[])"


def test_build_writes_where_it_is_told_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "builtin_cells", lambda: [DERIVATIONS / "rnn.py"])
    out = tmp_path / "out"
    assert cli.main(["build", "-o", str(out), "--no-pdf"]) == 0
    assert (out / "numpy" / "rnn.py").is_file() and (out / "latex" / "rnn.tex").is_file()
    assert f"wrote {out}" in capsys.readouterr().out
    assert cli.main(["build", "--check", "--no-pdf", "-o", str(out)]) == 1  # no PDF yet
    assert "missing: out/pdf/rnn.pdf" in capsys.readouterr().out


def test_build_check_with_no_cells_is_an_error_not_up_to_date(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "builtin_cells", list)
    assert cli.main(["build", "--check", "-o", str(tmp_path / "g")]) == 2
    err = capsys.readouterr()
    assert "up to date" not in err.out and "no built-in cells" in err.err


@pytest.mark.parametrize("error", [jinja2.TemplateNotFound("numpy_kernel.py.j2"),
                                   jinja2.TemplateSyntaxError("unexpected '}'\nmore", 3)])
def test_template_errors_are_one_line(error, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "kernel_text", broken)
    assert cli.main(["codegen", "rnn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("symbptt codegen: template")


def test_every_subcommand_describes_its_arguments():
    """Each positional argument and option of every subcommand has a help text."""
    import argparse

    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, p in sub.choices.items() for action in p._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert not missing, missing


def test_adjoint_names_are_handcheck_targets():
    names = symbptt.adjoint_names("gru")
    assert names[:2] == ["da_y", "dh"] and {"da_z", "dh_prev", "dxt", "dWz", "dby"} <= set(names)
    assert "dh_next" not in names and "dy" not in names
