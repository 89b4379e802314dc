"""The ``symbptt`` command: list, codegen, build, report, check, verify, handcheck, grade.

A user's mistake (unknown cell, bad equation, unwritable path, LaTeX error) ends with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jinja2

from .array_module import MODULES
from .build import build_all, default_output, stale_files, summary_table, write_atomic
from .cell import CellError
from .codegen import BACKENDS, kernel_text
from .derive import derive
from .loader import DERIVATIONS, LoadError, builtin_cells, load, resolve, source_label
from .ops import ShapeError
from .render import text


class UsageError(Exception):
    """A mistake of the user's, reported as one line."""


def cmd_list(args) -> int:
    for path in builtin_cells():
        cell = load(path)
        print(f"{cell.name}: {cell.doc}")
        for eq in cell.equations:
            print(f"    {eq.name} = {text(eq.expr)}")
    return 0


def cmd_codegen(args) -> int:
    path = resolve(args.cell)
    code = kernel_text(derive(load(path)), source_label(path), args.module, args.backend)
    if args.output is None:
        sys.stdout.write(code)
    else:
        write_atomic(Path(args.output), code.encode())
        print(f"wrote {args.output}")
    return 0


def cmd_build(args) -> int:
    out = Path(args.output) if args.output else default_output()
    cells = builtin_cells()
    if not cells:  # never "up to date" (or "built") having looked at nothing
        raise UsageError(f"no built-in cells found in {DERIVATIONS}: the installation is incomplete")
    if args.check:
        stale = stale_files(out, pdf=not args.no_pdf, cells=cells)
        for line in stale:
            print(line)
        if stale:
            print(f"{out} is out of date: run `symbptt build" + (f" -o {args.output}`" if args.output
                                                                  else "`"), file=sys.stderr)
            return 1
        print(f"{out} is up to date ({len(cells)} cells checked)")
        return 0
    start = time.perf_counter()
    print(f"building every cell in {DERIVATIONS} into {out}")
    results = build_all(out, pdf=not args.no_pdf, progress=lambda s: print(s, flush=True), cells=cells)
    print()
    print(summary_table(results))
    print(f"\n{len(results)} cells built in {time.perf_counter() - start:.1f}s; wrote {out}")
    return 0


def cmd_report(args) -> int:
    from . import report

    path = resolve(args.cell)
    cell = load(path)
    output = Path(args.output) if args.output else Path(f"{cell.name}.tex")
    tex = output.with_suffix(".tex")
    pdf = output.with_suffix(".pdf") if args.pdf else None
    report.write_report(path, tex, pdf, lang=args.lang)
    print(f"wrote {tex}" + (f" and {pdf}" if pdf else ""))
    return 0


def cmd_check(args) -> int:
    from . import check

    return check.main(args.file, args.cell)


def cmd_verify(args) -> int:
    from . import verify

    return verify.main(args.cell, prove=not args.skip_proof, proof_timeout=args.proof_timeout)


def cmd_handcheck(args) -> int:
    from . import handcheck

    return handcheck.main(args.cell, args.file)


def cmd_grade(args) -> int:
    from .grading import grade

    return grade.main(args.folder, args.cell, args.output, args.rubric, args.timeout, args.total_time, args.jobs)


#: What a CELL argument may be.
CELL_HELP = "a built-in cell's name (see `symbptt list`) or the path of a cell file"

