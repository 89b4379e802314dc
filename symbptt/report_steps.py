"""The textbook steps a report derives from definitions, not from the cell's own rules.

The chain-rule lines of a report come from the derivation; a student is also asked to show
where the rules themselves come from (the course notebook: "not only express each derivative
with the chain rule, but also take the derivative of tanh, etc."). This module writes those
steps as rows of LaTeX ``align`` environments, shared by every language:

* :func:`calculus_rows`: σ′ and tanh′ from their definitions (other functions: the identity);
* :func:`softmax_rows`: the softmax Jacobian entry by entry, then with the cross-entropy
  collapsed to ŷ − y;
* :func:`entrywise_rows`: one weight's and one bias's gradient entry by entry, with the sums
  over the steps and over the batch written out.

Rows that are scalar or entry-wise carry labels ``eq:calc:…``, ``eq:soft:…``, ``eq:ce:…``
and ``eq:ent:…`` (the round-trip check, :mod:`symbptt.report_check`, skips those kinds); a
row between matrices of one step keeps a label the check reads (``eq:par:…``).
"""

from __future__ import annotations

import re

from sympy import HadamardProduct, MatMul, MatrixSymbol, Transpose

from . import ops
from .derive import Derivation

#: σ and tanh from their definitions (u is a scalar; the derivative is applied entrywise).
_DEFINITIONS = {
    "Sigmoid": [
        r"\sigma(u) &= \frac{1}{1 + e^{-u}} \label{eq:calc:sigma-def}",
        (r"\sigma'(u) &= \frac{e^{-u}}{\left(1 + e^{-u}\right)^{2}} "
        r"= \frac{1}{1 + e^{-u}} \cdot \frac{(1 + e^{-u}) - 1}{1 + e^{-u}} "
        r"= \sigma(u)\,\bigl(1 - \sigma(u)\bigr) \label{eq:calc:sigmoid}"),
    ],
    "Tanh": [
        r"\tanh(u) &= \frac{e^{u} - e^{-u}}{e^{u} + e^{-u}} \label{eq:calc:tanh-def}",
        (r"\tanh'(u) &= \frac{\left(e^{u} + e^{-u}\right)^{2} - \left(e^{u} - e^{-u}\right)^{2}}"
        r"{\left(e^{u} + e^{-u}\right)^{2}} = 1 - \tanh^{2}(u) \label{eq:calc:tanh}"),
    ],
}


def functions_used(d: Derivation) -> list[type[ops.Pointwise]]:
    """The elementwise functions of the cell (not softmax), in order of first use."""
    found: list[type[ops.Pointwise]] = []
    for eq in d.forward:
        if isinstance(eq.expr, ops.Pointwise) and type(eq.expr) not in found:
            found.append(type(eq.expr))
    return found


def calculus_rows(d: Derivation) -> list[str]:
    """Each elementwise function's derivative: from its definition for σ and tanh."""
    rows: list[str] = []
    for func in functions_used(d):
        if func.__name__ in _DEFINITIONS:
            rows += _DEFINITIONS[func.__name__]
        else:
            name = func.latex_name
            rows.append(rf"\frac{{d\,{name}(u)}}{{du}} &= {func.latex_derivative} "
                        rf"\label{{eq:calc:{func.__name__.lower()}}}")
    return rows


def calculus_label(func_latex: str) -> str:
    """The label of a function's derivative row (for ``\\eqref`` from a step)."""
    for func in ops.FUNCTIONS.values():
        if func.latex_name == func_latex:
            return f"eq:calc:{func.__name__.lower()}"
    return ""


