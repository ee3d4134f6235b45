"""A model's training history: the ``epoch-N`` revisions ``train.py`` leaves behind.

Four places hold one. A Hub repo that ``train.py --push-to-hub`` published to has a tag
``epoch-N`` on the commit of each epoch's push (the EMA generator of that epoch at the
root). A local run folder (``train.py --output-dir``) keeps every epoch's published generator
in float16 in ``history/`` (:mod:`dcgan_hf.epoch_history`) and its last few checkpoints in
``checkpoints/checkpoint-<step>/`` (state.json says which epoch each closes; the generator a
checkpoint publishes is the EMA one when the run had an EMA, as on the Hub). A model folder
or Hub repo without tags — the bundled model, a repo uploaded by hand — can carry a few
evenly spaced epoch files in its own ``history/`` (``bench/bundle_model.py --history``), so a
model whose run is gone still shows how it learned.

Revisions are loaded only when asked for and kept in a small LRU (:class:`GeneratorLRU`),
so memory stays at ``capacity`` generators however long the run was.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from safetensors import SafetensorError
from safetensors.torch import load_file

from . import bounded_json, epoch_history
from .errors import ModelLoadError
from .hub.client import download_file, hub_errors, list_files, list_refs
from .hub.loading import ModelSpec
from .layout import EMA_COUNTER, CheckpointLayout, RunLayout, complete_checkpoints, run_folder
from .models import Generator
from .persistence import read_safetensors_header

if TYPE_CHECKING:  # a test may hand in its own client; every call goes through dcgan_hf.hub.client
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

HISTORY_PREFIX = f"{epoch_history.HISTORY_DIR}/"
EPOCH_TAG = re.compile(r"epoch-([1-9][0-9]{0,6})")
MAX_EPOCH = 10**7 - 1  # what an epoch-N tag can name (7 digits); a checkpoint claiming more is not shown
MAX_REVISIONS = 500  # a run tagged more often than this is shown by its newest 500 epochs
LRU_CAPACITY = 4  # generators kept in memory for the Training tab
# A checkpoint's state.json (its loss history grows ~3 KB an epoch at one row per 50 steps on
# CelebA: 114 KB and 7.5k values at epoch 34). Bounded so that parsing one takes < ~120 MB.
STATE_JSON = bounded_json.JSONLimits(max_bytes=16 * 2**20, max_depth=16, max_values=1_000_000)


@dataclass(frozen=True)
class TrainingRevision:
    """One epoch of a run: a Hub tag, or a local checkpoint folder."""

    epoch: int
    source: str  # the repo id, the checkpoint folder, or the epoch file (local history)
    revision: str | None = None  # the tag (Hub); None for a checkpoint folder or a local epoch file
    commit: str | None = None  # the commit the tag points at (Hub)
    file: str | None = None  # an epoch file of the repo's history/ (Hub, no tag), or the local epoch file

    @property
    def label(self) -> str:
        return f"epoch-{self.epoch}"

    @property
    def is_local(self) -> bool:
        return self.revision is None and not self.is_hub_file

    @property
    def is_hub_file(self) -> bool:
        return self.file is not None and self.file != self.source

    def describe(self) -> str:
        if self.file is not None:
            return f"{self.label} (`{HISTORY_PREFIX}{Path(self.file).name}`)"
        if self.is_local:
            return f"{self.label} (checkpoint `{Path(self.source).name}`)"
        return f"`{self.revision}`" + (f" (commit `{self.commit[:12]}`)" if self.commit else "")


# -- finding revisions ---------------------------------------------------------------------------


def epoch_of_tag(name: str) -> int | None:
    match = EPOCH_TAG.fullmatch(name)
    return int(match.group(1)) if match else None


def hub_revisions(repo_id: str, api: HfApi | None = None) -> list[TrainingRevision]:
    """The repo's ``epoch-N`` tags, oldest epoch first (other tags and branches are ignored)."""
    with hub_errors(repo_id):
        refs = list_refs(repo_id, api)
    found = [
        TrainingRevision(epoch, repo_id, tag.name, tag.target_commit)
        for tag in refs.tags
        if (epoch := epoch_of_tag(tag.name)) is not None
    ]
    return sorted(found, key=lambda revision: revision.epoch)[-MAX_REVISIONS:]


