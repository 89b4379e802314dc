"""Every displayed equation of a report, read back and checked against the derivation.

A report is only as good as its printed lines: a dropped ``+`` or a wrong sign there is a
wrong equation for a reader, even when the kernel is right. This module reads the .tex a
report produced (not the data it was built from), splits every ``align`` into equations and
sides, parses each side with the project's hand-derivation parser
(:func:`symbptt.handcheck.check_one`) and compares it with what the derivation computes:

* a side of an adjoint (``δz_t = …``, ``∂L/∂W_z = Σ_t …``) with the derived adjoint, exactly
  (symbolically) and numerically;
* a side of a forward value (``z_t = σ(a_{z,t})``) with the forward equation, numerically;
* a chain-rule factor ``(∂v/∂u)ᵀ δv`` is replaced by the terms the derivation has for that
  use after checking that ``δv`` is v's adjoint, and ``f'(u)`` by the derivative the
  operation declares, so a missing factor, a missing sign or a wrong δ fails too;
* the recursion one step later (``δ^{(t+1)}h_t = …``) is moved back by one step first.

Lines that are not equations between matrices of the step (the scalar loss, the definition
of ε, the entry-wise derivations of σ′ and softmax) are returned as *skipped*, with their
reason, so a test can insist that nothing else is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .derive import Derivation
from .handcheck import (
    CHECK_SIZES,
    HandParseError,
    Parser,
    Resolver,
    check_one,
    parse_latex,
    step_values,
)
from .handcheck import _symbols as handcheck_symbols
from .notation import Notation, latex_printer
from .proof import Evaluator, NumpyBackend, concrete, dimension_values

#: Label prefixes of displayed lines that are not matrix equations of one step.
NOT_STEP_EQUATIONS = {
    "loss": "the scalar loss",
    "cut": "definition of what truncation keeps",
    "calc": "scalar derivative, entry by entry",
    "soft": "softmax Jacobian, entry by entry",
    "ent": "weight gradient, entry by entry",
    "eps": "definition of the gradient arriving from outside the step",
    "ce": "cross-entropy's own gradient",
    "var": "the other reset-gate placement (another cell's derivation)",
    "blk": "blocks of a weight, named for print",
}


@dataclass(frozen=True)
class Side:
    """One side of one displayed equation: ``lhs = rhs`` as printed, and where it is."""

    lhs: str
    rhs: str
    label: str


@dataclass
class Verdict:
    """What :func:`check_report` found: checked sides, failures and skipped sides."""

    checked: list[Side] = field(default_factory=list)
    failures: list[tuple[Side, str]] = field(default_factory=list)
    skipped: list[tuple[Side, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Reading the .tex
# --------------------------------------------------------------------------------------

_DISPLAY = re.compile(r"\\begin\{(align|keptalign)\}(.*?)\\end\{\1\}", re.DOTALL)
_LABEL = re.compile(r"\\label\{([^}]*)\}")


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` where it is outside every brace group."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _clean(row: str) -> tuple[str, str]:
    """A row without its note (``&& …``), ``\\nonumber`` and label; returns (row, label)."""
    label = _LABEL.search(row)
    row = _LABEL.sub("", row).replace(r"\nonumber", "")
    row = _top_level_split(row, "&&")[0]
    return row.strip(), label.group(1) if label else ""


def displayed_sides(tex: str) -> list[Side]:
    """Every side of every displayed equation, in the order the report prints them.

    A row ``lhs &= a`` starts an equation, ``&= b`` adds a side to it, ``&\\quad + c``
    continues the side before; ``a = b`` inside one side gives two sides.
    """
    out: list[Side] = []
    for _env, body in _DISPLAY.findall(tex):
        equations: list[list] = []  # [lhs, [sides], label]
        for raw in re.split(r"\\\\\s*\n", body):
            row, label = _clean(raw)
            if not row:
                continue
            if row.startswith(r"&\quad"):
                equations[-1][1][-1] += " " + row[len(r"&\quad"):]
            else:
                lhs, _, rhs = row.partition("&=")
                if lhs.strip() or not equations:
                    equations.append([lhs.strip(), [], ""])
                equations[-1][1].append(rhs)
            if label:
                equations[-1][2] = label
        for lhs, sides, label in equations:
            for side in sides:
                out += [Side(lhs, part.strip(), label) for part in _top_level_split(side, " = ")]
    return out


# --------------------------------------------------------------------------------------
# From the report's notation to the parser's subset
# --------------------------------------------------------------------------------------

_TIME = re.compile(r"(?<=[{,])t(?:([+-])(\d+))?(?=})")


def unshift(text: str) -> str:
    """Every time index moved back by one step: ``h_{t}`` → ``h_{t-1}``, ``δ^{(t+1)}`` → ``δ^{(t)}``."""
    def back(match: re.Match) -> str:
        k = (int(match.group(2)) if match.group(2) else 0) * (-1 if match.group(1) == "-" else 1) - 1
        return "t" if k == 0 else f"t+{k}" if k > 0 else f"t{k}"

    text = re.sub(r"\^\{\(t\+1\)\}", "^{(t)}", text)
    return _TIME.sub(back, text)


def _balanced(text: str, start: int) -> int:
    """Index just past the brace group opening at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise HandParseError(f"unbalanced braces in {text!r}")


