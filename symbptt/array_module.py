"""The array libraries a kernel can be printed for, each declared once with its spellings.

One derivation, one kernel plan (:mod:`symbptt.kernels`), several printings: the plan names
what to do (a concatenation of rows, a product written into a buffer, an elementwise
function applied in place); an :class:`ArrayModule` says how one library spells it. The
statement printer (:mod:`symbptt.kernels.array_printer`), the SymPy expression printer
(:mod:`symbptt.printers`) and the operations' own printing (:mod:`symbptt.ops`) read these
spellings; nothing else knows a library's names.

* ``numpy``: NumPy arrays, ``templates/numpy_kernel.py.j2``.
* ``cupy``: the NumPy printing and template with the module line ``import cupy as np``:
  every call the NumPy kernel makes (``np.matmul(out=)``, ``np.tanh(out=)``,
  ``np.concatenate``, ``np.random.default_rng``, …) exists in CuPy under the same name.
* ``torch``: ``torch.Tensor`` on any device, ``templates/torch_kernel.py.j2``.

An operation's own function (σ, tanh, softplus, …) is spelled by the operation class:
``numpy_name``/``numpy_helper`` or ``torch_name``/``torch_helper`` in :mod:`symbptt.ops`,
chosen by :attr:`ArrayModule.declarations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArrayModule:
    """How one array library spells what a kernel does.

    ``spellings`` maps a role to a ``str.format`` pattern; the roles and their fields:

    * ``concat`` ``{items}{axis}``: arrays stacked along an axis (rows unless ``axis``);
    * ``axis`` ``{n}``: the keyword of a concatenation's axis (``, axis=1``);
    * ``zeros``, ``empty`` ``{0}``: a new array of a shape tuple, in the kernel's dtype;
    * ``zero_matrix`` ``{rows}, {cols}``: a zero matrix inside a printed expression;
    * ``workspace`` ``{0}`` (name), ``{1}`` (shape): a buffer the kernel may reuse;
    * ``upstream_context``: the allocation arguments ``_upstream`` takes after ``dtype``;
    * ``transpose`` ``{a}``, ``{axes}``: axes permuted (a view);
    * ``sum`` ``{a}``, ``{axis}``: the sum over one axis, the axis kept (length 1);
    * ``copy`` ``{a}``: a copy that shares no memory;
    * ``matmul`` ``{0}``, ``{1}``: a matrix product (batched over a leading axis);
    * ``matmul_into``, ``multiply_into`` ``{a}``, ``{b}``, ``{out}``: a product written
      into the existing array ``out``;
    * ``apply_into`` ``{fn}``, ``{a}``, ``{out}``: an elementwise function written into ``out``.
    """

    #: The name a user passes: ``kernel_module(cell, module="torch")``.
    name: str
    #: The line that imports the library in a generated module.
    import_line: str
    #: Which attributes of an operation class spell its function: ``numpy`` reads
    #: ``numpy_name`` and ``numpy_helper``, ``torch`` reads ``torch_name`` and ``torch_helper``.
    declarations: str
    #: The template that prints the whole module.
    template: str
    #: What the kernel's arrays are, in words (for messages and docstrings).
    array_type: str
    spellings: dict[str, str] = field(default_factory=dict)

    def spell(self, role: str, *args: Any, **kwargs: Any) -> str:
        """The code of one role, its pattern filled with already printed arguments."""
        return self.spellings[role].format(*args, **kwargs)

    def function_name(self, op: type) -> str:
        """How the kernel calls an operation's function (``np.tanh``, ``torch.tanh``, ``sigmoid``)."""
        return str(getattr(op, f"{self.declarations}_name", ""))

    def helper(self, op: type) -> str:
        """Source of the module-level ``def`` the operation needs in this library ("" for none)."""
        return str(getattr(op, f"{self.declarations}_helper", ""))


_NUMPY_SPELLINGS = {
    "concat": "np.concatenate(({items}){axis})",
    "axis": ", axis={n}",
    "zeros": "np.zeros({0}, dtype)",
    "empty": "np.empty({0}, dtype)",
    "zero_matrix": "np.zeros(({rows}, {cols}), dtype=dtype)",
    "workspace": '_workspace("{0}", {1}, dtype, workspace)',
    "upstream_context": "dtype, workspace",
    "transpose": "{a}.transpose({axes})",
    "sum": "{a}.sum(axis={axis}, keepdims=True)",
    "copy": "{a}.copy()",
    "matmul": "np.matmul({0}, {1})",
    "matmul_into": "np.matmul({a}, {b}, out={out})",
    "multiply_into": "np.multiply({a}, {b}, out={out})",
    "apply_into": "{fn}({a}, out={out})",
}

NUMPY = ArrayModule("numpy", "import numpy as np", "numpy", "numpy_kernel.py.j2",
                    "NumPy arrays", _NUMPY_SPELLINGS)

#: CuPy: NumPy's printing, the module imported under NumPy's name.
CUPY = ArrayModule("cupy", "import cupy as np", "numpy", "numpy_kernel.py.j2",
                   "CuPy arrays (on the current CUDA device)", _NUMPY_SPELLINGS)

TORCH = ArrayModule("torch", "import torch", "torch", "torch_kernel.py.j2",
                    "torch tensors (any device)", {
                        "concat": "torch.cat(({items}){axis})",
                        "axis": ", dim={n}",
                        "zeros": "torch.zeros({0}, dtype=dtype, device=device)",
                        "empty": "torch.empty({0}, dtype=dtype, device=device)",
                        "zero_matrix": "torch.zeros(({rows}, {cols}), dtype=dtype, device=device)",
                        "workspace": "torch.empty({1}, dtype=dtype, device=device)",
                        "upstream_context": "dtype, device",
                        "transpose": "{a}.permute({axes})",
                        "sum": "{a}.sum(dim={axis}, keepdim=True)",
                        "copy": "{a}.clone()",
                        "matmul": "torch.matmul({0}, {1})",
                        "matmul_into": "torch.matmul({a}, {b}, out={out})",
                        "multiply_into": "torch.mul({a}, {b}, out={out})",
                        "apply_into": "{fn}({a}, out={out})",
                    })

#: Every array library a kernel can be printed for, by name.
MODULES: dict[str, ArrayModule] = {m.name: m for m in (NUMPY, CUPY, TORCH)}


def array_module(module: str | ArrayModule) -> ArrayModule:
    """The declaration of a library by name (``"numpy"``, ``"cupy"``, ``"torch"``), or the
    declaration itself; an unknown name is a ``ValueError`` listing the known ones."""
    if isinstance(module, ArrayModule):
        return module
    try:
        return MODULES[module]
    except (KeyError, TypeError):
        raise ValueError(f"unknown array module {module!r}; choose one of "
                         f"{', '.join(MODULES)}") from None
