#!/usr/bin/env bash
# Wheel smoke test: what a user gets from `pip install symbptt-….whl`, away from the checkout.
#
# Builds a wheel from the working tree (a copy of it, so no build/ folder is left behind),
# installs it into a fresh venv (python3 -m venv) and, from an empty folder, runs the commands
# a newcomer runs first: list, codegen gru, report gru --pdf, check on a small correct file,
# verify rnn --skip-proof, build -o into that folder, and build --check (which must check every
# built-in cell, not claim "up to date" having found none). torch is not installed until the
# last step, so verify reports its PyTorch rows as skipped; the last step installs the wheel's
# [torch] extra and trains a cell from a file with symbptt.torch on the CPU. Needs
# pdflatex/latexmk (tools/setup.sh installs them) and PyPI for the wheel's dependencies
# (sympy, numpy, jinja2, and torch for the last step). Exit status 0 means all passed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "wheel from a copy of the working tree"
mkdir "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK/src" 2>/dev/null || true)
else
    cp -r "$ROOT/." "$WORK/src"
fi
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/symbptt-*.whl)"
echo "built $(basename "$WHEEL")"

step "fresh venv, pip install the wheel"
if ! "$PYTHON" -c "import ensurepip" 2>/dev/null && command -v apt-get >/dev/null; then
    echo "installing python3-venv from Debian's archive (python3 -m venv needs it)"
    SUDO=""; if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL"
SYMBPTT="$WORK/venv/bin/symbptt"
VENV_PY="$WORK/venv/bin/python"

mkdir "$WORK/empty"
cd "$WORK/empty"
# Nothing of the checkout may be reachable from here.
export PYTHONPATH=""
"$VENV_PY" - <<'PY'
import symbptt, symbptt.paths as p
assert "site-packages" in str(p.TEMPLATES) and p.CHECKOUT is None, (p.TEMPLATES, p.CHECKOUT)
print("symbptt", symbptt.__version__, "templates in", p.TEMPLATES)
PY

step "symbptt list"
"$SYMBPTT" list >list.txt
head -3 list.txt
grep -q '^gru:' list.txt && grep -q '^lstm:' list.txt

step "symbptt codegen gru (and the module it prints runs)"
"$SYMBPTT" codegen gru -o gru_kernel.py
"$VENV_PY" - <<'PY'
import importlib.util, numpy as np
spec = importlib.util.spec_from_file_location("gru_kernel", "gru_kernel.py")
gru = importlib.util.module_from_spec(spec); spec.loader.exec_module(gru)
p = gru.init_parameters({"n_x": 3, "n_h": 4, "n_y": 3}, np.random.default_rng(0))
out, cache = gru.forward(p, np.random.default_rng(1).standard_normal((3, 2, 5)))
g = gru.backward(cache, {"y": np.ones_like(out["y"])})
assert out["h"].shape == (4, 2, 5) and g["dWz"].shape == p["Wz"].shape
print("gru_kernel.py: forward and backward ran;", open("gru_kernel.py").read().splitlines()[4])
PY

step "symbptt report gru --pdf"
"$SYMBPTT" report gru --pdf
test -s gru.tex && head -c 5 gru.pdf | grep -q '%PDF-'

step "symbptt check (a small correct RNN, hand-written)"
cp "$ROOT/tests/reference/rnn_notebook.py" my_rnn.py
"$SYMBPTT" check my_rnn.py --cell rnn | tail -4

step "symbptt verify rnn --skip-proof"
"$SYMBPTT" verify rnn --skip-proof

step "symbptt build --check outside a checkout: checks every cell, finds them missing"
set +e
"$SYMBPTT" build --check --no-pdf >check.txt 2>&1
status=$?
set -e
tail -2 check.txt
if [ "$status" != 1 ] || ! grep -q 'missing: generated/numpy/gru.py' check.txt; then
    echo "FAIL: build --check outside a checkout should exit 1 naming missing files (got $status)"; exit 1
fi

step "symbptt build -o out --no-pdf, then build --check -o out"
"$SYMBPTT" build -o out --no-pdf | tail -3
test -s out/numpy/gru.py && test -s out/latex/gru.tex
"$SYMBPTT" build --check -o out --no-pdf 2>&1 | grep -v '^missing: out/pdf' | tail -2 || true

step "a template error is one line, not a traceback"
set +e
"$VENV_PY" -c "
import sys, jinja2, symbptt.cli as cli, symbptt.codegen as cg
def broken(*a, **k): raise jinja2.TemplateNotFound('numpy_kernel.py.j2')
cg.kernel_text = cli.kernel_text = broken
sys.exit(cli.main(['codegen', 'gru']))" 2>err.txt
status=$?
set -e
cat err.txt
[ "$status" = 2 ] && [ "$(wc -l <err.txt)" = 1 ]

step "pip install the wheel's [torch] extra; train a cell from a file with symbptt.torch on the CPU"
"$VENV_PY" -m pip install -q --disable-pip-version-check "${WHEEL}[torch]"
cat >my_cell.py <<'CELL'
"""A small gated cell of one's own: one gate mixes the old state with a tanh candidate."""

from symbptt import Cell, odot, sigmoid, softmax, stack, tanh

cell = Cell("my_gated", "A gate g mixes the previous state with a tanh candidate.")
n_x, n_h, n_y = cell.dims("n_x", "n_h", "n_y")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
Wg, bg = cell.weight("Wg", n_h, n_h + n_x, "gate weights"), cell.bias("bg", n_h, "gate bias")
Wc, bc = cell.weight("Wc", n_h, n_h + n_x, "candidate weights"), cell.bias("bc", n_h, "candidate bias")
Wy, by = cell.weight("Wy", n_y, n_h, "readout weights"), cell.bias("by", n_y, "readout bias")
g = cell.let("g", sigmoid(Wg @ stack(h_prev, x) + bg), "gate")
c = cell.let("c", tanh(Wc @ stack(h_prev, x) + bc), "candidate")
h = cell.update("h", odot(1 - g, h_prev) + odot(g, c))
cell.readout("y", softmax(Wy @ h + by), "prediction")
CELL
"$VENV_PY" - <<'PY'
import torch
from symbptt.torch import CellRNN

torch.manual_seed(0)
model = CellRNN("my_cell.py", input_size=4, hidden_size=12, dims={"n_y": 4}, truncate=5)
symbols = (torch.randint(0, 4, (16,))[None, :] + torch.arange(13)[:, None]) % 4
x = torch.nn.functional.one_hot(symbols[:-1], 4).float()
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
losses = []
for step in range(40):
    optimizer.zero_grad()
    _, _, readouts = model(x, readouts=True)
    loss = -readouts["y"].gather(2, symbols[1:, :, None]).log().mean()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"my_cell.py trained with symbptt.torch: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
assert losses[-1] < 0.5 * losses[0], losses
PY

echo
echo "wheel smoke test: all passed"
