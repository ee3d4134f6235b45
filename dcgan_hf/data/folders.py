"""Training images: folder | zip | CelebA root | a `datasets` dataset → a uint8 cache → device batches.

JPEG decoding is the slow part of a DCGAN epoch, so images are decoded once, in parallel,
into an (N, 64, 64, 3) uint8 ``.npy`` file that later runs memory-map (:mod:`dcgan_hf.data.image_cache`).
This module finds the files of a folder, zip or CelebA root (``datasets`` sources are
:mod:`dcgan_hf.data.hf_datasets`'); on a GPU the whole cache moves to device memory and batches
are gathered, flipped and normalised there.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import image_cache
from .decoding import MAX_FILE_BYTES, decode_or_reason, read_file
from .image_cache import CACHE_FORMAT, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_PARTITIONS = {"train": "0", "valid": "1", "test": "2"}


@dataclass(frozen=True)
class ImageSource:
    """A set of image files: where they live and the names to read, in a fixed order."""

    kind: str  # "folder" | "zip"
    root: Path
    names: tuple[str, ...]
    stamps: tuple[str, ...]  # per file: size + mtime (folder) or size + CRC (zip)
    skipped: tuple[str, ...] = ()  # found while listing: unreadable folders, devices, broken links, loops

    def fingerprint(self, resolution: int) -> str:
        """Changes whenever a file, the file list, the transform or the cache format does."""
        digest = hashlib.sha256(f"{CACHE_FORMAT}|{resolution}|{self.kind}".encode())
        for name, stamp in zip(self.names, self.stamps):
            # file names are bytes on POSIX; undecodable ones arrive as surrogates (PEP 383)
            digest.update(f"{name}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        for problem in self.skipped:  # a folder made readable later changes the cache
            digest.update(f"skipped\0{problem}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()[:24]


def find_images(path: str | os.PathLike, split: str = "train") -> ImageSource:
    """Resolve ``--data``: a folder (recursive), a .zip, or a CelebA root.

    A CelebA root holds ``list_eval_partition.txt`` beside ``img_align_celeba/`` (or the
    official ``img_align_celeba.zip``), directly or under ``celeba/`` as torchvision lays
    it out; then only the files of ``split`` are used.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such data folder or zip: {root}")
    if not os.access(root, os.R_OK | (os.X_OK if root.is_dir() else 0)):
        raise DataError(f"cannot read {root}: permission denied")
    if root.is_dir():
        for candidate in (root, root / "celeba"):
            if (candidate / "list_eval_partition.txt").is_file():
                return _celeba_root(candidate, split)
        return _folder(root)
    if zipfile.is_zipfile(root):
        return _zip(root)
    raise DataError(f"{root} is neither a folder of images nor a .zip file")


def _folder(root: Path, keep: set[str] | None = None) -> ImageSource:
    found, skipped = _scan(root, keep)
    if not found:
        detail = f"; skipped {len(skipped)}: {'; '.join(skipped[:3])}" if skipped else ""
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}{detail}")
    found.sort(key=lambda item: item[0].split("/"))
    return ImageSource("folder", root, tuple(name for name, _ in found),
                       tuple(f"{info.st_size}:{info.st_mtime_ns}" for _, info in found), tuple(sorted(skipped)))


def _scan(root: Path, keep: set[str] | None) -> tuple[list[tuple[str, os.stat_result]], list[str]]:
    """Image files under ``root``, and what was skipped and why.

    Links to folders are followed, each real folder read once (the first path in name order);
    unreadable folders, link loops, broken links, devices and pipes are reported, never fatal.
    """
    found: list[tuple[str, os.stat_result]] = []
    skipped: list[str] = []
    visited: set[tuple[int, int]] = set()
    pending: list[tuple[Path, frozenset[tuple[int, int]]]] = [(root, frozenset())]
    while pending:
        folder, above = pending.pop()
        label = folder.relative_to(root).as_posix() + "/"
        try:
            info = folder.stat()
            key = (info.st_dev, info.st_ino)
            if key in visited:
                why = "a link back to a folder above it (a loop)" if key in above else "another path to a folder read"
                skipped.append(f"{label} ({why}: not followed)")
                continue
            visited.add(key)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            skipped.append(f"{label} (unreadable folder: {error.strerror or error})")
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            name = path.relative_to(root).as_posix()
            try:
                is_folder = entry.is_dir()  # follows links; a link loop or a broken link is not a folder
            except OSError:
                is_folder = False
            if is_folder:
                subfolders.append(path)
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES or (keep is not None and entry.name not in keep):
                continue
            try:
                info = os.stat(path)
            except OSError as error:
                skipped.append(f"{name} ({error.strerror or error})")
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped.append(f"{name} (not a regular file: a device, pipe or socket)")
            elif info.st_size > MAX_FILE_BYTES:
                skipped.append(f"{name} ({info.st_size:,} bytes: larger than {MAX_FILE_BYTES:,})")
            else:
                found.append((name, info))
        pending.extend((path, above | {key}) for path in reversed(subfolders))  # depth first, in name order
    return found, skipped


