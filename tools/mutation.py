"""Mutation testing of symbptt with mutmut: plant small mistakes in one module at a time and
count how many the tests catch.

    python3 tools/mutation.py                      # every module in MODULES (long: hours)
    python3 tools/mutation.py symbptt/fdcheck.py   # one module, with its fast test subset
    python3 tools/mutation.py --list               # the modules and their test subsets
    python3 tools/mutation.py symbptt/report.py --sample 40 --seed 1   # 40 random mutants of it
    python3 tools/mutation.py --overall            # the README table's overall score

Each module is mutated in a scratch copy of the checkout's files (the checkout itself
is never touched), and only the tests that exercise it run (MODULES below): the freshness test
of ``generated/`` is left out, since regenerating makes any change "fresh". mutmut itself also
runs, for each mutant, only the tests of that subset that reach the mutated function.

The table printed at the end has, per module: killed, survived, equivalent (survivors listed
in tools/mutation-equivalent.txt with the reason they change nothing observable), timed out,
and the score killed / (total − equivalent). Survivors are written to
``<scratch>/survivors.txt``; ``mutmut show NAME`` in the scratch copy prints one.
With ``--sample N`` only N of the module's mutants, drawn uniformly at random (reproducibly,
from ``--seed``), are run, and the score is an estimate with its 95 % Wilson interval: random
mutant sampling, a known way to cut a run's cost (Wong and Mathur 1995 studied 10 % samples
against the full set of mutants). To list the module's mutants, mutmut is first run on a name
that matches none: that generates the mutants and collects which tests reach which function
(reused by the run that follows), then stops.

Needs ``pip install mutmut==3.8.1`` (not part of the test extras: this is not the test
command, and it takes long).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tools" / "mutation-equivalent.txt"

#: Two tests of test_kernel_plan read the source (function lengths, complexity), not what it
#: computes: they fail on mutmut's own copies of a mutated function (a complex function
#: repeated once per mutant), and whenever a module being worked on has a long function.
SHORT_FUNCTIONS = ["--deselect", "tests/test_kernel_plan.py::test_planner_functions_are_short",
                   "--deselect", "tests/test_kernel_plan.py::test_no_function_in_the_package_is_too_complex"]

#: The reports without PDFs (test_report's PDF builds take minutes): the .tex of every cell
#: and its contexts, and a few cells' printed equations read back (test_mutation_report).
REPORT_FAST = ["tests/test_mutation_report.py", "tests/test_report.py",
               "-k", "not pdf and not page and not rebuilt and not latex_error and not pdflatex"]

#: What the forward and backward planners' subsets share: kernels of many cells against their
#: equations and finite differences, chunked readouts and gradients, edge sizes.
PLANNER = ["tests/test_kernel_readout_chunks.py", "tests/test_kernel_edge_cases.py", "tests/test_mutation_layout.py",
           "tests/test_kernel_plan.py", "tests/test_kernel_memory.py", *SHORT_FUNCTIONS]

#: Module → the tests that exercise it (the fast subset run against its mutants).
MODULES: dict[str, list[str]] = {
    "symbptt/fdcheck.py": ["tests/test_fdcheck.py", "tests/test_finite_differences.py"],
    # derive, graph: the derivation run directly against finite differences of the cell's own
    # equations (test_random_cells' Hypothesis shrinking made each mutant cost ~10-30 s).
    # (Only tests with a time limit, so a mutant that makes the derivation loop forever fails.)
    "symbptt/derive.py": ["tests/test_mutation_derive.py", "tests/test_mutation_graph.py"],
    "symbptt/graph.py": ["tests/test_mutation_graph.py", "tests/test_mutation_derive.py"],
    "symbptt/cell.py": ["tests/test_mutation_cell.py", "tests/test_cell_dsl.py", "tests/test_bad_cells.py",
                        "tests/test_hostile_inputs.py", "tests/test_against_references.py"],
    "symbptt/ops.py": ["tests/test_mutation_ops.py", "tests/test_operations.py", "tests/test_operation_consumers.py",
                       "tests/test_finite_differences.py", "tests/test_against_references.py"],
    "symbptt/printers.py": ["tests/test_mutation_printers.py", "tests/test_mutation_ops.py", "tests/test_numpy_printer.py",
                            *REPORT_FAST],
    "symbptt/notation.py": ["tests/test_mutation_notation.py", "tests/test_hostile_inputs.py", *REPORT_FAST],
    "symbptt/kernels/rewrite.py": ["tests/test_mutation_rewrite.py", "tests/test_mutation_layout.py"],
    # the planner: kernels of many cells against their equations and finite differences
    # (test_mutation_layout), without the slow Hypothesis cells.
    "symbptt/kernels/layout.py": ["tests/test_mutation_layout.py", "tests/test_kernel_plan.py",
                                  "tests/test_kernel_memory.py", *SHORT_FUNCTIONS],
    "symbptt/kernels/forward.py": ["tests/test_mutation_forward.py", "tests/test_kernel_rows_in_state.py", *PLANNER],
    "symbptt/kernels/backward.py": ["tests/test_mutation_backward.py", *PLANNER],
    "symbptt/kernels/code.py": ["tests/test_mutation_code.py", "tests/test_kernel_plan.py",
                                "tests/test_numpy_printer.py", *SHORT_FUNCTIONS],
    "symbptt/array_module.py": ["tests/test_mutation_array_module.py", "tests/test_numpy_printer.py",
                                "tests/test_operation_consumers.py", "tests/test_torch_kernel.py"],
    "symbptt/kernels/array_printer.py": ["tests/test_mutation_array_printer.py", "tests/test_numpy_printer.py", "tests/test_kernel_plan.py",
                                         "tests/test_torch_kernel.py", *SHORT_FUNCTIONS],
    "symbptt/report.py": REPORT_FAST,  # test_mutation_report renders every cell inside its tests
    "symbptt/report_steps.py": ["tests/test_mutation_report_steps.py", *REPORT_FAST],
    "symbptt/check.py": ["tests/test_check.py", "tests/test_pinned_tolerances.py", "tests/test_mutation_check.py"],
    "symbptt/check_diagnose.py": ["tests/test_check.py", "tests/test_pinned_tolerances.py",
                                  "tests/test_mutation_check_diagnose.py"],
    "symbptt/handcheck.py": ["tests/test_handcheck.py", "tests/test_pinned_tolerances.py",
                             "tests/test_mutation_handcheck.py"],
    "symbptt/verify.py": ["tests/test_mutation_verify.py", "tests/test_verify.py", "tests/test_verify_scale.py"],
    "symbptt/proof.py": ["tests/test_mutation_proof.py", "tests/test_proof.py"],
    # The rest, sampled (--sample): the tests that import each module, those over ~20 s cut.
    "symbptt/report_check.py": ["tests/test_mutation_report_check.py", "tests/test_mutation_report.py",
                                "tests/test_attack_report_order.py"],
    "symbptt/report_order.py": ["tests/test_mutation_report_order.py", "tests/test_attack_report_order.py",
                                "tests/test_mutation_report_order_source.py"],
    # report_figure, report_params, render: REPORT_FAST renders every report once per mutant (minutes
    # each on a shared machine); their own test files compute the same pieces directly, and check
    # them against the committed generated/ files.
    "symbptt/report_figure.py": ["tests/test_mutation_report_figure.py"],
    "symbptt/report_params.py": ["tests/test_mutation_report_params.py"],
    "symbptt/render.py": ["tests/test_mutation_render.py", "tests/test_numpy_printer.py"],
    "symbptt/text.py": ["tests/test_numpy_printer.py", "tests/test_operation_consumers.py"],
    # pdf: the LaTeX error reading and one small real build (no report PDFs)
    "symbptt/pdf.py": ["tests/test_mutation_pdf.py", "tests/test_report.py", "-k",
                       "mutation_pdf or first_error or pdflatex or latex_error"],
    "symbptt/cli.py": ["tests/test_mutation_cli.py", "tests/test_cli.py"],  # test_cli runs a subprocess
    "symbptt/build.py": ["tests/test_mutation_build.py", "tests/test_build_atomic.py", "tests/test_build_summary.py",
                         "tests/test_mutation_cli.py"],
    "symbptt/tree.py": ["tests/test_mutation_tree.py", "tests/test_build_atomic.py"],
    "symbptt/loader.py": ["tests/test_mutation_loader.py", "tests/test_cell_dsl.py", "tests/test_bad_cells.py",
                          "tests/test_hostile_inputs.py", "tests/test_install.py", "tests/test_mutation_cli.py"],
    "symbptt/api.py": ["tests/test_mutation_api.py", "tests/test_install.py", "tests/test_kernel_rows_in_state.py"],
    "symbptt/paths.py": ["tests/test_mutation_paths.py", "tests/test_install.py"],
    "symbptt/testing.py": ["tests/test_mutation_testing.py", "tests/test_check.py", "tests/test_adversarial.py"],
    "symbptt/arith.py": ["tests/test_mutation_arith.py", "tests/test_cell_dsl.py", "tests/test_bad_cells.py",
                         "tests/test_hostile_inputs.py", "tests/test_mutation_layout.py"],
    "symbptt/codegen.py": ["tests/test_mutation_codegen.py", "tests/test_numba_backend.py", "tests/test_numpy_printer.py",
                           "tests/test_kernel_arguments.py", "tests/test_torch_kernel.py"],
    "symbptt/limited.py": ["tests/test_mutation_limited.py", "tests/test_attack_limited.py"],
    "symbptt/torch.py": ["tests/test_mutation_torch.py", "tests/test_attack_torch.py", "tests/test_torch_interop.py"],
    "symbptt/torch_oracle.py": ["tests/test_mutation_torch_oracle.py", "tests/test_torch_oracle.py",
                                "tests/test_torch_interop.py"],
    # the Numba backend's kernels: its compiled loops run as Python (numba hidden, FUSED set),
    # and test_numba_backend's tests that compile nothing (its compiling ones take ~4 minutes)
    "symbptt/kernels/fused.py": ["tests/test_mutation_fused.py", "tests/test_numba_backend.py", "-k",
                                 ("mutation_fused or without_numba or module_text or backend_names "
                                  "or loop_variables or cli_codegen")],
    # grading: students are graded in worker processes and each one's code in a child, where
    # mutmut sees nothing: test_mutation_grade grades one student in the test's own process.
    "symbptt/grading/grade.py": ["tests/test_mutation_grade.py", "tests/test_grade.py", "tests/test_check.py",
                                 "tests/test_mutation_check.py"],
    # the rest of grading/: each its own test file first (the child's and the sandbox's code
    # called in the test's own process, the audit hook and rlimits captured, not installed).
    "symbptt/grading/limits.py": ["tests/test_mutation_limits.py", "tests/test_mutation_grade.py", "tests/test_check.py"],
    "symbptt/grading/wire.py": ["tests/test_mutation_wire.py", "tests/test_mutation_grade.py", "tests/test_check.py"],
    "symbptt/grading/notebook.py": ["tests/test_mutation_notebook.py", "tests/test_grade.py", "tests/test_check.py",
                                    "tests/test_mutation_check.py"],
    "symbptt/grading/gradebook.py": ["tests/test_mutation_gradebook.py", "tests/test_mutation_grade.py",
                                     "tests/test_grade.py"],
    "symbptt/grading/person.py": ["tests/test_mutation_person.py", "tests/test_check.py", "tests/test_mutation_check.py"],
    "symbptt/grading/child.py": ["tests/test_mutation_child.py", "tests/test_mutation_grade.py", "tests/test_check.py"],
    "symbptt/grading/sandbox.py": ["tests/test_mutation_sandbox.py", "tests/test_mutation_grade.py", "tests/test_check.py",
                                   "tests/test_grade.py"],
}

#: What a test run needs besides the package and the tests (mutmut copies tests/ itself).
ALSO_COPY = ["templates/", "derivations/", "generated/", "setup.py", "README.md", "docs/", "tools/",
             "benchmarks/", "examples/"]

_RESULT = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+): (?P<status>[\w ]+)$")


@dataclass
class Score:
    module: str
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    timeout: int = 0
    other: int = 0
    #: Set when only a sample ran: how many mutants the module has in all.
    population: int | None = None

    @property
    def counted(self) -> int:
        """The mutants the score counts: all but the equivalent ones."""
        return self.killed + self.survived + self.timeout + self.other

    @property
    def score(self) -> float:
        return self.killed / self.counted if self.counted else 1.0

    def row(self) -> str:
        score = f"{100 * self.score:.1f} %"
        if self.population is not None:
            sampled = self.counted + self.equivalent
            low, high = wilson(self.killed, self.counted)
            score = (f"{sampled} of {self.population} sampled, estimate {score} "
                     f"[{100 * low:.1f}–{100 * high:.1f}]")
        return (f"| {self.module} | {self.killed} | {self.survived} | {self.equivalent} | "
                f"{self.timeout} | {score} |")


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % for the default z) of a proportion seen in a sample."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


#: A mutant name that matches none: ``mutmut run`` with it generates the mutants, collects the
#: tests' coverage, then stops on "nothing matches".
_NO_MUTANT = "symbptt.no_such_mutant__mutmut_0"


def all_mutants(where: Path) -> list[str]:
    """Every mutant name of the module configured in the scratch copy ``where``, sorted."""
    subprocess.run(["mutmut", "run", "--max-children", "1", _NO_MUTANT], cwd=where,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    names = [name for meta in (where / "mutants").rglob("*.py.meta")
             for name in json.loads(meta.read_text())["exit_code_by_key"]]
    if not names:
        raise SystemExit(f"mutmut generated no mutants in {where}")
    return sorted(names)


def equivalents() -> dict[str, str]:
    """Mutant name → why it changes nothing observable (tools/mutation-equivalent.txt)."""
    out = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                out[name] = reason.strip()
    return out


def scratch_copy(module: str, tests: list[str]) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) in a new folder, with
    mutmut configured for ``module``."""
    where = Path(tempfile.mkdtemp(prefix="symbptt-mutation-"))
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    config = ["[mutmut]", "source_paths = symbptt/", f"only_mutate = {module}",
              "pytest_add_cli_args_test_selection =", *[f"    {t}" for t in tests],
              "pytest_add_cli_args =", "    -p", "    no:cacheprovider",
              # Each mutant's tests run in a child of a fork server that has only collected the
              # tests: with mutmut's default (fork from the process that ran the clean tests),
              # every functools.cache (the checker's mutated kernels, the reference kernels)
              # would hold the clean run's values, and mutants of cached functions never ran.
              "process_isolation = forkserver",
              # mutmut's default limit is 15 times the tests' own time (30 in CPU time): a
              # mutant that makes a kernel test 30 times slower then holds the run for most of
              # an hour. 5 times still leaves a loaded machine room; a timeout counts as not
              # killed in the score printed here.
              "timeout_multiplier = 5", "also_copy ="]
    config += [f"    {p}" for p in ALSO_COPY]
    (where / "setup.cfg").write_text("\n".join(config) + "\n")
    return where


