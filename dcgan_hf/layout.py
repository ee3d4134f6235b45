"""Where files go: the one place the names inside a Hub model folder and a run folder (and the
library's cache folders) are spelled.

Both folders are on-disk contracts (``from_pretrained`` reads the first, users and the
Hub read both), so every module builds these paths here instead of writing the names again.
So are a checkpoint folder's file names (training writes them, the demo's Training tab reads
them); what the files hold belongs to ``training.checkpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

# -- a Hub model folder (and repo) ------------------------------------------------------------
CONFIG_FILE = constants.CONFIG_NAME  # config.json: what PyTorchModelHubMixin reads and writes
WEIGHTS_FILE = constants.SAFETENSORS_SINGLE_FILE  # model.safetensors
CARD_FILE = constants.REPOCARD_NAME  # README.md: the model card
DIRECTIONS_FILE = "directions.safetensors"  # a generator's latent directions (dcgan_hf.directions)
DIRECTION_NAMES_FILE = "directions.json"  # their names and how they were found
# what save_pretrained writes into one folder (a discriminator's has no directions)
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, DIRECTIONS_FILE, DIRECTION_NAMES_FILE)
SAMPLES_FILE = "samples.png"  # the latest fixed-seed grid (also at the run folder's root)
PROGRESS_FILE = "progress.gif"  # the grids of every epoch as one animation (likewise)
LOSS_FILE = "loss.png"  # the loss plot (likewise)
METRICS_FILE = "fid.png"  # FID and KID against images seen, from every evaluation of the run (likewise)
PUBLISHED_FILES = (SAMPLES_FILE, PROGRESS_FILE, LOSS_FILE, METRICS_FILE)  # run-folder pictures a push carries
DISCRIMINATOR_DIR = "discriminator"  # the discriminator: a model folder of its own
TRAINING_STATE_DIR = "training_state"  # the latest checkpoint: enough to resume from the Hub
RUNS_DIR = "runs"  # TensorBoard event files, which the Hub plots
BEST_TAG = "best"  # the Hub tag on the push of the lowest-FID epoch (moved when a better one comes)


@dataclass(frozen=True)
class HubLayout:
    """A Hub model folder: a model at the root; a training push adds the subfolders."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def discriminator(self) -> Path:
        return self.root / DISCRIMINATOR_DIR

    @property
    def training_state(self) -> Path:
        return self.root / TRAINING_STATE_DIR

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR


# -- a training run's --output-dir ----------------------------------------------------------------
EPOCH_GRID = "epoch-{epoch:04d}.png"  # one fixed-seed grid per epoch, in samples/; the names sort


@dataclass(frozen=True)
class RunLayout:
    """``train.py --output-dir``: checkpoints, samples, pictures, TensorBoard and the Hub folder."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def hub(self) -> Path:
        """The folder a push uploads (see :class:`HubLayout`)."""
        return self.root / "hub"

    @property
    def best(self) -> Path:
        """The checkpoint with the lowest FID so far (with --eval-every): a checkpoint folder, never rotated."""
        return self.root / "best"

    @property
    def abandoned(self) -> Path:
        """Checkpoints newer than the one a run was resumed from, moved out of the way (never deleted)."""
        return self.root / "abandoned"

    @property
    def history(self) -> Path:
        """Each epoch's generator in float16 (``dcgan_hf.epoch_history``)."""
        return self.root / "history"

    @property
    def metrics_plot(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def sample_grid(self) -> Path:
        return self.root / SAMPLES_FILE

    @property
    def progress_gif(self) -> Path:
        return self.root / PROGRESS_FILE

    @property
    def loss_plot(self) -> Path:
        return self.root / LOSS_FILE

    def epoch_grid(self, epoch: int) -> Path:
        return self.samples / EPOCH_GRID.format(epoch=epoch)

    def epoch_grids(self) -> list[Path]:
        """Every epoch's grid so far, oldest first."""
        return sorted(self.samples.glob("epoch-*.png"))

    def published_files(self) -> dict[str, Path]:
        """The pictures the Hub folder's root copies: name there → file here."""
        return {name: self.root / name for name in PUBLISHED_FILES}


# -- a training checkpoint: checkpoints/checkpoint-<step:09d>/ (the Hub folder's training_state/ is a copy) ------
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_STATE = "state.json"  # written last: a folder holding it is a complete checkpoint
EMA_COUNTER = "__ema_updates__"  # the one tensor in ema.safetensors that is no weight: the EMA's update count


@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint folder: each tensor of the run in a safetensors file, everything else in state.json."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / CHECKPOINT_STATE

    @property
    def generator(self) -> Path:
        return self.root / "generator.safetensors"

    @property
    def discriminator(self) -> Path:
        return self.root / "discriminator.safetensors"

    @property
    def optimizers(self) -> Path:
        return self.root / "optimizers.safetensors"

    @property
    def rng(self) -> Path:
        return self.root / "rng.safetensors"

    @property
    def ema(self) -> Path:
        """The EMA generator's weights, and its update count (:data:`EMA_COUNTER`)."""
        return self.root / "ema.safetensors"

    @property
    def complete(self) -> bool:
        return self.state.is_file()


def complete_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The complete checkpoints in ``folder`` (a run's ``checkpoints/``), oldest first (names sort by step)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.name.startswith(CHECKPOINT_PREFIX) and CheckpointLayout(path).complete)


def served_folder(folder: str | os.PathLike) -> Path:
    """The model folder to serve for ``folder``: a run folder serves its ``hub/``, anything else itself."""
    path = Path(folder)
    hub = RunLayout(path).hub
    if not HubLayout(path).config.is_file() and HubLayout(hub).config.is_file():
        return hub
    return path


def run_folder(model_folder: str | os.PathLike) -> Path | None:
    """The ``train.py --output-dir`` a model folder belongs to: itself, or the parent of its ``hub/``."""
    folder = Path(model_folder)
    candidates = [folder, folder.parent] if RunLayout(folder.parent).hub == folder else [folder]
    return next((candidate for candidate in candidates if RunLayout(candidate).checkpoints.is_dir()), None)


# -- the library's own caches ---------------------------------------------------------------------
CACHE_ENV = "DCGAN_HF_CACHE"  # where they all go; else ~/.cache/dcgan_hf


def cache_dir(name: str) -> Path:
    """One cache's folder: ``$DCGAN_HF_CACHE/NAME`` or ``~/.cache/dcgan_hf/NAME`` (``data``: decoded
    training images, ``fid``: real-image features)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "dcgan_hf")) / name
