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