def run_module(module: str, jobs: int, known: dict[str, str], sample: int | None = None,
               seed: int = 0) -> Score:
    """Mutate ``module`` (every mutant, or ``sample`` of them drawn with ``seed``) and score it."""
    tests = MODULES[module]
    where = scratch_copy(module, tests)
    print(f"== {module}: tests {' '.join(tests)} (in {where})", flush=True)
    chosen: list[str] = []
    population = None
    if sample is not None:
        names = all_mutants(where)
        population = len(names)
        chosen = sorted(random.Random(seed).sample(names, min(sample, population)))
        (where / "sample.txt").write_text("".join(f"{s}\n" for s in chosen))
        print(f"   sample of {len(chosen)} of {population} mutants (seed {seed}): {where / 'sample.txt'}",
              flush=True)
    run = subprocess.run(["mutmut", "run", "--max-children", str(jobs), *chosen], cwd=where,
                         stdout=subprocess.DEVNULL, check=False)
    if run.returncode != 0:
        raise SystemExit(f"mutmut failed on {module} (exit {run.returncode}); see its message above")
    listing = subprocess.run(["mutmut", "results", "--all", "true"], cwd=where,
                             capture_output=True, text=True, check=False).stdout
    score = Score(module, population=population)
    survivors = []
    for line in listing.splitlines():
        match = _RESULT.match(line)
        if not match or (chosen and match["name"] not in chosen):
            continue
        name, status = match["name"], match["status"].strip()
        if status == "killed":
            score.killed += 1
        elif status == "survived" and name in known:
            score.equivalent += 1
        elif status == "survived":
            score.survived += 1
            survivors.append(name)
        elif status == "timeout":
            score.timeout += 1
        else:
            score.other += 1
    (where / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors))
    print(score.row(), flush=True)
    return score


