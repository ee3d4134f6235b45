"""Uploaded photos → the 64×64 crop a model sees, treating every file as hostile.

An upload can be anything: not an image, a truncated one, or a few kilobytes of PNG that
claim 20000×20000 pixels (1.2 GB once decoded). So the checks run cheapest first and
nothing is decoded until the header has been read and judged: byte size, magic bytes
(JPEG, PNG or WebP only), then the dimensions, read from the header and judged by
``dcgan_hf.decoding`` (the training images' rules, with a photo's shape), and only then
the pixels. The crop is the training transform (``dcgan_hf.decoding.transform_for``: short
side to 64, centre crop), so a face is framed as the training faces were.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .decoding import ImageLimits, ImageSizeError, open_image, transform_for

MAX_BYTES = 10 * 1024 * 1024  # 10 MB: any phone photo; the upload route is capped to the same
# At most 40 MP (decoding.MAX_PIXELS, as for training images) and 12000 pixels a side; at least
# 32 (below that there is no face to find); a photo, not a banner: a centre crop of a 1×300000
# strip is no face.
LIMITS = ImageLimits("photos", max_aspect=4.0, min_side=32, max_side=12_000)
RESOLUTION = 64
PREVIEW_SIDE = 256
DECODE_SHORT_SIDE = 256  # big JPEGs are decoded at 1/2…1/8 scale, never below this short side
FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
ACCEPTED = "a JPEG, PNG or WebP photo"


class PhotoError(ValueError):
    """An upload that cannot be used as a photo; the message says why, for the user."""


@dataclass(frozen=True)
class Photo:
    pixels: torch.Tensor  # uint8 (3, 64, 64), the model's view of the photo
    size: tuple[int, int]  # the upload's width × height
    format: str  # "JPEG" | "PNG" | "WebP"
    preview_jpeg: bytes = b""  # the upright photo, at most PREVIEW_SIDE a side: shown inline, never stored


def sniff_format(head: bytes) -> str | None:
    """The image format the first bytes announce, if it is one we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_upload(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of an uploaded file, refusing anything larger than ``max_bytes`` before reading."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PhotoError(f"the file is {size / 1e6:.1f} MB; photos may be at most {max_bytes / 1e6:.0f} MB")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise PhotoError(f"the upload could not be read ({type(error).__name__})") from None
    if len(data) > max_bytes:  # it grew while we looked
        raise PhotoError(f"photos may be at most {max_bytes / 1e6:.0f} MB")
    return data


def load_photo(data: bytes) -> Photo:
    """Encoded JPEG/PNG/WebP bytes → the 64×64 training-style crop; PhotoError otherwise."""
    if len(data) > MAX_BYTES:
        raise PhotoError(f"photos may be at most {MAX_BYTES / 1e6:.0f} MB")
    kind = sniff_format(data[:16])
    if kind is None:
        raise PhotoError(f"not an image we can read: upload {ACCEPTED}")
    try:
        image = open_image(data, LIMITS, formats=[kind])  # reads the header only
    except ImageSizeError as error:
        raise PhotoError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - PIL raises many types for a bad header
        raise PhotoError(f"not a readable {FORMATS[kind]} file ({type(error).__name__})") from None
    with image:
        width, height = image.size
        try:
            rgb = _decode_rgb(image, kind)
        except PhotoError:
            raise
        except Exception as error:  # noqa: BLE001 - truncated/corrupt data: OSError, SyntaxError, struct.error…
            raise PhotoError(f"the {FORMATS[kind]} file is truncated or damaged ({type(error).__name__})") from None
    crop = np.asarray(transform_for(RESOLUTION)(rgb), dtype=np.uint8)
    preview = rgb.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=85)
    return Photo(torch.from_numpy(crop.copy()).permute(2, 0, 1).contiguous(), (width, height), FORMATS[kind],
                 buffer.getvalue())


def _decode_rgb(image: Image.Image, kind: str) -> Image.Image:
    if kind == "JPEG":  # decode at a reduced scale when the photo is far bigger than needed
        scale = min(image.size) / DECODE_SHORT_SIDE
        if scale >= 2:
            image.draft("RGB", (int(image.size[0] / scale), int(image.size[1] / scale)))
    image.load()  # truncated files fail here, not half-decoded later
    upright = ImageOps.exif_transpose(image)  # phone photos are stored sideways with a rotation tag
    if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return upright.convert("RGB")


def photo_from_file(path: str | os.PathLike) -> Photo:
    """:func:`load_photo` for a file on disk, its size checked before it is read."""
    return load_photo(read_upload(path))
