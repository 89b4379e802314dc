"""PyTorch interop: any derived cell as a ``torch.autograd.Function`` and an ``nn.Module``
whose backward is the derived BPTT, and parameters to and from ``nn.LSTM``/``nn.GRU``.

Why: a torch user keeps torch's conventions (``(T, B, features)`` tensors, optimizers,
``state_dict``, DDP) while the gradients come from symbptt's derivation, full or truncated,
instead of autograd's tape of every step. The pieces, from the lowest:

* :func:`cell_kernel` derives a cell once per process (a built-in name, a cell file or a
  :class:`~symbptt.cell.Cell`) and keeps its generated kernel;
* :class:`CellFunction` / :func:`cell_apply`: one layer in the kernel's layout
  (``x`` of shape ``(n_x, m, T)``, outputs ``(rows, m, T)``), backward = the kernel's
  ``backward(cache, upstream, truncate)``;
* :class:`CellRNN`: an ``nn.Module`` like ``nn.GRU``/``nn.LSTM`` (input ``(T, B, n_x)`` or
  batch first, optional initial states, ``num_layers``, ``bidirectional``), parameters
  named ``<cell parameter>_l<k>[_reverse]`` as torch names its own;
* :func:`layer_from_torch`, :func:`layer_to_torch`, :func:`from_torch_state_dict`,
  :func:`to_torch_state_dict`: the torch-layout cells ``lstm_torch`` and ``gru_torch``
  against ``nn.LSTM``/``nn.GRU`` ``state_dict`` keys (gates stacked i, f, g, o and r, z, n).

The kernel behind the Function is set by :data:`KERNEL`: symbptt's generated kernel on torch
tensors (``kernel_module(cell, module="torch")``, any device, no copy), or the NumPy kernel
through :class:`NumpyKernel` (tensors copied to the CPU and back).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .cell import Cell, prev_name, step_name
from .codegen import kernel_module
from .loader import load

__all__ = [
    "TORCH_LAYOUTS",
    "CellFunction",
    "CellKernel",
    "CellRNN",
    "NumpyKernel",
    "cell_apply",
    "cell_kernel",
    "from_torch_state_dict",
    "layer_from_torch",
    "layer_to_torch",
    "to_torch_state_dict",
]

#: What the functions below accept as a cell: a built-in name, a cell file, or a Cell.
CellSpec = str | Path | Cell

#: The generated kernel behind every cell: "torch" (symbptt's kernel on torch tensors, any
#: device, no copy) or "numpy" (the NumPy kernel through :class:`NumpyKernel`: tensors go
#: through the CPU). Kernels already made are kept per value.
KERNEL = "torch"


# -- the kernel ----------------------------------------------------------------------------


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a NumPy array (shared memory on the CPU, a copy from a GPU)."""
    return tensor.detach().cpu().numpy()


class NumpyKernel:
    """The NumPy kernel behind the torch kernel's interface: tensors in, tensors out.

    With ``KERNEL = "numpy"``: ``forward`` and ``backward`` take and return tensors as
    ``kernel_module(cell, module="torch")``'s do, moving them through NumPy on the CPU and
    back to the input's device. A second implementation to compare the torch kernel with,
    and a way to run a cell on a torch that the torch kernel does not support.
    """

    def __init__(self, module: Any) -> None:
        self.module = module

    def forward(self, parameters: Mapping[str, torch.Tensor], x: torch.Tensor,
                initial_states: Mapping[str, torch.Tensor] | None = None
                ) -> tuple[dict[str, torch.Tensor], Any]:
        """The kernel's forward; the cache remembers the device the outputs go back to."""
        outputs, cache = self.module.forward({k: _numpy(v) for k, v in parameters.items()},
                                             _numpy(x),
                                             {k: _numpy(v) for k, v in (initial_states or {}).items()})
        device = x.device
        return {k: torch.from_numpy(v).to(device) for k, v in outputs.items()}, (cache, device)

    def backward(self, cache: Any, upstream: Mapping[str, torch.Tensor],
                 truncate: int | None = None) -> dict[str, torch.Tensor]:
        """The kernel's backward on tensors: ``"d" + name`` for every parameter, ``dx``, ``dh0``…"""
        numpy_cache, device = cache
        gradients = self.module.backward(numpy_cache, {k: _numpy(v) for k, v in upstream.items()},
                                         truncate=truncate)
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in gradients.items()}


