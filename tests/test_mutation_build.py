"""``symbptt build``'s one-cell step (symbptt/build.py) run in this process: the kernel's file
is the generated kernel's text under numpy/, and the build's finite-difference errors are those
of that kernel.

These tests came from ``tools/mutation.py symbptt/build.py --sample 40``.
"""

from __future__ import annotations

from pathlib import Path

from symbptt import build, fdcheck
from symbptt.codegen import kernel_module
from symbptt.loader import load, resolve


def test_one_cell_builds_its_kernel_file_and_its_checks(tmp_path):
    path = resolve("rnn")
    result = build.build_cell(path, tmp_path, pdf=False, reports=False)
    kernel = Path(__file__).parent.parent / "generated" / "numpy" / "rnn.py"
    assert list(result.files) == [tmp_path / "numpy" / "rnn.py"]
    assert result.files[tmp_path / "numpy" / "rnn.py"] == kernel.read_bytes()
    module = kernel_module(load(path))
    assert result.fd_error == max(fdcheck.check(module, m=2, T=3).values()) < 1e-6
    assert result.fd_truncated_error == max(fdcheck.check(module, m=2, T=4, truncate=2).values()) < 1e-6


def test_stale_files_name_what_is_missing_or_different(tmp_path):
    out = tmp_path / "generated"
    rnn = resolve("rnn")
    assert build.stale_files(out, cells=[rnn], reports=False) == ["missing: generated/numpy/rnn.py"]
    (out / "numpy").mkdir(parents=True)
    (out / "numpy" / "rnn.py").write_text("old\n", encoding="utf-8")
    assert build.stale_files(out, cells=[rnn], reports=False) == ["stale: generated/numpy/rnn.py"]


def test_build_all_checks_each_cell_against_finite_differences(tmp_path):
    out = tmp_path / "generated"
    [result] = build.build_all(out, pdf=False, progress=lambda line: None, cells=[resolve("rnn")], reports=False)
    assert result.fd_error is not None and result.fd_error < 1e-6
    assert (out / "numpy" / "rnn.py").read_bytes() == result.files[out / "numpy" / "rnn.py"]


