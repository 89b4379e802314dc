"""The cell DSL: dimensions, inputs, states, parameters and the ordered equations of one step.

A cell file in ``derivations/`` builds one :class:`Cell` and names it ``cell``::

    cell = Cell("rnn", "Vanilla RNN of the course notebook.")
    n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
    x = cell.input("x", n_x)
    h_prev = cell.state("h", n_h)
    Whx, Whh = cell.weight("Whx", n_h, n_x), cell.weight("Whh", n_h, n_h)
    bh = cell.bias("bh", n_h)
    h = cell.update("h", tanh(Whx @ x + Whh @ h_prev + bh))
    ...

Every per-step value has ``m`` columns (the batch). Each equation is checked when it is
written: a shape mismatch, an undeclared dimension or symbol, or a name used twice raises
:class:`CellError` naming the equation. :meth:`Cell.validate` checks the cell as a whole.

Declaring a name again exactly as before (a dimension, an input, a state, a parameter, an
equation) does nothing and returns the same symbol, so a Jupyter cell of declarations can be
run twice; declaring it differently is a :class:`CellError` that names it and both versions.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr

from . import ops
from .arith import NumberArithmetic
from .ops import BATCH, Broadcast, ShapeError, fmt_shape, same_dim

#: Roles of the symbols that are learned parameters.
PARAMETER_ROLES = ("weight", "bias", "vector")


class CellError(ValueError):
    """A cell definition that cannot be derived; the message names the equation or symbol."""


class Var(NumberArithmetic, MatrixSymbol):
    """A named per-step matrix (input, state, intermediate); ``1 - v`` means ones minus v.

    A number next to it means that number times the all-ones matrix (``2 - v``, ``v + 1``);
    see :mod:`symbptt.arith`.
    """


@dataclass(frozen=True)
class Symbol:
    """One named symbol of a cell: its role, shape and meaning (for reports)."""

    name: str
    #: "dim", "input", "state", "weight", "bias", "vector", "intermediate", "next", "readout"
    role: str
    shape: tuple
    meaning: str = ""
    latex: str = ""


@dataclass(frozen=True)
class Equation:
    """``name = expr``; ``kind`` is "let" (intermediate), "update" (next state) or "readout"."""

    name: str
    expr: MatrixExpr
    kind: str
    meaning: str = ""
    latex: str = ""
    #: True for equations the derivation introduced (pre-activations, stacks).
    auto: bool = False


#: Names a generated kernel uses for itself (its module, its functions' locals, Python's
#: builtins): a cell that declared one would break the kernel at run time.
KERNEL_NAMES = frozenset({
    "np", "sys", "threading", "T", "m", "t", "dtype", "parameters", "x", "initial_states",
    "cache", "upstream", "truncate", "outputs", "gradients", "cut", "rng", "dims", "missing",
    "unknown", "DIMS", "PARAMETERS", "STATES", "INPUTS", "READOUTS", "forward", "backward",
    "init_parameters", "rows", "cross_entropy", "cross_entropy_upstream", "sigmoid", "softmax",
    "relu", "gates", "dgates", "chunk", "workspace", "release_workspace",
    # the gates buffer's companions (gates is reserved, so these are never renamed)
    "gates_seq", "dgates_seq", "dgates_bias", "dgates_chunk", "dgates_all",
    # the torch kernel's module, helpers and locals
    "torch", "math", "device", "generator", "normal", "uniform",
    # the notebook API's sequence functions
    "caches", "yt", "totals", "grads", "key",
    # the Numba backend's module, switch and compiled helpers (and array_<op>, refused by prefix)
    "numba", "FUSED", "FUSED_MAX_WORK", "first", "stop", "scalar_tanh",
}) | frozenset(n for n in dir(builtins) if not n.startswith("__"))

#: Suffixes and prefixes of the arrays a kernel makes for a cell's value ``v``: a declared
#: name of that form collides with the kernel's array of another value.
_KERNEL_FORMS = ("{}_seq", "{}_all", "{}_flat", "d{}_up", "d{}_carry", "prod_{}", "d{}_rest_seq",
                 "d{}_all")
#: The same for a state ``s`` only: the adjoint arriving at a step (``dh_next``) and the
#: initial state, whose gradient key ``dh0`` a parameter ``h0`` would share.
_STATE_FORMS = ("d{}_next", "{}0")


def check_name(name: str, what: str) -> None:
    """Refuse a name that cannot be a variable of the generated kernel; say why."""
    if not isinstance(name, str) or not name.isidentifier():
        raise CellError(f"{what} name {name!r} is not a Python identifier (letters, digits and "
                        f"underscores, not starting with a digit)")
    if keyword.iskeyword(name):
        raise CellError(f"{what} name {name!r} is a Python keyword; choose another")
    if name in KERNEL_NAMES or name.startswith(("_", "array_")):
        raise CellError(f"{what} name {name!r} is a name the generated kernel uses for itself "
                        f"(or starts with an underscore or array_); choose another")


def prev_name(state: str) -> str:
    """Name of a state's value entering the step: ``h`` → ``h_prev``."""
    return f"{state}_prev"