def _zip(path: Path, keep: set[str] | None = None) -> ImageSource:
    with zipfile.ZipFile(path) as archive:
        members = sorted(
            (info for info in archive.infolist()
             if not info.is_dir() and info.filename.lower().endswith(IMAGE_SUFFIXES)
             and not Path(info.filename).name.startswith("._")),
            key=lambda info: info.filename,
        )
    if keep is not None:
        members = [info for info in members if Path(info.filename).name in keep]
    if not members:
        raise DataError(f"no images found inside {path}")
    return ImageSource(
        "zip", path, tuple(m.filename for m in members), tuple(f"{m.file_size}:{m.CRC:08x}" for m in members)
    )


def _celeba_root(root: Path, split: str) -> ImageSource:
    if split not in CELEBA_PARTITIONS:
        raise DataError(f"CelebA split must be one of {sorted(CELEBA_PARTITIONS)}, got {split!r}")
    wanted = CELEBA_PARTITIONS[split]
    keep = set()
    for line in (root / "list_eval_partition.txt").read_text().split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[1] == wanted:
            keep.add(parts[0])
    if (root / "img_align_celeba").is_dir():
        return _folder(root / "img_align_celeba", keep)
    if (root / "img_align_celeba.zip").is_file():
        return _zip(root / "img_align_celeba.zip", keep)
    raise DataError(f"{root} has list_eval_partition.txt but no img_align_celeba/ or img_align_celeba.zip")


def _decode_chunk(task: tuple[str, str, Sequence[str], int]) -> list[np.ndarray | str]:
    """Worker: decode names from a folder or zip; an error becomes its message (a str)."""
    kind, root, names, resolution = task
    archive = zipfile.ZipFile(root) if kind == "zip" else None
    try:
        return [decode_or_reason(functools.partial(read_image, archive, root, name), resolution) for name in names]
    finally:
        if archive:
            archive.close()


def read_image(archive: zipfile.ZipFile | None, root: str | os.PathLike, name: str) -> bytes:
    """One file's bytes from a folder or a zip, refused before reading when larger than MAX_FILE_BYTES."""
    if archive is None:
        return read_file(Path(root) / name)
    size = archive.getinfo(name).file_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size:,} bytes, more than {MAX_FILE_BYTES:,}: not read")
    return archive.read(name)


def folder_plan(path: str | os.PathLike, *, resolution: int = 64, split: str = "train") -> image_cache.CachePlan:
    """How a folder, zip or CelebA root enters the cache; keyed by its files' names, sizes and times."""
    source = find_images(path, split)

    def prepare() -> tuple[image_cache.Decoding, dict[str, Any]]:
        decoding = image_cache.Decoding(
            count=len(source.names),
            task=lambda start, stop: (source.kind, str(source.root), source.names[start:stop], resolution),
            worker=_decode_chunk,
            name=source.names.__getitem__,
            label=str(source.root),
        )
        return decoding, {"source": str(source.root), "kind": source.kind}

    return image_cache.CachePlan(source.fingerprint(resolution), prepare, skipped=source.skipped)


class DeviceBatches:
    """Shuffled, optionally flipped, [-1, 1] float batches drawn from uint8 images on a device.

    Order and flips of epoch e are a pure function of (seed, e), so a run resumed in the
    middle of an epoch draws exactly the batches the uninterrupted run would have. Under
    DDP each rank takes every world-th index of the shared order: disjoint shards.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        *,
        seed: int,
        hflip: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.hflip = hflip
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.steps_per_epoch = len(images) // world_size // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{len(images)} images are fewer than one batch of {batch_size} per rank × {world_size} ranks"
            )

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's index order and flip mask for ``epoch`` (on the images' device)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.images), generator=generator)
        flips = torch.rand(len(self.images), generator=generator) < 0.5
        shard = order[self.rank :: self.world_size][: self.steps_per_epoch * self.batch_size]
        return shard.to(self.images.device), flips[shard].to(self.images.device)

    def batches(self, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
        """Batches ``start``, ``start``+1, … of ``epoch`` as float (B, 3, H, W) in [-1, 1]."""
        order, flips = self.epoch_plan(epoch)
        for step in range(start, self.steps_per_epoch):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            yield self.make_batch(order[rows], flips[rows])

    def make_batch(self, indices: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Gather uint8 rows, flip some left↔right, normalise to [-1, 1]."""
        batch = self.images[indices].permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        if self.hflip:
            batch = torch.where(flips[:, None, None, None], batch.flip(3), batch)
        if self.channels_last:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch.contiguous()


def synthetic_images(count: int, resolution: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth random colour blobs: stand-in images for smoke runs and benchmarks."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    out = np.empty((count, resolution, resolution, 3), dtype=np.uint8)
    for start in range(0, count, 4096):  # chunks keep the float intermediate small
        smooth = torch.nn.functional.interpolate(coarse[start : start + 4096], size=(resolution, resolution),
                                                 mode="bicubic", align_corners=False)
        out[start : start + 4096] = smooth.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
