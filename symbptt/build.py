"""``symbptt build``: every cell in ``derivations/`` to ``generated/``, checked on the way.

A build first renders every file in memory (kernels, reports, PDFs in a scratch folder
beside ``generated/``), checks each kernel against finite differences, and only then
replaces ``generated/`` as a whole (:func:`symbptt.tree.replace_tree`): after a failure or a
kill, ``generated/`` is entirely the old set or entirely the new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import fdcheck
from .codegen import kernel_module, numpy_kernel
from .derive import derive
from .loader import builtin_cells, load, source_label
from .paths import default_output
from .tree import locked, recover, replace_tree, scratch, write_atomic

__all__ = ["GENERATED", "CellBuild", "build_all", "build_cell", "default_output", "stale_files",
           "summary_table", "write_atomic"]

#: The default output folder as of import: the checkout's ``generated/`` when run from
#: source, else ``generated/`` in the current folder (the CLI asks again at run time).
GENERATED = default_output()


@dataclass
class CellBuild:
    """What one cell's build produced and measured."""

    name: str
    equations: int
    parameters: int
    files: dict[Path, bytes] = field(default_factory=dict)
    fd_error: float = float("nan")
    fd_truncated_error: float = float("nan")
    seconds: float = 0.0

    @property
    def fd_ok(self) -> bool:
        return self.fd_error <= 1e-6 and self.fd_truncated_error <= 1e-6


def build_cell(path: Path, out: Path = GENERATED, pdf: bool = True, verify: bool = True,
               lang: str = "en", reports: bool = True, work: Path | None = None) -> CellBuild:
    """Derive one cell file and render its kernel (and report); nothing is written yet.

    ``reports=False`` renders the kernel only; ``pdf=False`` keeps the .tex, skips the PDF.
    LaTeX runs in ``work`` (a scratch folder) when given.
    """
    start = time.perf_counter()
    cell = load(path)
    derivation = derive(cell)
    result = CellBuild(cell.name, len(cell.equations), len(cell.parameters))
    kernel = numpy_kernel(derivation, source_label(path))
    result.files[out / "numpy" / f"{cell.name}.py"] = kernel.encode()
    if verify:
        module = kernel_module(cell)
        result.fd_error = max(fdcheck.check(module, m=2, T=3).values())
        result.fd_truncated_error = max(fdcheck.check(module, m=2, T=4, truncate=2).values())
    if reports:
        result.files.update(_report_files(derivation, path, out, pdf, lang, work))
    result.seconds = time.perf_counter() - start
    return result


def _report_files(derivation, path: Path, out: Path, pdf: bool, lang: str,
                  work: Path | None = None) -> dict[Path, bytes]:
    """The report's .tex (and PDF when asked), rendered in a scratch folder."""
    try:
        from . import report
    except ImportError:  # reports are optional until symbptt.report exists
        return {}
    name = derivation.cell.name
    files = {out / "latex" / f"{name}.tex": report.report_tex(
        derivation, lang=lang, source=source_label(path)).encode()}
    if pdf:
        from . import pdf as pdfmod

        with scratch(work or out) as folder:
            tex = folder / f"{name}.tex"
            tex.write_bytes(files[out / "latex" / f"{name}.tex"])
            target = folder / f"{name}.pdf"
            pdfmod.build_pdf(tex, target, work=folder)
            files[out / "pdf" / f"{name}.pdf"] = target.read_bytes()
    return files


def build_all(out: Path = GENERATED, pdf: bool = True, verify: bool = True,
              progress: Callable[[str], None] = print,
              cells: list[Path] | None = None, reports: bool = True) -> list[CellBuild]:
    """Build every cell in ``derivations/`` (or ``cells``); write only when all succeeded,
    and then every file at once."""
    with locked(out):
        results = _render_all(out, pdf, verify, progress, cells, reports)
        replace_tree(out, {f: data for r in results for f, data in r.files.items()})
    return results


def _render_all(out: Path, pdf: bool, verify: bool, progress: Callable[[str], None],
                cells: list[Path] | None, reports: bool) -> list[CellBuild]:
    results = []
    for path in builtin_cells() if cells is None else cells:
        progress(f"  {path.stem:<12} deriving, generating{', checking' if verify else ''}"
                 f"{', typesetting' if pdf else ''} …")
        result = build_cell(path, out, pdf=pdf, verify=verify, reports=reports)
        if verify and not result.fd_ok:
            raise RuntimeError(f"{result.name}: generated gradients disagree with finite "
                               f"differences (relative error {result.fd_error:.1e}, "
                               f"truncated {result.fd_truncated_error:.1e})")
        results.append(result)
    return results


def stale_files(out: Path = GENERATED, pdf: bool = False,
                cells: list[Path] | None = None, reports: bool = True) -> list[str]:
    """Files ``symbptt build`` would write differently (or that are missing); PDFs are
    typeset and compared byte for byte when ``pdf`` (they are reproducible)."""
    recover(out)
    stale = []
    for path in builtin_cells() if cells is None else cells:
        result = build_cell(path, out, pdf=pdf, verify=False, reports=reports)
        for file, data in result.files.items():
            label = file.relative_to(out.parent)
            if not file.exists():
                stale.append(f"missing: {label}")
            elif file.read_bytes() != data:
                stale.append(f"stale: {label}")
        if not pdf and (out / "latex" / f"{result.name}.tex") in result.files:
            stale += _pdf_problems(out / "pdf" / f"{result.name}.pdf", out.parent)
    return stale


def _pdf_problems(pdf_file: Path, base: Path) -> list[str]:
    """Without typesetting: a PDF that is missing, or not a whole PDF file (empty, cut off)."""
    label = pdf_file.relative_to(base)
    if not pdf_file.exists():
        return [f"missing: {label}"]
    data = pdf_file.read_bytes()
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-64:]:
        return [f"broken: {label} (not a complete PDF)"]
    return []


def summary_table(results: list[CellBuild]) -> str:
    """The verification summary printed at the end of a build."""
    w = max([12] + [len(r.name) for r in results])  # a long cell name widens the column
    header = (f"{'cell':<{w}} {'equations':>9} {'parameters':>10} "
              f"{'finite differences (full / truncated)':>40} {'time':>7}")
    lines = [header, "-" * len(header)]
    for r in results:
        verdict = "ok" if r.fd_ok else "FAILED"
        fd = f"{verdict} {r.fd_error:.1e} / {r.fd_truncated_error:.1e}"
        lines.append(f"{r.name:<{w}} {r.equations:>9} {r.parameters:>10} {fd:>40} {r.seconds:>6.2f}s")
    return "\n".join(lines)
