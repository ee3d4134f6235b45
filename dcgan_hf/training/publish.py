"""The Hub folder of a run: exactly what ``--push-to-hub`` uploads, and what gets bundled.

Root: the (EMA) generator with its model card, latest sample grid and loss plot.
Subfolders: ``discriminator/``, ``training_state/`` (the latest checkpoint, enough to
resume from the Hub) and ``runs/`` (TensorBoard event files, which the Hub plots).
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..files import remove_stale
from .config import TrainConfig

ROOT_FILES = ("config.json", "model.safetensors", "README.md", "samples.png", "progress.gif", "loss.png")


def hardware_name(device: torch.device, world_size: int = 1) -> str:
    """A short human name for where training ran, for the model card."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{world_size} × {name}" if world_size > 1 else name


def short_path(path: str) -> str:
    """Last two components of a path: enough to name a dataset, no machine paths in cards."""
    if not path:
        return ""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def card_command(config: TrainConfig) -> str:
    shown = TrainConfig.from_dict({
        **config.to_dict(),
        "data": short_path(config.data) if config.data else "",
        "eval_real": short_path(config.eval_real),
        "output_dir": short_path(config.output_dir),
        "data_cache": "",
        "resume": "",  # how a run was continued is not part of its recipe (resuming is exact)
        "progress": TrainConfig.progress,
    })
    return shown.command_line()


def training_table(
    config: TrainConfig, *, epochs_done: int, steps: int, images_seen: int, image_count: int, hardware: str,
    precision: str, seconds: float,
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "command": f"`{card_command(config)}`",
        "data": f"{short_path(config.data) or 'synthetic'} ({image_count:,} images, "
                f"resize short side → 64, centre crop{', random h-flip' if config.hflip else ''})",
        "progress": f"{epochs_done} epochs, {steps:,} steps, {images_seen:,} images seen",
        "recipe": (
            f"Adam lr G {config.lr_g:g} / D {config.lr_d:g}, betas ({config.beta1:g}, {config.beta2:g}), "
            f"batch {config.batch_size}, BCE on logits"
            + (f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else "")
            + (f", EMA {config.ema_decay:g} (published weights)" if config.ema_decay else ", no EMA")
        ),
        "architecture": f"nz {config.nz}, ngf {config.ngf}, ndf {config.ndf}",
        "hardware": hardware,
        "precision": precision,
        "seed": config.seed,
    }
    if seconds > 0:  # unknown for runs checkpointed before wall time was recorded
        table["wall time"] = f"{seconds / 60:.1f} min"
    return table


def metric_rows(metrics: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The latest evaluation as model-card rows."""
    if not metrics:
        return []
    last = metrics[-1]
    protocol = (f"{last['num_generated']} generated vs {last['num_real']} real images, "
                f"InceptionV3 pool3, epoch {last['epoch']}")
    return [
        {"name": "FID", "value": f"{last['fid']:.2f}", "protocol": protocol},
        {"name": "KID ×1000", "value": f"{last['kid_mean'] * 1000:.2f} ± {last['kid_std'] * 1000:.2f}",
         "protocol": protocol},
    ]


def build_hub_folder(
    folder: Path,
    *,
    generator: nn.Module,
    discriminator: nn.Module,
    checkpoint: Path | None,
    tensorboard_dir: Path | None,
    extras: dict[str, Path],
    card: dict[str, Any],
) -> Path:
    """(Re)write ``folder`` whole: built beside it, then swapped in.

    A build that fails (a full disk) removes its half-built copy; copies that killed runs
    left are removed first (each holds a whole checkpoint).
    """
    remove_stale_builds(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, source in extras.items():
            if source.is_file():
                shutil.copy2(source, tmp / name)
        generator.save_pretrained(tmp, model_card_kwargs={
            **card, "sample_grid": "samples.png" if "samples.png" in extras else None,
            "animation": "progress.gif" if "progress.gif" in extras else None,
            "animation_caption": "The fixed-seed grid over training, one frame per epoch",
        })
        discriminator.save_pretrained(tmp / "discriminator", model_card_kwargs={
            key: value for key, value in card.items() if key in ("repo_id", "training", "title")
        })
        if checkpoint is not None:
            shutil.copytree(checkpoint, tmp / "training_state")
        if tensorboard_dir is not None and tensorboard_dir.is_dir():
            shutil.copytree(tensorboard_dir, tmp / "runs")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def remove_stale_builds(folder: Path) -> list[Path]:
    """Half-built or retired copies of the Hub folder (``.hub.tmp-PID``, ``.hub.old-PID``) of dead processes."""
    return remove_stale(folder.parent, f".{folder.name}.tmp-*") + remove_stale(folder.parent, f".{folder.name}.old-*")
