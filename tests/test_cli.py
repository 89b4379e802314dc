"""The command line: build, --check, codegen, list, and clear one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from symbptt import build, cli
from symbptt.loader import DERIVATIONS

MGU = '''
"""Minimal gated unit: one gate, written as a new cell file and nothing else."""
from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("mgu", "Minimal gated unit (Zhou et al. 2016).")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x)
h_prev = cell.state("h", n_h)
Wf, bf = cell.weight("Wf", n_h, n_h + n_x), cell.bias("bf", n_h)
Wh, bh = cell.weight("Wh", n_h, n_h + n_x), cell.bias("bh", n_h)
Wy, by = cell.weight("Wy", n_y, n_h), cell.bias("by", n_y)
f = cell.let("f", sigmoid(Wf @ stack(h_prev, x) + bf))
h_tilde = cell.let("h_tilde", tanh(Wh @ stack(odot(f, h_prev), x) + bh))
h = cell.update("h", odot(1 - f, h_prev) + odot(f, h_tilde))
cell.readout("y", softmax(Wy @ h + by))
'''


def run(*args):
    return subprocess.run([sys.executable, "-m", "symbptt.cli", *args], capture_output=True, text=True, check=False)


def test_generated_is_up_to_date():
    stale = build.stale_files()
    assert not stale, "run `symbptt build`: " + ", ".join(stale)


def test_build_twice_gives_the_same_bytes(tmp_path):
    cells = [DERIVATIONS / "rnn.py", DERIVATIONS / "gru.py"]
    build.build_all(tmp_path, pdf=False, verify=False, cells=cells, progress=lambda s: None,
                    reports=False)
    first = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    build.build_all(tmp_path, pdf=False, verify=False, cells=cells, progress=lambda s: None,
                    reports=False)
    assert first == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def test_failed_build_leaves_files_intact(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(MGU)
    out = tmp_path / "generated"
    build.build_all(out, pdf=False, verify=False, cells=[good], progress=lambda s: None,
                    reports=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.py"
    bad.write_text(MGU.replace('"mgu"', '"bad"').replace("Wf @ stack(h_prev, x)", "Wf @ h_prev"))
    with pytest.raises(Exception, match="Wf"):
        build.build_all(out, pdf=False, verify=False, cells=[good, bad],
                        progress=lambda s: None, reports=False)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_new_cell_file_needs_nothing_else(tmp_path):
    from symbptt import fdcheck
    from symbptt.codegen import kernel_module

    path = tmp_path / "mgu.py"
    path.write_text(MGU)
    errors = fdcheck.check(kernel_module(path), m=2, T=4)
    assert max(errors.values()) <= 1e-6, errors
    errors = fdcheck.check(kernel_module(path), m=2, T=5, truncate=2)
    assert max(errors.values()) <= 1e-6, errors


def test_codegen_writes_a_file_for_a_cell_path(tmp_path):
    path = tmp_path / "mgu.py"
    path.write_text(MGU)
    target = tmp_path / "out" / "mgu_kernel.py"
    target.parent.mkdir()
    assert cli.main(["codegen", str(path), "-o", str(target)]) == 0
    assert "def backward(cache, upstream, truncate=None" in target.read_text()


def test_codegen_into_a_missing_folder_is_one_line(tmp_path):
    """-o into a folder that does not exist is a mistake to report, not to paper over."""
    result = run("codegen", "rnn", "-o", str(tmp_path / "missing" / "rnn.py"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no such folder" in result.stderr and not (tmp_path / "missing").exists()


def test_unknown_cell_is_one_line_on_stderr():
    result = run("codegen", "no_such_cell")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown cell 'no_such_cell'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_equation_names_it(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(MGU.replace("Wh @ stack(odot(f, h_prev), x)", "Wh @ x"))
    result = run("codegen", str(path))
    assert result.returncode == 2
    assert "equation h_tilde" in result.stderr and "(n_h, n_h + n_x)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_path_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("codegen", "rnn", "-o", str(blocker / "kernel.py"))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_check_reports_a_stale_file(tmp_path):
    out = tmp_path / "generated"
    cells = [DERIVATIONS / "rnn.py"]
    build.build_all(out, pdf=False, verify=False, cells=cells, progress=lambda s: None,
                    reports=False)
    assert build.stale_files(out, cells=cells, reports=False) == []
    kernel = out / "numpy" / "rnn.py"
    kernel.write_text(kernel.read_text() + "# edited\n")
    assert any("stale" in s and "rnn.py" in s for s in build.stale_files(out, cells=cells, reports=False))
    kernel.unlink()
    assert any("missing" in s and "rnn.py" in s for s in build.stale_files(out, cells=cells, reports=False))


def test_list_shows_equations():
    result = run("list")
    assert result.returncode == 0
    assert "h = tanh(Whh·h_prev + Whx·xt + bh)" in result.stdout


def test_examples_in_readme_exist():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "symbptt build" in readme and "pytest" in readme


def test_output_does_not_depend_on_hashing():
    import os

    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, "-m", "symbptt.cli", "codegen", "lstm"],
                                capture_output=True, text=True, env=env, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1
