"""Points from verdicts, following a rubric; the gradebook (CSV) and one feedback file a student.

The rubric's parts are the course notebook's: ``forward`` (the two forward functions),
``backward`` (the two backward functions) and ``derivation`` (the hand derivation); its default
gives them 20, 30 and 50 points. A function earns its share of its part by the fraction of its
outputs or gradient keys that are ok, and nothing when a call of it raised, hung, crashed or
returned the wrong thing; the derivation earns its part by the fraction of the required adjoints
with an equivalent line. A part a submission breaks gets zero, with the reason.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

#: The course notebook's rubric: forward 20, backward 30, derivation 50.
DEFAULT_RUBRIC: dict[str, float] = {"forward": 20.0, "backward": 30.0, "derivation": 50.0}
#: Statuses of a call that take a function's whole share.
FATAL = ("raised", "hung", "crashed", "out of memory", "wrong return", "missing function", "not checked",
         "changed input")


class RubricError(ValueError):
    """A rubric file that cannot be used; names the file and the key."""


def read_rubric(path: str | Path | None) -> dict[str, float]:
    """The rubric: a JSON object or ``part = points`` lines (``#`` comments); default when None."""
    if path is None:
        return dict(DEFAULT_RUBRIC)
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise RubricError(f"{path}: not JSON ({error})") from None
        if not isinstance(raw, dict):
            raise RubricError(f"{path}: expected an object such as {json.dumps(DEFAULT_RUBRIC)}")
    else:
        raw = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line and ":" not in line:
                raise RubricError(f"{path}:{number}: expected 'part = points', got {line!r}")
            key, value = (part.strip().strip('"') for part in line.replace(":", "=", 1).split("=", 1))
            raw[key] = value
    rubric = {}
    for key, value in raw.items():
        if key not in DEFAULT_RUBRIC:
            raise RubricError(f"{path}: unknown part {key!r} (parts: {', '.join(DEFAULT_RUBRIC)})")
        try:
            rubric[key] = float(value)
        except (TypeError, ValueError):
            raise RubricError(f"{path}: {key} = {value!r} is not a number of points") from None
        if rubric[key] < 0:
            raise RubricError(f"{path}: {key} = {value} is negative")
    return {key: rubric.get(key, 0.0) for key in DEFAULT_RUBRIC}


@dataclass
class Grade:
    """One student's points per part, the reasons for what was lost, and the feedback text."""

    student: str
    points: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    feedback: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(self.points.values()), 2)


def function_share(verdicts: list, function: str, expected: list[str]) -> tuple[float, str]:
    """(fraction earned, why not all) of one function from its verdicts (check.Verdict objects)."""
    mine = [v for v in verdicts if v.function in (function, "(module)")]
    fatal = [v for v in mine if v.status in FATAL and (v.item.startswith("(") or v.function == "(module)")]
    if fatal:
        return 0.0, f"{function}: {fatal[0].status}"
    ok = {v.item for v in mine if v.status == "ok"}
    bad = {v.item for v in mine if not v.ok and not v.item.startswith("(")}
    earned = [item for item in expected if item in ok and item not in bad]
    if not expected:
        return 0.0, f"{function}: nothing to compare"
    why = "" if len(earned) == len(expected) else (
        f"{function}: {len(expected) - len(earned)} of {len(expected)} wrong or missing")
    return len(earned) / len(expected), why


def code_points(verdicts: list, parts: dict[str, dict[str, list[str]]], rubric: dict[str, float]) -> Grade:
    """Points of the code parts: ``parts`` maps forward/backward to {function: expected items}."""
    grade = Grade("")
    for part, functions in parts.items():
        shares = [function_share(verdicts, name, items) for name, items in functions.items()]
        fraction = sum(s for s, _ in shares) / len(shares) if shares else 0.0
        grade.points[part] = round(rubric[part] * fraction, 2)
        reasons = [why for _, why in shares if why]
        if reasons:
            grade.reasons[part] = "; ".join(reasons)
    return grade


def derivation_points(results: list, required: list[str], rubric: dict[str, float]) -> tuple[float, str]:
    """(points, why not all) from handcheck's results: the required adjoints with an equivalent line."""
    right = {r.target for r in results if r.equivalent}
    earned = [name for name in required if name in right]
    missing = [name for name in required if name not in right]
    why = f"no equivalent line for {', '.join(missing)}" if missing else ""
    return round(rubric["derivation"] * len(earned) / max(len(required), 1), 2), why


def write_gradebook(grades: list[Grade], path: Path, rubric: dict[str, float]) -> None:
    """The CSV: one row per student, points per part, total, and what was lost."""
    parts = list(rubric)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *[f"{p} ({rubric[p]:g})" for p in parts], f"total ({sum(rubric.values()):g})",
                         "notes"])
        for grade in sorted(grades, key=lambda g: g.student):
            notes = " | ".join(f"{part}: {why}" for part, why in grade.reasons.items())
            writer.writerow([grade.student, *[f"{grade.points.get(p, 0.0):g}" for p in parts], f"{grade.total:g}",
                             notes])


def feedback_markdown(grade: Grade, rubric: dict[str, float], table: str, derivation: list[str],
                      notes: list[str], printed: str) -> str:
    """One student's feedback: points, the verdict table, the derivation's verdicts, notes."""
    lines = [f"# Feedback: {grade.student}", "", "| part | points | of |", "| --- | --- | --- |"]
    lines += [f"| {part} | {grade.points.get(part, 0.0):g} | {rubric[part]:g} |" for part in rubric]
    lines += [f"| **total** | **{grade.total:g}** | {sum(rubric.values()):g} |", ""]
    if grade.reasons:
        lines += ["## What lost points", ""] + [f"- **{part}**: {why}" for part, why in grade.reasons.items()] + [""]
    lines += ["## Code: the verdict table", "", "```", table.strip() or "(no code checked)", "```", ""]
    lines += ["## Derivation", "", "```", "\n".join(derivation).strip() or "(no derivation found)", "```", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    if printed.strip():
        lines += ["## What the code printed (captured)", "", "```", printed.strip()[:3000], "```", ""]
    return "\n".join(lines)
