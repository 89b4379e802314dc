"""``symbptt grade SUBMISSIONS/ --cell gru [--rubric FILE]``: a whole class, one gradebook.

Each entry of the folder is one student: a ``.py`` or ``.ipynb`` file, or a folder holding one
(a notebook gives both code and derivation; beside a ``.py`` the derivation is a ``.tex``,
``.md`` or ``.txt`` file with one ``target = latex`` a line). Students are graded in parallel,
one worker process per core, each student's code in its own limited child process
(:mod:`.sandbox`); a progress line is printed as each finishes, and students not done when the
total time limit is reached get zero with that reason. A broken or hostile submission gets zero
for what it breaks and its message, and never stops the run. Writes ``gradebook.csv`` and
``feedback/<student>.md`` in the output folder.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

from .gradebook import Grade, code_points, derivation_points, feedback_markdown, read_rubric, write_gradebook

CODE = (".ipynb", ".py")
DERIVATION = (".tex", ".md", ".txt")


@dataclass(frozen=True)
class Submission:
    """One student's files: the code (``.py``/``.ipynb``) and the derivation, either may be None."""

    student: str
    code: Path | None
    derivation: Path | None


def discover(folder: Path) -> list[Submission]:
    """Every student in ``folder``: a code file directly in it, or a sub-folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of submissions")
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix in CODE:
            out.append(Submission(entry.stem, entry, entry if entry.suffix == ".ipynb" else None))
        elif entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file())
            code = next((p for suffix in CODE for p in files if p.suffix == suffix), None)
            derivation = code if code is not None and code.suffix == ".ipynb" else next(
                (p for p in files if p.suffix in DERIVATION), None)
            out.append(Submission(entry.name, code, derivation))
    return out


def _expected(cell: str) -> dict[str, dict[str, list[str]]]:
    """The notebook functions of each code part and the items each must get right."""
    from .. import check

    kernel = check._kernel(cell)
    problem = check.make_problem(kernel, 1, 1, 0)
    parts: dict[str, dict[str, list[str]]] = {"forward": {}, "backward": {}}
    for spec in check.specs_for(kernel):
        if spec.kind.startswith("generic"):
            continue
        items = list(check.reference_outputs(kernel, spec, problem))
        parts["backward" if spec.backward else "forward"][spec.name] = items
    return parts


def _required(cell: str) -> list[str]:
    """The adjoints a hand derivation must give: all but those of printing-only intermediates."""
    from ..derive import derive
    from ..proof import resolve_cell

    derivation = derive(resolve_cell(cell))
    declared = {eq.name for eq in derivation.cell.equations}
    printed = {eq.name for eq in derivation.forward if eq.name not in declared and not eq.name.startswith("a_")}
    names = [a.symbol.name for a in derivation.backward + derivation.parameters]
    return [n for n in names if n[1:] not in printed]


def _code_part(submission: Submission, cell: str, timeout: float, rubric: dict, grade: Grade) -> tuple[str, list]:
    from .. import check

    if submission.code is None:
        grade.points.update(forward=0.0, backward=0.0)
        grade.reasons.update(forward="no .py or .ipynb file", backward="no .py or .ipynb file")
        return "", []
    try:
        report = check.check_module(submission.code, cell, timeout)
    except Exception as error:  # noqa: BLE001 - one broken submission never stops the class
        why = f"{type(error).__name__}: {str(error)[:300]}"
        grade.points.update(forward=0.0, backward=0.0)
        grade.reasons.update(forward=why, backward=why)
        return "", []
    scored = code_points(report.verdicts, _expected(cell), rubric)
    grade.points.update(scored.points)
    grade.reasons.update(scored.reasons)
    return report.table(), [report.printed] if report.printed else []


def _derivation_part(submission: Submission, cell: str, rubric: dict, grade: Grade) -> tuple[list[str], list[str]]:
    from .. import handcheck

    if submission.derivation is None:
        grade.points["derivation"], grade.reasons["derivation"] = 0.0, "no derivation found"
        return [], []
    try:
        results, notes = handcheck.check_file(cell, submission.derivation, seconds=10.0)
    except Exception as error:  # noqa: BLE001 - one broken submission never stops the class
        grade.points["derivation"] = 0.0
        grade.reasons["derivation"] = f"{type(error).__name__}: {str(error)[:300]}"
        return [], []
    points, why = derivation_points(results, _required(cell), rubric)
    grade.points["derivation"] = points
    if why:
        grade.reasons["derivation"] = why
    return [r.report() for r in results], notes


def grade_one(submission: Submission, cell: str, rubric: dict[str, float], timeout: float) -> Grade:
    """One student's grade and feedback (run in a worker process)."""
    start = time.monotonic()
    grade = Grade(submission.student)
    table, printed = _code_part(submission, cell, timeout, rubric, grade)
    derivation, notes = _derivation_part(submission, cell, rubric, grade)
    grade.points = {part: grade.points.get(part, 0.0) for part in rubric}
    grade.feedback = feedback_markdown(grade, rubric, table, derivation, notes, "\n".join(printed))
    grade.seconds = time.monotonic() - start
    return grade


