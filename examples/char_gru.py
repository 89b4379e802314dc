"""A character-level language model trained with the GRU kernel symbptt generates.

The model is ``derivations/gru.py`` as it stands: z and r gates, candidate h̃ from [r ⊙ h; x],
h = z ⊙ h_prev + (1 − z) ⊙ h̃ and a softmax readout over the characters. Its forward pass and
its full-BPTT backward are the NumPy kernel symbptt derives (``symbptt.load_kernel("gru")``,
the same text as ``generated/numpy/gru.py``); the optimiser is Adam, written here in NumPy
with PyTorch's formula. It learns ``examples/data/rivers.txt`` (4.5 KB of prose written for
this project), the next character from the ones before, on random windows of T characters.

For the first ``--compare`` steps the same model is trained in lockstep in PyTorch: the same
equations written with torch operations, gradients from autograd, ``torch.optim.Adam``,
the same initial weights and the same batches, all in float64. After every step the losses
and every parameter are compared; they agree to about 1e-12 (the check asks for 1e-6), which
says that the derived backward is the gradient of the loss.

Run from the repository (``pip install -e .[examples]`` for matplotlib and torch)::

    python examples/char_gru.py            # about 3 minutes; writes examples/char_gru_loss.png

``--steps``, ``--hidden``, ``--batch``, ``--seq`` and ``--lr`` change the run; ``--plot`` the
picture's path. The printout ends with a sample of text the trained model writes.
"""

from __future__ import annotations

import os

# The matrices here are small (n_h = 128): one BLAS thread is fastest, and several threads
# spinning on a shared or busy machine make a step 30 times slower. Set before NumPy loads.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import symbptt

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "rivers.txt"
#: The part of the text held out to measure the loss on characters never trained on.
HELD_OUT = 0.1


@dataclass
class Corpus:
    """The text as character ids, split into training and held-out parts."""

    chars: str
    train: np.ndarray
    held_out: np.ndarray

    @classmethod
    def read(cls, path: Path = TEXT) -> Corpus:
        text = path.read_text(encoding="utf-8")
        chars = "".join(sorted(set(text)))
        ids = np.array([chars.index(c) for c in text], dtype=np.int64)
        cut = int(len(ids) * (1 - HELD_OUT))
        return cls(chars, ids[:cut], ids[cut:])

    @property
    def size(self) -> int:
        return len(self.chars)


def one_hot(ids: np.ndarray, classes: int) -> np.ndarray:
    """(m, T) ids as the kernel's (classes, m, T) one-hot float64 array."""
    out = np.zeros((classes,) + ids.shape)
    np.put_along_axis(out, ids[None], 1.0, axis=0)
    return out


