"""A textbook's notation for a cell's symbols: bold matrices, time subscripts, δ for adjoints.

``Wz`` → **W**_z, ``h_prev`` → **h**_{t−1}, ``xt`` → **x**_t, ``h_tilde`` → h̃_t,
``a_z`` → **a**_{z,t}, ``dz`` → δ**z**_t, ``dWz`` → ∂L/∂**W**_z, and ``dh_prev`` →
δ^{(t)}**h**_{t−1}: only the part of ∂L/∂**h**_{t−1} that flows back through step t (the
total also holds the loss at step t−1), so it gets its own symbol. A symbol declared with
``latex=`` keeps its own base. Named stacks and products the derivation introduced print as
their definition (``[h_{t−1}; x_t]``), so the reader never meets a made-up name.
"""

from __future__ import annotations

import re
import unicodedata

from sympy import HadamardProduct, MatAdd, MatrixSymbol

from .printers import TextbookLatexPrinter

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}

#: Symbols a text may carry (σ is handled with the Greek letters), as math commands.
_MATH_SYMBOLS = {"⊙": r"\odot", "⊕": r"\oplus", "⊗": r"\otimes", "×": r"\times", "·": r"\cdot",
                 "−": "-", "≤": r"\leq", "≥": r"\geq", "≠": r"\neq", "≈": r"\approx",
                 "→": r"\rightarrow", "←": r"\leftarrow", "↦": r"\mapsto", "∂": r"\partial",
                 "∑": r"\sum", "∏": r"\prod", "√": r"\surd", "∞": r"\infty", "∈": r"\in",
                 "∇": r"\nabla", "±": r"\pm", "′": r"\prime", "∘": r"\circ", "•": r"\bullet",
                 "⊤": r"\top", "÷": r"\div", "°": r"^{\circ}", "µ": r"\mu", "ℓ": r"\ell"}

#: Typographic text characters, as LaTeX text.
_TEXT_SYMBOLS = {"…": r"\dots{}", "—": "---", "–": "--", "“": "``", "”": "''", "‘": "`", "’": "'",
                 "«": r"\guillemetleft{}", "»": r"\guillemetright{}", "\u00a0": "~",
                 "¿": r"?`", "¡": r"!`"}

#: Combining accents (after Unicode decomposition) and the LaTeX accent command of each.
_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0303": "~", "\u0308": '"',
            "\u0304": "=", "\u0307": ".", "\u030c": "v", "\u0306": "u", "\u0327": "c",
            "\u030a": "r", "\u030b": "H", "\u0328": "k"}

#: Greek capitals that LaTeX has as commands (the others look like Latin capitals).
_GREEK_CAPITALS = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi",
                   "Psi", "Omega"}


def _greek(ch: str) -> str | None:
    """A Greek letter as a math command (σ → ``\\sigma``, ς → ``\\varsigma``), else None."""
    name = unicodedata.name(ch, "")
    match = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z]+)", name)
    if not match:
        return None
    word = match.group(2).capitalize()
    if word == "Final":
        return None
    if match.group(1) == "SMALL":
        return {"Omicron": "o", "Lamda": r"\lambda"}.get(word, "\\" + word.lower())
    word = "Lambda" if word == "Lamda" else word
    if word in _GREEK_CAPITALS:
        return "\\" + word
    return _GREEK_LOOKALIKES.get(word, word[0])


#: Greek capitals LaTeX sets as the Latin capital they look like.
_GREEK_LOOKALIKES = {"Alpha": "A", "Beta": "B", "Epsilon": "E", "Zeta": "Z", "Eta": "H",
                     "Iota": "I", "Kappa": "K", "Mu": "M", "Nu": "N", "Omicron": "O", "Rho": "P",
                     "Tau": "T", "Chi": "X"}


def _math_char(ch: str) -> str | None:
    """A character that only math mode can set, as a math command (or None)."""
    if ch == "ς":
        return r"\varsigma"
    return _greek(ch) or _MATH_SYMBOLS.get(ch)


def _accented(ch: str) -> str | None:
    """A letter with accents as accent commands on an ASCII base (ŷ → ``\\^{y}``), or None."""
    parts = unicodedata.normalize("NFD", ch)
    base, marks = parts[0], parts[1:]
    if not marks or not base.isascii() or any(m not in _ACCENTS for m in marks):
        return None
    out = "\\i" if base == "i" else "\\j" if base == "j" else base
    for mark in marks:
        out = f"\\{_ACCENTS[mark]}{{{out}}}"
    return out


