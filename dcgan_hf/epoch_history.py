"""A run's training history: each epoch's EMA generator in half precision, ``RUN/history/``.

``train.py`` writes ``history/epoch-000034.safetensors`` at the end of every epoch (on by
default, ``--no-epoch-history`` to skip): the published (EMA, BN-recalibrated) generator of
that epoch as float16, ~2 MB at width 32 and ~7 MB at width 64. Files are written
atomically, never rotated away and never hold a non-finite value, so a bundle can carry a
few evenly spaced epochs (:func:`evenly_spaced_epochs`) and the demo can show how a model
learned. Each file is self-describing: its safetensors metadata holds the format, the
generator's config, the epoch and the step; :func:`load_epoch` reads it as strictly as
``Generator.from_pretrained`` reads a model folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import ModelLoadError
from .files import write_atomic
from .finite import require_finite
from .models import Generator
from .persistence import CONFIG_MAX_BYTES, read_safetensors_header

T = TypeVar("T")

FORMAT = "dcgan_hf-epoch-generator/1"
HISTORY_DIR = "history"
FILE_NAME = "epoch-{epoch:06d}.safetensors"  # names sort by epoch
FILE_PATTERN = re.compile(r"epoch-([0-9]{6})\.safetensors")


@dataclass(frozen=True)
class EpochGenerator:
    """One epoch's generator file (not loaded: see :func:`load_epoch`)."""

    epoch: int
    path: Path


def history_folder(run_dir: str | os.PathLike) -> Path:
    """Where a run folder (``train.py --output-dir``) keeps its epoch generators."""
    return Path(run_dir) / HISTORY_DIR


def write_epoch(folder: str | os.PathLike, generator: Generator, *, epoch: int, step: int) -> Path:
    """Save ``generator`` as ``folder/epoch-NNNNNN.safetensors`` in float16, atomically.

    Raises :class:`dcgan_hf.finite.NonFiniteError` (writing nothing) when a weight is not
    finite or does not fit float16's range (|x| > 65,504 becomes inf).
    """
    state = {key: (value.detach().to("cpu", torch.float16) if value.is_floating_point() else value.detach().cpu())
             .contiguous() for key, value in generator.state_dict().items()}
    require_finite(state, f"epoch {epoch}'s generator in float16")
    metadata = {"format": FORMAT, "config": json.dumps(generator.config, sort_keys=True), "epoch": str(epoch),
                "step": str(step)}
    return write_atomic(Path(folder) / FILE_NAME.format(epoch=epoch), save(state, metadata=metadata))


def list_epochs(folder: str | os.PathLike) -> list[EpochGenerator]:
    """The epoch generators in ``folder`` (a run's ``history/``, or the run folder itself), oldest first."""
    folder = Path(folder)
    if (folder / HISTORY_DIR).is_dir():
        folder = folder / HISTORY_DIR
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if (match := FILE_PATTERN.fullmatch(path.name)) and path.is_file()]
    return [EpochGenerator(epoch, path) for epoch, path in sorted(found)]


def evenly_spaced(items: Sequence[T], limit: int) -> list[T]:
    """At most ``limit`` of ``items``, evenly spread over them, the first and last always included."""
    if limit < 1:
        raise ValueError(f"limit must be ≥ 1, got {limit}")
    if len(items) <= limit:
        return list(items)
    if limit == 1:
        return [items[-1]]
    picks = sorted({round(index * (len(items) - 1) / (limit - 1)) for index in range(limit)})
    return [items[index] for index in picks]


def evenly_spaced_epochs(entries: Sequence[EpochGenerator], count: int) -> list[EpochGenerator]:
    """At most ``count`` of ``entries``, evenly spread over them, the first and last always included."""
    return evenly_spaced(entries, count)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's metadata (format, config, epoch, step), checked; the header is size-bounded first."""
    label = str(path)
    read_safetensors_header(path, label)  # refuses oversized or unreadable headers before parsing
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise ModelLoadError(f"{label}: not a readable safetensors file ({error})") from error
    if metadata.get("format") != FORMAT:
        raise ModelLoadError(f"{label}: not a dcgan_hf epoch generator (format {metadata.get('format')!r})")
    for key in ("epoch", "step"):
        if not str(metadata.get(key, "")).isdigit():
            raise ModelLoadError(f"{label}: metadata {key} must be a non-negative integer")
    if len(metadata.get("config", "")) > CONFIG_MAX_BYTES:
        raise ModelLoadError(f"{label}: its config metadata is larger than {CONFIG_MAX_BYTES:,} bytes")
    return metadata


def load_epoch(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """The generator of one epoch file, in float32 and eval mode; any problem is a ModelLoadError."""
    label = str(path)
    metadata = read_metadata(path)
    try:
        config = json.loads(metadata["config"])
    except ValueError as error:
        raise ModelLoadError(f"{label}: unreadable config metadata ({error})") from error
    config = Generator.config_from_dict(config, label)
    Generator.check_fits(config, read_safetensors_header(path, label), label)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"{label}: not a readable safetensors file ({error})") from error
    generator = Generator(**config)
    own = generator.state_dict()
    generator.load_state_dict_strict({key: value.to(own[key].dtype) for key, value in state.items()}, source=label)
    return generator.to(device).eval()
