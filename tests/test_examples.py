"""The training example runs (a few steps): the generated GRU kernel and Adam, PyTorch in
lockstep, the plot written. The full run (3000 steps, a few minutes) is the README's command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "char_gru.py"


def _example():
    spec = importlib.util.spec_from_file_location("char_gru_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def test_char_gru_trains_matches_pytorch_and_plots(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    example = _example()
    png = tmp_path / "loss.png"
    args = ["--steps", "6", "--compare", "4", "--every", "3", "--hidden", "16", "--batch", "4",
            "--seq", "8", "--sample", "20", "--plot", str(png)]
    assert example.main(args) == 0
    out = capsys.readouterr().out
    assert "PyTorch twin over 4 steps" in out and f"wrote {png}" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_adam_is_torchs_adam():
    """The example's NumPy Adam takes the same steps as torch.optim.Adam on a fixed gradient."""
    torch = pytest.importorskip("torch")
    import numpy as np

    example = _example()
    rng = np.random.default_rng(0)
    p = {"W": rng.standard_normal((3, 2))}
    tp = torch.tensor(p["W"].copy(), requires_grad=True)
    adam, reference = example.Adam(p, lr=0.01), torch.optim.Adam([tp], lr=0.01, foreach=False)
    for _ in range(5):
        g = rng.standard_normal((3, 2))
        adam.step({"dW": g})
        tp.grad = torch.tensor(g)
        reference.step()
    assert np.max(np.abs(p["W"] - tp.detach().numpy())) < 1e-14