def _tex_char(ch: str) -> str:
    """One character of prose as LaTeX that pdfLaTeX (T1, UTF-8) always accepts."""
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    if ch.isascii():
        return " " if unicodedata.category(ch) == "Cc" else ch
    if ch in _TEXT_SYMBOLS:
        return _TEXT_SYMBOLS[ch]
    math = _math_char(ch)
    if math is not None:
        return rf"\ensuremath{{{math}}}"
    if "\u00c0" <= ch <= "\u00ff" and ch.isalpha():
        return ch  # Latin-1 letters: set by LaTeX's UTF-8 input with T1 fonts (hyphenated)
    accented = _accented(ch)
    if accented is not None:
        return accented
    if unicodedata.category(ch)[0] in "CZ":
        return " "  # line and paragraph separators, other control and format characters
    return rf"\texttt{{[U+{ord(ch):04X}]}}"


def escape_tex(text: str) -> str:
    """Text safe inside LaTeX prose, whatever it holds (``h_prev`` → ``h\\_prev``).

    LaTeX's specials are escaped; a newline or tab becomes a space; Greek letters and math
    symbols (σ, ⊙, ≤, …) are set in math; accented letters outside Latin-1 (ŷ) become
    accent commands; any other character is written as its code point, so no text of a
    cell (description, meaning, name) can stop a report's PDF (issue 12).
    """
    text = unicodedata.normalize("NFC", str(text))
    return "".join(_tex_char(ch) for ch in text)


def escape_math(text: str) -> str:
    """A name inside math mode: ASCII as is, σ as ``\\sigma``, anything else as text."""
    out = []
    for ch in unicodedata.normalize("NFC", str(text)):
        if ch.isascii() and (ch.isalnum() or ch in ",'"):
            out.append(ch)
        else:
            math = _math_char(ch)
            out.append(math + " " if math is not None and math.startswith("\\")
                       else rf"\text{{{escape_tex(ch)}}}" if math is None else math)
    return "".join(out).rstrip()


def _base(name: str) -> tuple[str, str]:
    """Split ``h_tilde`` → (``\\tilde{\\mathbf{h}}``, ""), ``Wz`` → (``\\mathbf{W}``, "z")."""
    parts = name.split("_")
    head, rest = parts[0], parts[1:]
    decoration = None
    if rest and rest[-1] in ("tilde", "hat", "bar"):
        decoration = rest.pop()
    letter, sub = escape_math(head[0]), escape_math(head[1:])
    sub = ",".join(p for p in [sub, *map(escape_math, rest)] if p)
    base = rf"\mathbf{{{letter}}}"
    if decoration:
        base = rf"\{decoration}{{{base}}}"
    return base, sub


def _subscript(base: str, *parts: str) -> str:
    parts = tuple(p for p in parts if p)
    return base if not parts else rf"{base}_{{{','.join(parts)}}}"


