"""Shared fixtures: generated kernels imported once per session."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = ("rnn", "lstm", "gru", "lstm_torch", "gru_torch")


def import_generated(name: str):
    """generated/numpy/<name>.py as a module (what `symbptt build` wrote)."""
    path = ROOT / "generated" / "numpy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kernels():
    return {name: import_generated(name) for name in BUILTIN}