def _operand(text: str, start: int) -> int:
    """Index just past the name (``\\delta^{(t)} \\mathbf{h}_{t-1}``, ``\\hat{…}_{t}``) at ``start``."""
    while text.startswith(" ", start):
        start += 1
    match = re.compile(r"\\delta(?:\^\{[^{}]*\})?\s*").match(text, start)
    i = match.end() if match else start
    if text.startswith(r"\left", i):  # an operand printed as its definition: \left( … \right)
        return _closing(text, i + len(r"\left") + 1)
    while text.startswith((r"\hat", r"\tilde", r"\bar", r"\mathbf", r"\boldsymbol", r"\mathrm"), i):
        i = text.index("{", i)
        i = _balanced(text, i)
    if text.startswith("_", i):
        i = _balanced(text, i + 1) if text.startswith("{", i + 1) else i + 2
    return i


def _closing(text: str, i: int) -> int:
    """Index just past the ``\right`` delimiter matching the ``\\left`` opened before ``i``."""
    depth = 1
    while depth:
        if i >= len(text):
            raise HandParseError(f"unbalanced \\left/\\right in {text!r}")
        if text.startswith(r"\left", i):
            depth, i = depth + 1, i + 5
        elif text.startswith(r"\right", i):
            depth, i = depth - 1, i + 6
        else:
            i += 1
    return i + 1


_JACOBIAN = r"\left(\frac{\partial "


def printed_aliases(derivation: Derivation) -> dict[str, str]:
    r"""What the parser reads a name given with ``cell.print_as`` as → the derivation's name.

    ``\mathbf{u}_{t}`` reads as ``u``, which is ``h_prev_xt`` in the derivation (and ``du``
    is ``dh_prev_xt``).
    """
    notation = Notation(derivation)
    out = {}
    for eq in derivation.forward:
        printed = notation.printed_name(eq.name)
        if printed is None:
            continue
        parser = Parser(rf"\delta {printed[0]}_{{t}}", Resolver({}))
        read = parser.name().candidates()[0]
        out[read] = f"d{eq.name}"
        out[read[1:]] = eq.name
    return out