HANDCHECK_EPILOG = r"""targets: the adjoints the derivation names, d<value> for each value of the step
(dh, dz, da_z, dh_tilde, dh_prev, dxt, ...; a_z is z's pre-activation) and d<parameter>
(dWz, dbz, ...), also written \delta a_z, δa_z or \frac{\partial L}{\partial W_z}.
List a cell's: python -c "import symbptt; print(symbptt.adjoint_names('gru'))"

LaTeX read (never evaluated): + - ( ) [a; b], \odot \circ * (elementwise),
\cdot \times and juxtaposition (matrix product), ^\top ^T, ^2, \oslash,
\sigma \tanh \exp \log \operatorname{softmax} ..., \mathbb{1}[u > 0],
\mathbf{1} (ones), \mathbf{1}\mathbf{1}^\top(...) (column sums), numbers (1 - z),
h_{t-1} (h_prev), x_t (xt), \tilde{h}_t (h_tilde), W_z (Wz), \delta h_{t-1} (dh_prev);
Unicode δ ⊙ ∘ · ᵀ σ − too. Example line:  \delta a_h = \delta h_t \odot (1 - h_t^2)
More in docs/handcheck.md."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symbptt", description="Derive, explain and verify BPTT "
                                "for recurrent cells written once in SymPy.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the built-in cells and their equations").set_defaults(run=cmd_list)
    c = sub.add_parser("codegen", help="print or write one cell's kernel (NumPy, CuPy or PyTorch)",
                       description="Print one cell's generated kernel module: forward, full or "
                                   "truncated BPTT backward, init_parameters, rows (docs/kernels.md).")
    c.add_argument("cell", help=CELL_HELP)
    c.add_argument("-o", "--output", help="write the kernel here instead of stdout")
    c.add_argument("--module", choices=list(MODULES), default="numpy",
                   help="the array library the kernel computes with: numpy (default; what "
                        "`symbptt build` writes), cupy (the NumPy kernel with `import cupy as np`, "
                        "arrays on a CUDA device) or torch (torch.Tensor on any device, the same "
                        "interface; the body of a torch.autograd.Function)")
    c.add_argument("--backend", choices=list(BACKENDS), default="numpy",
                   help="numpy (default): plain NumPy loops; numba: the NumPy kernel with its "
                        "time loops compiled by Numba (falls back to its NumPy loops, with a "
                        "warning, where numba is missing); auto: numba where it is installed")
    c.set_defaults(run=cmd_codegen)
    b = sub.add_parser("build", help="every built-in cell into generated/ (kernels, LaTeX, PDFs)",
                       description="Derive every built-in cell, check its kernel against finite "
                                   "differences, and write generated/numpy, generated/latex and "
                                   "generated/pdf all at once (a failed build writes nothing).")
    b.add_argument("-o", "--output", metavar="FOLDER",
                   help="where to write (default: generated/ of the checkout symbptt runs from, "
                        "or ./generated when it is installed)")
    b.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming each stale or missing file (PDFs are "
                        "typeset and compared too, unless --no-pdf)")
    b.add_argument("--no-pdf", action="store_true", help="skip typesetting the PDFs")
    b.set_defaults(run=cmd_build)
    r = sub.add_parser("report", help="one cell's derivation as LaTeX (and PDF)")
    r.add_argument("cell", help=CELL_HELP)
    r.add_argument("--pdf", action="store_true", help="also compile the PDF (needs pdflatex and latexmk)")
    r.add_argument("--lang", choices=("en", "es"), default="en",
                   help="the report's language: English or Spanish (default en)")
    r.add_argument("-o", "--output", help="path of the .tex, the PDF goes beside it "
                                          "(default: CELL_NAME.tex in the current folder)")
    r.set_defaults(run=cmd_report)
    k = sub.add_parser("check", help="check a person's hand-written cell against the tool")
    k.add_argument("file", help="a .py file or a .ipynb notebook (its code cells)")
    k.add_argument("--cell", required=True, help="the cell it implements: " + CELL_HELP)
    k.set_defaults(run=cmd_check)
    v = sub.add_parser("verify", help="every check of one cell, as a table")
    v.add_argument("cell", help="a built-in cell's name or a cell file")
    v.add_argument("--skip-proof", action="store_true",
                   help="skip the exact symbolic proof (it can take minutes); each operation's "
                        "derivative rule is still checked symbolically")
    v.add_argument("--proof-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="stop the exact proof after this long and say so (default 300)")
    v.set_defaults(run=cmd_verify)
    h = sub.add_parser("handcheck", help="check hand-derived gradients (one `target = latex` a line)",
                       epilog=HANDCHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("cell", help=CELL_HELP)
    h.add_argument("file", help="one `target = latex` a line, or a .ipynb (its markdown's LaTeX)")
    h.set_defaults(run=cmd_handcheck)
    g = sub.add_parser("grade", help="a folder of submissions (.py/.ipynb) into a gradebook and feedback")
    g.add_argument("folder", help="one file or folder per student")
    g.add_argument("--cell", required=True, help="the cell every submission implements: " + CELL_HELP)
    g.add_argument("--rubric", help="points per part: forward, backward, derivation (default 20, 30, 50)")
    g.add_argument("-o", "--output", help="where gradebook.csv and feedback/ go (default: FOLDER-graded)")
    g.add_argument("--timeout", type=float, default=10.0, help="seconds per call of a student's function")
    g.add_argument("--total-time", type=float, default=1800.0, help="seconds for the whole class")
    g.add_argument("-j", "--jobs", type=int, help="parallel workers (default: the cores)")
    g.set_defaults(run=cmd_grade)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    from .grading.gradebook import RubricError
    from .grading.notebook import NotebookError

    errors: list[type[BaseException]] = [CellError, LoadError, ShapeError, OSError, UsageError, RubricError,
                                         NotebookError, jinja2.TemplateError]
    try:
        from .pdf import LatexError

        errors.append(LatexError)
    except ImportError:
        pass
    return tuple(errors)


def _message(err: BaseException) -> str:
    """A user error's one line; a template error says it is one, and where templates are."""
    if isinstance(err, jinja2.TemplateNotFound):
        from .paths import TEMPLATES

        return f"template {err.name} not found in {TEMPLATES} (an incomplete installation?)"
    if isinstance(err, jinja2.TemplateError):
        return f"template error: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `symbptt list | head`
        sys.stderr.close()
        return 0
    except _user_errors() as err:
        print(f"symbptt {args.command}: {_message(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"symbptt {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
