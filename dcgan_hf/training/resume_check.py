"""What a resume may change: a different recipe or different training images stop it.

Resuming a checkpoint continues its run exactly (CPU, fp32: the same weights as an
uninterrupted run). A command that silently trains the rest with another learning rate,
loss or data set makes a model whose card describes neither half. So :func:`differences`
lists every recipe knob and the data that differ from the checkpoint's, and the loop stops
before the first step unless ``--allow-changes`` says the change is meant.

"Different data" means different *content*. A checkpoint records the decoded images' own
hash (``ImageCache.content``), equal wherever the same files live. Checkpoints written
before that carry only the cache key, which hashes file names, sizes **and mtimes**, so the
same files copied to another machine look different: for those the key is compared as it
is, then :data:`LEGACY_DATA` (old keys whose data are known), and only then is the change
reported. A resume with ``--allow-changes`` writes checkpoints that carry the content hash,
so the question never comes up again for that run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import TrainConfig

# The knobs that change the arithmetic of training (the card's "recipe" line, the seed, the base model).
RECIPE_FIELDS = ("recipe", "batch_size", "lr_g", "lr_d", "beta1", "beta2", "loss", "label_smoothing", "augment",
                 "r1_gamma", "r1_every", "ema_decay", "ema_start", "hflip", "seed", "init_from")
ARCHITECTURE_FIELDS = ("nz", "ngf", "ndf")

# Old-style data fingerprints (file stamps) → the content hash of the images they were made from.
# 4df70c…: ../shared/runs/r1w32/checkpoint-000019206, trained on another machine from the 37,290 files
# of ../shared/data/celeba64/train (its README says so, and its 582 steps of 64 per epoch need
# 37,248–37,311 images); ab62ac… is those files decoded here (ImageCache.content of that folder).
LEGACY_DATA: dict[str, str] = {"4df70c1097fb14abc353ed9b": "ab62ac8e148016e3c076f588"}


class ResumeMismatch(ValueError):
    """The checkpoint cannot (or, without --allow-changes, may not) be continued by this run."""


@dataclass(frozen=True)
class DataIdentity:
    """What a run trains on, as a checkpoint records it."""

    fingerprint: str  # the image cache's key (file names, sizes, mtimes; or a Hub commit)
    content: str | None  # the decoded images' hash; None in checkpoints written before it existed
    count: int | None = None


def architecture_problem(saved_config: dict[str, Any], config: TrainConfig) -> str | None:
    """Why the checkpoint's networks cannot be loaded by this run (no flag overrides this)."""
    for key in ARCHITECTURE_FIELDS:
        if saved_config.get(key) != getattr(config, key):
            return f"cannot resume: the checkpoint has {key}={saved_config.get(key)}, this run {getattr(config, key)}"
    return None


def recipe_changes(saved_config: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Recipe knob → (checkpoint's value, this run's) for each that differs.

    A key older code did not write means what that code trained with (``TrainConfig.from_dict``).
    """
    trained_with = TrainConfig.from_dict(saved_config).to_dict()
    now = config.to_dict()
    return {key: (trained_with[key], now[key]) for key in RECIPE_FIELDS if trained_with[key] != now[key]}


def data_change(saved: DataIdentity, now: DataIdentity) -> str | None:
    """None when the run trains on the checkpoint's images; else what differs, in words."""
    if saved.content is not None:
        if saved.content == now.content:
            return None
        counts = f" ({saved.count:,} images then, {now.count:,} now)" if saved.count and now.count else ""
        return f"the training images differ from the checkpoint's: content {saved.content}, now {now.content}{counts}"
    if saved.fingerprint == now.fingerprint or LEGACY_DATA.get(saved.fingerprint) == now.content:
        return None
    return (f"the training data may differ from the checkpoint's: it predates content fingerprints and its data "
            f"fingerprint {saved.fingerprint} (file names, sizes and modification times) is not this data's "
            f"{now.fingerprint}; the same files copied to another machine also differ this way")


def differences(saved_config: dict[str, Any], saved_data: DataIdentity, config: TrainConfig,
                now_data: DataIdentity) -> list[str]:
    """Every difference between the checkpoint's run and this one that ``--allow-changes`` must approve."""
    found = [f"--{key.replace('_', '-')}: {old!r} in the checkpoint, {new!r} now"
             for key, (old, new) in recipe_changes(saved_config, config).items()]
    data = data_change(saved_data, now_data)
    return found + ([data] if data else [])


def check(saved_config: dict[str, Any], saved_data: DataIdentity, config: TrainConfig,
          now_data: DataIdentity, source: str) -> list[str]:
    """Raise :class:`ResumeMismatch` for what cannot or may not change; return the allowed changes."""
    problem = architecture_problem(saved_config, config)
    if problem:
        raise ResumeMismatch(problem)
    found = differences(saved_config, saved_data, config, now_data)
    if found and not config.allow_changes:
        raise ResumeMismatch(f"cannot resume {source} as asked: " + "; ".join(found)
                             + ". Pass the checkpoint's values to continue it exactly, or --allow-changes if the "
                               "change is intended")
    return found