def _generated(cell: Cell) -> Any:
    """The cell's kernel on torch tensors, as :data:`KERNEL` says."""
    if KERNEL == "torch":
        return kernel_module(cell, module="torch")
    return NumpyKernel(kernel_module(cell))


@dataclass(frozen=True)
class CellKernel:
    """A derived cell and its generated kernel, with the names the interop needs.

    ``outputs`` are the kernel's outputs in order (states, then readouts); ``output`` is the
    state a layer passes up and returns as its output sequence (``h``, or the first state).
    """

    cell: Cell
    kernel: Any
    parameters: tuple[str, ...]
    states: tuple[str, ...]
    readouts: tuple[str, ...]
    input: str

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.states + self.readouts

    @property
    def output(self) -> str:
        return "h" if "h" in self.states else self.states[0]

    def rows(self, name: str) -> sp.Expr:
        """The rows of an input, state or readout as a dimension expression (``n_h``)."""
        sym = (self.cell.symbols.get(step_name(name)) or self.cell.symbols.get(prev_name(name))
               or self.cell.symbols[name])
        return sp.sympify(sym.shape[0])


_KERNELS: dict[tuple, CellKernel] = {}
_KERNELS_LOCK = threading.Lock()


def _fingerprint(cell: Cell) -> tuple:
    """What makes two cells the same kernel: the kernel kind, name, declarations, equations."""
    symbols = tuple((s.name, s.role, str(s.shape)) for s in cell.symbols.values())
    equations = tuple((e.name, e.kind, sp.srepr(e.expr)) for e in cell.equations)
    return KERNEL, cell.name, symbols, equations


def _load_cell(spec: CellSpec) -> Cell:
    return spec if isinstance(spec, Cell) else load(spec)


def cell_kernel(spec: CellSpec | CellKernel) -> CellKernel:
    """The cell's derived kernel, generated once per process and cell (deriving takes a
    few hundred milliseconds; a cell file edited since is derived again)."""
    if isinstance(spec, CellKernel):
        return spec
    cell = _load_cell(spec)
    if len(cell.inputs) != 1:
        raise ValueError(f"cell {cell.name}: symbptt.torch runs cells with one input, "
                         f"not {len(cell.inputs)}")
    key = _fingerprint(cell)
    with _KERNELS_LOCK:
        found = _KERNELS.get(key)
        if found is None:
            found = CellKernel(cell, _generated(cell), tuple(p.name for p in cell.parameters),
                               tuple(cell.states), tuple(cell.readouts), cell.inputs[0])
            _KERNELS[key] = found
    return found


# -- one layer as an autograd Function -------------------------------------------------------