def softmax_rows(yhat: str, y: str, a: str, dy: str) -> dict[str, list[str]]:
    """The softmax Jacobian from the definition, and with the cross-entropy, entry by entry.

    ``yhat``, ``y``, ``a``, ``dy``: the LaTeX of ŷ_t, the target, the pre-activation and δŷ_t.
    One column (one example) at a time; i, j, k run over the classes.
    """
    jac = [
        r"\hat{y}_{i} &= \frac{e^{a_{i}}}{\sum_{k} e^{a_{k}}} \label{eq:soft:def}",
        (r"\frac{\partial \hat{y}_{i}}{\partial a_{j}} &= "
        r"\frac{[i = j]\, e^{a_{i}} \sum_{k} e^{a_{k}} - e^{a_{i}} e^{a_{j}}}{\bigl(\sum_{k} e^{a_{k}}\bigr)^{2}}"
        r" = \hat{y}_{i}\bigl([i = j] - \hat{y}_{j}\bigr) \label{eq:soft:jac}"),
        (rf"\frac{{\partial {yhat}}}{{\partial {a}}} &= \operatorname{{diag}}(\hat{{\mathbf{{y}}}}) - "
        r"\hat{\mathbf{y}}\hat{\mathbf{y}}^{\top} \label{eq:soft:matrix}"),
        (r"[\delta \mathbf{a}]_{j} &= \sum_{i} \frac{\partial \hat{y}_{i}}{\partial a_{j}}\,[\delta\hat{\mathbf{y}}]_{i}"
        r" = \hat{y}_{j}\Bigl([\delta\hat{\mathbf{y}}]_{j} - \sum_{i} \hat{y}_{i}\,[\delta\hat{\mathbf{y}}]_{i}\Bigr)"
        r" \label{eq:soft:vjp}"),
    ]
    ce = [
        (r"L_{t} &= -\sum_{n=1}^{m} \sum_{i} y_{i,n} \log \hat{y}_{i,n}, \qquad "
        r"\frac{\partial L}{\partial \hat{y}_{i,n}} = -\frac{y_{i,n}}{\hat{y}_{i,n}} \label{eq:ce:dy}"),
        (r"[\delta \mathbf{a}]_{j} &= \hat{y}_{j}\Bigl(-\frac{y_{j}}{\hat{y}_{j}} + "
        r"\sum_{i} \hat{y}_{i} \frac{y_{i}}{\hat{y}_{i}}\Bigr) = -y_{j} + \hat{y}_{j} \sum_{i} y_{i}"
        r" = \hat{y}_{j} - y_{j} \label{eq:ce:entry}"),
        rf"{dy} &= -{y} \oslash {yhat}, \qquad \delta {a} = {yhat} - {y} \label{{eq:ce:matrix}}",
    ]
    return {"jacobian": jac, "ce": ce}


def affine_parameters(d: Derivation) -> dict | None:
    """A weight W and bias b of one pre-activation a = W·u + b (the first the cell has).

    Returns the adjoints' symbols and the operand u, for the entry-wise derivation.
    """
    biases = {}
    for a in d.parameters:
        if len(a.terms) == 1 and isinstance(a.terms[0].expr, ops.BatchSum):
            biases[a.terms[0].expr.args[0]] = a
    for a in d.parameters:
        if len(a.terms) != 1 or not isinstance(a.terms[0].expr, MatMul):
            continue
        factors = [f for f in a.terms[0].expr.args if f.is_Matrix]
        if len(factors) == 2 and isinstance(factors[1], Transpose) and factors[0] in biases:
            return {"weight": a, "bias": biases[factors[0]], "delta": factors[0],
                    "operand": factors[1].arg}
    return None


def _label_name(name: str) -> str:
    """A name inside a LaTeX label: ASCII letters and digits, anything else a dash."""
    return re.sub(r"[^A-Za-z0-9]", "-", name)


