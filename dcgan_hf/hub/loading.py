"""Where models come from: model specs ("user/repo@rev" or a folder), the bundled default
model, loading a model to serve (a run folder's ``hub/``; the local cache when the Hub is
down) and whole-folder downloads. Publishing is :mod:`dcgan_hf.hub.pusher`.

The single calls into the Hub client (downloads, repo creation, uploads, error translation)
are in :mod:`dcgan_hf.hub.client`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import constants, snapshot_download, try_to_load_from_cache
from huggingface_hub.utils import filter_repo_objects

from ..errors import ModelLoadError
from ..layout import CONFIG_FILE, served_folder
from ..models import Generator
from .client import hub_errors, hub_is_reachable, is_hub_repo_id

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "pretrained" / "celeba64"
BUNDLED_REPO_ID = "dcgan-hf/dcgan-celeba64"  # where the bundled model is published (README front matter)

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class LoadedModel:
    """A generator (on the CPU) and where it came from."""

    generator: Generator
    spec: ModelSpec
    from_cache_offline: bool = False  # a Hub model served from the local cache, Hub unreachable
    fallback_reason: str | None = None  # why the requested model is not the one serving


def load_model(spec: ModelSpec) -> LoadedModel:
    """A folder as is; a Hub repo from the Hub, or from the local cache if the Hub is unreachable."""
    if spec.is_local:  # a run folder (train.py --output-dir) serves its hub/ folder
        return LoadedModel(load_generator(ModelSpec(str(served_folder(spec.source)))), spec)
    if not is_hub_repo_id(spec.source):
        return LoadedModel(load_generator(spec), spec)  # a path whose error names it
    offline = not hub_is_reachable()
    if offline:
        logger.warning("the Hub at %s cannot be reached: looking for %s in the local cache", constants.ENDPOINT, spec)
    return LoadedModel(load_generator(spec, local_files_only=offline), spec, from_cache_offline=offline)


def hub_commit(spec: ModelSpec) -> str | None:
    """The commit a Hub spec resolved to, read from the local cache (no network call)."""
    if spec.is_local:
        return None
    cached = try_to_load_from_cache(spec.source, CONFIG_FILE, revision=spec.revision)
    if isinstance(cached, str):
        return Path(cached).parent.name
    return None


# -- pulling a whole folder (e.g. training state for --resume) ------------------------------


def download_folder(
    spec: str | os.PathLike | ModelSpec,
    *,
    allow_patterns: str | Sequence[str] | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """The files of a repo (``user/name[@rev]``) matching ``allow_patterns``, via the HF cache.

    A local folder is returned as is. ``revision`` overrides the one in the spec. It is an
    error when patterns are given and no file of the repo matches them, so a caller never
    resumes from an empty folder.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if parsed.is_local:
        return Path(parsed.source)
    parsed = ModelSpec(parsed.source, revision or parsed.revision)
    patterns = [allow_patterns] if isinstance(allow_patterns, str) else allow_patterns
    with hub_errors(str(parsed)):
        folder = Path(
            snapshot_download(
                parsed.source,
                revision=parsed.revision,
                allow_patterns=list(patterns) if patterns is not None else None,
                local_files_only=local_files_only,
            )
        )
    if patterns is not None:
        present = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
        if not list(filter_repo_objects(present, allow_patterns=list(patterns))):
            raise ModelLoadError(f"{parsed} has no files matching {list(patterns)}")
    return folder
