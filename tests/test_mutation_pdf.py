"""Building a PDF (``symbptt/pdf.py``) computed inside each test: which engine commands run,
the first error read out of a LaTeX log, how a failing, silent or slow engine is reported, and
where the PDF lands. The engine is stood in for by small Python commands (fast, no TeX needed);
one real pdflatex build, of a one-line document, checks the real options."""

from __future__ import annotations

import shutil
import sys

import pytest

from symbptt import pdf as pdfmod
from symbptt.pdf import ENGINE_OPTIONS, LatexError, _commands, _run, build_pdf, first_error, have_latex


def _which(present: set[str]):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_have_latex_with_either_engine(monkeypatch):
    for present, expected in [({"latexmk"}, True), ({"pdflatex"}, True), ({"latexmk", "pdflatex"}, True),
                              (set(), False)]:
        monkeypatch.setattr(pdfmod.shutil, "which", _which(present))
        assert have_latex() is expected


def test_engine_commands(monkeypatch):
    monkeypatch.setattr(pdfmod.shutil, "which", _which({"latexmk", "pdflatex"}))
    assert _commands("gru.tex") == [["latexmk", "-norc", "-pdf",
                                     ("-pdflatex=pdflatex -no-shell-escape -interaction=nonstopmode "
                                     "-halt-on-error -file-line-error %O %S"), "gru.tex"]]
    monkeypatch.setattr(pdfmod.shutil, "which", _which({"pdflatex"}))
    assert _commands("gru.tex") == [["pdflatex", *ENGINE_OPTIONS, "gru.tex"]] * 3
    assert ENGINE_OPTIONS == ("-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error")
    monkeypatch.setattr(pdfmod.shutil, "which", _which(set()))
    with pytest.raises(LatexError, match=r"^no LaTeX found: install latexmk or pdflatex \(TeX Live: "
                                         r"texlive-latex-base, texlive-latex-recommended, texlive-pictures, "
                                         r"latexmk\)$"):
        _commands("gru.tex")


@pytest.mark.parametrize(("log", "message"), [
    ("(./gru.tex\n./gru.tex:123: Undefined control sequence.\nl.123 \\foo\n./gru.tex:200: Emergency stop.\n",
     "gru.tex:123: Undefined control sequence."),
    ("  gru.tex:7: Missing $ inserted.  \n", "gru.tex:7: Missing $ inserted."),  # no ./, spaces around
    ("/usr/share/texmf/tex/latex/tikz.sty:42: Package pgfkeys Error: bad key.\n",
     "/usr/share/texmf/tex/latex/tikz.sty:42: Package pgfkeys Error: bad key."),  # a package keeps its path
    ("./sub/gru.tex:5: oops\n", "gru.tex:5: oops"),  # this .tex under any folder: its name
    ("./other.tex:9: elsewhere\n", "other.tex:9: elsewhere"),
    # pdflatex's own log of a package with an undefined macro (it used to give "failed without
    # an error line": only .tex names were read)
    ((") (./bad.sty\n./bad.sty:2: Undefined control sequence.\n"
     "l.2 \\nosuchmacro\n./bad.sty:2:  ==> Fatal error occurred, no output PDF file produced!\n"),
     "bad.sty:2: Undefined control sequence."),
    ("! LaTeX Error: File `cancel.sty' not found.\n\nl.7 \\usepackage", "gru.tex:7: LaTeX Error: File `cancel.sty' not found."),
    ("!  Emergency stop.\n<*> gru.tex\n", "gru.tex: Emergency stop."),  # no l. line
    ("! first\n" + "x\n" * 25 + "l.99 too far\n", "gru.tex: first"),  # l. more than 20 lines later
    ("! first\n" + "x\n" * 18 + "l.19 near\n", "gru.tex:19: first"),
    ("! one\nl.3 a\n! two\nl.4 b\n", "gru.tex:3: one"),
    ("!Tight\nl.8 x\n", "gru.tex:8: Tight"),  # no space after the !
    ("This is pdfTeX\nOutput written\n", "gru.tex: LaTeX failed without an error line in its log"),
    ("", "gru.tex: LaTeX failed without an error line in its log"),
])
def test_first_error(log, message):
    assert first_error(log, "gru.tex") == message


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_reports_the_logs_first_error(tmp_path):
    write_log = "open('gru.log', 'w').write('./gru.tex:12: Undefined control sequence.\\n'); raise SystemExit(1)"
    with pytest.raises(LatexError, match=r"^gru\.tex:12: Undefined control sequence\.$"):
        _run([_python(write_log)], tmp_path, "gru.tex", timeout=30)


def test_run_reads_a_log_that_is_not_utf8(tmp_path):
    """TeX writes a line of a Latin-1 .tex byte for byte into its log: still read, not a crash."""
    latin1 = ("open('gru.log', 'wb').write(b'caf\\xe9 \\xff\\n./gru.tex:4: Missing $ inserted.\\n'); "
              "raise SystemExit(1)")
    with pytest.raises(LatexError, match=r"^gru\.tex:4: Missing \$ inserted\.$"):
        _run([_python(latin1)], tmp_path, "gru.tex", timeout=30)


def test_run_reads_the_output_when_there_is_no_log(tmp_path):
    no_log = "print('! Fatal error occurred, no output PDF file produced!'); raise SystemExit(1)"
    with pytest.raises(LatexError, match=r"^gru\.tex: Fatal error occurred, no output PDF file produced!$"):
        _run([_python(no_log)], tmp_path, "gru.tex", timeout=30)