#: A row of the README's per-module table: module, number of mutants, latest figure ("first"
#: when it is a first run, not a fresh sample after the module's tests).
_TABLE_ROW = re.compile(r"^\| `(?P<module>[^`]+)` \| (?P<mutants>\d[\d ]*) \| (?P<first>first )?"
                        r"(?P<score>\d+(?:\.\d+)?) %")


@dataclass
class Overall:
    """The README table summed up: every module's figure weighted by its number of mutants."""

    modules: int
    mutants: int
    score: float
    under_80: list[str]
    first_only: list[str]

    def line(self) -> str:
        return (f"{self.modules} modules, {self.mutants} mutants: {self.score:.1f} % overall "
                f"(each module's figure weighted by its mutants); under 80 %: "
                f"{', '.join(self.under_80) or 'none'}; first runs only: {', '.join(self.first_only) or 'none'}")


def readme_overall(text: str) -> Overall:
    """The overall score of the README's mutation table (``text``: the README)."""
    rows = [(m["module"], int(m["mutants"].replace(" ", "")), float(m["score"]), bool(m["first"]))
            for m in map(_TABLE_ROW.match, text.splitlines()) if m]
    if not rows:
        raise SystemExit("the README has no mutation table rows (| `module` | mutants | score % | …)")
    mutants = sum(n for _, n, _, _ in rows)
    return Overall(len(rows), mutants, sum(n * score for _, n, score, _ in rows) / mutants,
                   [module for module, _, score, _ in rows if score < 80],
                   [module for module, _, _, first in rows if first])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: every one in MODULES)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="run only N mutants of each module, drawn at random; the score is an estimate")
    parser.add_argument("--seed", type=int, default=0, help="the random draw of --sample (default 0)")
    parser.add_argument("--overall", action="store_true",
                        help="print the overall score of the README's table and stop")
    args = parser.parse_args(argv)
    if args.overall:
        print(readme_overall((ROOT / "README.md").read_text(encoding="utf-8")).line())
        return 0
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not in MODULES: {', '.join(unknown)} (see --list)")
    if shutil.which("mutmut") is None:
        parser.error("mutmut is not installed: pip install mutmut==3.8.1")
    # mutmut forks after torch (the oracle) has started its OpenMP threads; with more than one
    # such thread a forked mutant's test can hang until mutmut's timeout.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    known = equivalents()
    scores = [run_module(m, args.jobs, known, args.sample, args.seed) for m in (args.modules or list(MODULES))]
    print("\n| module | killed | survived | equivalent | timed out | score |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in scores:
        print(s.row())
    total = Score("all", *(sum(getattr(s, f) for s in scores)
                           for f in ("killed", "survived", "equivalent", "timeout", "other")))
    if args.sample is not None:  # a pooled estimate: each module weighs by its sample, not its size
        total.population = sum(s.population or 0 for s in scores)
    print(total.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
