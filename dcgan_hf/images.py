"""Pixels in and out: [-1, 1] floats ↔ uint8, PIL images, NumPy arrays, grids, PNG and GIF bytes.

Every output path goes through :func:`to_uint8`, so a PNG, a grid, a PIL image, a NumPy array
and the API tensor of the same seed hold the same pixel values.
"""

from __future__ import annotations

import io
import math
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image

Output = Literal["pt", "pil", "np"]
OUTPUTS = ("pt", "pil", "np")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] → uint8 in [0, 255], rounding half up."""
    return images.float().add(1.0).mul_(127.5).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) → floats in [-1, 1]: the inverse the models are trained on."""
    return images.float().div(127.5).sub_(1.0)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 (N, C, H, W) → one RGB (or L) PIL image per sample."""
    _check_uint8(images)
    array = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    if array.shape[-1] == 1:
        return [Image.fromarray(sample[..., 0], mode="L") for sample in array]
    return [Image.fromarray(sample) for sample in array]


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """uint8 (N, C, H, W) → one uint8 (C, H', W') grid, near-square by default."""
    _check_uint8(images)
    if images.shape[0] == 0:
        raise ValueError("cannot make a grid of zero images")
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    from torchvision.utils import make_grid  # imported where used: torchvision costs ~1.5 s of CPU to import

    return make_grid(images, nrow=nrow, padding=padding, pad_value=0)


def grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """The grid of :func:`grid` as a PIL image."""
    return to_pil(grid(images, nrow, padding)[None])[0]


def check_output(output: str) -> str:
    """``output`` if it is one of :data:`OUTPUTS` ("pt" tensor, "pil" images, "np" arrays)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")
    return output


def as_output(images: torch.Tensor, output: str = "pt") -> torch.Tensor | list[Image.Image] | np.ndarray:
    """uint8 (N, C, H, W) → the same tensor ("pt"), PIL images ("pil") or a uint8 (N, H, W, C) array ("np")."""
    check_output(output)
    if output == "pil":
        return to_pil(images)
    if output == "np":
        _check_uint8(images)
        return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return images


def as_uint8_batch(images: Any) -> torch.Tensor:
    """Any form :meth:`Generator.sample` returns (tensor, PIL list, HWC array or arrays) → uint8 (N, C, H, W)."""
    if isinstance(images, torch.Tensor):
        batch = images if images.dim() == 4 else images[None]
        _check_uint8(batch)
        return batch
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, np.ndarray):
        arrays = images if images.ndim == 4 else images[None]
    else:
        items = list(images)
        if not items:
            raise ValueError("cannot make a grid of zero images")
        arrays = [np.asarray(item) for item in items]
        shapes = {array.shape for array in arrays}
        if len(shapes) != 1:
            raise ValueError(f"all images must have the same size and channels, got shapes {sorted(shapes)}")
        arrays = np.stack(arrays)
    if arrays.ndim == 3:  # (N, H, W): single-channel
        arrays = arrays[..., None]
    if arrays.dtype != np.uint8 or arrays.ndim != 4 or arrays.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected uint8 images (N, H, W, C), got {arrays.dtype} {arrays.shape}")
    return torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2)


def make_grid(images: Any, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """One PIL image of a batch, near-square by default: ``make_grid(G.sample("0-15", output="pil"))``.

    Takes whatever :meth:`Generator.sample` returns: a uint8 tensor, a list of PIL images or
    uint8 HWC arrays.
    """
    return grid_image(as_uint8_batch(images), nrow, padding)


def png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG encoding of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}  # file suffix → PIL format


def image_bytes(image: Image.Image, suffix: str) -> bytes:
    """``image`` encoded as a file named ``*suffix`` must hold: PNG or lossless WebP, or JPEG at quality 95."""
    format_name = IMAGE_FORMATS.get(suffix.lower())
    if format_name is None:
        raise ValueError(f"cannot write a {suffix or 'suffix-less'} image: use {', '.join(IMAGE_FORMATS)}")
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(format_name, {})
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def gif_bytes(frames: Sequence[Image.Image], duration_ms: int = 80, loop: bool = True) -> bytes:
    """An animated GIF; frames keep their exact colours when they hold ≤ 256 of them."""
    if len(frames) == 0:
        raise ValueError("a GIF needs at least one frame")
    buffer = io.BytesIO()
    first, *rest = frames
    options = dict(format="GIF", save_all=True, append_images=rest, duration=duration_ms, disposal=2)
    if loop:
        options["loop"] = 0
    first.save(buffer, **options)
    return buffer.getvalue()


def gif_frame_count(data: bytes) -> int:
    """How many frames an encoded GIF holds (what a browser will play)."""
    with Image.open(io.BytesIO(data)) as gif:
        return getattr(gif, "n_frames", 1)


def _check_uint8(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
