"""Template contexts: a derivation turned into the names, lines and comments templates print.

Everything here is plain data (dicts, lists, strings) in a deterministic order, so the
same cell always renders to the same bytes. Templates are jinja2 with ``StrictUndefined``:
a name a template uses but the context lacks is an error, never an empty string.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import sympy as sp
from sympy import MatrixSymbol

from . import ops
from .array_module import NUMPY, ArrayModule, array_module
from .cell import CellError, prev_name, step_name
from .derive import Derivation, derive
from .kernels import plan_kernel
from .kernels.array_printer import ArrayPrinter, printer_for
from .paths import TEMPLATES
from .printers import NumPyPrinter, numpy_code
from .text import TextPrinter, text  # noqa: F401 - re-exported for templates and tools


def pytuple(items) -> str:
    """A list of names as a Python tuple literal: ``("h", "c")``, ``("h",)``."""
    items = [f'"{i}"' for i in items]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def docstring(text: str) -> str:
    """Any text made safe inside a generated module's docstring: a backslash cannot start an
    escape (``\\u``, ``\\N``), a triple quote cannot end the docstring early, and a control
    character other than a newline or tab (a NUL is a SyntaxError in source) is written as its
    escape."""
    text = str(text).replace("\\", "\\\\").replace('"""', '""\\"')
    return "".join(c if c in "\n\t" or c.isprintable() else c.encode("unicode_escape").decode()
                   for c in text)


def environment(directory: Path = TEMPLATES) -> jinja2.Environment:
    """The jinja2 environment for ``templates/``: strict, no autoescape, stable whitespace."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["pytuple"] = pytuple
    env.filters["docstring"] = docstring
    env.filters["add_suffix"] = lambda s, suffix: f"{s}{suffix}"
    env.filters["add_prefix"] = lambda s, prefix: f"{prefix}{s}"
    return env


def dim_code(expr) -> str:
    return NumPyPrinter().doprint(sp.sympify(expr))


def _dim_sources(derivation: Derivation, per_step: bool = False) -> list[tuple[str, str]]:
    """How a kernel recovers each dimension from its arguments: ``n_h = Wz.shape[0]``.

    ``per_step``: inside a one-step function, where inputs are ``xt`` and states ``h_prev``.
    """
    cell = derivation.cell
    out = []
    for name, sym in cell.dimensions.items():
        source = None
        for p in cell.parameters:
            for axis, d in enumerate(p.shape):
                if source is None and d == sym:
                    source = f"{p.name}.shape[{axis}]"
        for s in cell.by_role("input", "state"):
            if source is None and s.shape[0] == sym:
                base = s.name[:-1] if s.role == "input" else s.name[: -len("_prev")]
                source = f"{s.name}.shape[0]" if per_step else (
                    f"{base}_seq.shape[0]" if s.role == "input" else f"{base}_seq.shape[1]")
        if source is None:
            raise ValueError(f"cell {cell.name}: dimension {name} is not the size of any "
                             f"parameter, input or state axis on its own")
        out.append((name, source))
    return out


def _symbols_in(exprs) -> list[str]:
    seen: dict[str, None] = {}
    for e in exprs:
        for s in sorted(e.atoms(MatrixSymbol), key=lambda s: s.name):
            seen.setdefault(s.name, None)
    return list(seen)


def _recurrent_parameters(derivation: Derivation) -> list[str]:
    """Parameters that a next state depends on (not only a readout)."""
    deps: dict[str, set[str]] = {}
    for eq in derivation.forward:
        names = {s.name for s in eq.expr.atoms(MatrixSymbol)}
        deps[eq.name] = names | set().union(*[deps.get(n, set()) for n in names])
    needed: set[str] = set()
    for eq in derivation.forward:
        if eq.kind == "update":
            needed |= deps[eq.name]
    return [p.name for p in derivation.cell.parameters if p.name in needed]


def _section_lines(section, printer: ArrayPrinter) -> dict:
    return {"setup": printer.lines(section.setup), "loop": printer.lines(section.loop),
            "after": printer.lines(section.after)}


def _plan_context(derivation: Derivation, printer: ArrayPrinter) -> tuple[dict, dict, list[str]]:
    """The planned forward and backward as lines of one array library (see
    :mod:`symbptt.kernels`), and the parameters the backward reads that the cache does not hold."""
    plan = plan_kernel(derivation)
    fwd = _section_lines(plan.forward, printer)
    fwd["cache"] = plan.forward.cache
    fwd["stored"] = [{"name": n, "rows": printer.dim(rows)} for n, rows in plan.forward.stored]
    bwd = _section_lines(plan.backward, printer)
    bwd["grads"] = [{"key": k, "code": printer.value(v), "comment": note}
                    for k, v, note in plan.backward.grads]
    backward_text = "\n".join([s for _, s in _dim_sources(derivation)] + bwd["setup"] + bwd["loop"]
                              + bwd["after"] + [g["code"] for g in bwd["grads"]])
    cached = set(fwd["cache"])
    backward_params = [p.name for p in derivation.cell.parameters if p.name not in cached
                       and re.search(rf"\b{re.escape(p.name)}\b", backward_text)]
    return fwd, bwd, backward_params


def _regenerate(cell: str, source: str, module: ArrayModule) -> str:
    """How the kernel's docstring says to regenerate it (``symbptt build`` writes NumPy's)."""
    if module is NUMPY:
        return "`symbptt build`" if source else "symbptt.kernel_source(cell)"
    if source:
        return f"`symbptt codegen {cell} --module {module.name}`"
    return f'symbptt.kernel_source(cell, module="{module.name}")'


def kernel_context(derivation: Derivation, source: str = "",
                   module: str | ArrayModule = NUMPY) -> dict:
    """Everything a kernel template (``module.template``: ``templates/numpy_kernel.py.j2``,
    ``templates/torch_kernel.py.j2``) prints for one cell, spelled for the array library
    ``module``. The notebook's own functions are NumPy's only (``notebook`` is None else)."""
    module = array_module(module)
    cell = derivation.cell
    states, inputs, readouts = cell.states, cell.inputs, cell.readouts
    if len(inputs) != 1:
        raise CellError(f"cell {cell.name}: a generated kernel takes one input sequence x; the "
                        f"cell declares {len(inputs)} ({', '.join(inputs) or 'none'})")
    params = cell.parameters

    def rows(shape) -> str:
        return dim_code(shape[0])

    fwd, bwd, backward_params = _plan_context(derivation, printer_for(module))
    # The notebook interface: one step with no readout gradient (dy = 0).
    notebook = (notebook_context(cell, source)
                if cell.notebook_api and module.declarations == NUMPY.declarations else None)

    return {
        "module": module,
        "regenerate": _regenerate(cell.name, source, module),
        "cell": cell.name,
        "doc": cell.doc,
        "source": source,
        "equations": [f"{e.name} = {text(e.expr)}" for e in cell.equations],
        "backward_equations": [f"{a.symbol.name} = {text(a.expr)}"
                               for a in derivation.backward]
                              + [f"{a.symbol.name} = Σ_t {text(a.expr)}"
                                 for a in derivation.parameters],
        "dims": [{"name": n, "source": s} for n, s in _dim_sources(derivation)],
        "dim_names": list(cell.dimensions),
        "params": [{"name": p.name, "role": p.role, "rows": dim_code(p.shape[0]),
                    "cols": dim_code(p.shape[1]), "meaning": p.meaning} for p in params],
        "states": [{"name": s, "rows": rows(cell.symbols[prev_name(s)].shape)} for s in states],
        "inputs": [{"name": i, "rows": rows(cell.symbols[step_name(i)].shape)} for i in inputs],
        "readouts": [{"name": r, "rows": rows(ops.shape_of(derivation.equation(r).expr))}
                     for r in readouts],
        "stored": fwd["stored"],
        "fwd": fwd,
        "bwd": bwd,
        "backward_params": backward_params,
        "softmax_readouts": [e.name for e in derivation.forward
                             if e.kind == "readout" and isinstance(e.expr, ops.Softmax)],
        "notebook": notebook,
        "helpers": ops.kernel_helpers([e.expr for e in derivation.forward]
                                      + [a.expr for a in derivation.backward + derivation.parameters],
                                      module),
    }


def _notebook_cache(derivation: Derivation, backward_exprs) -> list[str]:
    """What one step's cache holds: the step's input and states, and every forward value
    the step's backward reads."""
    cell = derivation.cell
    step_values = [step_name(i) for i in cell.inputs] + [prev_name(s) for s in cell.states]
    skip = ({p.name for p in cell.parameters} | {s.name for s in derivation.incoming.values()}
            | {a.symbol.name for a in derivation.backward})
    return list(dict.fromkeys(step_values + [n for n in _symbols_in(backward_exprs) if n not in skip]))


