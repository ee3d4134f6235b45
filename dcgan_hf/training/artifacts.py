"""What a run leaves to look at: sample grids per epoch, their GIF, a loss plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import images as imaging
from ..epoch_history import evenly_spaced
from ..files import write_atomic
from ..latent import latents
from ..sampling import render

FIXED_SEEDS = tuple(range(64))  # the "fixed noise": the same seeds the app and CLI use


def sample_grid(generator: nn.Module, seeds: Sequence[int] = FIXED_SEEDS) -> Image.Image:
    """An 8×8 grid of ``seeds`` from ``generator`` (eval mode; training mode is restored)."""
    return grid_of(fixed_seed_samples(generator, seeds))


PROGRESS_GIF_FRAMES = 48  # epochs in the run's progress GIF (first and last always): it is rewritten every epoch


def write_progress_gif(grids: Sequence[Path], path: Path, duration_ms: int = 400,
                       max_frames: int = PROGRESS_GIF_FRAMES) -> None:
    """The epoch grids as one looping GIF: training at a glance.

    Rewritten at every epoch end, so its cost is bounded: at most ``max_frames`` evenly spaced
    epochs, each reduced to 256 colours by PIL's fast octree (Pillow's default median cut took
    0.2 s per 530×530 grid, 12 s per epoch once a run had 59 epochs; the octree ~25× less).
    """
    frames = []
    for grid_path in evenly_spaced(grids, max_frames):
        with Image.open(grid_path) as image:
            frames.append(image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE))
    if frames:
        write_atomic(path, imaging.gif_bytes(frames, duration_ms=duration_ms))


def plot_losses(history: Sequence[dict[str, float]], path: Path) -> None:
    """D and G losses and D's outputs against step, as a PNG."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [row["step"] for row in history]
    figure, (losses, outputs) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    losses.plot(steps, [row["loss_d"] for row in history], label="D loss")
    losses.plot(steps, [row["loss_g"] for row in history], label="G loss")
    losses.set_ylabel("BCE")
    losses.legend()
    outputs.plot(steps, [row["d_real"] for row in history], label="D(x)")
    outputs.plot(steps, [row["d_fake"] for row in history], label="D(G(z))")
    outputs.set_xlabel("step")
    outputs.set_ylabel("mean probability")
    outputs.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def plot_metrics(metrics: Sequence[Any], images_per_step: int, path: Path) -> None:
    """FID and KID×1000 against images seen, one point per evaluation (``Scores`` records), as a PNG.

    Evaluations of different protocols (generated/real counts) are separate lines: their
    numbers are not comparable.
    """
    if not metrics:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (fid_axis, kid_axis) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for protocol in sorted({row.protocol for row in metrics}):
        rows = [row for row in metrics if row.protocol == protocol]
        images = [row.step * images_per_step for row in rows]
        label = f"{protocol[0]:,} generated vs {protocol[1]:,} real"
        fid_axis.plot(images, [row.fid for row in rows], marker="o", label=label)
        kid_axis.errorbar(images, [row.kid_mean * 1000 for row in rows], yerr=[row.kid_std * 1000 for row in rows],
                          marker="o", capsize=3, label=label)
    fid_axis.set_ylabel("FID (lower is better)")
    kid_axis.set_ylabel("KID ×1000")
    kid_axis.set_xlabel("images seen")
    fid_axis.legend(fontsize="small")
    for axis in (fid_axis, kid_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def fixed_seed_samples(generator: nn.Module, seeds: Sequence[int] = FIXED_SEEDS) -> torch.Tensor:
    """uint8 (N, C, 64, 64) images of ``seeds``: the epoch grid's content, and what the watchdog measures."""
    return render(generator, latents(list(seeds), generator.nz))


def grid_of(images: torch.Tensor) -> Image.Image:
    """The 8-wide grid of :func:`fixed_seed_samples`' images."""
    return imaging.grid_image(images, nrow=8)


def grid_tensor(image: Image.Image) -> torch.Tensor:
    """PIL grid → uint8 (3, H, W) for TensorBoard's add_image."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
