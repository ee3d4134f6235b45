"""The decode-once image cache: a uint8 (N, H, W, 3) ``.npy`` file that later runs memory-map.

Both training sources fill it (``data``: folders, zips, CelebA roots; ``hf_datasets``: the
``datasets`` library's sources), each under a key that changes with its data; everything
else is here, once: reusing a cache, decoding into a new one in worker processes (free
space checked and the blocks reserved first, the staging file removed on any failure,
workers that die with their parent, at most a few chunks in flight), and the ``.json``
beside it that says where the images came from and which were skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import layout
from ..files import remove_stale, write_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the transform or the file layout changes
CACHE_STAGING = "*.npy.*.tmp-*"  # <key>.npy.<random>.tmp-<pid>: a cache being written
MAX_CHUNK = 256  # items per decode task: enough to amortise the IPC, few enough to keep every core busy
HASH_BLOCK_BYTES = 64 * 2**20  # content hashing reads the images in blocks of this size
PR_SET_PDEATHSIG = 1  # from linux/prctl.h


class DataError(ValueError):
    """The training images cannot be used as given (none found, none readable, no disk space for them)."""


@dataclass
class ImageCache:
    """The decoded images of one source: uint8 (N, H, W, 3), memory-mapped from disk.

    ``fingerprint`` is the cache's key: cheap to compute before decoding, from the source's file
    names, sizes and mtimes (or a Hub commit), so the same files copied to another machine get
    another one. ``content`` is a hash of the decoded pixels themselves: equal exactly when a run
    sees the same images in the same order, wherever the files live (what resuming compares).
    """

    images: np.ndarray
    fingerprint: str
    source: str
    skipped: list[str] = field(default_factory=list)
    content: str = ""

    def __post_init__(self) -> None:
        if not self.content:
            self.content = content_fingerprint(self.images)

    def __len__(self) -> int:
        return self.images.shape[0]


def content_fingerprint(images: np.ndarray) -> str:
    """A hash of uint8 images (N, H, W, C): their shape and every pixel, read in blocks.

    SHA-256 runs at ~1.5 GB/s here: ~0.3 s for the 37,290 CelebA faces (458 MB); a cache
    stores it in its ``.json`` so this happens once per cache.
    """
    digest = hashlib.sha256(f"{images.dtype}{tuple(images.shape)}".encode())
    rows = max(1, HASH_BLOCK_BYTES // max(1, images[:1].nbytes))
    for start in range(0, len(images), rows):
        digest.update(np.ascontiguousarray(images[start : start + rows]).data)
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class Decoding:
    """How a source's ``count`` items become images: tasks of consecutive items for a worker.

    ``task(start, stop)`` makes the (picklable) task for items [start, stop); ``worker`` is a
    module-level function turning it into one image or one reason per item; ``name(index)``
    is how skip notes and errors name an item ("a/b.jpg", "row 7"). ``spans``: the [start, stop)
    of each task when the source sizes them itself (by bytes, say); by default up to
    :data:`MAX_CHUNK` items each, enough to keep every worker busy.
    """

    count: int
    task: Callable[[int, int], Any]
    worker: Callable[[Any], list[np.ndarray | str]]
    name: Callable[[int], str]
    label: str  # the source, for the progress bar and messages
    unit: str = "files"
    spans: Sequence[tuple[int, int]] | None = None

    def task_spans(self, workers: int) -> list[tuple[int, int]]:
        if self.spans is not None:
            return list(self.spans)
        chunk = max(1, min(MAX_CHUNK, self.count // (workers * 4)))
        return [(start, min(start + chunk, self.count)) for start in range(0, self.count, chunk)]


@dataclass(frozen=True)
class CachePlan:
    """One source's way into the cache: its key, and the decoding to run only when no cache holds it.

    ``prepare`` may be slow (a Hub dataset is downloaded and opened there), so it runs after
    :func:`reuse` has missed; it returns the decoding and what the cache's metadata records."""

    key: str
    prepare: Callable[[], tuple[Decoding, dict[str, Any]]]
    unit: str = "files"
    skipped: Sequence[str] = ()


def cache_files(cache_dir: str | os.PathLike | None, key: str) -> tuple[Path, Path]:
    """The images (``KEY.npy``) and their description (``KEY.json``) in ``cache_dir`` (or the default)."""
    folder = Path(cache_dir) if cache_dir is not None else layout.cache_dir("data")
    return folder / f"{key}.npy", folder / f"{key}.json"


def recorded_content(cache_dir: str | os.PathLike | None, key: str) -> str | None:
    """The content hash a cache built under ``key`` recorded, or None (no such cache, or none recorded).

    A checkpoint written before content hashes existed names its data by file stamps only, and
    those keys changed with the cache format; the cache that checkpoint's run decoded still says
    what its images were, so the same images are recognised on the machine that trained it.
    """
    _, meta_path = cache_files(cache_dir, key)
    try:
        if meta_path.stat().st_size > 64 * 1024:  # a description is ~200 bytes
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    content = meta.get("content") if isinstance(meta, dict) else None
    return content if isinstance(content, str) and 0 < len(content) <= 64 else None


