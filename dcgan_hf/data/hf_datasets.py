"""Training images through the ``datasets`` library: Hub datasets and local dataset folders.

``--data`` may name

* ``hf://datasets/OWNER/NAME[@revision]``: a dataset repo on the Hub (``HF_ENDPOINT`` is honoured);
* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
* a folder of parquet files (``load_dataset("parquet")`` layout: ``*.parquet``, ``data/``, split folders);
* an ``imagefolder`` with a ``metadata.csv|jsonl|parquet`` (any other plain folder of images is
  read directly by :mod:`dcgan_hf.data.folders`, which gives the same pixels faster).

The image column is the one whose feature type is ``datasets.Image`` (or ``--image-column``).
Its encoded bytes are decoded once, with :func:`dcgan_hf.data.decoding.decode` on all cores, into the
same uint8 cache files as any other source (:mod:`dcgan_hf.data.image_cache`). The cache key is the
Hub commit sha the revision resolves to (a branch that moved is decoded again; an unchanged one,
or a pinned sha, is reused without loading the dataset at all) or, for a local folder, the
names, sizes and mtimes of its files. ``datasets`` is an optional dependency (``pip install 'dcgan_hf[datasets]'``), imported
only when one of these sources is actually decoded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import image_cache
from .decoding import MAX_FILE_BYTES, decode_or_reason, read_file
from .image_cache import CACHE_FORMAT, DataError

HUB_PREFIX = "hf://datasets/"
METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
SAVE_TO_DISK_MARKERS = (("dataset_dict.json",), ("state.json", "dataset_info.json"))
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
INSTALL_HINT = "pip install 'dcgan_hf[datasets]'"
TASK_BYTES = 64 * 2**20  # encoded bytes handed to one decode task (a larger row goes alone)


class DatasetSourceError(DataError):
    """A dataset that cannot be used as training images; the message is one line saying why."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives: a Hub repo (at an optional revision) or a local folder."""

    kind: str  # "hub" | "disk" (save_to_disk) | "files" (parquet / imagefolder)
    location: str  # repo id or folder
    revision: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "hub":
            return f"{HUB_PREFIX}{self.location}" + (f"@{self.revision}" if self.revision else "")
        return self.location


def is_hub_url(data: str | os.PathLike) -> bool:
    return os.fspath(data).startswith(HUB_PREFIX)


def parse_hub_url(url: str) -> DatasetSpec:
    """``hf://datasets/OWNER/NAME[@rev]`` → DatasetSpec("hub", "OWNER/NAME", rev); bad ids are errors."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    rest = url[len(HUB_PREFIX):]
    repo_id, _, revision = rest.partition("@")
    if repo_id.count("/") != 1:
        raise DatasetSourceError(f"expected {HUB_PREFIX}OWNER/NAME[@revision], got {url!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise DatasetSourceError(f"{url!r}: not a valid dataset repo id ({error})") from None
    if "@" in rest and not revision:
        raise DatasetSourceError(f"{url!r}: empty revision after '@'")
    return DatasetSpec("hub", repo_id, revision or None)


def hub_dataset_id(data: str | os.PathLike) -> str | None:
    """The Hub dataset repo id that ``--data`` names, if it names one (no network): for model cards."""
    text = os.fspath(data)
    if not is_hub_url(text):
        return None
    try:
        return parse_hub_url(text).location
    except DatasetSourceError:
        return None


def dataset_spec(data: str | os.PathLike) -> DatasetSpec | None:
    """The dataset ``--data`` names, or None when it is a plain folder/zip/CelebA root for data.py."""
    text = os.fspath(data)
    if is_hub_url(text):
        return parse_hub_url(text)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        return None
    if any(all((folder / name).is_file() for name in marker) for marker in SAVE_TO_DISK_MARKERS):
        return DatasetSpec("disk", str(folder))
    levels = (folder, *(child for child in _subfolders(folder)))
    if any(next(level.glob("*.parquet"), None) is not None for level in levels):
        return DatasetSpec("files", str(folder))
    if any((level / name).is_file() for level in levels for name in METADATA_FILES):
        return DatasetSpec("files", str(folder))
    return None


def _subfolders(folder: Path) -> Iterator[Path]:
    """The folders one level down (``data/``, ``train/``, …) where dataset layouts keep their files."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_dir() and not entry.name.startswith("."):
                yield Path(entry.path)


