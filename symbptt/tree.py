"""Writing generated files so that a reader sees the old set or the new set, never a mix.

A build renders everything first, then :func:`replace_tree` writes the new files into a
staging copy of the output folder and swaps the two folders with two renames. A kill at any
point leaves either the old folder, or the new one, plus leftovers that :func:`recover`
(run at the start of every build and check) resolves: a staging folder is deleted; an old
folder whose replacement never arrived is put back; one whose replacement did is deleted.
Files get the user's umask, as any other program's would.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_mode() -> int:
    """The mode a new file gets under the current umask (0o644 under the usual 0o022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _sibling(out: Path, what: str) -> Path:
    return out.parent / f".{out.name}.{what}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (all or nothing).

    The folder must exist: a missing one is a mistake to report, not to paper over.
    """
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def recover(out: Path) -> None:
    """Resolve what an interrupted :func:`replace_tree` left beside ``out``."""
    old, staging = _sibling(out, "old"), _sibling(out, "staging")
    if old.exists():
        if out.exists():
            shutil.rmtree(old)  # the swap happened: the new set stands
        else:
            os.rename(old, out)  # killed between the two renames: the old set comes back
    if staging.exists():
        shutil.rmtree(staging)
    for pattern in (".*.tmp", ".*.part"):
        for tmp in out.rglob(pattern) if out.exists() else ():
            tmp.unlink()  # left by a killed write of an earlier version


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One build at a time per output folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(_sibling(out, "lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def scratch(out: Path) -> Iterator[Path]:
    """A scratch folder beside ``out`` (LaTeX runs there), removed afterwards; a killed
    build's scratch folder is removed by the next one."""
    folder = _sibling(out, "scratch")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _normalise_modes(root: Path) -> None:
    mode = file_mode()
    for path in root.rglob("*"):
        os.chmod(path, (mode | ((mode & 0o444) >> 2)) if path.is_dir() else mode)


def replace_tree(out: Path, files: dict[Path, bytes]) -> bool:
    """Make ``out`` hold its current files updated with ``files`` (paths under ``out``), all
    at once. Returns False, writing nothing, when every file already has that content."""
    recover(out)
    if all(p.is_file() and p.read_bytes() == data for p, data in files.items()):
        return False
    staging, old = _sibling(out, "staging"), _sibling(out, "old")
    if out.exists():
        shutil.copytree(out, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    for path, data in files.items():
        target = staging / path.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _normalise_modes(staging)
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return True
