"""Training checkpoints: safetensors + JSON folders, written atomically, names that sort.

A checkpoint is a folder ``checkpoint-<step:09d>/`` holding every tensor of the run in
safetensors files and everything else in ``state.json``; it is written under a temporary
name and renamed into place, so a crash mid-write leaves the previous checkpoint intact and
no half-written one. No pickle anywhere, so a checkpoint pulled from the Hub is safe to load.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..files import remove_stale, replace_folder
from ..finite import require_all_finite
from ..layout import CHECKPOINT_PREFIX, CHECKPOINT_STATE, CheckpointLayout, complete_checkpoints
from ..scores import Scores
from .watchdog import EpochHealth

PREFIX = CHECKPOINT_PREFIX
STATE_FILE = CHECKPOINT_STATE  # written last: a folder holding it is a complete checkpoint
FORMAT = 1


EvalRecord = Scores  # one evaluation during training, as state.json keeps it (epoch and step set)


@dataclass
class Progress:
    """Where a run stands: the next batch to train is ``batch`` of ``epoch``."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    seconds: float = 0.0  # training wall time over all sessions of the run (resumes included)
    history: list[dict[str, float]] = field(default_factory=list)  # one row per log interval
    metrics: list[EvalRecord] = field(default_factory=list)  # one per evaluation
    bad_steps: int = 0  # steps the non-finite guard skipped, over the whole run
    bad_in_a_row: int = 0  # of which the latest, unbroken run (reaching --max-bad-steps stops training)
    health: list[EpochHealth] = field(default_factory=list)  # the collapse watchdog's row per epoch

    def to_dict(self) -> dict[str, Any]:
        """What ``state.json`` holds: plain JSON, every evaluation and watchdog row as an object."""
        values = {key: getattr(self, key) for key in ("epoch", "batch", "step", "seconds", "history")}
        return {**values, "metrics": [row.to_dict() for row in self.metrics], "bad_steps": self.bad_steps,
                "bad_in_a_row": self.bad_in_a_row, "health": [row.to_dict() for row in self.health]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Progress":
        """Read :meth:`to_dict`'s JSON back (older checkpoints lack the later keys: their defaults)."""
        try:
            return cls(**{**values, "metrics": [Scores.from_dict(row) for row in values.get("metrics", [])],
                          "health": [EpochHealth.from_dict(row) for row in values.get("health", [])]})
        except TypeError as error:  # a missing or unknown key
            raise ValueError(f"unreadable progress ({error})") from error


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly (see :func:`save` / :func:`load`)."""

    progress: Progress
    config: dict[str, Any]
    data_fingerprint: str
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]  # "g"/"d" → torch optimizer state_dict
    rng: dict[str, torch.Tensor]  # generator name → get_state()
    ema: dict[str, torch.Tensor] | None = None  # shadow weights + "updates"
    extra: dict[str, Any] = field(default_factory=dict)
    # the decoded images' own hash (ImageCache.content) and count; None in checkpoints written before them,
    # whose data_fingerprint alone (file names, sizes and mtimes) differs on every machine
    data_content: str | None = None
    data_count: int | None = None


def name_for(step: int) -> str:
    return f"{PREFIX}{step:09d}"


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint folder that :func:`save` finished writing."""
    return CheckpointLayout(Path(path)).complete


def save(folder: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``folder/checkpoint-<step>/`` atomically and return that path.

    A leftover folder of that name without ``state.json`` is never a valid checkpoint: it is replaced.
    """
    final = Path(folder) / name_for(checkpoint.progress.step)
    if is_complete(final):
        return final  # the same step is already saved; its content cannot differ
    return save_as(final, checkpoint)


def save_as(final: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to exactly the folder ``final`` (replacing it whole, atomically).

    Every tensor is checked first: a checkpoint holding NaN or inf is never written
    (:class:`dcgan_hf.finite.NonFiniteError`), so the previous one stays the newest.
    """
    final = Path(final)
    optimizer_tensors, optimizer_meta = {}, {}
    for key, state in checkpoint.optimizers.items():
        tensors, meta = _split_optimizer_state(state)
        optimizer_tensors.update({f"{key}.{name}": value for name, value in tensors.items()})
        optimizer_meta[key] = meta
    require_all_finite([("the generator", checkpoint.generator), ("the discriminator", checkpoint.discriminator),
                        ("the EMA generator", checkpoint.ema or {}), ("the optimizer states", optimizer_tensors)])
    with replace_folder(final, durable=True) as tmp:
        files = CheckpointLayout(tmp)
        _save_tensors(files.generator, checkpoint.generator)
        _save_tensors(files.discriminator, checkpoint.discriminator)
        _save_tensors(files.optimizers, optimizer_tensors)
        _save_tensors(files.rng, checkpoint.rng)
        if checkpoint.ema is not None:
            _save_tensors(files.ema, checkpoint.ema)
        state = {
            "format": FORMAT,
            "progress": checkpoint.progress.to_dict(),
            "config": checkpoint.config,
            "data_fingerprint": checkpoint.data_fingerprint,
            "data_content": checkpoint.data_content,
            "data_count": checkpoint.data_count,
            "optimizers": optimizer_meta,
            "has_ema": checkpoint.ema is not None,
            "extra": checkpoint.extra,
        }
        _write_synced(files.state, json.dumps(state, indent=1).encode())  # last: marks completeness
    return final


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint folder written by :func:`save`; a damaged one is a clear error."""
    path = Path(path)
    files = CheckpointLayout(path)
    state_path = files.state
    if not state_path.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    state = json.loads(state_path.read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')!r}, this version reads {FORMAT}")
    device = str(device)
    try:
        optimizer_tensors = load_file(str(files.optimizers), device=device)
        optimizers = {
            key: _join_optimizer_state(
                {name[len(key) + 1 :]: value for name, value in optimizer_tensors.items() if name.startswith(f"{key}.")},
                meta,
            )
            for key, meta in state["optimizers"].items()
        }
        return Checkpoint(
            progress=Progress.from_dict(state["progress"]),
            config=state["config"],
            data_fingerprint=state["data_fingerprint"],
            generator=load_file(str(files.generator), device=device),
            discriminator=load_file(str(files.discriminator), device=device),
            optimizers=optimizers,
            rng=load_file(str(files.rng)),
            ema=load_file(str(files.ema), device=device) if state["has_ema"] else None,
            extra=state.get("extra", {}),
            data_content=state.get("data_content"),
            data_count=state.get("data_count"),
        )
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: damaged checkpoint ({error})") from error


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (names sort by step)."""
    return complete_checkpoints(folder)


def latest(folder: str | os.PathLike) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def step_of(path: str | os.PathLike) -> int:
    """The step a ``checkpoint-<step>`` folder was taken at (from its name)."""
    return int(Path(path).name[len(PREFIX):])


def set_aside_newer(folder: str | os.PathLike, step: int, destination: str | os.PathLike) -> list[Path]:
    """Move ``folder``'s checkpoints taken after ``step`` into ``destination`` (never deleted; return the new paths).

    A run resumed from an earlier checkpoint (``--resume best``, a path) leaves them behind as
    another branch: left in place, ``--resume latest`` would pick them and rotation would keep
    them instead of the run's new ones.
    """
    moved = []
    for path in list_checkpoints(folder):
        if step_of(path) > step:
            target = Path(destination) / path.name
            suffix = 1
            while target.exists():
                target, suffix = Path(destination) / f"{path.name}.{suffix}", suffix + 1
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
    return moved


def is_new_best(metrics: list[EvalRecord]) -> bool:
    """Whether the last evaluation has the lowest FID of the run among those with its protocol.

    FIDs at different sample counts are not comparable: a new protocol starts a new comparison.
    """
    if not metrics:
        return False
    last = metrics[-1]
    earlier = [row.fid for row in metrics[:-1] if row.protocol == last.protocol]
    return not earlier or last.fid < min(earlier)


def prune(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (and stale temporaries); return what went."""
    folder = Path(folder)
    removed = list_checkpoints(folder)[:-keep] if keep > 0 else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    remove_stale(folder, f".{PREFIX}*.tmp-*")
    remove_stale(folder, f".{PREFIX}*.old-*")
    return removed


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch optimizer state_dict → (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    return {"state": per_param, "param_groups": meta["param_groups"]}


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({key: value.detach().cpu().contiguous() for key, value in tensors.items()}, str(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

