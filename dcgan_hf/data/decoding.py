"""Encoded images from outside → pixels, each judged from its header before a pixel is decoded.

Training files (``data``, ``hf_datasets``, ``evaluate``) and the demo's uploads (``photos``)
are equally hostile: a few hundred bytes of PNG can claim 20000×20000 pixels (1.2 GB once
decoded), and a 1×300000 strip, resized to 64 pixels high, 3.7 GB. :func:`open_image` reads
the header alone and judges the size by one set of rules (:class:`ImageLimits`: the same
pixel bound everywhere, the shape bounds of each use), so nothing is allocated for an image
that will be refused. Training images are then cropped the classic DCGAN way
(:func:`transform_for`); uploads have their own decoding in :mod:`dcgan_hf.photos`.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from torchvision.transforms import v2 as transforms

MAX_PIXELS = 40_000_000  # 40 MP (a 7296×5472 camera frame): ~120 MB once decoded as RGB
MAX_FILE_BYTES = 256 * 1024 * 1024  # one training image file (an uncompressed 40 MP BMP fits), checked before reading


class ImageSizeError(ValueError):
    """An image whose header claims a size that is not decoded; the message says why."""


@dataclass(frozen=True)
class ImageLimits:
    """What an image may measure, judged from its header; ``what`` names the images in messages."""

    what: str
    max_aspect: float
    min_side: int = 1
    max_side: int | None = None
    max_pixels: int = MAX_PIXELS

    def check(self, width: int, height: int) -> None:
        """Raise ImageSizeError for a size outside the limits (pixels, then sides, then shape)."""
        if width * height > self.max_pixels or (self.max_side is not None and max(width, height) > self.max_side):
            sides = f" and {self.max_side} pixels a side" if self.max_side is not None else ""
            raise ImageSizeError(f"the image is {width}×{height} pixels; {self.what} may have at most "
                                 f"{self.max_pixels / 1e6:g} megapixels{sides}")
        if min(width, height) < self.min_side:
            raise ImageSizeError(f"the image is {width}×{height} pixels; {self.what} need at least "
                                 f"{self.min_side} pixels a side")
        if max(width, height) > self.max_aspect * min(width, height):
            raise ImageSizeError(f"the image is {width}×{height} pixels: too narrow ({self.what} may be at most "
                                 f"{self.max_aspect:g}:1)")


# Training images: any shape a photo of a face might come in, cropped to the centre later.
TRAINING_LIMITS = ImageLimits("training images", max_aspect=16)


def open_image(data: bytes, limits: ImageLimits, formats: Sequence[str] | None = None) -> Image.Image:
    """The image in ``data`` with only its header read, its size within ``limits``.

    PIL's own decompression-bomb guard (a warning from 89 MP, an error from 179 MP) becomes an
    ImageSizeError too; whatever else PIL raises for a bad header is passed on.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageSizeError("the image claims far too many pixels (a decompression bomb?)") from None
    try:
        limits.check(*image.size)
    except ImageSizeError:
        image.close()
        raise
    return image


def transform_for(resolution: int) -> "transforms.Compose":
    """The classic DCGAN transform up to the uint8 stage: short side → resolution, centre crop."""
    from torchvision.transforms import v2 as transforms  # imported where used, as in images.grid

    return transforms.Compose([transforms.Resize(resolution), transforms.CenterCrop(resolution)])


def decode(data: bytes, resolution: int) -> np.ndarray:
    """Encoded training-image bytes → (resolution, resolution, 3) uint8; raises on unreadable data.

    The size in the header is judged (:data:`TRAINING_LIMITS`) before any pixel is decoded;
    16-bit greyscale is scaled to 8 bits rather than clipped.
    """
    with open_image(data, TRAINING_LIMITS) as image:
        image.load()  # truncated files fail here rather than half-decoded
        rgb = _to_rgb(image)
    out = np.asarray(transform_for(resolution)(rgb), dtype=np.uint8)
    if out.shape != (resolution, resolution, 3):
        raise ValueError(f"decoded to shape {out.shape}")
    return out


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit greyscale (PIL's "I;16…"/"I") is scaled by 255/65535, which PIL's convert would clip."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image).astype(np.int64)
        return Image.fromarray(((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def read_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A training image file's bytes, refused before reading when larger than ``max_bytes`` or not
    a regular file (reading a device such as /dev/zero would never end)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file: not read")
    if info.st_size > max_bytes:
        raise ValueError(f"{info.st_size:,} bytes, more than {max_bytes:,}: not read")
    return Path(path).read_bytes()


def decode_or_reason(read: Callable[[], bytes], resolution: int) -> np.ndarray | str:
    """:func:`decode` of what ``read`` returns, or why it failed as one line (decode workers skip and
    report a bad file instead of ending the run)."""
    try:
        return decode(read(), resolution)
    except UnidentifiedImageError:
        return "UnidentifiedImageError: not an image format PIL can read"
    except (OSError, ValueError, SyntaxError, MemoryError, zipfile.BadZipFile, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
