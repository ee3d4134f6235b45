"""A real training run for the Training-tab tests: ``train.py`` itself, tiny, on synthetic
images, pushing each epoch to the fake Hub on 127.0.0.1 as ``train.py --push-to-hub`` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

TOKEN = "hf_test_token_for_training_runs"
EPOCHS = 3


def train_and_push(repo_id: str, output_dir: Path, epochs: int = EPOCHS) -> Path:
    """Run train.py for ``epochs`` tiny epochs, pushing (and tagging) each one to ``repo_id``."""
    command = [
        sys.executable, str(ROOT / "train.py"), "--synthetic", "64", "--epochs", str(epochs), "--batch-size", "16",
        "--ngf", "8", "--ndf", "8", "--nz", "16", "--ema-decay", "0.9", "--output-dir", str(output_dir),
        "--data-cache", str(output_dir.parent / "cache"), "--workers", "1", "--threads", "1", "--no-progress",
        "--push-to-hub", repo_id, "--hub-retry-delay", "0.05", "--log-every", "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "HF_TOKEN": TOKEN})
    if result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return output_dir
