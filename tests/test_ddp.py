"""torchrun with 2 CPU processes (gloo on loopback): shards, identical weights, rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import free_port
from dcgan_hf.training import checkpoint as checkpoints
from imagefiles import write_images

ROOT = Path(__file__).resolve().parent.parent


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    write_images(tmp_path / "faces", 40)
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "faces"), "--output-dir", str(out), "--epochs", "2", "--batch-size", "4",
            "--ngf", "8", "--ndf", "8", "--nz", "16", "--no-progress", "--log-every", "1",
            "--data-cache", str(tmp_path / "cache"), "--workers", "1", "--ema-decay", "0.9"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("generator", "discriminator"):
        rank0 = load_file(str(tmp_path / f"rank0-{name}.safetensors"))
        rank1 = load_file(str(tmp_path / f"rank1-{name}.safetensors"))
        assert set(rank0) == set(rank1)
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (name, key)
    # 40 images, 2 ranks × batch 4 → 5 steps per epoch, each rank on its own shard
    saved = checkpoints.load(checkpoints.latest(out / "checkpoints"))
    assert saved.progress.step == 10 and saved.progress.epoch == 2
    assert not any(key.startswith("module.") for key in saved.generator)  # saved without the DDP wrapper
    assert not any(key.startswith("module.") for key in saved.discriminator)
    hub = load_file(str(out / "hub" / "model.safetensors"))
    assert "main.0.weight" in hub
    assert len(list((out / "tensorboard").glob("events.*"))) == 1  # only rank 0 writes
    assert "2 × CPU" in (out / "hub" / "README.md").read_text()