# -- the cache key -----------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    from ..hub.client import transport_errors

    return transport_errors()


def resolve_revision(spec: DatasetSpec) -> str:
    """The commit sha a Hub dataset's revision points at now (a full sha is taken as it is)."""
    if spec.revision and COMMIT_SHA.fullmatch(spec.revision):
        return spec.revision
    from huggingface_hub import constants

    from ..hub.client import dataset_commit
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        sha = dataset_commit(spec.location, spec.revision)
    except RevisionNotFoundError:
        raise DatasetSourceError(f"revision {spec.revision!r} not found in dataset {spec.location}") from None
    except RepositoryNotFoundError:
        raise DatasetSourceError(f"dataset repo not found (or private without a token): {spec.location}") from None
    except HfHubHTTPError as error:
        raise DatasetSourceError(f"Hub error for dataset {spec.label}: {_one_line(error)}") from None
    except _transport_errors() as error:
        raise DatasetSourceError(
            f"cannot reach the Hub at {constants.ENDPOINT} for dataset {spec.label} ({_one_line(error)})"
        ) from None
    if not sha:
        raise DatasetSourceError(f"the Hub gave no commit sha for dataset {spec.label}")
    return sha


def _folder_stamps(folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        info = path.stat()
        yield f"{relative.as_posix()!r}\0{info.st_size}:{info.st_mtime_ns}"


def cache_key(spec: DatasetSpec, *, split: str, image_column: str | None, resolution: int,
              revision: str | None = None) -> str:
    """Changes with the data (Hub commit / local files), the split, the column and the transform."""
    digest = hashlib.sha256(
        f"{CACHE_FORMAT}|{resolution}|datasets|{spec.kind}|{split}|{image_column or ''}".encode()
    )
    if spec.kind == "hub":
        digest.update(f"{spec.location}@{revision}".encode())
    else:
        for stamp in _folder_stamps(Path(spec.location)):
            digest.update(stamp.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:24]


# -- loading through `datasets` --------------------------------------------------------------


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetSourceError(
            f"reading Hub datasets, save_to_disk folders, parquet files or imagefolders needs the "
            f"`datasets` library: {INSTALL_HINT}"
        ) from None
    return datasets


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Hide `datasets`' own progress bars when ours are off, and put its setting back afterwards."""
    bars = importlib.import_module("datasets.utils.tqdm")  # the module: datasets.utils re-exports a tqdm class

    was_disabled = bars.are_progress_bars_disabled()
    if not progress:
        bars.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            bars.enable_progress_bars()


def load_split(spec: DatasetSpec, split: str, revision: str | None = None) -> Any:
    """The ``datasets.Dataset`` of one split; every failure is a one-line DatasetSourceError."""
    datasets = _import_datasets()
    from datasets.exceptions import DatasetNotFoundError, DatasetsError

    where = spec.label if spec.kind != "hub" else f"{HUB_PREFIX}{spec.location}@{revision}"
    try:
        if spec.kind == "disk":
            loaded = datasets.load_from_disk(spec.location)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DatasetSourceError(f"{where} has no split {split!r} (splits: {', '.join(loaded)})")
                return loaded[split]
            saved_split = str(loaded.split) if loaded.split is not None else None
            if saved_split not in (None, split) and split != "train":
                raise DatasetSourceError(f"{where} holds one split ({saved_split!r}), not {split!r}")
            return loaded
        options = {"revision": revision} if spec.kind == "hub" else {}
        return datasets.load_dataset(spec.location, split=split, **options)
    except DatasetSourceError:
        raise
    except DatasetNotFoundError as error:
        raise DatasetSourceError(f"dataset not found: {where} ({_one_line(error)})") from None
    except ConnectionError as error:
        raise DatasetSourceError(f"cannot reach the Hub for {where} ({_one_line(error)})") from None
    except ValueError as error:  # e.g. Unknown split "validation". Should be one of ['train'].
        if "corresponds to no data" in str(error):  # what `datasets` says of a split with no rows
            raise DatasetSourceError(f"split {split!r} of {where} is empty") from None
        raise DatasetSourceError(f"{where}: {_one_line(error)}") from None
    except (OSError, RuntimeError, DatasetsError, *_transport_errors()) as error:
        # DatasetGenerationError says only "An error occurred while generating the dataset": the reason is its cause
        reason = _innermost(error)
        raise DatasetSourceError(f"cannot load {where}: {type(reason).__name__}: {_one_line(reason)}") from None


def find_image_column(features: Any, wanted: str | None, where: str) -> str:
    """The column holding the images: ``wanted``, or the one column of feature type ``Image``."""
    import datasets

    described = ", ".join(f"{name} ({_feature_name(feature)})" for name, feature in features.items())
    if wanted:
        if wanted not in features:
            raise DatasetSourceError(f"{where} has no column {wanted!r} (columns: {described})")
        return wanted
    found = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if not found:
        raise DatasetSourceError(f"{where} has no Image column (columns: {described}); name one with --image-column")
    if len(found) > 1:
        raise DatasetSourceError(f"{where} has several Image columns ({', '.join(found)}); choose one with --image-column")
    return found[0]


def _feature_name(feature: Any) -> str:
    return type(feature).__name__ if not hasattr(feature, "dtype") else f"{type(feature).__name__} {feature.dtype}"


def encoded_images(dataset: Any, column: str, where: str) -> Any:
    """The column alone, as ``{"bytes", "path"}`` records (undecoded): Image, binary or path columns."""
    import datasets

    try:
        return dataset.select_columns([column]).cast_column(column, datasets.Image(decode=False))
    except (ValueError, TypeError, NotImplementedError) as error:
        feature = _feature_name(dataset.features[column])
        raise DatasetSourceError(
            f"column {column!r} of {where} holds {feature}, not images ({_one_line(error)})"
        ) from None


# -- decoding into the uint8 cache ------------------------------------------------------------


@dataclass(frozen=True)
class Oversized:
    """A row whose bytes are over the bound: it is skipped by its size (from Arrow), never materialised."""

    size: int


def payload_sizes(records: Any, column: str) -> np.ndarray:
    """Each row's encoded size in bytes, from the Arrow lengths of the memory-mapped table (no row is
    read or copied); 0 for rows that hold a path instead of bytes."""
    import pyarrow.compute as pc

    chunks = records.data.column(column).chunks
    lengths = [pc.binary_length(chunk.field("bytes")).fill_null(0).to_numpy(zero_copy_only=False) for chunk in chunks]
    sizes = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, dtype=np.int64)
    indices = getattr(records, "_indices", None)  # a selection or shuffle maps rows onto the table
    return sizes[indices.column(0).to_numpy()] if indices is not None else sizes