def step_name(input_name: str) -> str:
    """Name of an input's slice at one step: ``x`` → ``xt`` (as the notebook writes it)."""
    return f"{input_name}t"


@dataclass
class Cell:
    """One recurrent cell: what it declares and the ordered equations of one step."""

    name: str
    doc: str = ""
    symbols: dict[str, Symbol] = field(default_factory=dict)
    equations: list[Equation] = field(default_factory=list)
    dimensions: dict[str, sp.Symbol] = field(default_factory=dict)
    #: Also generate the course notebook's function names (``gru_one_step_forward`` …).
    notebook_api: bool = False
    #: Names for print only (reports): operand expression → (LaTeX base, meaning).
    printed_names: dict = field(default_factory=dict)
    #: The sums each equation's source writes, terms in source order (reports print them so).
    term_order: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        """A short summary (the dataclass's own repr dumps every SymPy expression)."""
        parts = [("dims", list(self.dimensions)), ("inputs", self.inputs), ("states", self.states),
                 ("parameters", [p.name for p in self.parameters]),
                 ("equations", [e.name for e in self.equations])]
        return f"Cell({self.name!r}, " + ", ".join(f"{k}=[{', '.join(v)}]" for k, v in parts) + ")"

    def __post_init__(self) -> None:
        # The name becomes file names (generated/numpy/<name>.py) and, with notebook_api,
        # function names (<name>_forward): an identifier keeps both safe.
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise CellError(f"cell name {self.name!r} is not a Python identifier (letters, "
                            f"digits and underscores, not starting with a digit, not a keyword); "
                            f"it names files and functions")
        if not isinstance(self.doc, str):
            raise CellError(f"cell {self.name}: the description must be a string, got "
                            f"{type(self.doc).__name__}")

    # -- declarations ------------------------------------------------------------------

    def dims(self, *names: str) -> tuple[sp.Symbol, ...]:
        """Declare dimension names; returns their SymPy symbols in order."""
        out = []
        for name in names:
            if self._redeclared(Symbol(name, "dim", ())):
                out.append(self.dimensions[name])
                continue
            self._claim(name, "dimension")
            if name == str(BATCH):
                raise CellError(f"dimension {name!r} is reserved for the batch")
            sym = sp.Symbol(name, integer=True, positive=True)
            self.dimensions[name] = sym
            self.symbols[name] = Symbol(name, "dim", ())
            out.append(sym)
        return tuple(out)

    def input(self, name: str, rows, meaning: str = "", latex: str = "") -> Var:
        """A per-step input; the sequence has shape (rows, m, T), a step (rows, m)."""
        if name != "x":  # the kernel's argument is x whatever the input is called
            check_name(name, "input")
        return self._declare(step_name(name), "input", (rows, BATCH), meaning, latex, key=name)

    def state(self, name: str, rows, meaning: str = "", latex: str = "") -> Var:
        """A recurrent state; returns its value entering the step (``h_prev``)."""
        check_name(name, "state")
        return self._declare(prev_name(name), "state", (rows, BATCH), meaning, latex, key=name)

    def weight(self, name: str, rows, cols, meaning: str = "", latex: str = "") -> MatrixSymbol:
        """A weight matrix parameter of shape (rows, cols), shared by every step."""
        self._check_dims(name, (rows, cols))
        sym = MatrixSymbol(name, sp.sympify(rows), sp.sympify(cols))
        self._declare_parameter(Symbol(name, "weight", sym.shape, meaning, latex))
        return sym

    def bias(self, name: str, rows, meaning: str = "", latex: str = "") -> MatrixExpr:
        """A bias of shape (rows, 1), broadcast over the batch where it is used."""
        self._check_dims(name, (rows, 1))
        sym = MatrixSymbol(name, sp.sympify(rows), sp.Integer(1))
        self._declare_parameter(Symbol(name, "bias", sym.shape, meaning, latex))
        return Broadcast(sym)

    def vector(self, name: str, rows, meaning: str = "", latex: str = "") -> MatrixExpr:
        """A per-unit vector parameter of shape (rows, 1): one factor per unit, shared by steps.

        Used elementwise (a peephole ``odot(pf, c_prev)``, IndRNN's ``odot(u, h_prev)``), it
        is broadcast over the batch as a bias is; it has its own role ("vector") so kernels
        initialise it as a per-unit factor, not as an additive offset, and reports name it so.
        """
        self._check_dims(name, (rows, 1))
        sym = MatrixSymbol(name, sp.sympify(rows), sp.Integer(1))
        self._declare_parameter(Symbol(name, "vector", sym.shape, meaning, latex))
        return Broadcast(sym)

    # -- equations -----------------------------------------------------------------------

    def let(self, name: str, expr, meaning: str = "", latex: str = "") -> Var:
        """A named intermediate of the step (a gate, a candidate, …)."""
        shape = self._add(name, expr, "let", meaning, latex)
        return self._var(name, "intermediate", shape, meaning, latex)

    def update(self, state: str, expr, meaning: str = "", latex: str = "") -> Var:
        """The state's value leaving the step; returns it for use in later equations."""
        sym = self.symbols.get(prev_name(state))
        if sym is None or sym.role != "state":
            raise CellError(f"update of {state!r}: no state of that name (declare it with cell.state)")
        shape = self._add(state, expr, "update", meaning, latex, expected=sym.shape)
        return self._var(state, "next", shape, meaning or sym.meaning, latex)

    def readout(self, name: str, expr, meaning: str = "", latex: str = "") -> Var:
        """An output of the step that no later step sees (ŷ)."""
        shape = self._add(name, expr, "readout", meaning, latex)
        if not same_dim(shape[1], BATCH):
            raise CellError(
                f"readout {name}: has shape {fmt_shape(shape)}; a readout needs one column per "
                f"batch entry, (n, m)"
            )
        return self._var(name, "readout", shape, meaning, latex)

    def print_as(self, expr, latex: str, meaning: str = ""):
        """Name an operand for reports only (``u = cell.print_as(stack(h_prev, x), "u")``).

        The derivation and the kernels are unchanged; a report prints the operand as
        ``latex`` with the step's time index (**u**_t) instead of its definition. Returns
        ``expr``, so it can be used in the equations that follow.
        """
        self.printed_names[expr] = (latex, meaning)
        return expr

    # -- queries -------------------------------------------------------------------------

    def by_role(self, *roles: str) -> list[Symbol]:
        """Declared symbols with one of the given roles, in declaration order."""
        return [s for s in self.symbols.values() if s.role in roles]

    @property
    def parameters(self) -> list[Symbol]:
        """Weights, biases and per-unit vectors, in declaration order (the gradients' keys)."""
        return self.by_role(*PARAMETER_ROLES)

    @property
    def states(self) -> list[str]:
        return [s.name[: -len("_prev")] for s in self.by_role("state")]

    @property
    def inputs(self) -> list[str]:
        return [s.name[:-1] for s in self.by_role("input")]

    @property
    def readouts(self) -> list[str]:
        return [e.name for e in self.equations if e.kind == "readout"]

    def validate(self) -> None:
        """Whole-cell checks: every state updated, every parameter and input used."""
        updated = {e.name for e in self.equations if e.kind == "update"}
        for state in self.states:
            if state not in updated:
                raise CellError(f"cell {self.name}: state {state!r} is never updated "
                                f"(add cell.update({state!r}, ...))")
        used: set[str] = set()
        for eq in self.equations:
            used |= {s.name for s in eq.expr.atoms(MatrixSymbol)}
        for sym in self.parameters + self.by_role("input"):
            if sym.name not in used:
                raise CellError(f"cell {self.name}: {sym.role} {sym.name!r} is declared but "
                                f"never used in an equation")
        if not self.equations:
            raise CellError(f"cell {self.name}: no equations")
        self._check_kernel_names()
        self._check_dimensions()

    def _check_kernel_names(self) -> None:
        """No declared name is the name of an array the kernel makes for another value."""
        names = list(self.symbols) + [e.name for e in self.equations] + self.inputs + self.states
        declared = set(names)
        for value in names:
            forms = _KERNEL_FORMS + (_STATE_FORMS if value in self.states else ())
            for form in forms:
                if form.format(value) in declared:
                    raise CellError(f"cell {self.name}: the name {form.format(value)!r} is what "
                                    f"the generated kernel calls its array for {value!r}; "
                                    f"rename one of them")

    def _check_dimensions(self) -> None:
        """Every dimension is the size of some parameter, input or state axis on its own,
        so that a kernel can read it from the arrays it is given."""
        axes = {d for s in self.symbols.values() if s.role != "dim" for d in s.shape}
        for name, sym in self.dimensions.items():
            if sym in axes:
                continue
            used = any(sym in sp.sympify(d).free_symbols for d in axes)
            raise CellError(
                f"cell {self.name}: dimension {name!r} " + (
                    "appears only inside sums of sizes, so a kernel cannot read it from its "
                    "arguments; give some parameter, input or state exactly that size" if used
                    else "is declared but no parameter, input or state uses it; remove it "
                         "from cell.dims"))

    # -- internals ---------------------------------------------------------------------------

    def _redeclared(self, new: Symbol) -> bool:
        """True when ``new.name`` is already declared exactly as ``new`` (a notebook cell run
        again): the declaration is then a no-op. Declared otherwise, a CellError naming it."""
        old = self.symbols.get(new.name)
        if old is None:
            return False
        if old == new:
            return True
        raise CellError(f"{new.role} name {new.name!r} is used twice in cell {self.name}: first "
                        f"{_described(old)}, now {_described(new)}; declare it once (or start "
                        f"a new Cell)")

    def _declare_parameter(self, new: Symbol) -> None:
        """Record a weight, bias or vector (nothing when it is declared again identically)."""
        if not self._redeclared(new):
            self._claim(new.name, "parameter")
            self.symbols[new.name] = new

    def _claim(self, name: str, what: str) -> None:
        check_name(name, what)
        taken = set(self.symbols) | {e.name for e in self.equations}
        if name in taken:
            raise CellError(f"{what} name {name!r} is used twice in cell {self.name}")

    def _check_dims(self, where: str, shape) -> None:
        for d in shape:
            for s in sp.sympify(d).free_symbols:
                if s != BATCH and str(s) not in self.dimensions:
                    raise CellError(f"{where}: dimension {s} is never defined "
                                    f"(declare it with cell.dims)")

    def _declare(self, name, role, shape, meaning, latex, key) -> Var:
        self._check_dims(key, shape)
        rows, cols = sp.sympify(shape[0]), sp.sympify(shape[1])
        if not self._redeclared(Symbol(name, role, (rows, cols), meaning, latex)):
            self._claim(name, role)
        return self._var(name, role, shape, meaning, latex)

    def _var(self, name, role, shape, meaning, latex) -> Var:
        var = Var(name, sp.sympify(shape[0]), sp.sympify(shape[1]))
        self.symbols.setdefault(name, Symbol(name, role, var.shape, meaning, latex))
        return var

    def _add(self, name, expr, kind, meaning, latex, expected=None):
        """Check one equation (name, symbols, shape) and append it; returns its shape."""
        where = f"equation {name} ({kind})"
        if Equation(name, expr, kind, meaning, latex) in self.equations:  # the same, run again
            return ops.shape_of(expr)
        _check_expression(where, expr, set(self.dimensions.values()) | {BATCH})
        self._check_name(where, name, kind)
        self._check_symbols(where, name, expr, kind)
        shape = self._shape(where, expr, expected)
        self.equations.append(Equation(name, expr, kind, meaning, latex))
        from .report_order import source_sums  # the source's term order, for reports
        self.term_order[name] = source_sums()
        return shape

    def _check_name(self, where: str, name: str, kind: str) -> None:
        if kind != "update":
            self._claim(name, "equation")
        elif name in {e.name for e in self.equations}:
            raise CellError(f"{where}: state {name!r} is updated twice")

    def _check_symbols(self, where: str, name: str, expr: MatrixExpr, kind: str) -> None:
        """Every matrix symbol is declared or defined earlier; an update does not read itself."""
        known = set(self.symbols)
        for sym in sorted(expr.atoms(MatrixSymbol), key=str):
            if sym.name == name and kind == "update":
                raise CellError(f"{where}: uses the new value of {name} to define itself; use "
                                f"{prev_name(name)}")
            if sym.name not in known:
                raise CellError(f"{where}: uses {sym.name!r}, which is not declared or not yet "
                                f"defined (equations run in order; a cycle within a step "
                                f"is not allowed)")

    def _shape(self, where: str, expr: MatrixExpr, expected) -> tuple:
        """The equation's shape, or a CellError naming it (and the likely fix)."""
        try:
            shape = ops.shape_of(expr)
        except ShapeError as err:
            raise CellError(f"{where}: {err}{_shape_hint(expr)}") from None
        except TypeError as err:
            raise CellError(f"{where}: {err}") from None
        self._check_dims(where, shape)
        if expected is not None and not (same_dim(shape[0], expected[0])
                                         and same_dim(shape[1], expected[1])):
            raise CellError(f"{where}: has shape {fmt_shape(shape)} but the state is "
                            f"{fmt_shape(expected)}")
        return shape

    def _repr_latex_(self) -> str:
        from .notation import cell_equations_latex

        return cell_equations_latex(self)


