"""Smoke test of the benchmark: ``benchmarks/bench.py --quick`` runs and writes its figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
HAS_TORCH = importlib.util.find_spec("torch") is not None
TOP_KEYS = {"meta", "peak_gflops", "runs", "memory", "derivation", "scaling", "t_sweep", "plot", "goals"}
CELLS = {"rnn", "lstm", "gru", "lstm_torch", "gru_torch"}


def run_quick(tmp_path: Path) -> dict:
    """Run the quick benchmark into tmp_path and return its JSON."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), "--plot", str(tmp_path / "plot.png")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| cell | size | dtype |" in proc.stdout
    return json.loads(out.read_text())


def test_quick_benchmark_writes_expected_json(tmp_path):
    data = run_quick(tmp_path)
    assert TOP_KEYS <= set(data)
    assert {r["cell"] for r in data["runs"]} >= CELLS
    assert {r["dtype"] for r in data["runs"]} == {"float32", "float64"}
    expected = {"generated", "floor"} | ({"torch"} if HAS_TORCH else set())
    for run in data["runs"]:
        assert all(v > 0 for v in run["median_ms"].values())
        if run["cell"] not in CELLS:  # a cell added later has only the generated column
            continue
        assert expected <= set(run["median_ms"]), run["cell"]
        assert "generated/floor" in run["ratios"]
        if HAS_TORCH:
            assert "generated/torch" in run["ratios"]
        if run["dtype"] == "float64" and run["cell"] in ("rnn", "lstm", "gru"):
            assert "notebook" in run["median_ms"]
    assert set(data["derivation"]["seconds_per_cell"]) >= CELLS
    assert len(data["scaling"]["rows"]) >= 2
    plot = Path(data["plot"])
    assert plot.is_file()
    if plot.suffix == ".svg":
        assert ET.parse(plot).getroot().tag.endswith("svg")
    assert all("error" not in m for m in data["memory"])