def task_spans(sizes: np.ndarray, max_rows: int = image_cache.MAX_CHUNK,
               max_bytes: int = TASK_BYTES) -> list[tuple[int, int]]:
    """Consecutive rows per decode task: at most ``max_rows``, and at most ``max_bytes`` of encoded data
    unless one row alone is larger (rows over :data:`MAX_FILE_BYTES` weigh nothing: they are not read)."""
    weights = np.where(sizes > MAX_FILE_BYTES, 0, sizes)
    spans, start, held = [], 0, 0
    for index, weight in enumerate(weights.tolist()):
        if index > start and (index - start >= max_rows or held + weight > max_bytes):
            spans.append((start, index))
            start, held = index, 0
        held += weight
    if start < len(weights):
        spans.append((start, len(weights)))
    return spans


def _payloads(records: Any, column: str, sizes: np.ndarray, start: int, stop: int,
              local: bool) -> list[bytes | str | None | Oversized]:
    """Rows [start, stop) for a decode worker, oversized ones as :class:`Oversized` (only the rest are read)."""
    wanted = [index for index in range(start, stop) if sizes[index] <= MAX_FILE_BYTES]
    fetched = iter(records[wanted][column] if wanted else [])
    return [_payload(next(fetched), local) if sizes[index] <= MAX_FILE_BYTES else Oversized(int(sizes[index]))
            for index in range(start, stop)]