def batches(corpus: Corpus, m: int, T: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless random windows: inputs x (V, m, T) and next-character targets y (V, m, T)."""
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, len(corpus.train) - T - 1, size=m)
        window = corpus.train[starts[:, None] + np.arange(T + 1)]
        yield one_hot(window[:, :-1], corpus.size), one_hot(window[:, 1:], corpus.size)


class Adam:
    """Adam (Kingma & Ba 2015) over a dict of arrays, as ``torch.optim.Adam`` computes it:
    m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)."""

    def __init__(self, parameters: dict[str, np.ndarray], lr: float = 3e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.parameters, self.lr, self.betas, self.eps, self.t = parameters, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in parameters.items()}
        self.v = {k: np.zeros_like(v) for k, v in parameters.items()}

    def step(self, gradients: dict[str, np.ndarray]) -> None:
        """Update every parameter in place from ``gradients["d" + name]``."""
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1 ** self.t)
        root_correction = np.sqrt(1 - b2 ** self.t)
        for k, p in self.parameters.items():
            g = gradients["d" + k]
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            p -= step_size * self.m[k] / (np.sqrt(self.v[k]) / root_correction + self.eps)


def numpy_step(gru: types.ModuleType, p: dict[str, np.ndarray], adam: Adam, x: np.ndarray,
               y: np.ndarray) -> float:
    """One training step with the generated kernel: mean cross-entropy per character."""
    count = x.shape[1] * x.shape[2]
    outputs, cache = gru.forward(p, x)
    loss = gru.cross_entropy(outputs["y"], y) / count
    gradients = gru.backward(cache, {"y": gru.cross_entropy_upstream(outputs["y"], y) / count})
    adam.step(gradients)
    return loss


def held_out_loss(gru: types.ModuleType, p: dict[str, np.ndarray], corpus: Corpus) -> float:
    """Mean cross-entropy per character on the held-out text, read as one sequence."""
    x = one_hot(corpus.held_out[None, :-1], corpus.size)
    y = one_hot(corpus.held_out[None, 1:], corpus.size)
    outputs, _ = gru.forward(p, x)
    return gru.cross_entropy(outputs["y"], y) / y.shape[2]


def sample(gru: types.ModuleType, p: dict[str, np.ndarray], corpus: Corpus, prompt: str,
           length: int, seed: int = 0) -> str:
    """Text the model writes after ``prompt``, one character at a time (T = 1 per call)."""
    rng = np.random.default_rng(seed)
    n_h = p["Wz"].shape[0]
    outputs, _ = gru.forward(p, one_hot(np.array([[corpus.chars.index(c) for c in prompt]]), corpus.size))
    h, probs, out = outputs["h"][:, :, -1].copy(), outputs["y"][:, 0, -1], prompt
    assert h.shape == (n_h, 1)
    for _ in range(length):
        i = int(rng.choice(corpus.size, p=probs / probs.sum()))
        out += corpus.chars[i]
        outputs, _ = gru.forward(p, one_hot(np.array([[i]]), corpus.size), {"h": h})
        h, probs = outputs["h"][:, :, -1].copy(), outputs["y"][:, 0, -1]
    return out


# -- the same model in PyTorch ------------------------------------------------------------------


class TorchTwin:
    """``derivations/gru.py`` written with torch operations, trained with ``torch.optim.Adam``
    from the same initial weights; autograd gives its gradients."""

    def __init__(self, p: dict[str, np.ndarray], adam: Adam) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
        self.optimiser = torch.optim.Adam(self.p.values(), lr=adam.lr, betas=adam.betas, eps=adam.eps,
                                          foreach=False)

    def loss(self, x: np.ndarray, y: np.ndarray):
        """Mean cross-entropy per character over the batch and the steps."""
        torch, p = self.torch, self.p
        x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
        h = torch.zeros(p["Wz"].shape[0], x.shape[1], dtype=torch.float64)
        total = torch.zeros((), dtype=torch.float64)
        for t in range(x.shape[2]):
            xt = x_t[:, :, t]
            hx = torch.cat([h, xt])
            z = torch.sigmoid(p["Wz"] @ hx + p["bz"])                                   # update gate
            r = torch.sigmoid(p["Wr"] @ hx + p["br"])                                   # reset gate
            h_tilde = torch.tanh(p["Wh"] @ torch.cat([r * h, xt]) + p["bh"])            # candidate
            h = z * h + (1 - z) * h_tilde
            log_y = torch.log_softmax(p["Wy"] @ h + p["by"], dim=0)                     # prediction
            total = total - (y_t[:, :, t] * log_y).sum()
        return total / (x.shape[1] * x.shape[2])

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimiser.zero_grad()
        loss = self.loss(x, y)
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def difference(self, p: dict[str, np.ndarray]) -> float:
        """The largest |NumPy − torch| over every parameter entry."""
        return max(float(np.max(np.abs(p[k] - v.detach().numpy()))) for k, v in self.p.items())


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a training run measured."""

    losses: list[float] = field(default_factory=list)
    held_out: list[tuple[int, float]] = field(default_factory=list)
    torch_losses: list[float] = field(default_factory=list)
    loss_differences: list[float] = field(default_factory=list)
    parameter_differences: list[float] = field(default_factory=list)
    seconds: float = 0.0
    torch_seconds: float = 0.0
    sample: str = ""


def train(args: argparse.Namespace, corpus: Corpus, log=print) -> Run:
    """Train the generated GRU for ``args.steps`` steps, PyTorch alongside for the first
    ``args.compare``; the held-out loss every ``args.every`` steps."""
    gru = symbptt.load_kernel("gru")
    dims = {"n_x": corpus.size, "n_h": args.hidden, "n_y": corpus.size}
    p = gru.init_parameters(dims, np.random.default_rng(args.seed), dtype=np.float64)
    adam = Adam(p, lr=args.lr)
    twin = TorchTwin(p, adam) if args.compare else None
    run, data, start = Run(), batches(corpus, args.batch, args.seq, args.seed + 1), time.perf_counter()
    run.held_out.append((0, held_out_loss(gru, p, corpus)))
    for step in range(1, args.steps + 1):
        x, y = next(data)
        run.losses.append(numpy_step(gru, p, adam, x, y))
        if twin is not None and step <= args.compare:
            begin = time.perf_counter()
            run.torch_losses.append(twin.step(x, y))
            run.loss_differences.append(abs(run.torch_losses[-1] - run.losses[-1]))
            run.parameter_differences.append(twin.difference(p))
            run.torch_seconds += time.perf_counter() - begin
        if step % args.every == 0 or step == args.steps:
            run.held_out.append((step, held_out_loss(gru, p, corpus)))
            recent = np.mean(run.losses[-args.every:])
            log(f"step {step:>5}  train loss {recent:.3f}  held-out {run.held_out[-1][1]:.3f}  "
                f"({time.perf_counter() - start - run.torch_seconds:.0f} s)", flush=True)
        if twin is not None and step == args.compare:
            log(f"PyTorch twin over {step} steps: max |Δloss| {max(run.loss_differences):.1e}, "
                f"max |Δparameter| {max(run.parameter_differences):.1e}", flush=True)
    run.seconds = time.perf_counter() - start - run.torch_seconds
    run.sample = sample(gru, p, corpus, "The river ", args.sample, seed=args.seed)
    return run


