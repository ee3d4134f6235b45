"""Training images: folder | zip | CelebA root | a `datasets` dataset → a uint8 cache → device batches.

JPEG decoding is the slow part of a DCGAN epoch, so images are decoded once, in parallel,
into an (N, 64, 64, 3) uint8 ``.npy`` file that later runs memory-map. On a GPU the whole
cache moves to device memory and batches are gathered, flipped and normalised there.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import signal
import stat
import threading
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .decoding import MAX_FILE_BYTES, decode_or_reason, read_file
from .files import remove_stale, write_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CACHE_FORMAT = 1  # bump when the transform or the file layout changes
CELEBA_PARTITIONS = {"train": "0", "valid": "1", "test": "2"}
CACHE_STAGING = "*.npy.*.tmp-*"  # <fingerprint>.npy.<random>.tmp-<pid>: a cache being written
PR_SET_PDEATHSIG = 1  # from linux/prctl.h


class DataError(ValueError):
    """The training images cannot be used as given (none found, none readable, no disk space for them)."""


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


@dataclass
class ImageCache:
    """The decoded images of one source: uint8 (N, H, W, 3), memory-mapped from disk."""

    images: np.ndarray
    fingerprint: str
    source: str
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]


def default_cache_dir() -> Path:
    return Path(os.environ.get("DCGAN_HF_CACHE", Path.home() / ".cache" / "dcgan_hf")) / "data"


def load_cache(
    path: str | os.PathLike,
    *,
    resolution: int = 64,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    split: str = "train",
    progress: bool = True,
    image_column: str | None = None,
) -> ImageCache:
    """Decode ``path`` into the cache (first time), or reuse the cache if the source is unchanged.

    Unreadable or truncated files are skipped, counted and reported, never fatal. Hub datasets
    (``hf://datasets/…``) and local ``datasets`` folders go through :mod:`dcgan_hf.hf_datasets`.
    """
    from . import hf_datasets

    if hf_datasets.dataset_spec(path) is not None:
        return hf_datasets.load_cache(path, resolution=resolution, cache_dir=cache_dir, workers=workers, split=split,
                                      image_column=image_column, progress=progress)
    if image_column:
        raise ValueError(f"--image-column applies to datasets sources (hf://datasets/…, parquet, save_to_disk), "
                         f"not to {path}")
    source = find_images(path, split)
    fingerprint = source.fingerprint(resolution)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    array_path, meta_path = folder / f"{fingerprint}.npy", folder / f"{fingerprint}.json"
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        images = np.load(array_path, mmap_mode="c")  # copy-on-write: writable for torch, never written back
        log.info("reusing image cache %s (%d images from %s)", array_path, len(images), source.root)
        _report_skipped(meta.get("skipped", []), len(images), source.root)
        return ImageCache(images, fingerprint, str(source.root), meta.get("skipped", []))
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale(folder, CACHE_STAGING)  # what a killed run left (each a partial copy of the data)
    images, unreadable = _build_cache(source, resolution, array_path, workers, progress)
    skipped = list(source.skipped) + unreadable
    meta = {"source": str(source.root), "kind": source.kind, "count": len(images), "resolution": resolution,
            "skipped": skipped, "format": CACHE_FORMAT}
    write_atomic(meta_path, json.dumps(meta, indent=1))
    _report_skipped(skipped, len(images), source.root)
    return ImageCache(images, fingerprint, str(source.root), skipped)


def _report_skipped(skipped: Sequence[str], used: int, root: Path) -> None:
    if skipped:
        log.warning("skipped %d unreadable of %d files in %s; first: %s", len(skipped), used + len(skipped),
                    root, "; ".join(skipped[:5]))


def _build_cache(
    source: ImageSource, resolution: int, array_path: Path, workers: int | None, progress: bool
) -> tuple[np.ndarray, list[str]]:
    count = len(source.names)
    workers = workers or len(os.sched_getaffinity(0))
    chunk = max(1, min(512, count // (workers * 4) or 1))
    tasks = [(source.kind, str(source.root), source.names[i : i + chunk], resolution) for i in range(0, count, chunk)]
    tmp = _staging_path(array_path)
    try:
        out = _reserved_memmap(tmp, (count, resolution, resolution, 3))
        written, skipped = 0, []
        bar = tqdm(total=count, desc=f"decoding {source.root.name}", unit="img", disable=not progress)
        results = _map(tasks, workers)
        for names, decoded in zip((t[2] for t in tasks), results):
            for name, item in zip(names, decoded):
                if isinstance(item, str):
                    skipped.append(f"{name} ({item})")
                else:
                    out[written] = item
                    written += 1
            bar.update(len(names))
        bar.close()
        if written == 0:
            shown = "; ".join(skipped[:3])
            raise DataError(f"none of the {count} files in {source.root} could be read as an image: {shown}")
        out.flush()
        del out
        if written < count:  # compact: the array on disk must hold exactly the good images
            full = np.load(tmp, mmap_mode="r")
            compact_path = _staging_path(array_path)
            try:
                compact = _reserved_memmap(compact_path, (written,) + full.shape[1:])
                compact[:] = full[:written]
                compact.flush()
                del compact, full
                os.replace(compact_path, tmp)
            finally:
                compact_path.unlink(missing_ok=True)
        os.replace(tmp, array_path)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(array_path, mmap_mode="c"), skipped


def _staging_path(array_path: Path) -> Path:
    """A cache being written: named for its writer's pid, so a later run can tell it is stale."""
    return array_path.with_name(f"{array_path.name}.{secrets.token_hex(4)}.tmp-{os.getpid()}")


def _reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy memory map whose disk blocks are allocated up front.

    Writing into a sparse memory-mapped file on a full disk kills the process with SIGBUS
    (no message, no clean-up); checking the free space and reserving the blocks first turns
    that into a DataError saying how much space is needed.
    """
    needed = math.prod(shape) + 4096  # uint8; the .npy header is well under a page
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise DataError(_no_space(path.parent, needed, free))
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # some file systems cannot reserve: go on
                del array
                raise DataError(_no_space(path.parent, needed, shutil.disk_usage(path.parent).free)) from error
        finally:
            os.close(fd)
    return array


def _no_space(folder: Path, needed: int, free: int) -> str:
    def size(count: int) -> str:
        return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"

    return (f"not enough disk space for the image cache in {folder}: it needs {size(needed)} and {size(free)} "
            f"are free; free some space, or put the cache on a larger disk with --data-cache DIR (or DCGAN_HF_CACHE)")


def _map(tasks: list, workers: int) -> Iterator[list[np.ndarray | str]]:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_decode_chunk, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from pool.map(_decode_chunk, tasks)


def _die_with_parent(parent: int) -> None:
    """Decode-worker start-up: end when the parent does, however it ends (SIGTERM, kill -9).

    On Linux the kernel sends SIGKILL (PR_SET_PDEATHSIG); elsewhere a thread polls the parent.
    Orphaned workers would otherwise wait on their queue forever.
    """
    try:
        armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError, TypeError):
        armed = False
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


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