class CellFunction(torch.autograd.Function):
    """One pass of a cell over a sequence whose backward is the derived BPTT.

    ``CellFunction.apply(kernel, truncate, x, *parameters, *initial_states)`` in the
    kernel's layout: ``x`` is ``(n_x, m, T)``, parameters in ``kernel.parameters`` order,
    one initial state per ``kernel.states`` (``None`` starts at zeros); returns one
    ``(rows, m, T)`` tensor per ``kernel.outputs``. ``x``, the parameters and the outputs
    (which may share memory with the kernel's cache) are saved for backward, so that an
    in-place change of one before backward is torch's usual error, not a silently wrong
    gradient. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx: Any, kernel: CellKernel, truncate: int | None, x: torch.Tensor,
                *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        count = len(kernel.parameters)
        parameters = dict(zip(kernel.parameters, tensors[:count], strict=True))
        starts = tensors[count:]
        initial = {s: v for s, v in zip(kernel.states, starts, strict=True) if v is not None}
        outputs, cache = kernel.kernel.forward(parameters, x, initial)
        results = tuple(outputs[name] for name in kernel.outputs)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, *tensors[:count], *results)
        ctx.kernel, ctx.truncate, ctx.cache = kernel, truncate, cache
        ctx.given = [v is not None for v in starts]
        return results

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        ctx.saved_tensors  # noqa: B018 - torch's check that nothing saved changed in place
        kernel: CellKernel = ctx.kernel
        upstream = {name: g for name, g in zip(kernel.outputs, grads, strict=True) if g is not None}
        result = kernel.kernel.backward(ctx.cache, upstream, truncate=ctx.truncate)
        starts = [result[f"d{s}0"] if given else None for s, given in zip(kernel.states, ctx.given)]
        return (None, None, result["dx"],  # the kernel's key for its input, whatever its name
                *(result["d" + p] for p in kernel.parameters), *starts)


def _check_truncate(truncate: int | None) -> int | None:
    if truncate is not None and (isinstance(truncate, bool) or int(truncate) != truncate
                                 or truncate < 1):
        raise ValueError(f"truncate must be a positive integer or None, got {truncate!r}")
    return None if truncate is None else int(truncate)


def cell_apply(cell: CellSpec | CellKernel, parameters: Mapping[str, torch.Tensor], x: torch.Tensor,
               initial_states: Mapping[str, torch.Tensor] | None = None,
               truncate: int | None = None) -> dict[str, torch.Tensor]:
    """Run a cell over ``x`` (``(n_x, m, T)``, the kernel's layout) with the derived
    backward: the functional form of :class:`CellFunction`.

    ``parameters`` maps every parameter name to a tensor (weights ``(rows, cols)``, biases
    ``(rows, 1)``); returns every state and readout as a ``(rows, m, T)`` tensor, whose
    gradients reach ``x``, the parameters and the initial states through the kernel's
    backward (``truncate=k``: truncated BPTT, as detaching the states every k steps).
    """
    kernel = cell_kernel(cell)
    missing = [p for p in kernel.parameters if p not in parameters]
    if missing:
        raise KeyError(f"cell {kernel.name}: parameters lack {', '.join(missing)}")
    initial_states = initial_states or {}
    unknown = sorted(set(initial_states) - set(kernel.states))
    if unknown:
        raise KeyError(f"cell {kernel.name}: unknown initial state(s) {', '.join(unknown)}; "
                       f"states are {', '.join(kernel.states)}")
    outputs = CellFunction.apply(kernel, _check_truncate(truncate), x,
                                 *(parameters[p] for p in kernel.parameters),
                                 *(initial_states.get(s) for s in kernel.states))
    return dict(zip(kernel.outputs, outputs, strict=True))


# -- sizes of the layers of a stack ------------------------------------------------------------


def _concrete(expr: sp.Expr, cell: Cell, sizes: Mapping[str, int]) -> int:
    value = sp.sympify(expr).subs({cell.dimensions[k]: v for k, v in sizes.items()})
    if not value.is_Integer:
        missing = sorted(str(s) for s in value.free_symbols)
        raise ValueError(f"cell {cell.name} needs the size of {', '.join(missing)}: pass "
                         f"dims={{{', '.join(repr(m) + ': …' for m in missing)}}}")
    return int(value)


def _set_size(sizes: dict[str, int], expr: sp.Expr, value: int, what: str, cell: Cell) -> None:
    """Give the dimension that ``expr`` is (a plain name such as ``n_x``) the size ``value``."""
    name = str(expr) if isinstance(expr, sp.Symbol) else None
    if name is None:
        raise ValueError(f"cell {cell.name}: the {what} has {expr} rows, not one dimension; "
                         f"pass its dimensions in dims= instead of a size")
    if name in sizes and sizes[name] != value:
        raise ValueError(f"cell {cell.name}: {name} is {sizes[name]} and {value} at once (the "
                         f"{what} is {name} wide); pass one size for it")
    sizes[name] = int(value)


def _layer_sizes(kernel: CellKernel, sizes: dict[str, int], width: int) -> dict[str, int]:
    """The sizes of a layer k > 0, whose input is the ``width`` features of the layer below.

    A cell with its own input dimension (``n_x``) gets ``n_x = width``; a cell whose input
    is tied to another dimension (``cell.input("x", n_h)``) works only where that dimension
    already is ``width`` (a unidirectional stack of such cells), else a ValueError says why.
    """
    cell, rows = kernel.cell, kernel.rows(kernel.input)
    if isinstance(rows, sp.Symbol) and all(rows not in kernel.rows(s).free_symbols
                                           for s in kernel.states):
        return {**sizes, str(rows): width}
    if _concrete(rows, cell, sizes) == width:
        return dict(sizes)
    raise ValueError(
        f"cell {cell.name}: its input has {rows} rows, tied to the state's size, so a layer "
        f"above the first cannot take the {width} features of the layer below (a bidirectional "
        f"stack doubles them); use bidirectional=False, num_layers=1, or a cell with an input "
        f"dimension of its own")


def _first_sizes(kernel: CellKernel, input_size: int | None, hidden_size: int | None,
                 dims: Mapping[str, int] | None) -> dict[str, int]:
    """Every dimension of the first layer from ``dims`` and the two torch-style sizes."""
    cell = kernel.cell
    sizes = {str(k): int(v) for k, v in (dims or {}).items()}
    unknown = sorted(set(sizes) - set(cell.dimensions))
    if unknown:
        raise ValueError(f"cell {cell.name} has no dimension {', '.join(unknown)}; its "
                         f"dimensions are {', '.join(cell.dimensions)}")
    if hidden_size is not None:
        _set_size(sizes, kernel.rows(kernel.output), hidden_size, f"state {kernel.output}", cell)
    if input_size is not None:
        _set_size(sizes, kernel.rows(kernel.input), input_size, f"input {kernel.input}", cell)
    small = sorted(k for k, v in sizes.items() if v < 1)
    if small:
        raise ValueError(f"cell {cell.name}: every size must be at least 1, got "
                         + ", ".join(f"{k} = {sizes[k]}" for k in small))
    missing = sorted(set(cell.dimensions) - set(sizes))
    if missing:
        raise ValueError(f"cell {cell.name} needs the size of {', '.join(missing)}: pass "
                         f"input_size=, hidden_size= or dims={{{', '.join(map(repr, missing))}: …}}")
    return sizes


# -- the nn.Module ----------------------------------------------------------------------------


def _suffix(layer: int, reverse: bool) -> str:
    return f"_l{layer}" + ("_reverse" if reverse else "")


class CellRNN(nn.Module):
    """A stack of any derived cell used like ``nn.GRU``/``nn.LSTM``, its backward the derived BPTT.

    ``CellRNN(cell, input_size, hidden_size, num_layers=1, dims=None, bidirectional=False,
    batch_first=False, truncate=None)``: ``cell`` is a built-in name, a cell file or a Cell;
    ``input_size`` and ``hidden_size`` set the dimensions of the input's and the state's
    rows (``n_x``, ``n_h``); ``dims`` gives those and any other (``{"n_y": 27}`` for a
    readout). ``truncate=k`` makes every backward truncated BPTT over chunks of k steps of
    each direction's own order. Parameters are ``nn.Parameter``s named
    ``<parameter>_l<layer>`` and ``<parameter>_l<layer>_reverse`` (``Wz_l0``), shaped as the
    cell declares them; initialised as torch initialises its RNNs, U(−1/√n_h, 1/√n_h), and
    per-unit vectors U(−1, 1).

    Layer k > 0 runs the same cell on the output state (``h``) of layer k − 1, both
    directions concatenated; a cell whose input is as wide as its state (one dimension for
    both) stacks only unidirectionally. Every layer is the whole cell, readouts included:
    the readouts of the top layer are returned (``readouts=True``); those below get zero
    gradients. No dropout between layers.
    """

    def __init__(self, cell: CellSpec | CellKernel, input_size: int | None = None,
                 hidden_size: int | None = None, num_layers: int = 1, *,
                 dims: Mapping[str, int] | None = None, bidirectional: bool = False,
                 batch_first: bool = False, truncate: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        self.kernel = cell_kernel(cell)
        self.num_layers, self.bidirectional = int(num_layers), bool(bidirectional)
        self.batch_first, self.truncate = bool(batch_first), _check_truncate(truncate)
        self.num_directions = 2 if bidirectional else 1
        sizes = _first_sizes(self.kernel, input_size, hidden_size, dims)
        self.layer_sizes: list[dict[str, int]] = [sizes]
        for _ in range(1, self.num_layers):
            width = self.num_directions * self._rows(self.kernel.output, 0)
            self.layer_sizes.append(_layer_sizes(self.kernel, sizes, width))
        self.input_size = self._rows(self.kernel.input, 0)
        self.hidden_size = self._rows(self.kernel.output, 0)
        dtype = dtype or torch.get_default_dtype()
        for layer, layer_sizes in enumerate(self.layer_sizes):
            for reverse in self._directions():
                for p in self.kernel.cell.parameters:
                    shape = tuple(_concrete(d, self.kernel.cell, layer_sizes) for d in p.shape)
                    self.register_parameter(p.name + _suffix(layer, reverse),
                                            nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (``torch.save(model)``, ``copy.deepcopy``) keeps the cell, not its
        generated kernel (a module object cannot be pickled); loading derives it again, or
        finds it in this process's cache."""
        state = dict(self.__dict__)
        state["kernel"] = self.kernel.cell
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["kernel"] = cell_kernel(state["kernel"])
        super().__setstate__(state)

    def _directions(self) -> tuple[bool, ...]:
        return (False, True) if self.bidirectional else (False,)

    def _rows(self, name: str, layer: int) -> int:
        return _concrete(self.kernel.rows(name), self.kernel.cell, self.layer_sizes[layer])

    @property
    def cell(self) -> Cell:
        return self.kernel.cell

    def reset_parameters(self) -> None:
        """Weights and biases U(−1/√n_h, 1/√n_h) as torch's RNNs; per-unit vectors U(−1, 1)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        roles = {p.name: p.role for p in self.kernel.cell.parameters}
        with torch.no_grad():
            for layer in range(self.num_layers):
                for reverse in self._directions():
                    for name, tensor in self.layer_parameters(layer, reverse).items():
                        width = 1.0 if roles[name] == "vector" else bound
                        tensor.uniform_(-width, width)

    def layer_parameters(self, layer: int = 0, reverse: bool = False) -> dict[str, nn.Parameter]:
        """One layer's (and direction's) parameters under the cell's own names (``Wz``)."""
        if layer not in range(self.num_layers) or (reverse and not self.bidirectional):
            raise IndexError(f"{self.kernel.name}: no layer {layer}" + (" in reverse" if reverse else "")
                             + f"; the module has {self.num_layers} layer(s), bidirectional="
                             f"{self.bidirectional}")
        suffix = _suffix(layer, reverse)
        return {p: getattr(self, p + suffix) for p in self.kernel.parameters}

    def extra_repr(self) -> str:
        parts = [repr(self.kernel.name), f"input_size={self.input_size}",
                 f"hidden_size={self.hidden_size}", f"num_layers={self.num_layers}"]
        named = {str(self.kernel.rows(self.kernel.input)), str(self.kernel.rows(self.kernel.output))}
        parts += [f"{k}={v}" for k, v in self.layer_sizes[0].items() if k not in named]
        parts += [f"{k}=True" for k in ("bidirectional", "batch_first") if getattr(self, k)]
        return ", ".join(parts + ([f"truncate={self.truncate}"] if self.truncate else []))

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, hx: Any = None, *, readouts: bool = False) -> tuple:
        """``(output, final_states)``, or ``(output, final_states, readouts)``.

        ``x``: ``(T, B, input_size)`` (``(B, T, input_size)`` with ``batch_first``).
        ``hx``: the initial states, each ``(num_layers · num_directions, B, rows)``: one
        tensor for a one-state cell, a tuple in the cell's state order (``(h0, c0)``), or a
        dict by state name; missing ones start at zeros. ``output``: the top layer's ``h``
        for every step, ``(T, B, num_directions · hidden_size)``. ``final_states``: each
        state after the last step, shaped as ``hx`` (a tensor, or a tuple in state order).
        With ``readouts=True`` also a dict of the top layer's readouts, each
        ``(T, B, num_directions · rows)``.
        """
        x = self._check_input(x)
        starts = self._initial_states(hx, x)
        layer_input = x
        finals: dict[str, list[torch.Tensor]] = {s: [] for s in self.kernel.states}
        for layer in range(self.num_layers):
            per_direction = []
            for reverse in self._directions():
                index = layer * self.num_directions + int(reverse)
                initial = {s: v[index] for s, v in starts.items()}
                outputs = self._run(layer_input, layer, reverse, initial)
                for s in self.kernel.states:
                    finals[s].append(outputs[s][0 if reverse else -1])
                per_direction.append(outputs)
            layer_input = torch.cat([o[self.kernel.output] for o in per_direction], dim=2)
        output = self._batch_layout(layer_input)
        final = tuple(torch.stack(finals[s]) for s in self.kernel.states)
        final_states = final[0] if len(final) == 1 else final
        if not readouts:
            return output, final_states
        top = {r: self._batch_layout(torch.cat([o[r] for o in per_direction], dim=2))
               for r in self.kernel.readouts}
        return output, final_states, top

    def _batch_layout(self, sequence: torch.Tensor) -> torch.Tensor:
        return sequence.transpose(0, 1) if self.batch_first else sequence

    def _run(self, x: torch.Tensor, layer: int, reverse: bool,
             initial: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One direction of one layer: ``x`` ``(T, B, F)`` in, each output ``(T, B, rows)``."""
        steps = x.flip(0) if reverse else x
        starts = {s: v.t() for s, v in initial.items()}
        outputs = cell_apply(self.kernel, self.layer_parameters(layer, reverse),
                             steps.permute(2, 1, 0), starts, self.truncate)
        return {k: (v.permute(2, 1, 0).flip(0) if reverse else v.permute(2, 1, 0))
                for k, v in outputs.items()}

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(T, B, input_size)``; a wrong shape or dtype is an error naming the expected."""
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.kernel.name}: the input must be a torch.Tensor, got "
                            f"{type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != self.input_size:
            expected = ("(B, T, " if self.batch_first else "(T, B, ") + f"{self.input_size})"
            raise ValueError(f"{self.kernel.name}: expected an input of shape {expected}, "
                             f"{layout}, got {tuple(x.shape)}")
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"{self.kernel.name}: the input has no steps (T = 0, shape "
                             f"{tuple(x.shape)}); a sequence has at least one step, as torch's "
                             f"RNNs require")
        weight = next(iter(self.parameters()))
        if x.dtype != weight.dtype or x.device != weight.device:
            raise ValueError(f"{self.kernel.name}: the input is {x.dtype} on {x.device}, the "
                             f"parameters {weight.dtype} on {weight.device}; convert one "
                             f"(module.to(x) or x.to(...))")
        return x.transpose(0, 1) if self.batch_first else x

    def _initial_states(self, hx: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``hx`` as a dict state -> ``(L·D, B, rows)`` tensor, each shape checked."""
        states = self.kernel.states
        if hx is None:
            return {}
        if isinstance(hx, torch.Tensor):
            hx = (hx,)
        if isinstance(hx, Mapping):
            unknown = sorted(set(hx) - set(states))
            if unknown:
                raise KeyError(f"{self.kernel.name}: unknown state(s) {', '.join(unknown)}; "
                               f"states are {', '.join(states)}")
            given = {s: v for s, v in hx.items() if v is not None}
        elif isinstance(hx, Sequence) and len(hx) == len(states):
            given = {s: v for s, v in zip(states, hx) if v is not None}
        else:
            raise TypeError(f"{self.kernel.name}: initial states are a tensor, a tuple in the "
                            f"order ({', '.join(states)}) or a dict by name")
        weight = next(iter(self.parameters()))
        for s, v in given.items():
            expected = (self.num_layers * self.num_directions, x.shape[1], self._rows(s, 0))
            if not isinstance(v, torch.Tensor) or (v.dtype, v.device) != (weight.dtype, weight.device):
                raise ValueError(f"{self.kernel.name}: initial state {s} must be a tensor of the "
                                 f"parameters' dtype {weight.dtype} on {weight.device}, got "
                                 + (f"{v.dtype} on {v.device}" if isinstance(v, torch.Tensor)
                                    else type(v).__name__))
            if tuple(v.shape) != expected:
                raise ValueError(f"{self.kernel.name}: initial state {s} must have shape "
                                 f"(num_layers*num_directions, B, rows) = {expected}, got "
                                 f"{tuple(v.shape)}")
        return given

    # -- torch's own modules ------------------------------------------------------------------

    @classmethod
    def from_torch(cls, module: nn.LSTM | nn.GRU, truncate: int | None = None) -> CellRNN:
        """The same network as an ``nn.LSTM`` or ``nn.GRU`` (cell ``lstm_torch``/``gru_torch``,
        same sizes, layers, directions, layout and a copy of the weights). A module built
        with ``bias=False`` gives zero biases that do not train; one with dropout, a warning
        (no dropout here)."""
        name = _torch_cell_name(module)
        weight: torch.Tensor = module.weight_ih_l0  # type: ignore[assignment]
        model = cls(name, module.input_size, module.hidden_size, module.num_layers,
                    bidirectional=module.bidirectional, batch_first=module.batch_first,
                    truncate=truncate, device=weight.device, dtype=weight.dtype)
        model.load_state_dict(from_torch_state_dict(name, module.state_dict()))
        if not module.bias:  # torch's module has none: ours stay zero
            for key, parameter in model.named_parameters():
                if key.startswith("b_"):
                    parameter.requires_grad_(False)
        if module.dropout:
            warnings.warn(f"nn.{type(module).__name__}(dropout={module.dropout}): CellRNN has no "
                          f"dropout between layers; it computes the module in eval mode",
                          stacklevel=2)
        return model

    def to_torch(self) -> nn.LSTM | nn.GRU:
        """This network as ``nn.LSTM``/``nn.GRU`` with a copy of the weights (torch-layout
        cells only; another cell is a ValueError naming it). A network whose biases are all
        frozen at zero (one made by :meth:`from_torch` from a module with ``bias=False``)
        gives a module with ``bias=False`` again."""
        kind, _ = _torch_layout(self.kernel.cell)
        weight = next(iter(self.parameters()))
        biases = [p for k, p in self.named_parameters() if k.startswith("b_")]
        bias = any(p.requires_grad or bool(p.detach().any()) for p in biases)
        module = getattr(nn, kind)(self.input_size, self.hidden_size, self.num_layers, bias=bias,
                                   batch_first=self.batch_first, bidirectional=self.bidirectional,
                                   device=weight.device, dtype=weight.dtype)
        entries = to_torch_state_dict(self.kernel.cell, self.state_dict())
        module.load_state_dict({k: v for k, v in entries.items() if bias or not k.startswith("bias_")})
        return module


# -- parameters to and from nn.LSTM / nn.GRU ---------------------------------------------------

#: The cells with torch's parameter layout: torch module and the order of its stacked gates.
TORCH_LAYOUTS = {"lstm_torch": ("LSTM", "ifgo"), "gru_torch": ("GRU", "rzn")}

#: Our parameter kind -> torch's key prefix.
_TORCH_KEYS = {"W_i": "weight_ih", "W_h": "weight_hh", "b_i": "bias_ih", "b_h": "bias_hh"}


def _torch_layout(cell: CellSpec | CellKernel) -> tuple[str, str]:
    """(torch module, gate order) of a torch-layout cell; any other cell is a ValueError."""
    if isinstance(cell, CellKernel):
        cell = cell.cell
    name = cell.name if isinstance(cell, Cell) else Path(str(cell)).stem
    if isinstance(cell, Cell) or name not in TORCH_LAYOUTS:
        name = _load_cell(cell).name
    layout = TORCH_LAYOUTS.get(name)
    if layout is None:
        raise ValueError(
            f"cell {name!r} has no torch.nn equivalent: only lstm_torch (nn.LSTM) and gru_torch "
            f"(nn.GRU) have torch's parameters (weight_ih_l0, …); use CellRNN's own state_dict "
            f"for {name}")
    if isinstance(cell, Cell):
        expected = {f"{k}{g}" for k in _TORCH_KEYS for g in layout[1]}
        if {p.name for p in cell.parameters} != expected:
            raise ValueError(f"cell {name!r} is not the built-in {name}: its parameters are not "
                             f"{', '.join(sorted(expected))}")
    return layout


def _torch_cell_name(module: nn.Module) -> str:
    for name, (kind, _) in TORCH_LAYOUTS.items():
        if type(module) is getattr(nn, kind):
            return name
    raise ValueError(f"{type(module).__name__} has no symbptt cell: only nn.LSTM (lstm_torch) "
                     f"and nn.GRU (gru_torch)")


def _as_tensor(value: Any) -> torch.Tensor:
    return value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(np.asarray(value))


def layer_from_torch(cell: CellSpec | CellKernel, state_dict: Mapping[str, Any], layer: int = 0,
                     reverse: bool = False) -> dict[str, torch.Tensor]:
    """One layer (and direction) of an ``nn.LSTM``/``nn.GRU`` state_dict as the cell's
    parameters: ``W_ii … (n_h, n_x)``, ``W_hi … (n_h, n_h)``, biases ``(n_h, 1)`` (copies).

    torch stacks the gates' rows (i, f, g, o for the LSTM, r, z, n for the GRU); a module
    built with ``bias=False`` has no biases and gives zeros. ``proj_size`` is not supported.
    """
    kind, gates = _torch_layout(cell)
    suffix = _suffix(layer, reverse)
    if f"weight_hr{suffix}" in state_dict:
        raise ValueError(f"nn.{kind} with proj_size has no symbptt cell (weight_hr{suffix})")
    weights = f"weight_ih{suffix}"
    if weights not in state_dict:
        raise KeyError(f"the state_dict has no {weights}: not an nn.{kind}, or no layer {layer}"
                       + (" in reverse (bidirectional=False?)" if reverse else ""))
    n_h = state_dict[weights].shape[0] // len(gates)
    hidden = tuple(state_dict.get(f"weight_hh{suffix}", torch.empty(0)).shape)
    if hidden != (len(gates) * n_h, n_h) or state_dict[weights].shape[0] != len(gates) * n_h:
        raise ValueError(f"not an nn.{kind} state_dict: weight_hh{suffix} has shape {hidden} and "
                         f"{weights} {tuple(state_dict[weights].shape)}; nn.{kind} stacks "
                         f"{len(gates)} gates, ({len(gates)}·hidden_size, hidden_size)")
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in _TORCH_KEYS.items():
        key = theirs + suffix
        if key in state_dict:
            blocks = _as_tensor(state_dict[key]).reshape(len(gates), n_h, -1)
        else:
            blocks = torch.zeros(len(gates), n_h, 1, dtype=state_dict[weights].dtype)
        out.update({f"{ours}{g}": blocks[k].clone() for k, g in enumerate(gates)})
    return out


def layer_to_torch(cell: CellSpec | CellKernel, parameters: Mapping[str, Any], layer: int = 0,
                   reverse: bool = False) -> dict[str, torch.Tensor]:
    """The cell's parameters (arrays or tensors, biases ``(n_h, 1)``) as one layer's
    ``nn.LSTM``/``nn.GRU`` state_dict entries (``weight_ih_l0``, …, gates stacked)."""
    _, gates = _torch_layout(cell)
    suffix = _suffix(layer, reverse)
    out = {}
    for ours, theirs in _TORCH_KEYS.items():
        blocks = torch.cat([_as_tensor(parameters[f"{ours}{g}"]) for g in gates])
        out[theirs + suffix] = blocks[:, 0].clone() if ours.startswith("b") else blocks
    return out


def _torch_stack_layers(state_dict: Mapping[str, Any], prefix: str) -> tuple[int, bool]:
    """(number of layers, bidirectional) of a state_dict with keys ``<prefix>_l<k>[_reverse]``."""
    layers = 0
    while f"{prefix}_l{layers}" in state_dict:
        layers += 1
    return layers, f"{prefix}_l0_reverse" in state_dict


def from_torch_state_dict(cell: CellSpec | CellKernel,
                          state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An ``nn.LSTM``/``nn.GRU`` state_dict, every layer and direction, as a
    :class:`CellRNN`'s (``W_ii_l0``, ``W_ii_l0_reverse``, …): ``model.load_state_dict(
    from_torch_state_dict("lstm_torch", lstm.state_dict()))``."""
    layers, bidirectional = _torch_stack_layers(state_dict, "weight_ih")
    if not layers:
        raise KeyError("the state_dict has no weight_ih_l0: not an nn.LSTM or nn.GRU's")
    out = {}
    for layer in range(layers):
        for reverse in (False, True) if bidirectional else (False,):
            suffix = _suffix(layer, reverse)
            out.update({k + suffix: v for k, v in
                        layer_from_torch(cell, state_dict, layer, reverse).items()})
    return out


def to_torch_state_dict(cell: CellSpec | CellKernel,
                        state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A :class:`CellRNN`'s state_dict of a torch-layout cell as ``nn.LSTM``/``nn.GRU``'s
    (``weight_ih_l0``, …, ``bias_hh_l1_reverse``)."""
    kind, gates = _torch_layout(cell)
    names = [f"{kind}{g}" for kind in _TORCH_KEYS for g in gates]
    layers, bidirectional = _torch_stack_layers(state_dict, names[0])
    if not layers:
        raise KeyError(f"the state_dict has no {names[0]}_l0: not a CellRNN's of the "
                       f"{'lstm_torch' if kind == 'LSTM' else 'gru_torch'} cell")
    out = {}
    for layer in range(layers):
        for reverse in (False, True) if bidirectional else (False,):
            suffix = _suffix(layer, reverse)
            ours = {name: state_dict[name + suffix] for name in names}
            out.update(layer_to_torch(cell, ours, layer, reverse))
    return out