class Reader:
    """Turns printed sides into the parser's subset and checks them for one derivation."""

    def __init__(self, derivation: Derivation):
        self.d = derivation
        self.symbols = handcheck_symbols(derivation)
        self.aliases = {f"eps_{s}": sym.name for s, sym in derivation.incoming.items()}
        self.aliases.update(printed_aliases(derivation))
        self.printer = latex_printer(derivation)
        self.functions = {op.latex_name: op for op in ops.FUNCTIONS.values() if op.latex_name}
        #: Introduced operands without a printed name print as their definition
        #: (``\left(\tanh\left(c_t\right)\right)``); their adjoints get a readable alias.
        self.definitions = {self.printer.symbol_latex(e.name): e.name for e in derivation.forward
                            if e.auto and not e.name.startswith("a_")}
        for k, name in enumerate(self.definitions.values()):
            self.aliases[f"aux{k}"] = name
            self.aliases[f"daux{k}"] = f"d{name}"
        self._read_back_printed_names(derivation)
        self.resolve = Resolver(self.symbols, self.aliases, derivation.cell.dimensions)

    def _read_back_printed_names(self, derivation: Derivation) -> None:
        r"""An auto-named value reads back as it prints: ``a_tanh_h`` prints as
        ``\mathbf{a}_{tanhh,t}``, which the parser reads as ``a_tanhh``; that reading (and
        its δ) is made an alias of the derivation's name, unless it already means something."""
        known = set(self.symbols) | set(self.aliases)
        for e in derivation.forward:
            printed = self.printer.symbol_latex(e.name)
            if printed in self.definitions:
                continue
            read = Parser(rf"\delta {printed}", Resolver({})).name().candidates()[0]
            if read not in known and read[1:] not in known:
                self.aliases[read], self.aliases[read[1:]] = f"d{e.name}", e.name

    def name_of(self, text: str) -> str:
        """The derivation's name of a printed name (``\\mathbf{z}_{t}`` → ``z``)."""
        if text.strip() in self.definitions:
            return self.definitions[text.strip()]
        expr = parse_latex(self.plain(text), self.resolve)
        if not hasattr(expr, "name"):
            raise HandParseError(f"{text!r} is not one name")
        return expr.name

    def plain(self, text: str) -> str:
        """Spacing, sums over time and the report's own symbols in the parser's subset."""
        text = text.replace(r"\sum\nolimits_{t=1}^{T}", "").replace(r"\Big(", "(")
        text = text.replace(r"\Big)", ")").replace(r"\!", "")
        text = re.sub(r"n_\{(\w+)\}", r"n_\1", text)  # sizes in row ranges: n_{h} + 1
        for k, printed in enumerate(self.definitions):
            text = text.replace(rf"\delta {printed}", rf"\delta \mathrm{{aux}}_{{{k}}}")
        return re.sub(r"\\boldsymbol\{\\varepsilon\}_\{([^{},]*),", r"\\mathrm{eps}_{\1,", text)

    # -- chain-rule factors ---------------------------------------------------------------

    def adjoint_of(self, name: str) -> str:
        """The name of a value's adjoint: ``dz``, or the incoming ``dy`` of a readout."""
        for a in self.d.backward:
            if a.target == name:
                return a.symbol.name
        return self.d.incoming[name].name

    def jacobian(self, text: str, start: int) -> tuple[str, int]:
        """``(∂v/∂u)ᵀ δv`` at ``start`` as the printed terms the derivation has for that use."""
        num_start = start + len(r"\left(\frac")
        num_end = _balanced(text, num_start)
        den_end = _balanced(text, num_end)
        v_text = text[num_start + len(r"{\partial "):num_end - 1]
        u_text = text[num_end + len(r"{\partial "):den_end - 1]
        tail = r"\right)^{\top}"
        if not text.startswith(tail, den_end):
            raise HandParseError(f"expected {tail} after the Jacobian in {text!r}")
        op_start = den_end + len(tail)
        op_end = _operand(text, op_start)
        v, u = self.name_of(v_text), self.name_of(u_text)
        delta = self.name_of(text[op_start:op_end])
        if delta != self.adjoint_of(v):
            raise HandParseError(f"(∂{v}/∂{u})ᵀ multiplies δ{delta[1:]}, not δ{v}")
        terms = [t.expr for a in self.d.backward if a.target == u for t in a.terms if t.via == v]
        if not terms:
            raise HandParseError(f"{u} is not used by {v}, yet the chain rule has (∂{v}/∂{u})ᵀ")
        return rf"\left({self.printer.doprint(ops.add(*terms))}\right)", op_end

    def derivative(self, text: str, start: int, name: str) -> tuple[str, int]:
        r"""``f'\left(u\right)`` at ``start`` as the derivative the operation declares."""
        arg_start = start + len(name) + len(r"'\left(")
        end = _closing(text, arg_start)
        u = self.symbols[self.name_of(text[arg_start:end - 7])]
        node = self.functions[name](u)
        return rf"\left({self.printer.doprint(node.derivative(node))}\right)", end

    def expand(self, text: str) -> str:
        """Jacobian factors and f′ replaced by what they stand for."""
        out, i = [], 0
        primes = {rf"{n}'\left(": n for n in self.functions}
        while i < len(text):
            if text.startswith(_JACOBIAN, i):
                piece, i = self.jacobian(text, i)
                out.append(piece)
                continue
            prime = next((n for p, n in primes.items() if text.startswith(p, i)), None)
            if prime is not None:
                piece, i = self.derivative(text, i, prime)
                out.append(piece)
                continue
            out.append(text[i])
            i += 1
        return "".join(out)

    # -- checks ----------------------------------------------------------------------------

    def check(self, side: Side) -> str:
        """"" when the side equals the derivation, else why not."""
        lhs, rhs = side.lhs, side.rhs
        if side.label.startswith("eq:rec:"):
            lhs, rhs = unshift(lhs), unshift(rhs)
        lhs = re.sub(r"^\\partial L / \\partial (.*)$", r"\\frac{\\partial L}{\\partial \1}", lhs)
        try:
            rhs = self.plain(self.expand(self.plain(rhs)))
            lhs = self.plain(lhs)
            if lhs.startswith((r"\delta", r"\frac{\partial L}")):
                result = check_one(self.d, lhs, rhs, self.aliases)
                return "" if result.equivalent else result.report()
            return self.forward(lhs, rhs)
        except (HandParseError, KeyError, ValueError, TypeError) as err:
            return f"cannot read: {err}"

    def forward(self, lhs: str, rhs: str) -> str:
        """A forward equation's side, compared numerically with the cell's equation."""
        name = self.name_of(lhs)
        cell = self.d.cell
        broadcast = {s.name: ops.Broadcast(self.symbols[s.name]) for s in cell.by_role("bias", "vector")}
        given = parse_latex(rhs, Resolver({**self.symbols, **broadcast}, self.aliases, cell.dimensions))
        dims = dimension_values(cell, CHECK_SIZES)
        rng = np.random.default_rng(0)
        shapes = {s.name: s.shape for s in cell.by_role("weight", "bias", "vector", "state", "input")}
        shapes.update({sym.name: sym.shape for sym in self.d.incoming.values()})
        free = {n: rng.uniform(-1, 1, (concrete(r, dims), concrete(c, dims))) for n, (r, c) in shapes.items()}
        env = step_values(self.d, free, NumpyBackend(), dims)
        mine = Evaluator(NumpyBackend(), dims, env)(given)
        error = float(np.max(np.abs(mine - env[name])))
        return "" if error < 1e-9 else f"{lhs} = {rhs}: differs from the forward equation by {error:.2e}"


