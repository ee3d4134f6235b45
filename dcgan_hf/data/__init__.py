"""Training images: where they come from and the uint8 cache they are decoded into once.

- :mod:`.cache` — :func:`load_cache`, the one entry point for any source
- :mod:`.folders` — image folders, zips and CelebA roots; batches on a device; synthetic images
- :mod:`.hf_datasets` — Hub datasets and local ``datasets`` sources (``hf://datasets/…``, parquet)
- :mod:`.image_cache` — the (N, 64, 64, 3) uint8 cache file every source is decoded into
- :mod:`.decoding` — one image file's bytes → 64×64 pixels, bounded before anything is allocated
"""

from .._lazy import by_module, exports

_EXPORTS = by_module(
    cache="load_cache",
    folders="IMAGE_SUFFIXES CELEBA_PARTITIONS ImageSource find_images read_image DeviceBatches synthetic_images",
    image_cache="DataError ImageCache",
)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