def test_run_reads_output_that_is_not_utf8(tmp_path):
    raw = ("import sys; sys.stdout.buffer.write(b'\\xff\\xfe\\n! Emergency stop.\\n'); raise SystemExit(1)")
    with pytest.raises(LatexError, match=r"^gru\.tex: Emergency stop\.$"):
        _run([_python(raw)], tmp_path, "gru.tex", timeout=30)


def test_run_stops_at_the_first_failing_command_and_runs_in_order(tmp_path):
    append = "import sys; open('calls', 'a').write(sys.argv[1]); raise SystemExit(int(sys.argv[2]))"
    with pytest.raises(LatexError):
        _run([[*_python(append), "a", "0"], [*_python(append), "b", "3"], [*_python(append), "c", "0"]],
             tmp_path, "gru.tex", timeout=30)
    assert (tmp_path / "calls").read_text() == "ab"


def test_run_gives_a_reproducible_environment_and_no_input(tmp_path):
    probe = ("import os, sys; open('seen', 'w').write(os.environ['SOURCE_DATE_EPOCH'] + ' '"
             " + os.environ['FORCE_SOURCE_DATE'] + ' ' + repr(sys.stdin.read()) + ' ' + os.getcwd())")
    _run([_python(probe)], tmp_path, "gru.tex", timeout=30)
    assert (tmp_path / "seen").read_text() == f"0 1 '' {tmp_path}"


def test_run_past_its_timeout(tmp_path):
    command = _python("import time; time.sleep(30)")
    with pytest.raises(LatexError, match=rf"^gru\.tex: LaTeX did not finish within 0\.5 s \({sys.executable}\)$"):
        _run([command], tmp_path, "gru.tex", timeout=0.5)


def _fake_engine(monkeypatch, code: str) -> None:
    monkeypatch.setattr(pdfmod, "_commands", lambda tex_name: [[*_python(code), tex_name]])


def test_build_pdf_compiles_a_copy_and_puts_the_pdf_in_place(tmp_path, monkeypatch):
    """The engine sees a copy of the .tex under its own name in a fresh folder inside ``work``;
    the PDF lands at the target (its folders made), the folder is gone afterwards."""
    copy_pdf = ("import os, sys; from pathlib import Path; name = sys.argv[1]; "
                "assert Path(name).read_text() == 'the text'; "
                "Path('where').write_text(os.getcwd()); "
                "Path(name[:-4] + '.pdf').write_bytes(b'%PDF-' + os.getcwd().encode())")
    _fake_engine(monkeypatch, copy_pdf)
    tex = tmp_path / "gru.tex"
    tex.write_text("the text", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "out" / "deep" / "gru.pdf"
    assert build_pdf(tex, target, work=work) == target
    built_in = target.read_bytes()[len(b"%PDF-"):].decode()
    assert built_in.startswith(str(work / "symbptt-latex-"))
    assert list(work.iterdir()) == []  # the temporary folder is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.tex", "out", "work"]


def test_build_pdf_without_a_pdf_or_a_tex(tmp_path, monkeypatch):
    _fake_engine(monkeypatch, "pass")
    tex = tmp_path / "gru.tex"
    tex.write_text("x", encoding="utf-8")
    (tmp_path / "gru.pdf").write_bytes(b"%PDF- earlier")
    with pytest.raises(LatexError, match=r"^gru\.tex: LaTeX reported success but wrote no PDF$"):
        build_pdf(tex, tmp_path / "gru.pdf", work=tmp_path)
    assert (tmp_path / "gru.pdf").read_bytes() == b"%PDF- earlier"
    with pytest.raises(FileNotFoundError, match=r"missing\.tex: no such \.tex file"):
        build_pdf(tmp_path / "missing.tex", tmp_path / "m.pdf")
    with pytest.raises(FileNotFoundError):
        build_pdf(tmp_path, tmp_path / "m.pdf")  # a folder is not a .tex file


def test_build_pdf_default_timeout_is_two_minutes(tmp_path, monkeypatch):
    seen = {}

    def fake_run(commands, workdir, tex_name, timeout):
        seen["timeout"] = timeout
        (workdir / "gru.pdf").write_bytes(b"%PDF-")

    monkeypatch.setattr(pdfmod, "_run", fake_run)
    tex = tmp_path / "gru.tex"
    tex.write_text("x", encoding="utf-8")
    build_pdf(tex, tmp_path / "gru.pdf")
    assert seen == {"timeout": 120}


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex")
def test_a_real_pdflatex_build_and_error(tmp_path, monkeypatch):
    """pdflatex itself with the engine options (latexmk hidden: one pass each, ~1 s)."""
    real = shutil.which
    monkeypatch.setattr(pdfmod.shutil, "which", lambda name: None if name == "latexmk" else real(name))
    monkeypatch.setattr(pdfmod, "_commands", lambda tex_name: [["pdflatex", *ENGINE_OPTIONS, tex_name]])
    tex = tmp_path / "small.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\nsmall\n\\end{document}\n", encoding="utf-8")
    assert build_pdf(tex, tmp_path / "small.pdf").read_bytes().startswith(b"%PDF")
    tex.write_text("\\documentclass{article}\n\\begin{document}\n\\nosuchmacro\n\\end{document}\n", encoding="utf-8")
    with pytest.raises(LatexError, match=r"^small\.tex:3: Undefined control sequence"):
        build_pdf(tex, tmp_path / "small.pdf")
