"""Uploaded photos → the 64×64 crop a model sees, treating every file as hostile.

An upload can be anything: not an image, a truncated one, or a few kilobytes of PNG that
claim 20000×20000 pixels (1.2 GB once decoded). So the checks run cheapest first and
nothing is decoded until the header has been read and judged: byte size, magic bytes
(JPEG, PNG or WebP only), then the dimensions, read from the header and judged by
``dcgan_hf.decoding`` (the training images' rules, with a photo's shape), and only then
the pixels. The crop is the training transform (``dcgan_hf.decoding.transform_for``: short
side to 64, centre crop), so a face is framed as the training faces were.

A request's memory stays under ~100 MB whatever the photo: a JPEG is decoded at 1/2…1/8
scale by the decoder itself (``draft``); PNG and WebP have no such mode, so what the full
decode and the shrink after it would hold is judged from the header and bounded
(:data:`MAX_DECODE_BYTES`, 80 MB: a 20-megapixel RGB PNG, 10 with transparency, a 5-megapixel
WebP). The decoded image is shrunk at once (short side to 256-511) and everything after
(rotation, transparency, crop, preview) works on that.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .decoding import ImageLimits, ImageSizeError, open_image, transform_for

MAX_BYTES = 10 * 1024 * 1024  # 10 MB: any phone photo; the upload route is capped to the same
# At most 40 MP (decoding.MAX_PIXELS, as for training images) and 12000 pixels a side; at least
# 32 (below that there is no face to find); a photo, not a banner: a centre crop of a 1×300000
# strip is no face.
LIMITS = ImageLimits("photos", max_aspect=4.0, min_side=32, max_side=12_000)
RESOLUTION = 64
PREVIEW_SIDE = 256
DECODE_SHORT_SIDE = 256  # big photos are decoded (JPEG) or shrunk (others) to a short side of 256-511
MAX_DECODE_BYTES = 80 * 2**20  # what decoding and shrinking one photo may hold at once
# How many copies of the pixels each decoder holds at its peak (bench/hostile_memory.py): Pillow's
# WebP decoder keeps libwebp's buffer, a bytes copy and the image; JPEG and PNG decode in place.
DECODER_COPIES = {"JPEG": 1, "PNG": 1, "WebP": 4}
ORIENTATION = 0x0112  # the EXIF tag phones store instead of rotating the pixels
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose
UNAVERAGED = ("1", "P", "PA")  # palette indices (and bits) cannot be averaged: converted before shrinking
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
    """The upright photo as RGB (transparency on white), short side at most 2 × DECODE_SHORT_SIDE."""
    if kind == "JPEG":  # decode at a reduced scale when the photo is far bigger than needed
        scale = min(image.size) / DECODE_SHORT_SIDE
        if scale >= 2:
            image.draft("RGB", (int(image.size[0] / scale), int(image.size[1] / scale)))
    check_decode_cost(image, FORMATS[kind])
    image.load()  # truncated files fail here, not half-decoded later
    orientation = image.getexif().get(ORIENTATION, 1)
    small = _shrunk(image)
    if orientation in TRANSPOSE:  # phone photos are stored sideways with a rotation tag
        small = small.transpose(TRANSPOSE[orientation])
    if small.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return small.convert("RGB")


def decode_cost(name: str, mode: str, size: tuple[int, int], transparent: bool = False) -> int:
    """Bytes held at once to decode a ``name`` (JPEG, PNG, WebP) image of ``mode`` and ``size`` and
    shrink it (:func:`_shrunk`): PIL keeps 1 byte a pixel for L and P, 2 for 16-bit, 4 for the rest."""
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    held = stored * DECODER_COPIES[name]
    if mode in UNAVERAGED or mode.startswith("I;16"):  # converted before averaging
        held += 4
        mode = "RGBA" if mode == "PA" or transparent else "RGB"
    if mode in ("LA", "RGBA"):  # reduce() premultiplies the alpha into a copy
        held += 4
    return size[0] * size[1] * held


def check_decode_cost(image: Image.Image, name: str) -> None:
    """PhotoError when decoding ``image`` at its (possibly reduced) size would hold more than MAX_DECODE_BYTES."""
    cost = decode_cost(name, image.mode, image.size, "transparency" in image.info)
    if cost > MAX_DECODE_BYTES:
        width, height = image.size
        raise PhotoError(f"the {name} is {width}×{height} pixels: decoding it would take {cost / 2**20:.0f} MB, and a "
                         f"photo may take at most {MAX_DECODE_BYTES // 2**20} MB; a smaller one, or a JPEG, works")


def _shrunk(image: Image.Image) -> Image.Image:
    """``image`` reduced by a whole factor (box average) to a short side of DECODE_SHORT_SIDE…2×; the
    full-size image is dropped as soon as the small one exists."""
    factor = min(image.size) // DECODE_SHORT_SIDE
    if factor < 2:
        return image
    if image.mode in UNAVERAGED or image.mode.startswith("I;16"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    return image.reduce(factor)


def photo_from_file(path: str | os.PathLike) -> Photo:
    """:func:`load_photo` for a file on disk, its size checked before it is read."""
    return load_photo(read_upload(path))
