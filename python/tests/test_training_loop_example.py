"""Runs notebooks/training_loop.py (swiftcam inside a torch training loop) when torch exists."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

SCRIPT = Path(__file__).resolve().parents[2] / "notebooks" / "training_loop.py"


def test_training_loop_example_runs():
    done = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "2", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "update_weights" in lines[0]
