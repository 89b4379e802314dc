"""A build is all-or-nothing: after any failure or kill, generated/ is the old set or the new
one; no temporary file or folder survives; files get the user's umask."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from symbptt.build import build_all, stale_files
from symbptt.cli import main
from symbptt.tree import recover, replace_tree, write_atomic

ROOT = Path(__file__).resolve().parent.parent


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _leftovers(out: Path) -> list[str]:
    names = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
             and not p.name.endswith(".lock")]
    names += [str(p) for p in out.rglob(".*") if p.suffix in (".tmp", ".part")] if out.exists() else []
    return names


def test_replace_tree_writes_all_files_with_the_umask(tmp_path):
    out = tmp_path / "generated"
    old = os.umask(0o022)
    try:
        assert replace_tree(out, {out / "numpy" / "a.py": b"a", out / "pdf" / "a.pdf": b"p"})
    finally:
        os.umask(old)
    assert _files(out) == {"numpy/a.py": b"a", "pdf/a.pdf": b"p"}
    assert (out / "numpy" / "a.py").stat().st_mode & 0o777 == 0o644
    assert (out / "numpy").stat().st_mode & 0o777 == 0o755
    assert not replace_tree(out, {out / "numpy" / "a.py": b"a"})  # nothing to change
    assert not _leftovers(out)


@pytest.mark.parametrize("state", ["staging only", "killed between renames", "killed after swap"])
def test_recover_resolves_every_interrupted_state(tmp_path, state):
    out = tmp_path / "generated"
    out.mkdir()
    (out / "f").write_text("old")
    staging, old = tmp_path / ".generated.staging", tmp_path / ".generated.old"
    staging.mkdir()
    (staging / "f").write_text("new")
    if state == "killed between renames":
        out.rename(old)
    elif state == "killed after swap":
        out.rename(old)
        staging.rename(out)
    recover(out)
    expected = "new" if state == "killed after swap" else "old"
    assert (out / "f").read_text() == expected
    assert not _leftovers(out)


def test_write_atomic_refuses_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        write_atomic(tmp_path / "missing" / "x.py", b"x")
    assert not (tmp_path / "missing").exists()


def test_codegen_into_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["codegen", "rnn", "-o", str(tmp_path / "missing" / "rnn.py")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def _cells(folder: Path, version: str) -> list[Path]:
    """Copies of two built-in cells whose description carries ``version``."""
    folder.mkdir(exist_ok=True)
    paths = []
    for name in ("rnn", "gru"):
        text = (ROOT / "derivations" / f"{name}.py").read_text()
        text = text.replace(f'Cell("{name}", "', f'Cell("{name}", "{version}: ', 1)
        assert version in text
        path = folder / f"{name}.py"
        path.write_text(text)
        paths.append(path)
    return paths


def test_an_empty_pdf_is_not_up_to_date(tmp_path):
    out = tmp_path / "generated"
    cells = _cells(tmp_path / "cells", "v1")
    build_all(out, pdf=False, verify=False, cells=cells, progress=lambda s: None)
    (out / "pdf").mkdir(exist_ok=True)
    (out / "pdf" / "rnn.pdf").write_bytes(b"")
    (out / "pdf" / "gru.pdf").write_bytes(b"%PDF-1.5\n...\n%%EOF\n")
    assert stale_files(out, cells=cells) == ["broken: generated/pdf/rnn.pdf (not a complete PDF)"]


# A build in a child process, slowed down at every write and rename so that kills land
# everywhere: while rendering, while staging, between the two renames, while cleaning up.
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import symbptt.tree as tree
    from symbptt.build import build_all

    def slow(f):
        def wrapped(*args, **kwargs):
            time.sleep(0.02)
            return f(*args, **kwargs)
        return wrapped

    tree.os.rename = slow(os.rename)
    Path.write_bytes = slow(Path.write_bytes)
    out, cells = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    print("ready", flush=True)
    start = time.perf_counter()
    build_all(out, pdf=False, verify=False, cells=cells, progress=lambda s: None)
    print(f"done {time.perf_counter() - start:.2f}", flush=True)
""")


@pytest.mark.parametrize("seed", range(8))
def test_a_killed_build_leaves_the_old_set_or_the_new_one(tmp_path, seed):
    out = tmp_path / "generated"
    build_all(out, pdf=False, verify=False, cells=_cells(tmp_path / "v1", "v1"),
              progress=lambda s: None)
    before = _files(out)
    new_cells = _cells(tmp_path / "v2", "v2")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(out), *map(str, new_cells)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    # A build takes 0.5–1 s here: the kills spread over it, jittered by the seed.
    time.sleep(0.12 * seed + random.Random(seed).uniform(0.0, 0.1))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    recover(out)  # what the next build or check does first
    after = _files(out)
    versions = {b"v1" in data for name, data in after.items() if name.endswith(".py")}
    assert len(versions) == 1, "a mix of old and new kernels"
    if True in versions:
        assert after == before
    else:
        assert all(b"v2" in data for name, data in after.items() if name.endswith((".py", ".tex")))
    assert not _leftovers(out)