def _decode_records(task: tuple[Sequence[bytes | str | None | Oversized], int]) -> list[np.ndarray | str]:
    """Worker: encoded bytes (or a local file path) → uint8 image, or the error as a str."""
    payloads, resolution = task
    return [decode_or_reason(functools.partial(_read_payload, payload), resolution) for payload in payloads]


def _read_payload(payload: bytes | str | None | Oversized) -> bytes:
    if payload is None:
        raise ValueError("the row holds no image bytes")
    if isinstance(payload, Oversized):
        raise ValueError(f"{payload.size:,} bytes, more than {MAX_FILE_BYTES:,}: not read")
    return read_file(payload) if isinstance(payload, str) else payload


def _payload(record: dict[str, Any] | None, local: bool) -> bytes | str | None:
    """A row's bytes; a path only for local datasets (imagefolder rows point at their files), and only
    to a regular file (never a device or fifo a hostile dataset might name)."""
    if not record:
        return None
    if record.get("bytes") is not None:
        return record["bytes"]
    path = record.get("path")
    return path if local and path and os.path.isfile(path) else None


def _release_arrow_memory() -> None:
    """Hand back to the OS what Arrow's allocator kept after `datasets` converted the files (as much as
    the largest row group: 800 MB for one of 400 MB), before the rows are read and decoded."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def check_parquet_rows(folder: Path) -> None:
    """Refuse a parquet dataset without rows before `datasets` reads it (a zero-row row group makes
    it fail deep inside with "BatchSize must be greater than 0"); footers only, no data is read."""
    import pyarrow.parquet as pq

    files = [path for level in (folder, *_subfolders(folder)) for path in sorted(level.glob("*.parquet"))]
    rows, empty = 0, []
    for path in files:
        try:
            metadata = pq.read_metadata(path)
        except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
            raise DatasetSourceError(f"{path}: not a readable parquet file ({_one_line(error)})") from None
        rows += metadata.num_rows
        if any(metadata.row_group(group).num_rows == 0 for group in range(metadata.num_row_groups)):
            empty.append(path.name)
    if files and rows == 0:
        raise DatasetSourceError(f"{folder} holds no rows (its {len(files)} parquet file(s) are empty)")
    if empty:
        raise DatasetSourceError(f"{folder}: {', '.join(empty[:3])} hold(s) an empty row group, which `datasets` "
                                 f"cannot read; rewrite or remove them")


def dataset_plan(spec: DatasetSpec, *, resolution: int = 64, split: str = "train",
                 image_column: str | None = None, progress: bool = True) -> image_cache.CachePlan:
    """How a datasets source enters the cache; keyed by its revision (Hub) or files, split and column."""
    revision = resolve_revision(spec) if spec.kind == "hub" else None
    label = spec.label if revision is None else f"{HUB_PREFIX}{spec.location}@{revision[:12]}"
    key = cache_key(spec, split=split, image_column=image_column, resolution=resolution, revision=revision)

    def prepare() -> tuple[image_cache.Decoding, dict[str, Any]]:
        _import_datasets()
        if spec.kind == "files":
            check_parquet_rows(Path(spec.location))
        with _quiet(progress):
            dataset = load_split(spec, split, revision)
        where = f"split {split!r} of {label}"
        if len(dataset) == 0:
            raise DatasetSourceError(f"{where} is empty")
        column = find_image_column(dataset.features, image_column, where)
        records = encoded_images(dataset, column, where)
        sizes = payload_sizes(records, column)
        _release_arrow_memory()
        local = spec.kind != "hub"
        decoding = image_cache.Decoding(
            count=len(records),
            task=lambda start, stop: (_payloads(records, column, sizes, start, stop, local), resolution),
            worker=_decode_records,
            name=lambda index: f"row {index}",
            label=where,
            unit="rows",
            spans=task_spans(sizes),
        )
        source = spec.label if revision is None else f"{HUB_PREFIX}{spec.location}@{revision}"
        return decoding, {"source": source, "kind": f"datasets-{spec.kind}", "revision": revision, "split": split,
                          "image_column": column}

    return image_cache.CachePlan(key, prepare, unit="rows")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error