def _described(sym: Symbol) -> str:
    """``weight of shape (n_h, n_x), meaning 'input weights'``: a declaration in words."""
    text = sym.role if not sym.shape else f"{sym.role} of shape {fmt_shape(sym.shape)}"
    return text + "".join(f", {k} {v!r}" for k, v in (("meaning", sym.meaning), ("latex", sym.latex)) if v)


def _check_expression(where: str, expr, allowed: set) -> None:
    """A matrix expression built from symbptt's vocabulary, with no undeclared scalar."""
    if isinstance(expr, sp.Function) and any(isinstance(a, MatrixExpr) for a in expr.args):
        raise CellError(f"{where}: {expr.func} is not an elementwise function symbptt knows; "
                        f"use one of {', '.join(ops.FUNCTIONS)} from symbptt")
    if not isinstance(expr, MatrixExpr):
        raise CellError(f"{where}: needs a matrix expression, got {type(expr).__name__} "
                        f"{expr!r}")
    scalars = sorted(str(s) for s in expr.free_symbols
                     if isinstance(s, sp.Symbol) and s not in allowed)
    if scalars:
        raise CellError(f"{where}: uses the scalar symbol(s) {', '.join(map(repr, scalars))}, "
                        f"which the cell does not declare; a coefficient must be a number, "
                        f"a learned one a parameter")
    for fn in expr.atoms(sp.Function):
        raise CellError(f"{where}: {fn.func} is not a matrix operation; use the functions "
                        f"of symbptt ({', '.join(ops.FUNCTIONS)})")


