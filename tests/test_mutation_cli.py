"""The command line (symbptt/cli.py) parsed and dispatched in this process (test_cli runs it as
a subprocess, where a mutation run sees nothing): each subcommand's options, defaults, types and
choices, a help text for every option, and what each command passes on to its module.

These tests came from ``tools/mutation.py symbptt/cli.py --sample 40``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from symbptt import check, cli, handcheck, report, verify
from symbptt.grading import grade


def parse(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


def test_each_subcommand_runs_its_command():
    runs = {"list": cli.cmd_list, "codegen": cli.cmd_codegen, "build": cli.cmd_build, "report": cli.cmd_report,
            "check": cli.cmd_check, "verify": cli.cmd_verify, "handcheck": cli.cmd_handcheck, "grade": cli.cmd_grade}
    argv = {"list": [], "codegen": ["rnn"], "build": [], "report": ["rnn"], "check": ["f.py", "--cell", "gru"],
            "verify": ["rnn"], "handcheck": ["gru", "f.txt"], "grade": ["folder", "--cell", "gru"]}
    for name, run in runs.items():
        args = parse(name, *argv[name])
        assert (args.command, args.run) == (name, run)


def test_options_defaults_types_and_choices():
    args = parse("grade", "class", "--cell", "gru", "--rubric", "r.json", "--output", "out", "--total-time", "5",
                 "--timeout", "2", "-j", "3")
    assert (args.folder, args.cell, args.rubric, args.output) == ("class", "gru", "r.json", "out")
    assert (args.total_time, args.timeout, args.jobs) == (5.0, 2.0, 3)
    assert parse("grade", "class", "--cell", "gru").total_time == 1800.0
    assert parse("verify", "rnn").proof_timeout == 300.0 and not parse("verify", "rnn").skip_proof
    assert parse("codegen", "rnn").module == "numpy"
    for argv in (["codegen", "rnn", "--module", "fortran"], ["report", "rnn", "--lang", "fr"]):
        with pytest.raises(SystemExit):
            parse(*argv)


def test_every_option_has_a_help_text():
    subparsers = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest for c in subparsers._choices_actions} == set(subparsers.choices)
    assert all(c.help for c in subparsers._choices_actions)
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (name, action.dest)


def _record(monkeypatch, module, name="main"):
    calls = []
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append((a, k)) or 0)
    return calls


def test_commands_pass_their_arguments_on(monkeypatch, tmp_path):
    calls = _record(monkeypatch, check)
    assert cli.cmd_check(parse("check", "f.py", "--cell", "gru")) == 0
    assert calls == [(("f.py", "gru"), {})]
    calls = _record(monkeypatch, handcheck)
    cli.cmd_handcheck(parse("handcheck", "gru", "f.txt"))
    assert calls == [(("gru", "f.txt"), {})]
    calls = _record(monkeypatch, verify)
    cli.cmd_verify(parse("verify", "rnn"))
    cli.cmd_verify(parse("verify", "rnn", "--skip-proof", "--proof-timeout", "7"))
    assert calls == [(("rnn",), {"prove": True, "proof_timeout": 300.0}), (("rnn",), {"prove": False, "proof_timeout": 7.0})]
    calls = _record(monkeypatch, grade)
    cli.cmd_grade(parse("grade", "class", "--cell", "gru", "--rubric", "r.json", "--total-time", "5"))
    assert calls == [(("class", "gru", None, "r.json", 10.0, 5.0, None), {})]
    calls = _record(monkeypatch, report, "write_report")
    monkeypatch.chdir(tmp_path)
    cli.cmd_report(parse("report", "rnn"))
    cli.cmd_report(parse("report", "rnn", "-o", "sub/x.tex", "--pdf", "--lang", "es"))
    assert [(a[1:], k) for a, k in calls] == [((Path("rnn.tex"), None), {"lang": "en"}),
                                              ((Path("sub/x.tex"), Path("sub/x.pdf")), {"lang": "es"})]


def test_build_checks_and_builds_every_builtin_cell(monkeypatch, tmp_path, capsys):
    from symbptt.loader import builtin_cells

    seen = {}
    monkeypatch.setattr(cli, "stale_files", lambda out, **k: seen.update(check=(out, k)) or [])
    monkeypatch.setattr(cli, "build_all", lambda out, **k: seen.update(build=(out, k)) or [])
    monkeypatch.setattr(cli, "summary_table", lambda results: "")
    assert cli.cmd_build(parse("build", "--check", "--no-pdf", "-o", str(tmp_path))) == 0
    assert seen["check"] == (tmp_path, {"pdf": False, "cells": builtin_cells()})
    assert cli.cmd_build(parse("build", "-o", str(tmp_path))) == 0
    out, kwargs = seen["build"]
    assert (out, kwargs["pdf"], kwargs["cells"]) == (tmp_path, True, builtin_cells())
    assert f"{tmp_path} is up to date" in capsys.readouterr().out


# -- a fresh sample after the tests above (tools/mutation.py symbptt/cli.py --sample 40 --seed 1) --


def test_usage_and_description_and_required_options(capsys):
    help_text = cli.parser().format_help()
    assert help_text.startswith("usage: symbptt ") and "Derive, explain and verify BPTT" in help_text
    with pytest.raises(SystemExit):
        parse("grade", "class")  # --cell is required
    assert "the following arguments are required: --cell" in capsys.readouterr().err


def test_main_reports_a_users_mistake_in_one_line(capsys, monkeypatch):
    import jinja2

    assert cli.main(["check", "no/such/file.py", "--cell", "gru"]) == 2
    assert capsys.readouterr().err.startswith("symbptt check: ")

    def broken(args):
        raise jinja2.TemplateSyntaxError("unexpected '}'\nmore", 3)

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err == "symbptt list: template error: unexpected '}'\n"


def test_report_and_build_messages(monkeypatch, tmp_path, capsys):
    _record(monkeypatch, report, "write_report")
    monkeypatch.chdir(tmp_path)
    assert cli.cmd_report(parse("report", "rnn")) == 0
    assert capsys.readouterr().out == "wrote rnn.tex\n"
    monkeypatch.setattr(cli, "stale_files", lambda out, **k: ["missing: generated/numpy/rnn.py"])
    assert cli.cmd_build(parse("build", "--check", "-o", str(tmp_path / "generated"))) == 1
    captured = capsys.readouterr()
    assert captured.out == "missing: generated/numpy/rnn.py\n"
    assert captured.err == f"{tmp_path / 'generated'} is out of date: run `symbptt build -o {tmp_path / 'generated'}`\n"
    monkeypatch.setattr(cli, "build_all", lambda out, **k: [])
    monkeypatch.setattr(cli, "summary_table", lambda results: "")
    cli.cmd_build(parse("build", "-o", str(tmp_path / "g")))
    assert capsys.readouterr().out.startswith(f"building every cell in {cli.DERIVATIONS} into {tmp_path / 'g'}\n")


# -- what `symbptt --help` and `symbptt COMMAND --help` say, word for word (the fresh samples'
# survivors were mostly these texts: --help is what a user reads first) --

CELL = "a built-in cell's name (see `symbptt list`) or the path of a cell file"

#: Per subcommand, in the order --help lists them: its line in `symbptt --help` (key None), its
#: description, and each argument's help.
HELP = {
    "list": {None: "the built-in cells and their equations"},
    "codegen": {
        None: "print or write one cell's kernel (NumPy, CuPy or PyTorch)",
        "description": "Print one cell's generated kernel module: forward, full or truncated BPTT backward, "
                       "init_parameters, rows (docs/kernels.md).",
        "cell": CELL,
        "output": "write the kernel here instead of stdout",
        "module": "the array library the kernel computes with: numpy (default; what `symbptt build` writes), "
                  "cupy (the NumPy kernel with `import cupy as np`, arrays on a CUDA device) or torch "
                  "(torch.Tensor on any device, the same interface; the body of a torch.autograd.Function)",
        "backend": "numpy (default): plain NumPy loops; numba: the NumPy kernel with its time loops compiled by "
                   "Numba (falls back to its NumPy loops, with a warning, where numba is missing); auto: numba "
                   "where it is installed",
    },
    "build": {
        None: "every built-in cell into generated/ (kernels, LaTeX, PDFs)",
        "description": "Derive every built-in cell, check its kernel against finite differences, and write "
                       "generated/numpy, generated/latex and generated/pdf all at once (a failed build writes "
                       "nothing).",
        "output": "where to write (default: generated/ of the checkout symbptt runs from, or ./generated when it "
                  "is installed)",
        "check": "write nothing; exit 1 naming each stale or missing file (PDFs are typeset and compared too, "
                 "unless --no-pdf)",
        "no_pdf": "skip typesetting the PDFs",
    },
    "report": {
        None: "one cell's derivation as LaTeX (and PDF)",
        "cell": CELL,
        "pdf": "also compile the PDF (needs pdflatex and latexmk)",
        "lang": "the report's language: English or Spanish (default en)",
        "output": "path of the .tex, the PDF goes beside it (default: CELL_NAME.tex in the current folder)",
    },
    "check": {
        None: "check a person's hand-written cell against the tool",
        "file": "a .py file or a .ipynb notebook (its code cells)",
        "cell": "the cell it implements: " + CELL,
    },
    "verify": {
        None: "every check of one cell, as a table",
        "cell": "a built-in cell's name or a cell file",
        "skip_proof": "skip the exact symbolic proof (it can take minutes); each operation's derivative rule is "
                      "still checked symbolically",
        "proof_timeout": "stop the exact proof after this long and say so (default 300)",
    },
    "handcheck": {
        None: "check hand-derived gradients (one `target = latex` a line)",
        "cell": CELL,
        "file": "one `target = latex` a line, or a .ipynb (its markdown's LaTeX)",
    },
    "grade": {
        None: "a folder of submissions (.py/.ipynb) into a gradebook and feedback",
        "folder": "one file or folder per student",
        "cell": "the cell every submission implements: " + CELL,
        "rubric": "points per part: forward, backward, derivation (default 20, 30, 50)",
        "output": "where gradebook.csv and feedback/ go (default: FOLDER-graded)",
        "timeout": "seconds per call of a student's function",
        "total_time": "seconds for the whole class",
        "jobs": "parallel workers (default: the cores)",
    },
}

#: Per subcommand: each argument's option strings, dest, action, default, type, choices,
#: whether it is required, and its metavar.
ARGUMENTS = {
    "list": [],
    "codegen": [((), "cell", "store", None, None, None, True, None),
                (("-o", "--output"), "output", "store", None, None, None, False, None),
                (("--module",), "module", "store", "numpy", None, ("numpy", "cupy", "torch"), False, None),
                (("--backend",), "backend", "store", "numpy", None, ("numpy", "numba", "auto"), False, None)],
    "build": [(("-o", "--output"), "output", "store", None, None, None, False, "FOLDER"),
              (("--check",), "check", "store_true", False, None, None, False, None),
              (("--no-pdf",), "no_pdf", "store_true", False, None, None, False, None)],
    "report": [((), "cell", "store", None, None, None, True, None),
               (("--pdf",), "pdf", "store_true", False, None, None, False, None),
               (("--lang",), "lang", "store", "en", None, ("en", "es"), False, None),
               (("-o", "--output"), "output", "store", None, None, None, False, None)],
    "check": [((), "file", "store", None, None, None, True, None),
              (("--cell",), "cell", "store", None, None, None, True, None)],
    "verify": [((), "cell", "store", None, None, None, True, None),
               (("--skip-proof",), "skip_proof", "store_true", False, None, None, False, None),
               (("--proof-timeout",), "proof_timeout", "store", 300.0, float, None, False, "SECONDS")],
    "handcheck": [((), "cell", "store", None, None, None, True, None),
                  ((), "file", "store", None, None, None, True, None)],
    "grade": [((), "folder", "store", None, None, None, True, None),
              (("--cell",), "cell", "store", None, None, None, True, None),
              (("--rubric",), "rubric", "store", None, None, None, False, None),
              (("-o", "--output"), "output", "store", None, None, None, False, None),
              (("--timeout",), "timeout", "store", 10.0, float, None, False, None),
              (("--total-time",), "total_time", "store", 1800.0, float, None, False, None),
              (("-j", "--jobs"), "jobs", "store", None, int, None, False, None)],
}

_ACTIONS = {argparse._StoreAction: "store", argparse._StoreTrueAction: "store_true"}


def subcommands() -> argparse._SubParsersAction:
    return next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))


def test_every_help_and_description_text_word_for_word():
    sub = subcommands()
    assert [c.dest for c in sub._choices_actions] == list(HELP) == list(sub.choices)
    for choice in sub._choices_actions:
        parser = sub.choices[choice.dest]
        texts = {None: choice.help}
        if parser.description is not None:
            texts["description"] = parser.description
        texts.update((a.dest, a.help) for a in parser._actions if not isinstance(a, argparse._HelpAction))
        assert texts == HELP[choice.dest], choice.dest


def test_every_argument_its_options_default_type_and_choices():
    for name, parser in subcommands().choices.items():
        found = [(tuple(a.option_strings), a.dest, _ACTIONS[type(a)], a.default, a.type,
                  tuple(a.choices) if a.choices else None, a.required, a.metavar)
                 for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert found == ARGUMENTS[name], name


def test_the_commands_help_as_printed():
    top = cli.parser()
    assert top.prog == "symbptt"
    assert top.description == "Derive, explain and verify BPTT for recurrent cells written once in SymPy."
    sub = subcommands()
    handcheck_help = sub.choices["handcheck"].format_help()
    assert handcheck_help.rstrip().endswith(cli.HANDCHECK_EPILOG.rstrip())  # its line breaks kept
    assert "LaTeX read (never evaluated): + - ( ) [a; b], \\odot \\circ * (elementwise),\n" in handcheck_help
    assert all(p.epilog is None for n, p in sub.choices.items() if n != "handcheck")
    assert "usage: symbptt build [-h] [-o FOLDER] [--check] [--no-pdf]" in sub.choices["build"].format_help()
    assert "--proof-timeout SECONDS" in sub.choices["verify"].format_help()


def test_a_stale_default_folder_says_to_run_build_without_options(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "default_output", lambda: tmp_path / "generated")
    monkeypatch.setattr(cli, "stale_files", lambda out, **k: ["stale: generated/numpy/rnn.py"])
    assert cli.cmd_build(parse("build", "--check", "--no-pdf")) == 1
    captured = capsys.readouterr()
    assert captured.out == "stale: generated/numpy/rnn.py\n"
    assert captured.err == f"{tmp_path / 'generated'} is out of date: run `symbptt build`\n"


# -- the fresh sample after the tests above (tools/mutation.py symbptt/cli.py --sample 40 --seed 2) --


def test_codegen_prints_the_kernel_naming_its_source_or_writes_it(tmp_path, capsys):
    from symbptt.codegen import kernel_text
    from symbptt.derive import derive
    from symbptt.loader import load, resolve

    derivation = derive(load(resolve("rnn")))
    assert cli.main(["codegen", "rnn"]) == 0
    assert capsys.readouterr().out == kernel_text(derivation, "derivations/rnn.py", "numpy", "numpy")
    target = tmp_path / "rnn_torch.py"
    assert cli.main(["codegen", "rnn", "--module", "torch", "-o", str(target)]) == 0
    assert capsys.readouterr().out == f"wrote {target}\n"
    assert target.read_text() == kernel_text(derivation, "derivations/rnn.py", "torch", "numpy")


def test_build_without_cells_is_an_incomplete_installation(monkeypatch, capsys):
    monkeypatch.setattr(cli, "builtin_cells", list)
    assert cli.main(["build", "--check"]) == 2
    assert capsys.readouterr().err == (f"symbptt build: no built-in cells found in {cli.DERIVATIONS}: "
                                       "the installation is incomplete\n")


def test_build_prints_each_progress_line_then_the_summary(monkeypatch, tmp_path, capsys):
    def build_all(out, **kwargs):
        kwargs["progress"]("  rnn          deriving, generating …")
        return ["result"]

    monkeypatch.setattr(cli, "build_all", build_all)
    monkeypatch.setattr(cli, "summary_table", lambda results: f"table of {results}")
    assert cli.cmd_build(parse("build", "--no-pdf", "-o", str(tmp_path))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [f"building every cell in {cli.DERIVATIONS} into {tmp_path}",
                         "  rnn          deriving, generating …", "", "table of ['result']"]
    assert lines[4] == "" and lines[5].startswith("1 cells built in ") and lines[5].endswith(f"s; wrote {tmp_path}")


def test_a_failed_check_of_the_tools_own_work_is_one_line_and_status_1(monkeypatch, capsys):
    """(tools/mutation.py symbptt/cli.py --sample 40 --seed 3)"""
    def disagree(args):
        raise RuntimeError("rnn: generated gradients disagree with finite differences")

    monkeypatch.setattr(cli, "cmd_list", disagree)
    assert cli.main(["list"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "symbptt list: rnn: generated gradients disagree with finite differences\n"
