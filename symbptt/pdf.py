"""Compiling a report's .tex to PDF with latexmk (or pdflatex) from TeX Live.

The engine runs in a temporary directory, without shell escape, in batch mode and under a
timeout, so a report never runs commands, never waits for input and never leaves auxiliary
files beside the .tex. A failed run raises :class:`LatexError` naming the .tex file and line
of the first error (``gru.tex:123: Undefined control sequence.``); the .tex stays where it
is for inspection and an existing PDF is replaced only by a complete new one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .tree import write_atomic

#: Engine options shared by latexmk and pdflatex: no shell escape, no prompts, stop at the
#: first error and write errors as ``file:line: message`` so they can be reported as such.
ENGINE_OPTIONS = ("-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
                  "-file-line-error")

#: ``file:line: message``: the report's .tex, or the package or class file (.sty, .cls, …)
#: being read when the error was raised.
_FILE_LINE_ERROR = re.compile(r"^(?:\./)?(?P<file>[^:\s]+\.[A-Za-z]+):(?P<line>\d+): (?P<message>.*)$")


class LatexError(RuntimeError):
    """LaTeX could not build the PDF; the message is the log's first error with its line."""


def have_latex() -> bool:
    """True when latexmk (preferred) or pdflatex is on the PATH."""
    return shutil.which("latexmk") is not None or shutil.which("pdflatex") is not None


def _commands(tex_name: str) -> list[list[str]]:
    """The command lines to run in order: one latexmk call, or pdflatex three times.

    Three pdflatex passes settle equation references and the long table's column widths,
    which latexmk does by itself when it is installed.
    """
    if shutil.which("latexmk"):
        engine = f"pdflatex {' '.join(ENGINE_OPTIONS)} %O %S"
        return [["latexmk", "-norc", "-pdf", f"-pdflatex={engine}", tex_name]]
    if shutil.which("pdflatex"):
        return [["pdflatex", *ENGINE_OPTIONS, tex_name]] * 3
    raise LatexError("no LaTeX found: install latexmk or pdflatex (TeX Live: texlive-latex-base, "
                     "texlive-latex-recommended, texlive-pictures, latexmk)")


def first_error(log: str, tex_name: str) -> str:
    """The first error of a LaTeX log as ``<tex_name>:<line>: <message>``.

    With ``-file-line-error`` TeX writes errors as ``./gru.tex:123: message``; an error
    raised inside a package file keeps that file's name. A log without such a line (a
    fatal error before the document starts) gives its first ``!`` line, or a pointer to
    the log when there is none.
    """
    lines = log.splitlines()
    for line in lines:
        match = _FILE_LINE_ERROR.match(line.strip())
        if match:
            name = Path(match["file"]).name
            name = tex_name if name == tex_name else match["file"]
            return f"{name}:{match['line']}: {match['message']}"
    for i, line in enumerate(lines):
        if line.startswith("!"):
            where = next((m.group(1) for m in (re.match(r"l\.(\d+)", x) for x in lines[i:i + 20]) if m),
                         None)
            return f"{tex_name}:{where}: {line[1:].strip()}" if where else f"{tex_name}: {line[1:].strip()}"
    return f"{tex_name}: LaTeX failed without an error line in its log"


def _run(commands: list[list[str]], workdir: Path, tex_name: str, timeout: float) -> None:
    """Run the engine commands in ``workdir``; raise :class:`LatexError` on any failure."""
    env = dict(os.environ, SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1")
    log_path = workdir / (Path(tex_name).stem + ".log")
    for command in commands:
        try:
            result = subprocess.run(command, check=False, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, errors="replace",
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LatexError(f"{tex_name}: LaTeX did not finish within {timeout:g} s "
                             f"({command[0]})") from None
        if result.returncode != 0:
            log = log_path.read_text(errors="replace") if log_path.exists() else result.stdout
            raise LatexError(first_error(log, tex_name))


def build_pdf(tex_path: str | Path, pdf_path: str | Path, timeout: float = 120,
              work: str | Path | None = None) -> Path:
    """Compile ``tex_path`` to ``pdf_path`` and return the PDF's path.

    The .tex is copied into a fresh temporary directory under its own name (so errors name
    it), compiled there, and the PDF moved into place with :func:`os.replace` from a
    temporary file beside the target: readers never see a half-written PDF, and a failed
    build leaves the previous PDF untouched. ``timeout`` bounds each engine call (seconds).
    ``work`` is where the temporary directory goes (a build's own scratch folder, so that a
    killed build leaves nothing in the system's temporary folder).
    """
    tex_path, pdf_path = Path(tex_path), Path(pdf_path)
    if not tex_path.is_file():
        raise FileNotFoundError(f"{tex_path}: no such .tex file")
    commands = _commands(tex_path.name)
    with tempfile.TemporaryDirectory(prefix="symbptt-latex-", dir=work) as tmp:
        workdir = Path(tmp)
        shutil.copyfile(tex_path, workdir / tex_path.name)
        _run(commands, workdir, tex_path.name, timeout)
        built = workdir / (tex_path.stem + ".pdf")
        if not built.is_file():
            raise LatexError(f"{tex_path.name}: LaTeX reported success but wrote no PDF")
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(pdf_path, built.read_bytes())
    return pdf_path


__all__ = ["ENGINE_OPTIONS", "LatexError", "build_pdf", "first_error", "have_latex"]
