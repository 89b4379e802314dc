r"""Check a person's hand derivation, adjoint by adjoint, against the derived one.

A person writes, for example, δa_z = δh ⊙ (h_prev − h̃) ⊙ z ⊙ (1 − z), either as a SymPy
matrix expression over symbols named as in the derivation (``dh``, ``h_prev``, ``h_tilde``,
``z``) or as a LaTeX string::

    \delta a_z = \delta h_t \odot (h_{t-1} - \tilde{h}_t) \odot z_t \odot (1 - z_t)

The LaTeX is read by a small recursive-descent parser (never evaluated as code) that knows
this subset: ``+ - ( ) [a; b]``, ``\odot \circ *`` (elementwise), ``\cdot \times`` and
juxtaposition (matrix product, binding tighter than ⊙), ``^\top ^T`` (transpose), ``^2``,
``^{\odot k}`` (elementwise powers, k ≤ 8), ``\frac{a}{b}`` (a ⊘ b; ``\frac{1}{2} A`` scales A), every function of :data:`symbptt.ops.FUNCTIONS` by the names its
declaration gives (``\sigma \tanh \exp \log \operatorname{softmax}``, …) applied to a
parenthesised argument, ``\oslash`` and ``/`` (elementwise division), ``\mathbb{1}[u > 0]`` (the step),
``\mathbf{1}\mathbf{1}^\top(…)`` (column sums), numbers (``1 − z`` is ones minus z), ``\mathbf{1}``,
``\mathbf{0}`` (zero, shaped by its partner or the target), the ``\delta``
prefix of adjoints, ``\tilde{h} \hat{y} \bar{x}`` decorations, ``\mathbf{…} \boldsymbol{…}``
wrappers and subscripts with a time index (``h_{t-1}`` → ``h_prev``, ``x_t`` → ``xt``,
``\tilde{h}_t`` → ``h_tilde``, ``W_z`` → ``Wz``, ``a_{z,t}`` → ``a_z``, ``\delta h_{t-1}``
→ ``dh_prev``). Unicode ``δ ⊙ ∘ · ᵀ σ −`` and a combining tilde are accepted too.

Each expression is compared with the derived adjoint of its target in two ways, both on
one step with small explicit matrices:

* symbolically (exactly): every free value (parameters, h_prev, xt and the gradients
  arriving from outside the step) is a matrix of scalar symbols; first with the forward
  values (z, h̃, …) as free symbols too, then with them computed by the forward equations
  (so σ(a_z) and z are the same thing); the difference must be the zero polynomial;
* numerically: random float64 values, relative error ≤ 1e-9.

When they differ, the result carries the simplified difference (at size 1, in the names of
the derivation) and a small numeric counterexample.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, cast

import numpy as np
import sympy as sp
from sympy import MatMul, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from . import ops
from .cell import Cell, prev_name
from .derive import Derivation, derive
from .proof import (
    Backend,
    EvaluationError,
    Evaluator,
    NumpyBackend,
    PolynomialView,
    SympyBackend,
    concrete,
    dimension_values,
    resolve_cell,
    symbol_matrix,
)

#: Sizes of the symbolic comparison: n_h ≠ n_x so that a missing transpose shows.
CHECK_SIZES: dict[str, int] = {"n_x": 3, "n_h": 2, "n_y": 2, "m": 2}
NUMERIC_TOLERANCE = 1e-9
#: Errors of an expression that only fits at some sizes (skipped while searching sizes).
_UNFIT = (ValueError, TypeError, IndexError)


#: The default of the optional name mappings (aliases, dimensions): empty and read-only.
_NONE: Mapping[str, Any] = MappingProxyType({})


class HandParseError(ValueError):
    """A hand-written expression outside the supported LaTeX subset; says where."""


class TooDeep(HandParseError):
    """A line nested more deeply than :data:`MAX_DEPTH` brackets and operations."""


class TooLarge(HandParseError):
    """A line longer than :data:`MAX_CHARS` characters or :data:`MAX_TOKENS` tokens."""


class Refused(HandParseError):
    """A line that uses what it must derive: its own adjoint, or one derived after it."""


#: Limits of one line: characters, tokens, nesting; and the seconds and bytes its check may take.
MAX_CHARS = 2000
MAX_TOKENS = 600
MAX_DEPTH = 40
MAX_POWER = 8  # x^{\odot k}: k factors
LINE_SECONDS = 20.0
LINE_MEMORY = 2 * 2**30


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------

_UNICODE = {"δ": r"\delta ", "⊙": r"\odot ", "∘": r"\circ ", "·": r"\cdot ", "ᵀ": r"^\top ",
            "⊤": r"\top ", "σ": r"\sigma ", "−": "-", "×": r"\times "}
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~")
_TOKEN = re.compile(r"\\[A-Za-z]+|\d+(?:\.\d+)?|[A-Za-z]|\S")


def normalise(text: str) -> str:
    """Unicode operators to LaTeX commands, a combining tilde to ``\\tilde{…}``, spacing out."""
    text = re.sub(r"([A-Za-z])\u0303", r"\\tilde{\1}", text)
    for char, command in _UNICODE.items():
        text = text.replace(char, command)
    return _SPACING.sub(" ", text)


def tokenize(text: str) -> list[str]:
    """LaTeX commands, numbers, single letters and single symbols."""
    return _TOKEN.findall(normalise(text))


# --------------------------------------------------------------------------------------
# Names: a parsed name to the derivation's symbol
# --------------------------------------------------------------------------------------

_TIME = {"t": "now", "t-1": "prev", "t+1": "next"}
_DECORATIONS = {r"\tilde": "tilde", r"\hat": "hat", r"\bar": "bar"}


@dataclass(frozen=True)
class Name:
    """A parsed name: δ prefix, base letter, decoration, subscript parts, time index."""

    delta: bool
    base: str
    decoration: str
    parts: tuple[str, ...]
    time: str
    text: str

    def candidates(self) -> list[str]:
        """Derivation names this name may mean, most specific first."""
        cores = [self.base + (f"_{self.decoration}" if self.decoration else "")]
        if self.decoration == "hat":  # ŷ is the prediction y of the readout
            cores.append(self.base)
        names = []
        for core in cores:
            names += ([f"{core}_{'_'.join(self.parts)}", core + "".join(self.parts)]
                      if self.parts else [core])
        if self.time == "prev":
            names = [prev_name(n) for n in names]
        elif self.time == "next":
            names = [f"{n}_next" for n in names]
        else:  # x_t is the step's input xt
            names = names + [f"{n}t" for n in names]
        return ["d" + n for n in names] if self.delta else names


def _subscript_parts(raw: str) -> tuple[tuple[str, ...], str]:
    """``{z,t}`` → ((z,), now); ``{t-1}`` → ((), prev); ``{\\tilde{h}}`` → ((h_tilde,), "")."""
    raw = raw.replace(" ", "")
    for command, word in _DECORATIONS.items():
        raw = re.sub(re.escape(command) + r"\{?([A-Za-z])\}?", rf"\1_{word}", raw)
    raw = re.sub(r"\\(mathbf|boldsymbol|mathrm)\{([^{}]*)\}", r"\2", raw)
    parts, time = [], ""
    for part in raw.split(","):
        if part in _TIME:
            time = _TIME[part]
        elif part:
            parts.append(part)
    return tuple(parts), time


class Resolver:
    """Maps parsed names to the MatrixSymbols of one derivation (plus optional aliases)."""

    def __init__(self, symbols: Mapping[str, MatrixSymbol], aliases: Mapping[str, str] = _NONE,
                 dimensions: Mapping[str, sp.Symbol] = _NONE):
        self.symbols = dict(symbols)
        self.aliases = dict(aliases)
        self.dimensions = dict(dimensions)

    def __call__(self, name: Name) -> MatrixSymbol:
        tried = name.candidates()
        for candidate in tried:
            candidate = self.aliases.get(candidate, candidate)
            if candidate in self.symbols:
                return self.symbols[candidate]
        raise HandParseError(f"unknown name {name.text!r} (read as {', '.join(tried)}; known: "
                             f"{', '.join(sorted(self.symbols))})")


# --------------------------------------------------------------------------------------
# The parser: one method per grammar rule
# --------------------------------------------------------------------------------------

_NAMED_FORM = re.compile(r"\\(?:operatorname|mathrm)\{(\w+)\}")


def _function_names() -> tuple[dict[str, type], dict[str, type]]:
    r"""The names each declared operation gives the parser (``parser_names`` in ops.py).

    Returns (commands, named): ``\sigma`` → Sigmoid, and ``softplus`` → Softplus for a name
    written ``\operatorname{softplus}`` (``\mathrm{softplus}`` is read the same way).
    """
    commands: dict[str, type] = {}
    named: dict[str, type] = {}
    for op in cast("Iterable[type[ops.Node]]", ops.FUNCTIONS.values()):  # operation classes
        for name in op.parser_names:
            match = _NAMED_FORM.fullmatch(name)
            if match:
                named[match.group(1)] = op
            else:
                commands[name] = op
    return commands, named


_FUNCTIONS, _NAMED_FUNCTIONS = _function_names()
_ELEMENTWISE = {r"\odot", r"\circ", "*"}
_MATMUL = {r"\cdot", r"\times"}
_WRAPPERS = {r"\mathbf", r"\boldsymbol", r"\mathrm", r"\operatorname", r"\mathit", r"\vec"}


class Parser:
    """Recursive descent over the LaTeX subset of the module docstring.

    Values are SymPy matrix expressions or plain numbers (a number meets a matrix as a
    scaling or, in a sum, as a constant matrix of its shape).
    """

    def __init__(self, text: str, resolve: Resolver):
        if len(text) > MAX_CHARS:
            raise TooLarge(f"the line has {len(text)} characters; at most {MAX_CHARS} are checked")
        self.text = text
        self.tokens = tokenize(text)
        if len(self.tokens) > MAX_TOKENS:
            raise TooLarge(f"the line has {len(self.tokens)} symbols; at most {MAX_TOKENS} are checked "
                           "(split a long sum into named parts)")
        self.pos = 0
        self.depth = 0
        self.resolve = resolve

    # -- token helpers -----------------------------------------------------------------

    def peek(self, offset: int = 0) -> str | None:
        k = self.pos + offset
        return self.tokens[k] if k < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            self.fail(f"expected {expected!r}" if expected else "unexpected end")
        self.pos += 1
        return token

    def fail(self, message: str) -> NoReturn:
        seen = "".join(self.tokens[: self.pos])
        raise HandParseError(f"{message} at token {self.pos + 1} ({self.peek()!r}) of "
                             f"{self.text!r}, after {seen!r}")

    def group(self) -> str:
        """The raw text of ``{…}`` (balanced) or of one token."""
        if self.peek() != "{":
            return self.take()
        self.take("{")
        depth = 1
        out: list[str] = []
        while True:
            token = self.take()
            depth += {"{": 1, "}": -1}.get(token, 0)
            if depth == 0:
                return "".join(out)
            out.append(token)

    # -- grammar -------------------------------------------------------------------------

    def parse(self):
        value = self.expression()
        if self.peek() is not None:
            self.fail("unexpected token")
        return value

    def expression(self):
        """expression := ['+'|'-'] term (('+'|'-') term)*"""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TooDeep(f"more than {MAX_DEPTH} nested brackets or functions")
        try:
            return self.sum()
        finally:
            self.depth -= 1

    def sum(self):
        """The terms of :meth:`expression`, added."""
        sign = -1 if self.peek() == "-" else 1
        if self.peek() in ("+", "-"):
            self.take()
        value = _times(sign, self.term())
        while self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            value = _plus(value, _times(sign, self.term()))
        return value

    def term(self):
        """term := product ((⊙ | ∘ | * | ⊘ | /) product)*  (elementwise, binds looser than a product)"""
        value = self.product()
        while self.peek() in (*_ELEMENTWISE, r"\oslash", "/"):
            if self.take() in (r"\oslash", "/"):  # a ⊘ b, a / b: elementwise division, a ⊙ (1 ⊘ b)
                value = _elementwise(value, ops.Reciprocal(_matrix(self.product())))
            else:
                value = _elementwise(value, self.product())
        return value

    def product(self):
        """product := unary ((· | × | juxtaposition) unary)*"""
        value = self.unary()
        while True:
            if self.peek() in _MATMUL:
                self.take()
            elif not self.starts_primary():
                return value
            value = _times(value, self.unary())

    def starts_primary(self) -> bool:
        token = self.peek()
        if token is None:
            return False
        return (token.isalpha() or token[0].isdigit() or token in ("(", "[")
                or token in (r"\left", r"\delta", r"\frac", r"\mathbf", r"\boldsymbol", r"\operatorname",
                             r"\mathrm", r"\mathbb", *_FUNCTIONS, *_DECORATIONS))

    def unary(self):
        """unary := '-' unary | postfix"""
        if self.peek() == "-":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise TooDeep(f"more than {MAX_DEPTH} signs or nested brackets")
            try:
                return _times(-1, self.unary())
            finally:
                self.depth -= 1
        return self.postfix(self.primary())

    def postfix(self, value):
        """postfix := primary ('^' (\\top | T | \\mathsf{T} | 2 | {…}) | '_' {a:b})*  (b: rows a…b, from 1)"""
        powered = False
        while self.peek() in ("^", "_"):
            if self.take() == "_":
                value = self.row_slice(value, self.group().replace(" ", ""))
                continue
            sup = self.group().replace(" ", "")
            if sup in (r"\mathsf", r"\mathrm") and self.peek() is not None:  # W^\mathsf{T}, W^\mathrm T
                sup += "{" + self.group().replace(" ", "") + "}"
            if powered:
                self.fail("a double superscript (x^2^2: LaTeX refuses it too); write (x^2)^2 or x^4 as a product")
            power = re.fullmatch(r"(?:\\odot)?(\d+)", sup)  # x^2, x^{\odot 3}: elementwise
            powered = power is not None
            if sup in (r"\top", "T", r"\intercal", r"\mathsf{T}", r"\mathrm{T}"):
                value = _transpose(value)
            elif power:
                value = self.power(value, int(power[1]))
            else:
                self.fail(f"unsupported superscript {sup!r}")
        return value

    def power(self, value, k: int):
        r"""``x^{\odot k}`` (or ``x^k``): x ⊙ x ⊙ … k times, for k = 1 … MAX_POWER."""
        if not 1 <= k <= MAX_POWER:
            self.fail(f"an elementwise power must be 1 to {MAX_POWER}, not {k}")
        result = value
        for _ in range(k - 1):
            result = _elementwise(result, value)
        return result

    def fraction(self):
        """``\frac{a}{b}``: a ⊘ b elementwise; over a number, a scaled (``\frac{1}{2} A``)."""
        self.take(r"\frac")
        numerator, denominator = self.braced(), self.braced()
        if not _is_scalar(denominator):
            return _elementwise(numerator, ops.Reciprocal(_matrix(denominator)))
        if denominator == 0:
            self.fail(r"\frac with a zero denominator")
        return _times(sp.Integer(1) / denominator, numerator)

    def braced(self):
        """``{expression}``."""
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def row_slice(self, value, rows: str):
        """``[v]_{a:b}``: rows a to b of v, counted from 1 (``{n_h+1:n_h+n_x}``)."""
        if ":" not in rows:
            self.fail(f"a subscript on a bracket must be a row range a:b, not {rows!r}")
        start, stop = (_size(part, self.resolve.dimensions) for part in rows.split(":", 1))
        if start is not None and stop is not None and (stop - start + 1).is_negative is not False:
            self.fail(f"the row range {rows} is empty (rows a to b, counted from 1, need a ≤ b)")
        if start is not None and start.is_positive is False:
            self.fail(f"the row range {rows} starts before row 1 (rows are counted from 1)")
        matrix = _matrix(value)
        return ops.RowSlice(matrix, (start - 1) if start is not None else 0,
                            stop if stop is not None else matrix.shape[0])

    def primary(self):
        """A number, a bracketed expression, a stack, a function application or a name."""
        token = self.peek()
        if token is None:
            self.fail("expected a value")
        if token[0].isdigit():
            return sp.Rational(self.take())
        if token == r"\left":
            self.take()
            return self.bracketed(self.take(), right=True)
        if token in ("(", "["):
            return self.bracketed(self.take(), right=False)
        if token == r"\frac":
            return self.fraction()
        if token in _FUNCTIONS or self.is_named_function():
            return self.function()
        if self.at_ones():
            return self.ones()
        if self.at_ones(digit="0"):
            self.pos += 4
            return _Zeros()
        if token == r"\mathbb":
            return self.indicator()
        return self.resolve(self.name())

    def at_ones(self, offset: int = 0, digit: str = "1") -> bool:
        """Whether ``\\mathbf{1}`` (or, with ``digit="0"``, ``\\mathbf{0}``) starts here."""
        return (self.peek(offset) in (r"\mathbf", r"\boldsymbol") and self.peek(offset + 1) == "{"
                and self.peek(offset + 2) == digit)

    def ones(self):
        r"""``\mathbf{1}``, or ``\mathbf{1}\mathbf{1}^\top`` (each column's sum, down the rows)."""
        self.pos += 4
        if not (self.at_ones() and self.peek(4) == "^"):
            return _Ones()
        self.pos += 5
        if self.group().replace(" ", "") not in (r"\top", "T", r"\intercal"):
            self.fail(r"expected \mathbf{1}\mathbf{1}^\top")
        return _ColumnSums()

    def indicator(self):
        r"""``\mathbb{1}[u > 0]`` (or with ``\left[ … \right]``): the step, 1 where u > 0."""
        self.take(r"\mathbb")
        if self.group() != "1":
            self.fail(r"only \mathbb{1}[u > 0] is supported")
        right = self.peek() == r"\left"
        if right:
            self.take()
        self.take("[")
        value = _matrix(self.expression())
        self.take(">")
        self.take("0")
        if right:
            self.take(r"\right")
        self.take("]")
        return ops.Step(value)

    def bracketed(self, opening: str, right: bool):
        """``( e )`` or ``[ a ; b ; … ]``, optionally written with ``\\left … \\right``."""
        closing = {"(": ")", "[": "]"}.get(opening)
        if closing is None:
            self.fail(f"unsupported bracket {opening!r}")
        parts = [self.expression()]
        while opening == "[" and self.peek() == ";":
            self.take()
            parts.append(self.expression())
        if right:
            self.take(r"\right")
        self.take(closing)
        return parts[0] if len(parts) == 1 else ops.Stack(*[_matrix(p) for p in parts])

    def is_named_function(self) -> bool:
        r"""``\operatorname{name}`` or ``\mathrm{name}`` of a declared operation."""
        if self.peek() not in (r"\operatorname", r"\mathrm") or self.peek(1) != "{":
            return False
        end = self.tokens.index("}", self.pos) if "}" in self.tokens[self.pos:] else self.pos
        return "".join(self.tokens[self.pos + 2: end]) in _NAMED_FUNCTIONS

    def function(self):
        """``\\sigma(u)``, ``\\tanh\\left(u\\right)``, ``\\operatorname{softmax}(u)``, ``\\tanh^2(u)``."""
        token = self.take()
        if token in (r"\operatorname", r"\mathrm"):
            func = _NAMED_FUNCTIONS[self.group().replace(" ", "")]
        else:
            func = _FUNCTIONS[token]
        square = False
        if self.peek() == "^":
            self.take()
            if self.group() != "2":
                self.fail("only a square of a function is supported")
            square = True
        if self.peek() == r"\left":
            self.take()
            arg = self.bracketed(self.take(), right=True)
        else:
            arg = self.bracketed(self.take("("), right=False)
        value = func(_matrix(arg))
        return _elementwise(value, value) if square else value

    def name(self) -> Name:
        """name := [\\delta] [decoration | wrapper] letter [_ subscript]"""
        start = self.pos
        delta = self.peek() == r"\delta"
        if delta:
            self.take()
            if self.peek() == "^":  # δ^{(t)} h_{t-1}: the part through step t, same adjoint
                self.take()
                self.group()
        token = self.take()
        raw = token + "{" + self.group() + "}" if token in (*_DECORATIONS, *_WRAPPERS) else token
        base, decoration = _base_of(raw)
        if not base:
            self.pos = start
            self.fail("expected a name")
        parts: tuple[str, ...] = ()
        time = ""
        if self.peek() == "_":
            self.take()
            parts, time = _subscript_parts(self.group())
        return Name(delta, base, decoration, parts, time, "".join(self.tokens[start: self.pos]))


def _size(text: str, dimensions: Mapping[str, sp.Symbol]):
    """A row bound such as ``n_h+1`` or ``3`` from integers and dimension names; None if empty."""
    if not text:
        return None
    total, sign = sp.Integer(0), 1
    for token in re.findall(r"[A-Za-z]\w*|\d+|[+-]|\S", text):
        if token in "+-":
            sign = -1 if token == "-" else 1
        elif token.isdigit():
            total, sign = total + sign * int(token), 1
        elif token in dimensions:
            total, sign = total + sign * dimensions[token], 1
        else:
            raise HandParseError(f"unknown size {token!r} in the row range {text!r} (sizes: "
                                 f"{', '.join(dimensions)})")
    return total


def _base_of(raw: str) -> tuple[str, str]:
    """``\\tilde{\\mathbf{h}}`` → ("h", "tilde"); ``W`` → ("W", ""); not a name → ("", "")."""
    wrapper = re.compile(r"\\(?:mathbf|boldsymbol|mathrm|mathit|vec|operatorname)\{([^{}]*)\}")
    while wrapper.search(raw):
        raw = wrapper.sub(r"\1", raw)
    match = re.fullmatch(r"(?:\\(tilde|hat|bar))?\{?([A-Za-z]+)\}?", raw)
    if match is None:
        return "", ""
    return match.group(2), match.group(1) or ""


# --------------------------------------------------------------------------------------
# Building matrix expressions from parsed values
# --------------------------------------------------------------------------------------


class _Ones:
    """``\\mathbf{1}``: a matrix of ones whose shape its partner decides."""

    def __str__(self) -> str:
        return r"\mathbf{1} (a matrix of ones, whose shape only a partner such as z in \mathbf{1} - z decides)"


class _Zeros:
    """``\\mathbf{0}``: a zero matrix whose shape its partner, or the line's target, decides.

    A sum drops it, a product with it is zero again; the report writes it for an adjoint
    nothing feeds (δh_{t-1} of a state no equation reads)."""

    def __str__(self) -> str:
        return r"\mathbf{0} (a zero matrix, whose shape only a partner or the target decides)"


class _ColumnSums:
    r"""``\mathbf{1}\mathbf{1}^\top``, waiting for the matrix whose column sums it repeats."""

    def __str__(self) -> str:
        return r"\mathbf{1}\mathbf{1}^\top (column sums, which need a matrix after them)"


def _is_scalar(value) -> bool:
    return isinstance(value, (int, sp.Number)) or (isinstance(value, sp.Expr)
                                                   and not getattr(value, "is_Matrix", False))


def _matrix(value) -> MatrixExpr:
    if _is_scalar(value):
        raise HandParseError(f"a matrix is needed where the number {value} stands")
    if isinstance(value, (_Ones, _Zeros, _ColumnSums)):  # shapeless, or 1 1ᵀ with nothing after it
        raise HandParseError(f"a matrix is needed where {value} stands")
    return value


def _constant(value, like: MatrixExpr) -> MatrixExpr:
    """A number or ``\\mathbf{1}`` as a constant matrix of ``like``'s shape."""
    ones = OneMatrix(*like.shape)
    return ones if isinstance(value, _Ones) or value == 1 else MatMul(sp.sympify(value), ones)


def _plus(a, b):
    if isinstance(a, _Zeros) or isinstance(b, _Zeros):
        return b if isinstance(a, _Zeros) else a
    if _is_scalar(a) and _is_scalar(b):
        return a + b
    if _is_scalar(a) or isinstance(a, _Ones):
        a = _constant(a, b)
    if _is_scalar(b) or isinstance(b, _Ones):
        b = _constant(b, a)
    return ops.add(a, b)


def _times(a, b):
    """A matrix product, or a scaling when one side is a number."""
    if isinstance(a, _Zeros) or isinstance(b, _Zeros):
        return _Zeros()
    if isinstance(a, _ColumnSums):
        return ops.FeatureSum(_matrix(b))
    if isinstance(b, _Ones) and not (_is_scalar(a) or isinstance(a, _Ones)):
        return ops.BatchSum(_matrix(a))  # A 1: the sum over the batch (a bias gradient)
    if _is_scalar(a) and _is_scalar(b):
        return a * b
    if _is_scalar(a):
        return ops.scale(a, b)
    if _is_scalar(b):
        return ops.scale(b, a)
    return ops.matmul(_matrix(a), _matrix(b))


def _elementwise(a, b):
    if _is_scalar(a) or _is_scalar(b) or isinstance(a, _Zeros) or isinstance(b, _Zeros):
        return _times(a, b)
    if isinstance(a, _Ones):
        a = _constant(a, b)
    if isinstance(b, _Ones):
        b = _constant(b, a)
    a, b = _broadcast_column(a, b), _broadcast_column(b, a)
    return ops.hadamard(a, b)


def _broadcast_column(value, other):
    """A per-unit vector (n, 1) next to an (n, m) operand, repeated over the batch (p_f ⊙ c)."""
    if isinstance(value, MatrixSymbol) and value.shape[1] == 1 and other.shape[1] != 1:
        return ops.Broadcast(value, other.shape[1])
    return value


def _transpose(value):
    return value if _is_scalar(value) or isinstance(value, _Zeros) else _matrix(value).T


def parse_latex(text: str, resolve: Resolver, like: MatrixExpr | None = None) -> MatrixExpr:
    """A LaTeX string as a matrix expression over the derivation's symbols (shape-checked);
    a zero (``\\mathbf{0}``, a plain ``0``, or a sum or product that is zero) takes the shape
    of ``like``, the line's target, when one is given."""
    value = Parser(text, resolve).parse()
    zero = isinstance(value, _Zeros) or (_is_scalar(value) and value == 0)  # \mathbf{0}, or 0 alone
    expr = ZeroMatrix(*like.shape) if zero and like is not None else _matrix(value)
    try:
        ops.shape_of(expr)
    except (ops.ShapeError, TypeError) as err:
        raise HandParseError(f"{text!r}: {err}") from None
    return expr


# --------------------------------------------------------------------------------------
# Comparing with the derivation
# --------------------------------------------------------------------------------------


@dataclass
class HandResult:
    """The verdict on one hand-derived expression."""

    target: str
    given: str
    equivalent: bool
    symbolic: bool | None = None
    numeric_error: float | None = None
    how: str = ""
    difference: str = ""
    counterexample: str = ""
    error: str = ""
    limit: str = ""  # "too deep", "too large", "too slow" or "refused" when that stopped the check
    line: int | str | None = None  # the line of the file it was read from ("cell 4, row 2" in a notebook)

    @property
    def verdict(self) -> str:
        """One word or two: equivalent, NOT equivalent, refused, too deep/large/slow, cannot check."""
        if self.limit:
            return self.limit
        if self.error:
            return "cannot check"
        return "equivalent" if self.equivalent else "NOT equivalent"

    def report(self) -> str:
        """A few lines for a person."""
        where = {type(None): "", int: f"line {self.line}: "}.get(type(self.line), f"{self.line}: ")
        head = f"{where}{self.target} = {self.given[:300]}" + (" …" if len(self.given) > 300 else "")
        if self.error:
            return f"{head}\n  {self.limit or 'cannot check'}: {self.error}"
        if self.equivalent:
            return f"{head}\n  equivalent ({self.how}; numeric rel. error {self.numeric_error:.1e})"
        lines = [f"{head}", "  NOT equivalent to the derived adjoint"]
        if self.difference:
            lines.append(f"  given − derived = {self.difference}")
        if self.counterexample:
            lines.append(f"  counterexample: {self.counterexample}")
        return "\n".join(lines)


def _symbols(derivation: Derivation) -> dict[str, MatrixSymbol]:
    """Every name a hand expression may use, with its symbolic shape."""
    cell = derivation.cell
    out: dict[str, MatrixSymbol] = {}
    for sym in cell.symbols.values():
        if sym.role != "dim" and len(sym.shape) == 2:
            out[sym.name] = MatrixSymbol(sym.name, *sym.shape)
    for eq in derivation.forward:
        out[eq.name] = MatrixSymbol(eq.name, *ops.shape_of(eq.expr))
    for adj in derivation.backward + derivation.parameters:
        out[adj.symbol.name] = adj.symbol
    for sym in derivation.incoming.values():
        out[sym.name] = sym
    for state in cell.states:  # δh when h feeds nothing within the step is δh_next
        if f"d{state}" not in out and f"d{state}_next" in out:
            out[f"d{state}"] = out[f"d{state}_next"]
    return out


def _free_names(derivation: Derivation) -> list[str]:
    """What one step's values depend on: parameters, entering states, inputs, incoming."""
    cell = derivation.cell
    names = [s.name for s in cell.by_role("weight", "bias", "vector", "state", "input")]
    return names + [s.name for s in derivation.incoming.values()]


def _shape_of(derivation: Derivation, name: str, dims) -> tuple[int, int]:
    symbol = _symbols(derivation)[name]
    return concrete(symbol.shape[0], dims), concrete(symbol.shape[1], dims)


def step_values(derivation: Derivation, free: Mapping[str, Any], backend: Backend, dims,
                forward_free: bool = False, keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One step's environment: forward values, then every derived adjoint, from ``free``.

    With ``forward_free`` the forward values are taken from ``free`` too (as independent
    symbols), so that only the adjoints' definitions are expanded; adjoints named in
    ``keep`` are taken from ``free`` as well (for a difference written in their terms).
    """
    env = dict(free)
    evaluate = Evaluator(backend, dims, env)
    for eq in derivation.forward:
        if not (forward_free and eq.name in env):
            env[eq.name] = evaluate(eq.expr)
    for state in derivation.cell.states:
        if f"d{state}_next" in env:
            env.setdefault(f"d{state}", env[f"d{state}_next"])
    for adj in derivation.backward + derivation.parameters:
        if adj.symbol.name not in keep:
            env[adj.symbol.name] = evaluate(adj.expr)
    return env


def _symbolic_free(derivation: Derivation, dims, with_forward: bool, plain: bool = False,
                   extra: tuple[str, ...] = ()):
    """Symbol matrices for the free values (and the forward values with ``with_forward``).

    ``extra`` names more values to make free (adjoints kept in a difference); with
    ``plain`` a 1×1 value is named by its bare name (``z`` rather than ``z[0,0]``).
    """
    names = list(_free_names(derivation)) + list(extra)
    if with_forward:
        names += [eq.name for eq in derivation.forward]
    out = {}
    for name in dict.fromkeys(names):
        rows, cols = _shape_of(derivation, name, dims)
        if plain and rows == cols == 1:
            out[name] = sp.Matrix([[sp.Symbol(name, real=True)]])
        else:
            out[name] = symbol_matrix(name, rows, cols)
    return out


def _target(target: str, symbols: Mapping[str, MatrixSymbol], resolve: Resolver) -> str:
    """The derivation's adjoint name of a target given as ``da_z``, ``\\delta a_z`` or δa_z."""
    if target in symbols:
        return target
    match = re.fullmatch(r"\s*\\frac\{\\partial L\}\{\\partial (.+)\}\s*", normalise(target))
    text = rf"\delta {match.group(1)}" if match else target
    parser = Parser(text, resolve)
    name = parser.name()
    if parser.peek() is not None:
        parser.fail("a target is one name")
    return resolve(name).name


def _given(expr, symbols: Mapping[str, MatrixSymbol], resolve: Resolver, target: str) -> MatrixExpr:
    """A hand expression (LaTeX string or SymPy matrix expression) over the symbols."""
    if isinstance(expr, str):
        return parse_latex(expr, resolve, like=symbols[target])
    if not isinstance(expr, MatrixExpr):
        raise HandParseError(f"expected a LaTeX string or a SymPy matrix expression, got "
                             f"{type(expr).__name__}")
    unknown = sorted(s.name for s in expr.atoms(MatrixSymbol) if s.name not in symbols)
    if unknown:
        raise HandParseError(f"unknown name(s) {', '.join(unknown)}")
    return expr.xreplace({s: symbols[s.name] for s in expr.atoms(MatrixSymbol)})


def _symbolic_verdict(derivation: Derivation, target: str, given: MatrixExpr, dims):
    """(equal, how): exact comparison, first with free forward values, then computed."""
    backend = SympyBackend()
    for with_forward, how in ((True, "identical once the derived adjoints are expanded"),
                              (False, "equal using the forward equations")):
        env = step_values(derivation, _symbolic_free(derivation, dims, with_forward), backend,
                          dims, forward_free=with_forward)
        mine = Evaluator(backend, dims, env)(given)
        derived = env[target]
        view = PolynomialView(list(mine) + list(derived))
        if all(view.equal(a, b) for a, b in zip(mine, derived)):
            return True, how
    return False, ""


def _random_free(derivation: Derivation, dims, rng: np.random.Generator) -> dict[str, Any]:
    """Random values for the free names; a log's operand is kept positive where it is a name."""
    return {name: np.round(rng.uniform(-1, 1, _shape_of(derivation, name, dims)), 2)
            for name in _free_names(derivation)}


def _numeric(derivation: Derivation, target: str, given: MatrixExpr, dims, seed: int = 0):
    """(relative error, env, mine, derived) at random float64 values."""
    backend = NumpyBackend()
    env = step_values(derivation, _random_free(derivation, dims, np.random.default_rng(seed)),
                      backend, dims)
    mine = Evaluator(backend, dims, env)(given)
    derived = env[target]
    scale = max(float(np.max(np.abs(derived))), 1e-12)
    return float(np.max(np.abs(mine - derived))) / scale, env, mine, derived


def simplified_difference(derivation: Derivation, target: str, given: MatrixExpr) -> str:
    """given − derived at size 1, over the step's named values, simplified.

    The forward values and the adjoints the given expression uses stay symbols, so the
    difference reads in the person's own terms. At size 1 the names read as in the
    derivation (z, h_tilde, dh); when the difference
    only shows at larger sizes (a missing transpose), the first differing entry at the
    check sizes is shown instead.
    """
    backend = SympyBackend()
    adjoints = {a.symbol.name for a in derivation.backward + derivation.parameters}
    keep = frozenset(s.name for s in given.atoms(MatrixSymbol) if s.name in adjoints) - {target}
    for sizes, plain in (({d: 1 for d in derivation.cell.dimensions} | {"m": 1}, True),
                         (CHECK_SIZES, False)):
        dims = dimension_values(derivation.cell, sizes)
        try:
            free = _symbolic_free(derivation, dims, True, plain, tuple(sorted(keep)))
            env = step_values(derivation, free, backend, dims, forward_free=True, keep=keep)
            diff = Evaluator(backend, dims, env)(given) - env[target]
        except _UNFIT:  # a shape that only fits at other sizes
            continue
        for (i, j), entry in np.ndenumerate(np.array(diff.tolist(), dtype=object)):
            entry = sp.factor(sp.simplify(entry))
            if entry != 0:
                where = "" if plain else f"entry [{i},{j}]: "
                return where + str(entry)
    return "0 in these variables (it differs only through the forward equations)"


def counterexample(derivation: Derivation, target: str, given: MatrixExpr) -> str:
    """The smallest sizes and values found where the two differ, written out."""
    for sizes in ({d: 1 for d in derivation.cell.dimensions} | {"m": 1}, CHECK_SIZES):
        dims = dimension_values(derivation.cell, sizes)
        try:
            error, env, mine, derived = _numeric(derivation, target, given, dims, seed=1)
        except _UNFIT:  # shapes that only fit at other sizes
            continue
        if error > NUMERIC_TOLERANCE:
            i, j = np.unravel_index(np.argmax(np.abs(mine - derived)), mine.shape)
            size_text = ", ".join(f"{k}={v}" for k, v in sizes.items())
            values = "; ".join(f"{n}={_fmt(env[n])}" for n in _free_names(derivation))
            return (f"at {size_text} with {values}: derived {target}[{i},{j}] = "
                    f"{derived[i, j]:.6g}, given {mine[i, j]:.6g}")
    return ""


def _fmt(value: np.ndarray) -> str:
    return np.array2string(value, precision=2, separator=",").replace("\n", "")


def check_one(derivation: Derivation, target: str, expr, aliases: Mapping[str, str] = _NONE) -> HandResult:
    """Compare one hand expression with the derived adjoint of ``target``."""
    given_text = expr if isinstance(expr, str) else str(expr)
    symbols = _symbols(derivation)
    resolve = Resolver(symbols, aliases, derivation.cell.dimensions)
    try:
        name = _target(target, symbols, resolve)
        if name not in {a.symbol.name for a in derivation.backward + derivation.parameters}:
            raise HandParseError(f"{target} is not a derived adjoint (derived: "
                                 f"{', '.join(a.symbol.name for a in derivation.backward)})")
        given = _given(expr, symbols, resolve, name)
        _refuse_later_adjoints(derivation, name, given)
        if not _same_shape(given, symbols[name]):
            raise HandParseError(f"has shape {ops.fmt_shape(ops.shape_of(given))} but {name} is "
                                 f"{ops.fmt_shape(symbols[name].shape)}")
        dims = dimension_values(derivation.cell, CHECK_SIZES)
        symbolic, how = _symbolic_verdict(derivation, name, given, dims)
        error = _numeric(derivation, name, given, dims)[0]
    except (HandParseError, EvaluationError, ValueError, TypeError, ZeroDivisionError, OverflowError) as err:
        limits: dict[type[Exception], str] = {TooDeep: "too deep", TooLarge: "too large", Refused: "refused"}
        limit = limits.get(type(err), "")
        return HandResult(target, given_text, False, error=str(err), limit=limit)
    except RecursionError:  # SymPy recursing through a long sum or product within the token limit
        return HandResult(target, given_text, False, limit="too deep",
                          error="it is nested too deeply to be evaluated (split it over several lines)")
    numeric_ok = error <= NUMERIC_TOLERANCE if np.isfinite(error) else symbolic  # log of < 0
    result = HandResult(name, given_text, symbolic and numeric_ok, symbolic, error, how)
    if not result.equivalent:
        result.difference = simplified_difference(derivation, name, given)
        result.counterexample = counterexample(derivation, name, given)
    return result


def _refuse_later_adjoints(derivation: Derivation, target: str, given: MatrixExpr) -> None:
    """A line may use forward values, parameters, the incoming gradients and the adjoints derived
    before its target (in the derivation's order); its own adjoint or a later one makes it a
    tautology or a circle, so it is refused."""
    order = [a.symbol.name for a in derivation.backward + derivation.parameters]
    later = set(order[order.index(target):])
    incoming = {s.name for s in derivation.incoming.values()}
    used = sorted({s.name for s in given.atoms(MatrixSymbol)} & later - incoming,
                  key=order.index)
    if used:
        earlier = ", ".join(order[: order.index(target)]) or "none"
        raise Refused(f"{target} may not be written in terms of {', '.join(used)} (its own adjoint or one "
                      f"derived after it); it may use forward values, parameters, incoming gradients and the "
                      f"adjoints derived before it ({earlier})")


def _same_shape(a: MatrixExpr, b: MatrixExpr) -> bool:
    shape = ops.shape_of(a)
    return ops.same_dim(shape[0], b.shape[0]) and ops.same_dim(shape[1], b.shape[1])


def check_hand_derivation(cell: Cell | Derivation,
                          derivations: Mapping[str, Any] | Iterable[tuple[str, Any]],
                          aliases: Mapping[str, str] = _NONE) -> list[HandResult]:
    """One :class:`HandResult` per ``{target: expression}`` (LaTeX string or SymPy).

    ``derivations`` may also be a sequence of (target, expression) pairs, so that one target
    can be given twice (two attempts in a file).
    """
    derivation = cell if isinstance(cell, Derivation) else derive(cell)
    pairs = derivations.items() if isinstance(derivations, Mapping) else derivations
    return [check_one(derivation, target, expr, aliases) for target, expr in pairs]


def check_limited(derivation: Derivation, target: str, expr: str, aliases: Mapping[str, str] = _NONE,
                  seconds: float = LINE_SECONDS, memory: int = LINE_MEMORY) -> HandResult:
    """:func:`check_one` in a forked process with its own time and memory limit, so that no
    line can stall or exhaust the checker: past them it is "too slow" or "too large"."""
    from .limited import run_limited

    def work() -> HandResult:
        with np.errstate(all="ignore"):
            return check_one(derivation, target, expr, aliases)

    outcome = run_limited(work, seconds, memory)
    if outcome.status == "ok":
        return outcome.value
    limit = {"failed": ""}.get(outcome.status, outcome.status)
    return HandResult(target, expr, False, error=outcome.message or outcome.status, limit=limit)


def read_entries(path: str | Path) -> tuple[list[tuple[int | str, str, str]], list[str]]:
    """``(line, target, latex)`` of every checkable line, and one note per line that is not.

    A ``.ipynb`` file is read from its markdown cells' LaTeX (``$$ … $$``, ``align``); any other
    file has one ``target = latex`` a line, in UTF-8 (else Latin-1, with a note). Blank lines and
    ``#`` or ``%`` comments are skipped; a line without ``=`` is a note naming it.
    """
    path = Path(path)
    notes: list[str] = []
    numbered: Sequence[tuple[int | str, str]]  # (line number or notebook place, text)
    if path.suffix == ".ipynb":
        from .grading.notebook import derivation_lines

        numbered, notes = derivation_lines(path)
    else:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            text = data.decode("latin-1")
            notes.append(f"{path}: not UTF-8 (byte {data[err.start]:#04x} at position {err.start}); read as Latin-1")
        numbered = list(enumerate(text.splitlines(), 1))
    entries: list[tuple[int | str, str, str]] = []
    for number, line in numbered:
        line = line.strip().strip("$").strip()
        if not line or line.startswith(("#", "%")):
            continue
        if "=" not in line:
            notes.append(f"{path}:{number}: expected 'target = expression', got {line[:60]!r}")
            continue
        target, *forms = line.split("=")  # a = b = c: two forms of a, each checked
        entries += [(number, target.strip(), form.strip()) for form in forms]
    return entries, notes


def check_file(cell: str | Path | Cell | Derivation, path: str | Path,
               seconds: float = LINE_SECONDS) -> tuple[list[HandResult], list[str]]:
    """Every line of a derivation file (or notebook) checked under its limits, and the notes."""
    entries, notes = read_entries(path)
    derivation = cell if isinstance(cell, Derivation) else derive(resolve_cell(cell))
    results = []
    for number, target, expr in entries:
        result = check_limited(derivation, target, expr, seconds=seconds)
        result.line = number
        results.append(result)
    return results, notes


def read_lines(path: str | Path) -> list[tuple[str, str]]:
    """``target = latex`` per line; blank lines and ``#`` or ``%`` comments are skipped."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip().strip("$").strip()
        if not line or line.startswith(("#", "%")):
            continue
        if "=" not in line:
            raise HandParseError(f"{path}:{number}: expected 'target = expression'")
        target, expr = line.split("=", 1)
        out.append((target.strip(), expr.strip()))
    return out


def main(cell: str | Path | Cell, file: str | Path) -> int:
    """``symbptt handcheck CELL FILE``: print a verdict per line; 0 when all are equivalent.

    Each line is checked with its own time and memory limit (a line past them, or nested too
    deeply, gets its own verdict and the others are still checked); a line that cannot be read
    is one note naming it. No line means nothing was checked: exit status 1.
    """
    results, notes = check_file(cell, file)
    for note in notes:
        print(f"note: {note}")
    for result in results:
        print(result.report())
    wrong = sum(not r.equivalent for r in results)
    print(f"\n{len(results) - wrong} of {len(results)} equivalent"
          + (f"; {len(notes)} line(s) not read" if notes else ""))
    return 1 if wrong or notes or not results else 0


__all__ = ["HandParseError", "HandResult", "Parser", "Refused", "TooDeep", "TooLarge", "check_file",
           "check_hand_derivation", "check_limited", "check_one", "main", "parse_latex", "read_entries",
           "read_lines", "tokenize"]