def hub_history_revisions(repo_id: str, api: HfApi | None = None) -> list[TrainingRevision]:
    """The repo's ``history/epoch-NNNNNN.safetensors`` files, oldest epoch first."""
    with hub_errors(repo_id):
        files = list_files(repo_id, api)
    found = {}
    for name in files:
        if name.startswith(HISTORY_PREFIX) and (match := epoch_history.FILE_PATTERN.fullmatch(name[len(HISTORY_PREFIX):])):
            epoch = int(match.group(1))
            if 1 <= epoch <= MAX_EPOCH:
                found[epoch] = TrainingRevision(epoch, repo_id, file=name)
    return [found[epoch] for epoch in sorted(found)][-MAX_REVISIONS:]


def local_history_revisions(folder: str | os.PathLike) -> list[TrainingRevision]:
    """A run or model folder's ``history/`` epoch files, oldest first (epoch 0 is not a training epoch)."""
    return [TrainingRevision(entry.epoch, str(entry.path), file=str(entry.path))
            for entry in epoch_history.list_epochs(folder) if 1 <= entry.epoch <= MAX_EPOCH][-MAX_REVISIONS:]


def _read_state(checkpoint: Path) -> dict:
    """A checkpoint's state.json, bounded before it is read and parsed (see :data:`STATE_JSON`)."""
    path = CheckpointLayout(checkpoint).state
    try:
        with path.open("rb") as handle:
            raw = handle.read(STATE_JSON.max_bytes + 1)
        state = bounded_json.loads(raw, STATE_JSON, strict=False)  # a NaN loss is a fact of the run
    except (OSError, ValueError) as error:  # too big/deep/many values, not UTF-8, not JSON, 5000-digit ints
        raise ModelLoadError(f"{path}: unreadable ({_one_line(error)})") from error
    if not isinstance(state, dict) or not isinstance(state.get("progress"), dict):
        raise ModelLoadError(f"{path}: not a training checkpoint's state")
    return state


def _end_of_epoch(state: dict) -> int | None:
    """The epoch a checkpoint closes, or None for a mid-epoch one (or one whose numbers make no sense)."""
    epoch, batch = state["progress"].get("epoch"), state["progress"].get("batch")
    if type(epoch) is int and 1 <= epoch <= MAX_EPOCH and type(batch) is int and batch == 0:
        return epoch
    return None


def checkpoint_revisions(run: str | os.PathLike) -> list[TrainingRevision]:
    """A run folder's complete end-of-epoch checkpoints, oldest first (mid-epoch ones are skipped,
    and so is any whose state.json is unreadable or claims an impossible epoch: with a warning)."""
    found: dict[int, TrainingRevision] = {}
    for checkpoint in complete_checkpoints(RunLayout(Path(run)).checkpoints):  # no temporary or half-written one
        try:
            epoch = _end_of_epoch(_read_state(checkpoint))
        except (ModelLoadError, OSError) as error:
            logger.warning("skipping checkpoint %s: %s", checkpoint, error)
            continue
        if epoch is not None:
            found[epoch] = TrainingRevision(epoch, str(checkpoint))
    return [found[epoch] for epoch in sorted(found)][-MAX_REVISIONS:]


def load_checkpoint_generator(checkpoint: str | os.PathLike) -> Generator:
    """The generator a checkpoint publishes (its EMA when it has one), strictly, safetensors only.

    The sizes state.json claims are checked against the weights' shapes in the safetensors
    header before the model is built: a few bytes of JSON cannot make it allocate gigabytes.
    """
    checkpoint = Path(checkpoint)
    state = _read_state(checkpoint)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    arguments = Generator.config_from_dict(
        {key: config[key] for key in ("nz", "ngf") if key in config}, str(checkpoint)
    )
    files = CheckpointLayout(checkpoint)
    path = files.ema if state.get("has_ema") is True else files.generator
    given = read_safetensors_header(path, str(path))
    given.pop(EMA_COUNTER, None)
    Generator.check_fits(arguments, given, str(path))
    generator = Generator(**arguments)
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({error})") from error
    weights.pop(EMA_COUNTER, None)
    generator.load_state_dict_strict(weights, source=str(path))
    return generator.eval()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def load_revision(revision: TrainingRevision) -> Generator:
    """The generator of one revision, on the CPU."""
    if revision.is_hub_file:
        return epoch_history.load_epoch(download_file(revision.source, revision.file))
    if revision.file is not None:
        return epoch_history.load_epoch(revision.file)
    if revision.is_local:
        return load_checkpoint_generator(revision.source)
    return Generator.from_pretrained(revision.source, revision=revision.revision)


