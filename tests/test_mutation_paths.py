"""Where symbptt's own files are (symbptt/paths.py), asked inside each test: what counts as a
checkout, which copy of a data folder is used, and where a build writes by default.

These tests came from ``tools/mutation.py symbptt/paths.py --sample 40``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from symbptt import paths

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("pyproject.toml", "templates", "derivations")


def make_checkout(root: Path, parts=PARTS) -> Path:
    for name in parts:
        if name.endswith(".toml"):
            (root / name).write_text("[project]\n")
        else:
            (root / name).mkdir()
    return root


def test_a_checkout_has_its_project_file_and_both_data_folders(tmp_path):
    assert paths._is_checkout(make_checkout(tmp_path))
    assert paths._is_checkout(ROOT)


@pytest.mark.parametrize("missing", PARTS)
def test_a_folder_without_one_of_them_is_no_checkout(tmp_path, missing):
    assert not paths._is_checkout(make_checkout(tmp_path, [p for p in PARTS if p != missing]))


def test_run_from_the_checkout_the_data_folders_are_its_own():
    for name in ("templates", "derivations"):
        assert paths.data_folder(name) == ROOT / name


class _Traversable:
    """What importlib.resources gives for a package inside a zip: not a Path."""

    def __init__(self, path: Path):
        self.path = path

    def joinpath(self, name):
        return _Traversable(self.path / name)

    def is_dir(self):
        return self.path.is_dir()


def test_packaged_data_that_is_no_folder_on_disk_falls_back_to_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "templates").mkdir()
    asked = []
    monkeypatch.setattr(paths.resources, "files", lambda package: asked.append(package) or _Traversable(tmp_path))
    assert paths.data_folder("templates") == ROOT / "templates"
    assert asked == ["symbptt"]


def test_default_output_is_the_checkouts_generated_folder_or_the_current_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path / "checkout")
    assert paths.default_output() == tmp_path / "checkout" / "generated"
    monkeypatch.setattr(paths, "CHECKOUT", None)
    monkeypatch.chdir(tmp_path)
    assert paths.default_output() == tmp_path / "generated"