def _skip_reason(side: Side) -> str:
    """Why a side is not an equation between matrices of the step ("" when it is one)."""
    kind = side.label.split(":")[1] if side.label.count(":") >= 2 else ""
    if kind in NOT_STEP_EQUATIONS:
        return NOT_STEP_EQUATIONS[kind]
    if side.lhs.startswith(r"\boldsymbol{\varepsilon}") and r"\mathbf{g}" in side.rhs:
        return NOT_STEP_EQUATIONS["eps"]
    if re.fullmatch(r"\\boldsymbol\{\\varepsilon\}_\{[^{}]*\}", side.rhs):  # δh_t = ε_{h,t}
        return NOT_STEP_EQUATIONS["eps"]
    return ""


def check_report(derivation: Derivation, tex: str) -> Verdict:
    """Every displayed side of ``tex`` checked against ``derivation`` (see the module doc)."""
    reader = Reader(derivation.inlined())  # as the report prints it: no shared_k
    verdict = Verdict()
    for side in displayed_sides(tex):
        reason = _skip_reason(side)
        if reason:
            verdict.skipped.append((side, reason))
            continue
        problem = reader.check(side)
        if problem:
            verdict.failures.append((side, problem))
        else:
            verdict.checked.append(side)
    return verdict


__all__ = ["NOT_STEP_EQUATIONS", "Side", "Verdict", "check_report", "displayed_sides", "unshift"]
