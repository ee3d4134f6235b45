"""Training images: folder | zip | CelebA root | a `datasets` dataset → a uint8 cache → device batches.

JPEG decoding is the slow part of a DCGAN epoch, so images are decoded once, in parallel,
into an (N, 64, 64, 3) uint8 ``.npy`` file that later runs memory-map. On a GPU the whole
cache moves to device memory and batches are gathered, flipped and normalised there.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2 as transforms
from tqdm.auto import tqdm

from .files import write_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CACHE_FORMAT = 1  # bump when the transform or the file layout changes
CELEBA_PARTITIONS = {"train": "0", "valid": "1", "test": "2"}


@dataclass(frozen=True)
class ImageSource:
    """A set of image files: where they live and the names to read, in a fixed order."""

    kind: str  # "folder" | "zip"
    root: Path
    names: tuple[str, ...]
    stamps: tuple[str, ...]  # per file: size + mtime (folder) or size + CRC (zip)

    def fingerprint(self, resolution: int) -> str:
        """Changes whenever a file, the file list, the transform or the cache format does."""
        digest = hashlib.sha256(f"{CACHE_FORMAT}|{resolution}|{self.kind}".encode())
        for name, stamp in zip(self.names, self.stamps):
            digest.update(f"{name}\0{stamp}\n".encode())
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
    if root.is_dir():
        for candidate in (root, root / "celeba"):
            if (candidate / "list_eval_partition.txt").is_file():
                return _celeba_root(candidate, split)
        return _folder(root)
    if zipfile.is_zipfile(root):
        return _zip(root)
    raise ValueError(f"{root} is neither a folder of images nor a .zip file")


def _folder(root: Path, keep: set[str] | None = None) -> ImageSource:
    names, stamps = [], []
    for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        name = file.relative_to(root).as_posix()
        if keep is not None and file.name not in keep:
            continue
        info = file.stat()
        names.append(name)
        stamps.append(f"{info.st_size}:{info.st_mtime_ns}")
    if not names:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return ImageSource("folder", root, tuple(names), tuple(stamps))


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
        raise ValueError(f"no images found inside {path}")
    return ImageSource(
        "zip", path, tuple(m.filename for m in members), tuple(f"{m.file_size}:{m.CRC:08x}" for m in members)
    )


def _celeba_root(root: Path, split: str) -> ImageSource:
    if split not in CELEBA_PARTITIONS:
        raise ValueError(f"CelebA split must be one of {sorted(CELEBA_PARTITIONS)}, got {split!r}")
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
    raise ValueError(f"{root} has list_eval_partition.txt but no img_align_celeba/ or img_align_celeba.zip")


def transform_for(resolution: int) -> transforms.Compose:
    """The classic DCGAN transform up to the uint8 stage: short side → resolution, centre crop."""
    return transforms.Compose([transforms.Resize(resolution), transforms.CenterCrop(resolution)])


def decode(data: bytes, resolution: int) -> np.ndarray:
    """Encoded image bytes → (resolution, resolution, 3) uint8; raises on unreadable data."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # truncated files fail here rather than half-decoded
        rgb = image.convert("RGB")
    out = np.asarray(transform_for(resolution)(rgb), dtype=np.uint8)
    if out.shape != (resolution, resolution, 3):
        raise ValueError(f"decoded to shape {out.shape}")
    return out


def _decode_chunk(task: tuple[str, str, Sequence[str], int]) -> list[np.ndarray | str]:
    """Worker: decode names from a folder or zip; an error becomes its message (a str)."""
    kind, root, names, resolution = task
    archive = zipfile.ZipFile(root) if kind == "zip" else None
    results: list[np.ndarray | str] = []
    try:
        for name in names:
            try:
                data = archive.read(name) if archive else (Path(root) / name).read_bytes()
                results.append(decode(data, resolution))
            except (OSError, UnidentifiedImageError, ValueError, zipfile.BadZipFile, SyntaxError) as error:
                results.append(f"{type(error).__name__}: {error}")
    finally:
        if archive:
            archive.close()
    return results


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
        return ImageCache(images, fingerprint, str(source.root), meta.get("skipped", []))
    folder.mkdir(parents=True, exist_ok=True)
    images, skipped = _build_cache(source, resolution, array_path, workers, progress)
    meta = {"source": str(source.root), "kind": source.kind, "count": len(images), "resolution": resolution,
            "skipped": skipped, "format": CACHE_FORMAT}
    write_atomic(meta_path, json.dumps(meta, indent=1))
    if skipped:
        log.warning("skipped %d unreadable of %d files in %s; first: %s", len(skipped), len(source.names),
                    source.root, "; ".join(skipped[:5]))
    return ImageCache(images, fingerprint, str(source.root), skipped)


def _build_cache(
    source: ImageSource, resolution: int, array_path: Path, workers: int | None, progress: bool
) -> tuple[np.ndarray, list[str]]:
    count = len(source.names)
    workers = workers or len(os.sched_getaffinity(0))
    chunk = max(1, min(512, count // (workers * 4) or 1))
    tasks = [(source.kind, str(source.root), source.names[i : i + chunk], resolution) for i in range(0, count, chunk)]
    fd, tmp_name = tempfile.mkstemp(dir=array_path.parent, prefix=array_path.stem, suffix=".npy.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, resolution, resolution, 3))
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
            raise ValueError(f"none of the {count} files in {source.root} could be read as an image")
        out.flush()
        del out
        if written < count:  # compact: the array on disk must hold exactly the good images
            full = np.load(tmp, mmap_mode="r")
            fd, compact_name = tempfile.mkstemp(dir=array_path.parent, prefix=array_path.stem, suffix=".npy.tmp")
            os.close(fd)
            compact = np.lib.format.open_memmap(compact_name, mode="w+", dtype=np.uint8, shape=(written,) + full.shape[1:])
            compact[:] = full[:written]
            compact.flush()
            del compact, full
            os.replace(compact_name, tmp)
        os.replace(tmp, array_path)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(array_path, mmap_mode="c"), skipped


def _map(tasks: list, workers: int) -> Iterator[list[np.ndarray | str]]:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_decode_chunk, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_decode_chunk, tasks)


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
            raise ValueError(
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