def _unfinished(submission: Submission, rubric: dict[str, float], why: str) -> Grade:
    grade = Grade(submission.student, {part: 0.0 for part in rubric}, {"all": why})
    grade.feedback = feedback_markdown(grade, rubric, "", [], [why], "")
    return grade


def _progress(done: int, total: int, grade: Grade, start: float) -> None:
    width = 30
    bar = "#" * (width * done // total) + "." * (width - width * done // total)
    print(f"[{bar}] {done}/{total}  {grade.student}: {grade.total:g}  ({time.monotonic() - start:.0f} s)",
          file=sys.stderr, flush=True)


def grade_folder(folder: str | Path, cell: str, output: str | Path, rubric_path: str | Path | None = None,
                 timeout: float = 10.0, total_seconds: float = 1800.0, workers: int | None = None) -> list[Grade]:
    """Grade every submission of ``folder``; write the gradebook and the feedback files."""
    from .. import check

    rubric = read_rubric(rubric_path)
    check._kernel(cell)  # an unknown cell is the grader's mistake: one line, before any work
    submissions = discover(Path(folder))
    output = Path(output)
    (output / "feedback").mkdir(parents=True, exist_ok=True)
    grades: dict[str, Grade] = {}
    start = time.monotonic()
    if not workers:
        workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        pending = {pool.submit(grade_one, s, cell, rubric, timeout): s for s in submissions}
        while pending:
            left = total_seconds - (time.monotonic() - start)
            done, _ = futures.wait(pending, timeout=max(left, 0), return_when=futures.FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                submission = pending.pop(future)
                try:
                    grade = future.result()
                except Exception as error:  # noqa: BLE001 - a worker that died is this student's zero
                    grade = _unfinished(submission, rubric, f"grading failed: {type(error).__name__}: {error}")
                grades[submission.student] = grade
                _progress(len(grades), len(submissions), grade, start)
        for submission in pending.values():
            grades[submission.student] = _unfinished(
                submission, rubric, f"not graded: the total time limit of {total_seconds:g} s was reached")
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive() and pending:
                process.kill()
        pool.shutdown(wait=not pending, cancel_futures=True)
    ordered = [grades[s.student] for s in submissions]
    write_gradebook(ordered, output / "gradebook.csv", rubric)
    for grade in ordered:
        (output / "feedback" / f"{grade.student}.md").write_text(grade.feedback, encoding="utf-8")
    return ordered


def main(folder: str, cell: str, output: str | None = None, rubric: str | None = None, timeout: float = 10.0,
         total_seconds: float = 1800.0, workers: int | None = None) -> int:
    """Print where the gradebook went and the class summary; 0 when every student was graded."""
    output = output or str(Path(folder).resolve().parent / f"{Path(folder).resolve().name}-graded")
    grades = grade_folder(folder, cell, output, rubric, timeout, total_seconds, workers)
    unfinished = sum("all" in g.reasons for g in grades)
    print(f"graded {len(grades) - unfinished} of {len(grades)} submissions; wrote {Path(output) / 'gradebook.csv'} "
          f"and {len(grades)} feedback files in {Path(output) / 'feedback'}")
    return 1 if unfinished else 0
