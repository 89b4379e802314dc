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
