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

from ..hub.card import memorization_note
from ..data.hf_datasets import hub_dataset_id, is_hub_url
from ..files import replace_folder
from ..layout import DISCRIMINATOR_DIR, METRICS_FILE, PROGRESS_FILE, SAMPLES_FILE, HubLayout
from ..scores import MEMORIZATION_FLAG, Scores
from .config import TrainConfig


def hardware_name(device: torch.device, world_size: int = 1) -> str:
    """A short human name for where training ran, for the model card."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        name = f"CPU ({platform.processor() or platform.machine()}, {threads} thread{'s' if threads != 1 else ''})"
    return f"{world_size} × {name}" if world_size > 1 else name


def short_path(path: str) -> str:
    """Last two components of a path: enough to name a dataset, no machine paths in cards.

    A Hub dataset (``hf://datasets/OWNER/NAME@rev``) becomes ``OWNER/NAME@rev``.
    """
    if not path:
        return ""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def hub_datasets(config: TrainConfig) -> list[str]:
    """The Hub datasets a run trained on, for the card's ``datasets:`` metadata (none for local data)."""
    return [repo_id] if (repo_id := hub_dataset_id(config.data)) else []


def card_command(config: TrainConfig) -> str:
    shown = TrainConfig.from_dict({
        **config.to_dict(),
        "data": config.data if is_hub_url(config.data) else short_path(config.data),
        "eval_real": short_path(config.eval_real),
        "output_dir": short_path(config.output_dir),
        "init_from": short_path(config.init_from) if os.path.isdir(config.init_from) else config.init_from,
        "data_cache": "",
        "resume": "",  # how a run was continued is not part of its recipe (resuming is exact)
        "allow_changes": False,
        "progress": TrainConfig.progress,
    })
    return shown.command_line()


def recipe_summary(config: TrainConfig) -> str:
    """Every recipe knob in one line: what a reader needs to reproduce the run's arithmetic."""
    parts = [f"recipe {config.recipe}" if config.recipe != "default" else "",
             f"Adam lr G {config.lr_g:g} / D {config.lr_d:g}, betas ({config.beta1:g}, {config.beta2:g})",
             f"batch {config.batch_size}",
             "hinge loss" if config.loss == "hinge" else "BCE on logits (non-saturating G loss)"]
    if config.label_smoothing:
        parts.append(f"label smoothing {config.label_smoothing:g}")
    if config.augment:
        parts.append(f"DiffAugment {config.augment} (real and fake)")
    if config.r1_gamma:
        parts.append(f"R1 γ={config.r1_gamma:g} every {config.r1_every} steps")
    if config.ema_decay:
        parts.append(f"EMA {config.ema_decay:g}" + (f" from step {config.ema_start}" if config.ema_start else "")
                     + " (published weights)")
    else:
        parts.append("no EMA")
    return ", ".join(part for part in parts if part)


def training_table(
    config: TrainConfig, *, epochs_done: int, steps: int, images_seen: int, image_count: int, hardware: str,
    precision: str, seconds: float,
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "command": f"`{card_command(config)}`",
        "data": f"{short_path(config.data) or 'synthetic'} ({image_count:,} images, "
                f"resize short side → 64, centre crop{', random h-flip' if config.hflip else ''})",
        "progress": f"{epochs_done} epochs, {steps:,} steps, {images_seen:,} images seen",
        "recipe": recipe_summary(config),
        "architecture": f"nz {config.nz}, ngf {config.ngf}, ndf {config.ndf}",
        "hardware": hardware,
        "precision": precision,
        "seed": config.seed,
    }
    if config.init_from:
        table["initialised from"] = (short_path(config.init_from) if os.path.isdir(config.init_from)
                                     else config.init_from) + " (generator and discriminator; fresh optimizers)"
    if seconds > 0:  # unknown for runs checkpointed before wall time was recorded
        table["wall time"] = f"{seconds / 60:.1f} min"
    return table


def metric_rows(metrics: Sequence[Scores], dataset: str | None = None) -> list[dict[str, Any]]:
    """The latest evaluation as model-card rows (FID/KID also as model-index); ``dataset`` names the real images."""
    return metrics[-1].card_rows(dataset) if metrics else []


def history_rows(metrics: Sequence[Scores], images_per_step: int) -> list[dict[str, str]]:
    """Every evaluation of the run (resumes included) as rows of the card's table."""
    def number(value: float | None, pattern: str) -> str:
        return "" if value is None else format(value, pattern)

    return [{"epoch": str(row.epoch), "images": f"{row.step * images_per_step:,}", "fid": f"{row.fid:.2f}",
             "kid": f"{row.kid_mean * 1000:.2f} ± {row.kid_std * 1000:.2f}", "precision": number(row.precision, ".3f"),
             "recall": number(row.recall, ".3f"), "protocol": f"{row.num_generated:,} vs {row.num_real:,}"}
            for row in metrics]


def card_inputs(
    config: TrainConfig, progress: Any, *, images_per_step: int, image_count: int, hardware: str, precision: str,
    base_model: str | None = None, repo_id: str | None = None,
) -> dict[str, Any]:
    """The model card's inputs for a run at ``progress`` (a ``checkpoint.Progress``).

    ``repo_id`` defaults to ``--push-to-hub``'s repo; ``base_model`` is the Hub id of the
    ``--init-from`` model, if it has one. Used by training and by bench/bundle_model.py,
    which re-publishes a run's checkpoint as the bundled model.
    """
    last = progress.metrics[-1] if progress.metrics else None
    return {
        "title": f"DCGAN 64×64 — {short_path(config.data) or 'synthetic data'}",
        "repo_id": repo_id or config.push_to_hub or None,
        "metrics": metric_rows(progress.metrics, dataset=short_path(config.eval_real) or None),
        "metric_history": history_rows(progress.metrics, images_per_step),
        "metric_curve": METRICS_FILE if progress.metrics else None,
        "memorization_note": memorization_note(last.memorized, last.memorization_ratio, last.num_train,
                                               MEMORIZATION_FLAG) if last else None,
        "datasets": hub_datasets(config),
        "base_model": base_model,
        "training": training_table(
            config, epochs_done=progress.epoch, steps=progress.step, images_seen=progress.step * images_per_step,
            image_count=image_count, hardware=hardware, precision=precision, seconds=progress.seconds),
    }


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

    ``card`` holds the model card's inputs (see :func:`dcgan_hf.hub.card.render`): ``title``,
    ``repo_id`` (the repo it is pushed to, else the card loads from this folder), ``metrics``,
    ``training``, ``datasets`` (Hub dataset ids trained on) and ``base_model`` (the model a run
    was initialised from: a ``user/repo[@rev]`` spec; local folders are left out of the metadata).

    A build that fails (a full disk) removes its half-built copy and leaves the previous folder;
    copies that killed runs left are removed first (each holds a whole checkpoint).
    """
    card = {**card, "local_path": card.get("local_path") or short_path(str(folder))}
    with replace_folder(folder) as tmp:
        built = HubLayout(tmp)
        for name, source in extras.items():  # a name may have a folder: history/epoch-000040.safetensors
            if source.is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, tmp / name)
        curve = card.get("metric_curve")
        generator.save_pretrained(tmp, model_card_kwargs={
            **card, "sample_grid": SAMPLES_FILE if SAMPLES_FILE in extras else None,
            "metric_curve": curve if curve and (tmp / curve).is_file() else None,
            "animation": PROGRESS_FILE if PROGRESS_FILE in extras else None,
            "animation_caption": "The fixed-seed grid over training, from the first epoch to the last",
        })
        discriminator.save_pretrained(built.discriminator, model_card_kwargs={
            key: value for key, value in card.items() if key in ("repo_id", "training", "title")
        } | {"local_path": f"{card['local_path']}/{DISCRIMINATOR_DIR}"})
        if checkpoint is not None:
            shutil.copytree(checkpoint, built.training_state)
        if tensorboard_dir is not None and tensorboard_dir.is_dir():
            shutil.copytree(tensorboard_dir, built.runs)
    return folder