def plot(run: Run, args: argparse.Namespace, corpus: Corpus, path: Path) -> None:
    """The loss curve (per step, smoothed, held-out) and the NumPy–PyTorch difference per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    steps = np.arange(1, len(run.losses) + 1)
    window = max(1, min(50, len(run.losses) // 10))
    smooth = np.convolve(run.losses, np.ones(window) / window, mode="valid")
    left.plot(steps, run.losses, color="tab:blue", alpha=0.25, lw=0.8, label="training batch")
    centred = steps[window // 2: window // 2 + len(smooth)]
    left.plot(centred, smooth, color="tab:blue", lw=2, label=f"training, mean of {window} steps")
    held = np.array(run.held_out)
    left.plot(held[:, 0], held[:, 1], "o-", color="tab:orange", ms=3, label="held-out text")
    if run.torch_losses:
        left.plot(np.arange(1, len(run.torch_losses) + 1), run.torch_losses, "--", color="black", lw=1,
                  label=f"PyTorch twin (first {len(run.torch_losses)} steps)")
    left.axhline(np.log(corpus.size), color="grey", ls=":", lw=1, label=f"uniform guess, log {corpus.size}")
    left.set(xlabel="step (Adam)", ylabel="cross-entropy per character (nats)",
             title=f"Generated GRU kernel, n_h={args.hidden}, batch {args.batch}×{args.seq} characters")
    left.legend(loc="center right", fontsize=8)
    left.grid(alpha=0.3)
    if run.torch_losses:
        k = np.arange(1, len(run.loss_differences) + 1)
        floor = 1e-18  # where a difference of exactly 0 is drawn on the log axis
        right.semilogy(k, np.maximum(run.loss_differences, floor), ".-", lw=0.8, ms=3,
                       label="|loss NumPy − loss PyTorch|")
        right.semilogy(k, np.maximum(run.parameter_differences, floor), ".-", lw=0.8, ms=3,
                       label="max |parameter NumPy − PyTorch|")
        right.axhline(1e-6, color="red", ls=":", lw=1, label="required: 1e-6")
        right.set_ylim(floor / 3, 1e-4)
        right.set(xlabel="step (bottom row: exactly equal)", ylabel="absolute difference",
                  title="NumPy kernel vs PyTorch autograd, float64")
        right.legend(fontsize=8)
        right.grid(alpha=0.3, which="both")
    else:
        right.axis("off")
    fig.suptitle(f"Character-level language model on {TEXT.name} ({len(corpus.train)} training characters); "
                 f"{len(run.losses)} steps in {run.seconds:.0f} s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000,
                   help="Adam steps with the generated kernel (default 3000)")
    p.add_argument("--compare", type=int, default=100,
                   help="train PyTorch alongside for this many first steps (0: no PyTorch; default 100)")
    p.add_argument("--hidden", type=int, default=128, help="n_h, the hidden state's size (default 128)")
    p.add_argument("--batch", type=int, default=32, help="m, windows per batch (default 32)")
    p.add_argument("--seq", type=int, default=48, help="T, characters per window (default 48)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default 3e-3)")
    p.add_argument("--every", type=int, default=100, help="print and measure held-out loss every N steps")
    p.add_argument("--sample", type=int, default=300, help="characters of text to write at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, default=HERE / "char_gru_loss.png", help="where the PNG goes")
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="exit 1 when NumPy and PyTorch differ by more (default 1e-6)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    corpus = Corpus.read()
    print(f"{TEXT.name}: {len(corpus.train)} training and {len(corpus.held_out)} held-out characters, "
          f"{corpus.size} distinct; uniform guess {np.log(corpus.size):.3f} nats", flush=True)
    run = train(args, corpus)
    plot(run, args, corpus, args.plot)
    print(f"\n{args.steps} steps in {run.seconds:.1f} s ({1000 * run.seconds / args.steps:.1f} ms per step); "
          f"final training loss {np.mean(run.losses[-args.every:]):.3f}, held-out {run.held_out[-1][1]:.3f}")
    print(f"wrote {args.plot}\n\nsample:\n{run.sample}\n")
    worst = max(run.loss_differences + run.parameter_differences, default=0.0)
    if args.compare and worst > args.tolerance:
        print(f"NumPy and PyTorch differ by {worst:.1e} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