def _shape_hint(expr) -> str:
    """The likely fix of a shape error: ``odot`` for a ``*`` between per-step values, or one
    dimension for two sizes that must be equal."""
    for node in sp.preorder_traversal(expr):
        hint = _product_hint(node) or _sizes_hint(node)
        if hint:
            return hint
    return ""


def _product_hint(node) -> str:
    """``z * h_prev`` is SymPy's matrix product: two operands of one shape (n, m) meant ⊙."""
    if not isinstance(node, sp.MatMul):
        return ""
    _, factors = ops._matmul_split(node)
    for a, b in itertools.pairwise(factors):
        if a.shape == b.shape and not same_dim(a.shape[1], b.shape[0]):
            return (f"; if you meant the elementwise product, write odot({a}, {b}) "
                    f"(in SymPy `*` is the matrix product, like `@`)")
    return ""


def _sizes_hint(node) -> str:
    """A sum or ⊙ of two declared sizes (tanh(x) + W·h_prev): they may have to be one."""
    if not isinstance(node, (sp.MatAdd, sp.HadamardProduct)):
        return ""
    rows = sorted({a.shape[0] for a in node.args if getattr(a, "is_Matrix", False)}, key=str)
    if len(rows) != 2 or not all(r.is_Symbol for r in rows):
        return ""
    return (f"; if {rows[0]} and {rows[1]} must be the same size (an input added to a hidden "
            f"pre-activation), declare one dimension and use it for both (the kernel's DIMS "
            f"then ask for it once)")
