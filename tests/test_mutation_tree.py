"""Writing generated files all at once (symbptt/tree.py), each function called in the test:
file modes under a umask, the temporary and sibling names a kill leaves (and recover removes),
the lock, the scratch folder, and replace_tree keeping what it is not told to change.

These tests came from ``tools/mutation.py symbptt/tree.py --sample 40``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from symbptt import tree


@pytest.fixture
def umask():
    saved = os.umask(0o022)
    os.umask(saved)

    def set_(mask):
        os.umask(mask)

    yield set_
    os.umask(saved)


def test_file_mode_follows_the_umask_and_leaves_it_as_it_was(umask):
    umask(0o022)
    assert tree.file_mode() == 0o644
    umask(0o077)
    assert tree.file_mode() == 0o600
    assert os.umask(0o077) == 0o077


def test_write_atomic_writes_through_a_hidden_temporary_in_the_same_folder(tmp_path, umask, monkeypatch):
    umask(0o027)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(tree.os, "replace", lambda src, dst: replaced.append((src, dst)) or real_replace(src, dst))
    target = tmp_path / "kernel.py"
    tree.write_atomic(target, b"data")
    assert target.read_bytes() == b"data" and target.stat().st_mode & 0o777 == 0o640
    [(tmp, dst)] = replaced
    assert dst == target and Path(tmp).parent == tmp_path
    assert Path(tmp).name.startswith(".kernel.py.") and Path(tmp).name.endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.py"]


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "kernel.py"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(tree.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        tree.write_atomic(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.py"] and target.read_bytes() == b"old"


def test_the_siblings_are_hidden_names_beside_the_folder(tmp_path):
    assert tree._sibling(tmp_path / "generated", "old") == tmp_path / ".generated.old"


def test_recover_removes_killed_writes_at_any_depth_and_nothing_else(tmp_path):
    out = tmp_path / "generated"
    (out / "numpy").mkdir(parents=True)
    for name in (".rnn.py.abc.tmp", "numpy/.gru.py.x.tmp", "numpy/.gru.pdf.part", "numpy/gru.py", "keep.tmp",
                 ".hidden"):
        (out / name).write_text("x")
    tree.recover(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        ".hidden", "keep.tmp", "numpy/gru.py"]
    tree.recover(tmp_path / "never-built")  # nothing there: nothing to do
    assert not (tmp_path / "never-built").exists()


def test_recover_puts_the_old_set_back_only_when_the_new_one_never_arrived(tmp_path):
    out = tmp_path / "generated"
    old = tmp_path / ".generated.old"
    old.mkdir()
    (old / "f").write_text("old")
    tree.recover(out)
    assert (out / "f").read_text() == "old" and not old.exists()
    old.mkdir()
    (old / "f").write_text("older")
    tree.recover(out)
    assert (out / "f").read_text() == "old" and not old.exists()


def test_locked_holds_an_exclusive_lock_beside_the_folder(tmp_path):
    out = tmp_path / "deep" / "generated"
    with tree.locked(out):
        lock = tmp_path / "deep" / ".generated.lock"
        assert lock.is_file()
        with open(lock) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_scratch_starts_empty_and_is_removed_even_after_a_failure(tmp_path):
    out = tmp_path / "generated"
    stale = tmp_path / ".generated.scratch"
    stale.mkdir()
    (stale / "left.aux").write_text("from a killed build")
    with pytest.raises(RuntimeError), tree.scratch(out) as folder:
        assert folder == stale and folder.is_dir() and not any(folder.iterdir())
        (folder / "x.log").write_text("x")
        raise RuntimeError("latex failed")
    assert not stale.exists()
    with tree.scratch(tmp_path / "new" / "generated") as folder:
        assert folder == tmp_path / "new" / ".generated.scratch" and folder.is_dir()


def test_normalised_modes_give_folders_search_where_files_are_readable(tmp_path, umask):
    for mask, file, folder in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o027, 0o640, 0o750)):
        umask(mask)
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        (root / "d").mkdir(mode=0o700)
        (root / "d" / "f").write_text("x")
        os.chmod(root / "d" / "f", 0o777)
        tree._normalise_modes(root)
        assert (root / "d").stat().st_mode & 0o777 == folder
        assert (root / "d" / "f").stat().st_mode & 0o777 == file


def test_replace_tree_keeps_other_files_and_links_and_says_whether_it_wrote(tmp_path):
    out = tmp_path / "generated"
    assert tree.replace_tree(out, {out / "a" / "x.py": b"1"})
    (out / "keep.txt").write_text("mine")
    os.symlink("keep.txt", out / "link")
    assert tree.replace_tree(out, {out / "a" / "x.py": b"2", out / "b" / "c" / "y.py": b"3"})
    assert (out / "a" / "x.py").read_bytes() == b"2" and (out / "b" / "c" / "y.py").read_bytes() == b"3"
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "link").is_symlink() and os.readlink(out / "link") == "keep.txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated"]
    assert not tree.replace_tree(out, {out / "a" / "x.py": b"2"})
    assert tree.replace_tree(out, {out / "a" / "x.py": b"2", out / "new.py": b""})  # one missing: write


@pytest.mark.parametrize("at", [1, 2])
def test_a_replacement_killed_at_either_rename_is_resolved_by_recover(tmp_path, monkeypatch, at):
    """The staging and old folders have the names recover looks for: after a kill at the first
    rename (the old set still in place) or at the second (the old set aside, the new one not
    yet in place), recover leaves the old set and nothing beside it."""
    out = tmp_path / "generated"
    tree.replace_tree(out, {out / "f": b"old"})
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == at:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(tree.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        tree.replace_tree(out, {out / "f": b"new"})
    monkeypatch.setattr(tree.os, "rename", real_rename)
    assert len(list(tmp_path.iterdir())) > 1  # something was left beside the folder
    tree.recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated"] and (out / "f").read_bytes() == b"old"


def test_a_failed_rename_whose_temporary_is_already_gone_reports_the_rename(tmp_path, monkeypatch):
    """Another build's recover may have removed the temporary: the error is still the rename's."""
    def fail(src, dst):
        os.unlink(src)
        raise OSError("the disk went away")

    monkeypatch.setattr(tree.os, "replace", fail)
    with pytest.raises(OSError, match="the disk went away"):
        tree.write_atomic(tmp_path / "kernel.py", b"new")
    assert not any(tmp_path.iterdir())
