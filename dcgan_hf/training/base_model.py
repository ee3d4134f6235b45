"""``--init-from``: start a new run from a published model's generator and discriminator.

For continuing a run on another machine from what was pushed (or bundled), and for
fine-tuning on one's own images. Both networks come from the same source through the
strict safetensors loaders; optimizers, progress and the EMA start fresh. Everything that
can be wrong with the source is found here, before any data is decoded or step taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..hub.client import hub_is_reachable, is_hub_repo_id
from ..hub.loading import BUNDLED_MODEL, BUNDLED_REPO_ID, parse_model_spec
from ..layout import DISCRIMINATOR_DIR
from ..models import Discriminator, Generator, ModelLoadError


@dataclass(frozen=True)
class BaseModel:
    """A loaded ``--init-from`` source."""

    spec: str
    repo_id: str | None  # the Hub repo it is (or, bundled, is published as): the card's base_model
    generator: Generator
    discriminator: Discriminator


def load_base_model(spec: str, *, nz: int, ngf: int, ndf: int) -> BaseModel:
    """Load G and D from ``spec`` (folder or ``user/repo[@rev]``) and check them against the run's sizes."""
    parsed = parse_model_spec(spec)
    where = f"--init-from {spec}"
    # A Hub it cannot reach would be retried for ~25 s per file: ask once, then use the local cache only.
    cache_only = not parsed.is_local and is_hub_repo_id(parsed.source) and not hub_is_reachable()
    try:
        generator = Generator.from_pretrained(parsed.source, revision=parsed.revision, local_files_only=cache_only)
    except ModelLoadError as error:
        raise ModelLoadError(f"{where}: {error}") from error
    try:
        discriminator = Discriminator.from_pretrained(parsed.source, revision=parsed.revision,
                                                      subfolder=DISCRIMINATOR_DIR, local_files_only=cache_only)
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{where}: no usable {DISCRIMINATOR_DIR}/ beside the generator ({error}); training needs both networks"
        ) from error
    wanted = {"nz": nz, "ngf": ngf, "ndf": ndf, "nc": 3}
    found = {"nz": generator.nz, "ngf": generator.ngf, "ndf": discriminator.ndf, "nc": generator.nc}
    if discriminator.nc != generator.nc:
        raise ModelLoadError(f"{where}: generator makes {generator.nc}-channel images, discriminator reads "
                             f"{discriminator.nc}")
    differing = {key: (found[key], wanted[key]) for key in wanted if found[key] != wanted[key]}
    if differing:
        theirs = " ".join(f"--{key} {mine}" for key, (mine, _) in differing.items() if key != "nc")
        raise ModelLoadError(
            f"{where}: the model has " + ", ".join(f"{k}={mine}" for k, (mine, _) in differing.items())
            + " but this run has " + ", ".join(f"{k}={run}" for k, (_, run) in differing.items())
            + (f"; pass {theirs}" if theirs else "")
        )
    return BaseModel(spec, _repo_id(parsed.source) if parsed.is_local else parsed.source, generator, discriminator)


def _repo_id(folder: str) -> str | None:
    """A local folder has no Hub identity, except the bundled model, which is published as BUNDLED_REPO_ID."""
    try:
        return BUNDLED_REPO_ID if Path(folder).resolve() == BUNDLED_MODEL.resolve() else None
    except OSError:
        return None