def reuse(cache_dir: str | os.PathLike | None, key: str, *, unit: str = "files") -> ImageCache | None:
    """The cache under ``key`` when it is complete (memory-mapped copy-on-write: writable for torch,
    never written back), else None.

    The ``.json`` is what makes a cache complete (see :func:`build`): an ``.npy`` without it, or a
    pair that does not agree (damaged, another format), is no cache and is decoded again.
    """
    array_path, meta_path = cache_files(cache_dir, key)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        images = np.load(array_path, mmap_mode="c")
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or images.dtype != np.uint8 \
                or images.ndim != 4 or images.shape[0] != meta.get("count"):
            raise ValueError("the images and their description do not agree")
    except (OSError, ValueError) as error:  # JSONDecodeError and a damaged .npy header are ValueErrors
        log.warning("ignoring the image cache %s (%s); decoding again", array_path, error)
        return None
    source, skipped = meta.get("source", ""), meta.get("skipped", [])
    log.info("reusing image cache %s (%d images from %s)", array_path, len(images), source)
    report_skipped(skipped, len(images), source, unit)
    content = meta.get("content") if meta.get("content_count") == len(images) else None
    if content is None:  # a cache written before content hashes: hash it once and remember
        content = content_fingerprint(images)
        with contextlib.suppress(OSError):  # a read-only cache folder: hashed again next time
            write_atomic(meta_path, json.dumps({**meta, "content": content, "content_count": len(images)}, indent=1))
    return ImageCache(images, key, source, skipped, content=content)


def build(
    cache_dir: str | os.PathLike | None,
    key: str,
    decoding: Decoding,
    *,
    meta: dict[str, Any],
    resolution: int,
    workers: int | None = None,
    progress: bool = True,
    skipped: Sequence[str] = (),
) -> ImageCache:
    """Decode every item into a new cache under ``key`` and describe it.

    ``meta`` (``source`` first) starts the ``.json``; count, resolution, skip notes (``skipped``,
    found before decoding, then the unreadable items) and the format follow. The images are
    decoded into a staging file, the ``.json`` is written (atomically) and only then is the
    ``.npy`` renamed into place, so a full disk or a crash leaves no cache at all, or a ``.json``
    alone, which :func:`reuse` ignores; what an earlier run left under ``key`` is removed first
    (it was not reused, and its disk space may be what this build needs). A failure to write is
    a DataError saying so.
    """
    array_path, meta_path = cache_files(cache_dir, key)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(array_path.parent, CACHE_STAGING)  # what a killed run left (each a partial copy of the data)
    array_path.unlink(missing_ok=True)  # an incomplete or disagreeing pair that reuse() refused
    meta_path.unlink(missing_ok=True)
    tmp = _staging_path(array_path)
    try:
        count, unreadable = _write_array(decoding, tmp, array_path, resolution,
                                         workers or len(os.sched_getaffinity(0)), progress)
        notes = list(skipped) + unreadable
        content = content_fingerprint(np.load(tmp, mmap_mode="r"))
        description = {**meta, "count": count, "resolution": resolution, "skipped": notes, "format": CACHE_FORMAT,
                       "content": content, "content_count": count}
        write_atomic(meta_path, json.dumps(description, indent=1))
        os.replace(tmp, array_path)
    except OSError as error:
        meta_path.unlink(missing_ok=True)
        raise DataError(_write_failed(array_path.parent, error)) from None
    finally:
        tmp.unlink(missing_ok=True)
    report_skipped(notes, count, decoding.label, decoding.unit)
    return ImageCache(np.load(array_path, mmap_mode="c"), key, meta["source"], notes, content=content)


def report_skipped(skipped: Sequence[str], used: int, source: str, unit: str = "files") -> None:
    if skipped:
        log.warning("skipped %d unreadable of %d %s in %s; first: %s", len(skipped), used + len(skipped), unit,
                    source, "; ".join(skipped[:5]))


def _write_array(
    decoding: Decoding, tmp: Path, array_path: Path, resolution: int, workers: int, progress: bool
) -> tuple[int, list[str]]:
    """Decode into the staging file ``tmp`` (for ``array_path``), compacted to the good images; their
    count and the skip notes."""
    count = decoding.count
    spans = decoding.task_spans(workers)
    tasks = (decoding.task(start, stop) for start, stop in spans)
    out = _reserved_memmap(tmp, (count, resolution, resolution, 3))
    written, skipped = 0, []
    bar = tqdm(total=count, desc=f"decoding {decoding.label}", unit="img", disable=not progress)
    with contextlib.closing(map_in_workers(decoding.worker, tasks, workers if len(spans) > 1 else 1)) as results:
        for (start, _), decoded in zip(spans, results):
            for index, item in enumerate(decoded, start):
                if isinstance(item, str):
                    skipped.append(f"{decoding.name(index)} ({item})")
                else:
                    out[written] = item
                    written += 1
            bar.update(len(decoded))
    bar.close()
    if written == 0:
        raise DataError(f"none of the {count} {decoding.unit} in {decoding.label} could be read as an image: "
                        f"{'; '.join(skipped[:3])}")
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
    return written, skipped


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


def _write_failed(folder: Path, error: OSError) -> str:
    """One line for a cache that could not be written (the disk filled up while decoding, a read-only folder)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(folder).free
        return (f"the disk holding the image cache in {folder} filled up while it was written ({free / 2**20:.1f} MiB "
                f"free now); nothing was kept: free some space, or put the cache on a larger disk with "
                f"--data-cache DIR (or DCGAN_HF_CACHE)")
    return f"could not write the image cache in {folder}: {error.strerror or error} ({type(error).__name__})"


def _no_space(folder: Path, needed: int, free: int) -> str:
    def size(count: int) -> str:
        return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"

    return (f"not enough disk space for the image cache in {folder}: it needs {size(needed)} and {size(free)} "
            f"are free; free some space, or put the cache on a larger disk with --data-cache DIR (or DCGAN_HF_CACHE)")


def map_in_workers(function: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(function, tasks)`` in ``workers`` processes, in order, at most 2 tasks a worker in flight
    (a dataset's encoded rows are never all in memory); in this process when ``workers`` ≤ 1.

    The workers die with this process however it ends; pending tasks are cancelled when the
    caller stops early.
    """
    if workers <= 1:
        yield from map(function, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        pending: deque[Future] = deque()
        for task in tasks:
            pending.append(pool.submit(function, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