def entrywise_rows(d: Derivation, printer) -> list[str]:
    """∂L/∂W_ij and ∂L/∂b_i of one affine pre-activation from the chain rule, entry by entry."""
    found = affine_parameters(d)
    if found is None:
        return []
    sym = printer.symbol_latex
    w, b = sym(found["weight"].target), sym(found["bias"].target)
    delta = printer.doprint(found["delta"])
    pre = sym(found["delta"].name[1:])
    u = printer.doprint(found["operand"])
    dw, db = printer.doprint(found["weight"].symbol), printer.doprint(found["bias"].symbol)
    return [
        rf"[{pre}]_{{in}} &= \sum_{{j}} [{w}]_{{ij}}\, [{u}]_{{jn}} + [{b}]_{{i}} \label{{eq:ent:affine}}",
        (rf"\frac{{\partial L}}{{\partial [{w}]_{{ij}}}} &= \sum_{{t=1}}^{{T}} \sum_{{n=1}}^{{m}} "
        rf"\frac{{\partial L}}{{\partial [{pre}]_{{in}}}}\, \frac{{\partial [{pre}]_{{in}}}}{{\partial [{w}]_{{ij}}}}"
        rf" = \sum_{{t=1}}^{{T}} \sum_{{n=1}}^{{m}} [{delta}]_{{in}}\, [{u}]_{{jn}} \label{{eq:ent:weight}}"),
        (rf"{dw} &= \sum\nolimits_{{t=1}}^{{T}} {delta} {u}^{{\top}}"
        rf" \label{{eq:par:entry-{_label_name(found['weight'].target)}}}"),
        (rf"\frac{{\partial L}}{{\partial [{b}]_{{i}}}} &= \sum_{{t=1}}^{{T}} \sum_{{n=1}}^{{m}} [{delta}]_{{in}}"
        rf" \label{{eq:ent:bias}}"),
        rf"{db} &= \sum\nolimits_{{t=1}}^{{T}} {delta}\,\mathbf{{1}} \label{{eq:par:entry-{_label_name(found['bias'].target)}}}",
    ]


__all__ = [
    "affine_parameters",
    "calculus_label",
    "calculus_rows",
    "entrywise_rows",
    "functions_used",
    "names_table",
    "notebook_name",
    "reset_placement",
    "softmax_rows",
    "variant_context",
]


def notebook_name(d: Derivation, adjoint_name: str) -> str:
    """What a student writing the course notebook calls an adjoint ("" when it has no name).

    The notebook's own names: ``dh_next``/``dc_next`` (what arrives at the step),
    ``dh_prev``/``dc_prev`` (the carry), ``dxt``, ``dWf``/``dbf`` (parameters) and, for the
    pre-activation of a gate g, ``dgs_t`` (``dfs_t``, ``dis_t``, ``dos_t``; the candidate
    c̃ is ``dccs_t``, so h̃ is ``dhhs_t`` by the same rule).
    """
    cell = d.cell
    target = adjoint_name[1:]
    if target.endswith(("_next", "_prev")) or target in {f"{i}t" for i in cell.inputs}:
        return adjoint_name
    if target in {p.name for p in cell.parameters}:
        return adjoint_name
    if target.startswith("a_") and target[2:] not in cell.readouts:
        gate = target[2:]
        eq = next((e for e in d.forward if e.name == gate), None)
        if eq is not None and isinstance(eq.expr, ops.Sigmoid):
            return f"d{gate}s_t"
        if gate.endswith("_tilde"):
            letter = gate[:-6]
            return f"d{letter}{letter}s_t"
    return ""


def names_table(d: Derivation, printer) -> list[dict]:
    """Each δ of the report with its notebook variable and its name in the kernel."""
    rows = []
    incoming = [(sym.name, sym) for name, sym in d.incoming.items() if name in d.cell.states]
    adjoints = [(a.symbol.name, a.symbol) for a in d.backward + d.parameters]
    for kernel, symbol in incoming + adjoints:
        rows.append({"latex": printer.doprint(symbol), "notebook": notebook_name(d, kernel),
                     "kernel": kernel})
    return rows


def reset_placement(d: Derivation) -> str:
    """Where a GRU-like cell applies its reset gate: "before" or "after" the hidden product.

    "before": r ⊙ h_{t−1} is an operand of a matrix product (W·[r ⊙ h_{t−1}; x], the course
    notebook's and Cho et al.'s form, cell ``gru``); "after": r multiplies a product of
    h_{t−1} (r ⊙ (U·h_{t−1} + b), PyTorch's form, cell ``gru_torch``); "" for other cells.
    Only cells with one state and a sigmoid gate inside a tanh candidate are considered.
    """
    cell = d.cell
    if len(cell.states) != 1 or "c" in cell.states:
        return ""
    prev = f"{cell.states[0]}_prev"
    gates = {e.name for e in d.forward if isinstance(e.expr, ops.Sigmoid)}
    if len(gates) < 2:
        return ""
    if _gate_before_product(d, gates, prev):
        return "before"
    return "after" if _gate_after_product(d, gates, prev) else ""