class Notation:
    """Maps the names of one cell (or derivation) to LaTeX."""

    def __init__(self, source, shift: int = 0):
        self.cell = getattr(source, "cell", source)
        #: Steps added to every time index: ``shift=1`` writes step t+1's equations (the
        #: recursion through time in reports), so ``h_prev`` is **h**_t there.
        self.shift = shift
        self.equations = {e.name: e for e in getattr(source, "forward", self.cell.equations)}
        self.states = set(self.cell.states)
        self.inputs = set(self.cell.inputs)
        self.params = {p.name for p in self.cell.parameters}
        self._cache: dict[str, str] = {}
        self._printed: dict | None = None

    def symbol(self, name: str) -> str:
        if name not in self._cache:
            self._cache[name] = self._symbol(name)
        return self._cache[name]

    def _declared_base(self, name: str) -> str | None:
        sym = self.cell.symbols.get(name)
        if sym is not None and sym.latex:
            return sym.latex
        eq = self.equations.get(name)
        return eq.latex if eq is not None and eq.latex else None

    def time(self, offset: int = 0) -> str:
        """The time index ``t + shift + offset`` as LaTeX: ``t``, ``t-1``, ``t+1``."""
        k = self.shift + offset
        return "t" if k == 0 else f"t+{k}" if k > 0 else f"t{k}"

    def value(self, name: str, time: str | None = None) -> str:
        """A per-step value at ``time`` (by default the step's own time)."""
        time = self.time() if time is None else time
        base = self._declared_base(name)
        if base is not None:
            return _subscript(base, time)
        eq = self.equations.get(name)
        if eq is not None and eq.kind == "readout":
            letter, sub = _base(name)
            return _subscript(rf"\hat{{{letter}}}", sub, time)
        printed = self.printed_name(name)
        if printed is not None:
            return _subscript(printed[0], time)
        if eq is not None and eq.auto and not name.startswith("a_"):
            text = TextbookLatexPrinter(self.symbol).doprint(eq.expr)
            return text if text.startswith(r"\left[") else rf"\left({text}\right)"
        if name.startswith("a_"):
            return _subscript(r"\mathbf{a}", self._short(name[2:]), time)
        base, sub = _base(name)
        return _subscript(base, sub, time)

    def printed_name(self, name: str) -> tuple[str, str] | None:
        """(LaTeX base, meaning) the cell gave an introduced operand with ``cell.print_as``."""
        names = getattr(self.cell, "printed_names", None)
        eq = self.equations.get(name)
        if not names or eq is None or not eq.auto:
            return None
        if self._printed is None:
            self._printed = {canonical(k): v for k, v in names.items()}
        return self._printed.get(canonical(self.expanded(eq.expr)))

    def expanded(self, expr):
        """``expr`` with every introduced name replaced by its definition, recursively."""
        auto = {s: self.equations[s.name].expr for s in expr.atoms(MatrixSymbol)
                if s.name in self.equations and self.equations[s.name].auto}
        return self.expanded(expr.xreplace(auto)) if auto else expr

    def _short(self, name: str) -> str:
        """A value's name as a subscript: ``h_tilde`` → ``\\tilde{h}``."""
        parts = name.split("_")
        if parts[-1] in ("tilde", "hat", "bar"):
            return rf"\{parts[-1]}{{{escape_math(''.join(parts[:-1]))}}}"
        return escape_math(name.replace("_", ""))

    def _symbol(self, name: str) -> str:
        if name in self.params:
            base = self._declared_base(name)
            if base is not None:
                return base
            letter, sub = _base(name)
            return _subscript(letter, sub)
        if name.endswith("_prev") and name[:-5] in self.states:
            return self.value(name[:-5], self.time(-1))
        if name.endswith("t") and name[:-1] in self.inputs:
            return self.value(name[:-1], self.time())
        if name in self.equations or name in self.cell.symbols:
            return self.value(name)
        if name.startswith("d"):
            target = name[1:]
            if target in self.params:
                return rf"\frac{{\partial L}}{{\partial {self.symbol(target)}}}"
            if target.endswith("_next") and target[:-5] in self.states:
                return rf"\boldsymbol{{\varepsilon}}_{{{self._short(target[:-5])},{self.time()}}}"
            if target.endswith("_prev") and target[:-5] in self.states:
                # Only the part of ∂L/∂s_{t−1} that flows back through step t: δ^{(t)}s_{t−1}.
                return rf"\delta^{{({self.time()})}} {self.symbol(target)}"
            return rf"\delta {self.symbol(target)}"
        return rf"\mathrm{{{escape_tex(name)}}}"


def canonical(expr) -> tuple | str:
    """A hashable key of an expression: named matrices by name, ⊙ and + in sorted order.

    ``odot(r, h_prev)`` in a cell file and the lowering's ``h_prev ⊙ r`` get the same key.
    """
    if isinstance(expr, MatrixSymbol):
        return expr.name
    if not getattr(expr, "args", ()):
        return str(expr)
    args = [canonical(a) for a in expr.args]
    if isinstance(expr, (HadamardProduct, MatAdd)):
        args = sorted(args, key=repr)
    return (type(expr).__name__, *args)


def latex_symbol_names(source) -> dict[str, str]:
    """Every name of a derivation with its LaTeX (for the report's table of symbols)."""
    notation = Notation(source)
    names = list(notation.cell.symbols) + list(notation.equations)
    return {n: notation.symbol(n) for n in dict.fromkeys(names) if notation.cell.symbols.get(n) is None
            or notation.cell.symbols[n].role != "dim"}


__all__ = ["Notation", "escape_tex", "latex_symbol_names"]


# The printers that know a cell's notation


def latex_printer(derivation_or_cell, shift: int = 0) -> TextbookLatexPrinter:
    """A LaTeX printer that knows the notation of one cell's symbols.

    ``shift=1`` prints the same expressions one step later (``h_prev`` as **h**_t), for the
    recursion through time in reports.
    """
    return TextbookLatexPrinter(Notation(derivation_or_cell, shift).symbol)


def _rows(printer: TextbookLatexPrinter, lhs: str, expr, prefix: str = "") -> str:
    return rf"{lhs} &= {prefix}{printer.doprint(expr)}"


def cell_equations_latex(cell) -> str:
    """The cell's step equations as one LaTeX ``aligned`` block (for Jupyter)."""
    printer = latex_printer(cell)
    rows = [_rows(printer, printer.symbol_latex(e.name), e.expr) for e in cell.equations]
    return r"$$\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}$$"


def derivation_latex(derivation) -> str:
    """The derived backward statements as one LaTeX ``aligned`` block (for Jupyter).

    Parameter gradients are sums over time of each step's contribution, and say so.
    """
    printer = latex_printer(derivation)
    rows = [_rows(printer, printer.doprint(a.symbol), a.expr) for a in derivation.backward]
    rows += [_rows(printer, printer.doprint(a.symbol), a.expr, r"\sum_{t} ")
             for a in derivation.parameters if a.terms]
    return r"$$\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}$$"