# -- the LRU ----------------------------------------------------------------------------------


class GeneratorLRU:
    """At most ``capacity`` loaded generators, least recently used evicted first.

    One lock covers lookups and loads, so two requests for the same revision load it once.
    """

    def __init__(self, load: Callable[[TrainingRevision], Generator], capacity: int = LRU_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._load = load
        self._items: OrderedDict[TrainingRevision, Generator] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a revision was loaded (tests check laziness with it)

    def get(self, revision: TrainingRevision) -> Generator:
        with self._lock:
            if revision in self._items:
                self._items.move_to_end(revision)
                return self._items[revision]
            generator = self._load(revision)
            self.loads += 1
            self._items[revision] = generator
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return generator

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, revision: object) -> bool:
        """Whether ``revision`` is loaded now (a ZeroGPU call that must load it asks for more time)."""
        with self._lock:
            return revision in self._items


def model_bytes(generator: Generator) -> int:
    """Bytes of a generator's weights and buffers: what one LRU entry holds."""
    tensors = list(generator.parameters()) + list(generator.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


@dataclass
class TrainingHistory:
    """The epochs of a run, oldest first, and the LRU their generators are loaded into."""

    revisions: tuple[TrainingRevision, ...]
    cache: GeneratorLRU
    where: str  # the repo id or run folder, for the page

    @classmethod
    def of(cls, revisions: list[TrainingRevision], where: str, capacity: int = LRU_CAPACITY,
           load: Callable[[TrainingRevision], Generator] = load_revision) -> "TrainingHistory | None":
        """None when there is nothing to watch (fewer than two epochs): the page hides its tab then."""
        if len(revisions) < 2:
            return None
        return cls(tuple(revisions), GeneratorLRU(load, capacity), where)

    @property
    def epochs(self) -> list[int]:
        return [revision.epoch for revision in self.revisions]

    def at_epoch(self, epoch: int) -> TrainingRevision:
        """The revision of ``epoch``, or of the last epoch before it that has one."""
        earlier = [revision for revision in self.revisions if revision.epoch <= epoch]
        return earlier[-1] if earlier else self.revisions[0]

    def generator(self, revision: TrainingRevision) -> Generator:
        return self.cache.get(revision)


def find_history(
    spec: ModelSpec,
    *,
    online: bool = True,
    api: HfApi | None = None,
    load: Callable[[TrainingRevision], Generator] = load_revision,
) -> TrainingHistory | None:
    """The training history behind a served model, or None (no tags, no run folder, Hub offline).

    A run folder shows every epoch of its ``history/`` (float16), with the exact float32
    generator of its checkpoints where one closes that epoch; a repo its epoch tags, or the
    epoch files of its ``history/`` when it has fewer than two tags.
    """
    if spec.is_local:
        run = run_folder(spec.source)
        where = run if run is not None else Path(spec.source)
        by_epoch = {revision.epoch: revision for revision in local_history_revisions(where)}
        if run is not None:
            by_epoch.update({revision.epoch: revision for revision in checkpoint_revisions(run)})
        revisions = [by_epoch[epoch] for epoch in sorted(by_epoch)][-MAX_REVISIONS:]
        return TrainingHistory.of(revisions, str(where), load=load)
    if not online:
        return None
    try:
        tags = hub_revisions(spec.source, api)
        if len(tags) < 2:
            files = hub_history_revisions(spec.source, api)
            tags = files if len(files) > len(tags) else tags
        return TrainingHistory.of(tags, spec.source, load=load)
    except ModelLoadError as error:
        logger.warning("cannot list the training history of %s: %s", spec.source, error)
        return None
