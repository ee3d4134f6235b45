"""Where models come from and go to: model specs ("user/repo@rev" or a folder), the
bundled default model, and publishing to the Hub."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .models import Generator

BUNDLED_MODEL = Path(__file__).resolve().parent / "pretrained" / "celeba64"


@dataclass(frozen=True)
class ModelSpec:
    """A model source: a local folder, or a Hub repo id at an optional revision."""

    source: str
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return os.path.isdir(self.source)

    def __str__(self) -> str:
        return self.source if self.revision is None else f"{self.source}@{self.revision}"


def parse_model_spec(spec: str | os.PathLike) -> ModelSpec:
    """``"user/repo@epoch-5"`` → ModelSpec("user/repo", "epoch-5"); an existing folder stays whole.

    A folder name may itself contain "@", so an existing path wins over the split.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise ValueError("empty model spec: give a Hub repo id (user/name[@revision]) or a folder")
    if os.path.isdir(text) or "@" not in text:
        return ModelSpec(text)
    source, _, revision = text.rpartition("@")
    if not source or not revision:
        raise ValueError(f"cannot read model spec {text!r}: expected user/name@revision")
    return ModelSpec(source, revision)


def load_generator(
    spec: str | os.PathLike | ModelSpec,
    *,
    device: str | torch.device = "cpu",
    local_files_only: bool = False,
) -> Generator:
    """Generator.from_pretrained for a spec string: strict, safetensors only."""
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    return Generator.from_pretrained(
        parsed.source, revision=parsed.revision, map_location=device, local_files_only=local_files_only
    )
