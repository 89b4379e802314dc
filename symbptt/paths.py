"""Where symbptt's own files are, installed or run from a checkout.

The repository keeps ``templates/`` (jinja2) and ``derivations/`` (the built-in cells) at
its top level. A wheel ships both inside the package (``symbptt/templates``,
``symbptt/derivations``; see ``setup.py``), found here through :mod:`importlib.resources`.
Run from a checkout (an editable install, ``python -m symbptt``), the package folder has no
such subfolders and the checkout's own folders are used, so an edit of a template or a cell
takes effect at once.

Generated files go where the user says; by default into the checkout's ``generated/`` when
symbptt runs from a checkout, and into ``./generated`` (the current folder) otherwise.
Nothing here imports the rest of symbptt.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The folder that holds the package folder: the checkout's root when run from source.
ROOT = Path(__file__).resolve().parent.parent


def _is_checkout(root: Path) -> bool:
    """A source checkout of symbptt: its project file beside the top-level data folders."""
    return all((root / name).exists() for name in ("pyproject.toml", "templates", "derivations"))


#: The source checkout symbptt runs from, or None for an installed wheel.
CHECKOUT: Path | None = ROOT if _is_checkout(ROOT) else None


def data_folder(name: str) -> Path:
    """``templates`` or ``derivations``: the wheel's copy inside the package, else the
    checkout's top-level folder (the only copy when run from source)."""
    packaged = resources.files(__package__ or "symbptt").joinpath(name)
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return ROOT / name


#: The jinja2 templates of kernels and reports.
TEMPLATES = data_folder("templates")
#: The built-in cells, one file each.
DERIVATIONS = data_folder("derivations")


def default_output() -> Path:
    """Where ``symbptt build`` writes by default: the checkout's ``generated/``, or
    ``generated/`` in the current folder when symbptt is installed (not run from source)."""
    if CHECKOUT is not None:
        return CHECKOUT / "generated"
    return Path.cwd() / "generated"