def notebook_context(cell, source: str) -> dict:
    """The notebook's own functions: one-step forward/backward and their sequence loops."""
    derivation = derive(cell, include_readouts=False)
    full = derive(cell)
    recurrent = _recurrent_parameters(full)
    states = cell.states
    backward_exprs = [a.expr for a in derivation.backward] + [
        a.expr for a in derivation.parameters if a.terms]
    backward_code = " ".join(numpy_code(e) for e in backward_exprs)
    needed = _notebook_cache(derivation, backward_exprs)
    carries = {a.target: a for a in derivation.carries}
    input_adj = {a.target: a for a in derivation.input_adjoints}
    params = {a.target: a for a in derivation.parameters}
    return {
        "prefix": cell.name,
        "backward_params": [p.name for p in cell.parameters
                            if p.name in set(_symbols_in(backward_exprs))],
        "dims": [{"name": n, "source": s} for n, s in _dim_sources(derivation, per_step=True)
                 if re.search(rf"\b{n}\b", backward_code)],
        "states": states,
        "inputs": cell.inputs,
        "readout": cell.readouts[0] if cell.readouts else None,
        "forward": [{"name": e.name, "code": numpy_code(e.expr),
                     "comment": f"{e.name} = {text(e.expr)}"} for e in full.forward],
        "cache": needed,
        "loads": [n for n in needed if re.search(rf"\b{n}\b", backward_code)],
        "backward": [{"name": a.symbol.name, "code": numpy_code(a.expr),
                      "comment": f"{a.symbol.name} = {text(a.expr)}"}
                     for a in derivation.intermediate_adjoints],
        "carries": [{"state": s, "code": numpy_code(carries[prev_name(s)].expr)} for s in states],
        "input_grads": [{"input": i, "code": numpy_code(input_adj[step_name(i)].expr)}
                        for i in cell.inputs],
        "param_grads": [{"name": p, "code": numpy_code(params[p].expr)} for p in recurrent],
    }
