"""The one way training images are loaded: any source → the uint8 cache, decoded once.

A source is an image folder, a zip, a CelebA root (:mod:`.folders`) or a ``datasets`` source
(:mod:`.hf_datasets`: ``hf://datasets/…``, save_to_disk, parquet, imagefolder). Each gives a
:class:`~.image_cache.CachePlan`; this module reuses the cache when the plan's key finds one
and otherwise runs the plan's decoding into a new one. Unreadable or truncated files are
skipped, counted and reported, never fatal.
"""

from __future__ import annotations

import os

from . import hf_datasets, image_cache
from .folders import folder_plan
from .image_cache import ImageCache


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
    """Decode ``path`` into the cache (first time), or reuse the cache if the source is unchanged."""
    spec = hf_datasets.dataset_spec(path)
    if spec is not None:
        plan = hf_datasets.dataset_plan(spec, resolution=resolution, split=split, image_column=image_column,
                                        progress=progress)
    elif image_column:
        raise ValueError(f"--image-column applies to datasets sources (hf://datasets/…, parquet, save_to_disk), "
                         f"not to {path}")
    else:
        plan = folder_plan(path, resolution=resolution, split=split)
    cached = image_cache.reuse(cache_dir, plan.key, unit=plan.unit)
    if cached is not None:
        return cached
    decoding, meta = plan.prepare()
    return image_cache.build(cache_dir, plan.key, decoding, meta=meta, resolution=resolution, workers=workers,
                             progress=progress, skipped=plan.skipped)