def _gate_before_product(d: Derivation, gates: set[str], prev: str) -> bool:
    """A named r ⊙ h_{t−1}: the gated previous state is an operand of a matrix product."""
    for eq in d.forward:
        if eq.auto and isinstance(eq.expr, HadamardProduct):
            names = {getattr(a, "name", None) for a in eq.expr.args}
            if names & gates and prev in names:
                return True
    return False


def _gate_after_product(d: Derivation, gates: set[str], prev: str) -> bool:
    """r ⊙ (U·h_{t−1} + b) inside a pre-activation: the gate multiplies a product of h_{t−1}."""
    for eq in d.forward:
        if not eq.name.startswith("a_"):
            continue
        for node in eq.expr.atoms(HadamardProduct):
            inside = [_definition(d, a) for a in node.args if getattr(a, "name", None) not in gates]
            if len(inside) < len(node.args) and any(prev in {s.name for s in x.atoms(MatrixSymbol)}
                                                    for x in inside):
                return True
    return False


def _definition(d: Derivation, expr):
    """An operand with the equation that names it expanded (one level)."""
    name = getattr(expr, "name", None)
    eq = next((e for e in d.forward if e.name == name), None)
    return eq.expr if eq is not None and name not in d.cell.states else expr


#: The other placement's candidate and the lines of its backward that differ.
_VARIANT_ROWS = {
    "before": [  # this cell: before; the other (gru_torch): after
        (r"\mathbf{a}_{\tilde{h},t} &= \mathbf{W}_{x h} \mathbf{x}_{t} + \mathbf{b}_{x h} + "
        r"\mathbf{r}_{t} \odot \left(\mathbf{U}_{h} \mathbf{h}_{t-1} + \mathbf{b}_{u h}\right) \label{eq:var:fwd}"),
        (r"\delta \mathbf{r}_{t} &= \delta \mathbf{a}_{\tilde{h},t} \odot \left(\mathbf{U}_{h} \mathbf{h}_{t-1}"
        r" + \mathbf{b}_{u h}\right) \label{eq:var:r}"),
        (r"\delta^{(t)} \mathbf{h}_{t-1} &\ni \mathbf{U}_{h}^{\top} \left(\mathbf{r}_{t} \odot "
        r"\delta \mathbf{a}_{\tilde{h},t}\right), \qquad \frac{\partial L}{\partial \mathbf{U}_{h}} = "
        r"\sum\nolimits_{t} \left(\mathbf{r}_{t} \odot \delta \mathbf{a}_{\tilde{h},t}\right) "
        r"\mathbf{h}_{t-1}^{\top} \label{eq:var:h}"),
    ],
    "after": [  # this cell: after; the other (gru): before
        (r"\mathbf{a}_{\tilde{h},t} &= \mathbf{W}_{h} \left[\mathbf{r}_{t} \odot \mathbf{h}_{t-1};\, "
        r"\mathbf{x}_{t}\right] + \mathbf{b}_{h} \label{eq:var:fwd}"),
        (r"\delta \left(\mathbf{r}_{t} \odot \mathbf{h}_{t-1}\right) &= \left[\mathbf{W}_{h}^{\top} "
        r"\delta \mathbf{a}_{\tilde{h},t}\right]_{1:n_{h}}, \qquad \delta \mathbf{r}_{t} = "
        r"\delta \left(\mathbf{r}_{t} \odot \mathbf{h}_{t-1}\right) \odot \mathbf{h}_{t-1} \label{eq:var:r}"),
        (r"\delta^{(t)} \mathbf{h}_{t-1} &\ni \delta \left(\mathbf{r}_{t} \odot \mathbf{h}_{t-1}\right)"
        r" \odot \mathbf{r}_{t} \label{eq:var:h}"),
    ],
}


def variant_context(d: Derivation) -> dict | None:
    """The reset-gate placement this cell derives, the other one's backward, and its cell."""
    placement = reset_placement(d)
    if not placement:
        return None
    return {"placement": placement, "other_cell": "gru_torch" if placement == "before" else "gru",
            "rows": _VARIANT_ROWS[placement]}
