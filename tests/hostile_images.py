"""Image files for the demo's upload tests: ordinary photos, and the hostile ones a public
upload route gets (bombs, slivers, truncated and non-image files). All made here; no real
face is ever written."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def face_like(width: int = 300, height: int = 400, seed: int = 0) -> Image.Image:
    """A cartoon face on a coloured background: big enough to be cropped, not a real person."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    cx, cy, scale = width / 2, height / 2, min(width, height) / 300
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(20, 200, 3)
    image[((x - cx) / (90 * scale)) ** 2 + ((y - cy) / (120 * scale)) ** 2 < 1] = (225, 180, 150)
    for eye in (cx - 35 * scale, cx + 35 * scale):
        image[((x - eye) / (14 * scale)) ** 2 + ((y - cy + 30 * scale) / (8 * scale)) ** 2 < 1] = (30, 30, 30)
    image[((x - cx) / (35 * scale)) ** 2 + ((y - cy - 65 * scale) / (8 * scale)) ** 2 < 1] = (160, 60, 60)
    return Image.fromarray(image)


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose header claims width×height, with a few bytes of pixel data: what a bomb's header looks like.

    ``colour_type``: 2 RGB, 6 RGBA (PNG's own numbers).
    """
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def one_bit_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit greyscale PNG of any size, compressed to almost nothing.

    20000×20000 is 50 kB on disk and 1.2 GB once decoded to RGB: a decompression bomb.
    """
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * min(height, 1024)) for _ in range(height // 1024)]
    parts.append(compressor.compress(row * (height % 1024)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def hostile_files(folder: Path) -> dict[str, Path]:
    """name → file: every kind of bad upload the demo must refuse with a message."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = encoded(face_like(), "JPEG", quality=90)
    files = {
        "text.jpg": b"this is not an image at all\n" * 10,
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "bomb.png": one_bit_png(20_000, 20_000),
        "sliver.png": one_bit_png(1, 300_000),
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths
