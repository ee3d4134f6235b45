"""Loading the model to serve, with a fallback: a model that cannot be loaded (a typo, the Hub down
and nothing cached, broken weights) leaves the demo serving the fallback, and the page says so.
Also the pieces served beside it: its discriminator (for projections) and training revisions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..hub.loading import BUNDLED_MODEL, LoadedModel, ModelSpec, load_model, parse_model_spec
from ..layout import CONFIG_FILE, DISCRIMINATOR_DIR, HubLayout, served_folder
from ..models import Discriminator, Generator, ModelLoadError
from ..revisions import TrainingRevision, load_revision

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelStatus:
    """What the page's model panel and the ``model_info`` API report."""

    requested: str
    serving: str
    revision: str | None
    commit: str | None
    config: dict[str, int]
    device: str
    precision: str
    threads: str
    from_cache_offline: bool = False
    fallback_reason: str | None = None
    discriminator: bool = False  # the model has a discriminator/ (the projection uses its features)
    training_epochs: tuple[int, ...] = ()  # epochs the Training tab can show (epoch-N tags or checkpoints)

    @property
    def fell_back(self) -> bool:
        return self.fallback_reason is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fell_back": self.fell_back}

    def markdown(self) -> str:
        where = f"`{self.serving}`"
        if self.revision:
            where += f" @ `{self.revision}`"
        if self.commit and self.commit != self.revision:
            where += f" (commit `{self.commit[:12]}`)"
        if self.from_cache_offline:
            where += " — from the local cache: the Hub cannot be reached"
        config = ", ".join(f"{key}={value}" for key, value in self.config.items())
        lines = [
            f"**Serving** {where}",
            f"**Config** {config} · **Device** {self.device} · **Precision** {self.precision}"
            f" · **CPU threads** {self.threads}",
        ]
        if self.training_epochs:
            epochs = self.training_epochs
            span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}–{epochs[-1]}"
            lines.append(f"**Training history** {len(epochs)} revisions ({span}): see the Training tab")
        if self.fallback_reason:
            lines.insert(
                0,
                f"⚠️ **Could not load `{self.requested}`** — {self.fallback_reason}. "
                "Serving the fallback model instead.",
            )
        return "\n\n".join(lines)


BUNDLED_LABEL = "the bundled model (dcgan_hf/pretrained/celeba64)"


def describe_source(spec: ModelSpec) -> str:
    """A repo id as is; a folder as its absolute path, except the bundled model, which is named
    rather than located (Space visitors have no use for the server's file system layout)."""
    if not spec.is_local:
        return spec.source
    path = Path(spec.source).resolve()
    return BUNDLED_LABEL if path == BUNDLED_MODEL.resolve() else str(path)


def load_with_fallback(requested: str | os.PathLike, fallback: str | os.PathLike) -> LoadedModel:
    """Load ``requested``; if it cannot be loaded, load ``fallback`` and say why.

    A fallback that cannot be loaded either is an error naming both problems.
    """
    spec = parse_model_spec(requested)
    try:
        return load_model(spec)
    except (ModelLoadError, OSError) as error:
        fallback_spec = parse_model_spec(fallback)
        if fallback_spec == spec:
            raise ModelLoadError(f"cannot load {spec}: {error}") from error
        reason = str(error)
        logger.warning("could not load model %s (%s); falling back to %s", spec, reason, fallback_spec)
    try:
        loaded = load_model(fallback_spec)
    except (ModelLoadError, OSError) as error:
        raise ModelLoadError(f"cannot load {spec} ({reason}) nor the fallback {fallback_spec} ({error})") from error
    return LoadedModel(loaded.generator, loaded.spec, loaded.from_cache_offline, fallback_reason=reason)


def find_discriminator(loaded: LoadedModel) -> Discriminator | None:
    """The served model's ``discriminator/`` (what train.py publishes beside it), when it has one."""
    spec = loaded.spec
    try:
        if spec.is_local:
            folder = served_folder(spec.source)
            if not (HubLayout(folder).discriminator / CONFIG_FILE).is_file():
                return None
            discriminator = Discriminator.from_pretrained(folder, subfolder=DISCRIMINATOR_DIR)
        else:
            discriminator = Discriminator.from_pretrained(
                spec.source, revision=spec.revision, subfolder=DISCRIMINATOR_DIR,
                local_files_only=loaded.from_cache_offline,
            )
    except (ModelLoadError, OSError) as error:
        logger.info("no discriminator for %s (%s): projections use the pixel loss only", spec, error)
        return None
    if discriminator.nc != loaded.generator.nc:
        logger.warning("ignoring %s's discriminator: nc=%d, the generator has nc=%d", spec, discriminator.nc,
                       loaded.generator.nc)
        return None
    return discriminator


def load_revision_on(revision: TrainingRevision, device: torch.device) -> Generator:
    """A training revision's generator, in fp32 on the serving device."""
    return load_revision(revision).to(device).eval()