def test_a_kernel_that_disagrees_with_finite_differences_stops_the_build(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setattr(build.fdcheck, "check", lambda kernel, **kwargs: {"dWhx": 0.25})
    with pytest.raises(RuntimeError, match=r"rnn: generated gradients disagree with finite differences "
                                           r"\(relative error 2.5e-01, truncated 2.5e-01\)"):
        build.build_all(tmp_path / "generated", pdf=False, progress=lambda line: None, cells=[resolve("rnn")],
                        reports=False)
    assert not (tmp_path / "generated" / "numpy").exists()  # nothing written


# -- the leftovers of build.py's seed-0 sample: the PDF half of a build (build_pdf replaced by a
# stand-in that records its call: typesetting is pdf.py's, tested there), build_all's default
# pdf=True, every built-in cell when none is given, the progress lines and the summary table --


def fake_pdf(monkeypatch) -> list:
    """Replace pdf.build_pdf by a stand-in that records (tex, its text, target, work)."""
    from symbptt import pdf

    calls = []

    def build_pdf(tex, target, work=None):
        calls.append((Path(tex), Path(tex).read_bytes(), Path(target), work))
        Path(target).write_bytes(b"%PDF-1.5 " + Path(tex).name.encode() + b" %%EOF")
        return Path(target)

    monkeypatch.setattr(pdf, "build_pdf", build_pdf)
    return calls


def test_the_pdf_is_typeset_from_the_reports_tex_in_the_scratch_folder(tmp_path, monkeypatch):
    calls = fake_pdf(monkeypatch)
    out = tmp_path / "generated"
    result = build.build_cell(resolve("rnn"), out, verify=False)  # pdf=True by default
    tex = result.files[out / "latex" / "rnn.tex"]
    assert sorted(result.files) == [out / "latex" / "rnn.tex", out / "numpy" / "rnn.py", out / "pdf" / "rnn.pdf"]
    assert result.files[out / "pdf" / "rnn.pdf"] == b"%PDF-1.5 rnn.tex %%EOF"
    scratch = tmp_path / ".generated.scratch"
    assert calls == [(scratch / "rnn.tex", tex, scratch / "rnn.pdf", scratch)]
    assert not scratch.exists()


def test_build_all_typesets_by_default_and_builds_every_builtin_cell_when_none_is_given(tmp_path, monkeypatch):
    calls = fake_pdf(monkeypatch)
    monkeypatch.setattr(build, "builtin_cells", lambda: [resolve("rnn")])
    out = tmp_path / "generated"
    lines = []
    [result] = build.build_all(out, verify=False, progress=lines.append)
    assert result.name == "rnn" and len(calls) == 1
    assert (out / "pdf" / "rnn.pdf").read_bytes() == b"%PDF-1.5 rnn.tex %%EOF"
    assert lines == ["  rnn          deriving, generating, typesetting …"]
    assert build.stale_files(out) == []  # what it wrote is what it would write


def test_the_progress_line_names_each_step_it_takes(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "build_cell", lambda path, out, **k: build.CellBuild(path.stem, 1, 1, fd_error=0.0,
                                                                                     fd_truncated_error=0.0))
    lines = []
    build.build_all(tmp_path / "g", pdf=False, progress=lines.append, cells=[resolve("rnn"), resolve("gru")])
    build.build_all(tmp_path / "g", pdf=False, verify=False, progress=lines.append, cells=[resolve("lstm")])
    assert lines == ["  rnn          deriving, generating, checking …", "  gru          deriving, generating, checking …",
                     "  lstm         deriving, generating …"]


def test_the_summary_table_word_for_word():
    ok = build.CellBuild("rnn", 2, 5, fd_error=1.5e-9, fd_truncated_error=2e-10, seconds=0.5)
    failed = build.CellBuild("a_very_long_cell_name", 3, 4)
    assert build.summary_table([ok, failed]).splitlines() == [
        "cell                  equations parameters    finite differences (full / truncated)    time",
        "-" * 91,
        "rnn                           2          5                     ok 1.5e-09 / 2.0e-10   0.50s",
        "a_very_long_cell_name         3          4                         FAILED nan / nan   0.00s"]
    assert build.summary_table([ok]).splitlines()[0] == (
        "cell         equations parameters    finite differences (full / truncated)    time")


# -- the fresh sample after the tests above (tools/mutation.py symbptt/build.py --sample 40 --seed 2) --


def test_the_report_names_its_source_and_the_build_its_time(tmp_path):
    result = build.build_cell(resolve("rnn"), tmp_path, pdf=False, verify=False)
    tex = result.files[tmp_path / "latex" / "rnn.tex"].decode()
    assert "% Generated by symbptt from derivations/rnn.py." in tex
    assert isinstance(result.seconds, float) and 0 < result.seconds < 60


def test_a_pdf_without_its_header_or_its_end_is_broken(tmp_path):
    pdf = tmp_path / "generated" / "pdf"
    pdf.mkdir(parents=True)
    cases = {"whole.pdf": b"%PDF-1.5\n" + b"x" * 100 + b"\n%%EOF\n", "cut.pdf": b"%PDF-1.5\n" + b"x" * 100,
             "headless.pdf": b"<html>\n%%EOF\n", "early_end.pdf": b"%PDF-1.5\n%%EOF\n" + b"x" * 100}
    for name, data in cases.items():
        (pdf / name).write_bytes(data)
    problems = {name: build._pdf_problems(pdf / name, tmp_path) for name in cases}
    assert problems == {"whole.pdf": [], "cut.pdf": ["broken: generated/pdf/cut.pdf (not a complete PDF)"],
                        "headless.pdf": ["broken: generated/pdf/headless.pdf (not a complete PDF)"],
                        "early_end.pdf": ["broken: generated/pdf/early_end.pdf (not a complete PDF)"]}
    assert build._pdf_problems(pdf / "none.pdf", tmp_path) == ["missing: generated/pdf/none.pdf"]


def test_latex_runs_beside_the_work_folder_when_one_is_given(tmp_path, monkeypatch):
    """(tools/mutation.py symbptt/build.py --sample 40 --seed 3)"""
    calls = fake_pdf(monkeypatch)
    build.build_cell(resolve("rnn"), tmp_path / "generated", verify=False, work=tmp_path / "work" / "here")
    scratch = tmp_path / "work" / ".here.scratch"
    assert [(tex, target, work) for tex, _, target, work in calls] == [
        (scratch / "rnn.tex", scratch / "rnn.pdf", scratch)]
