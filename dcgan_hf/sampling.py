"""Seeds → pixels, the same image for a seed whatever batch it is drawn in.

Convolution libraries pick kernels by batch size, and some sizes sum in another order
(seen here with oneDNN: batches of 3 and 5 differ from the rest by ~1e-7, enough to flip
a uint8 rounding). So the generator only ever sees batches of 1, 2, 4, 8 or 16 (padded
with zeros up to the next power of two): each of those computes a sample bit for bit the
same, which the tests check. Batches of 16 run as fast per image as 64 on a CPU.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import images as imaging
from .latent import Method, check_truncation, latents, parse_seeds, path

CHUNK = 16


def _padded_size(count: int) -> int:
    size = 1
    while size < count:
        size *= 2
    return size


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (BN running stats) and put its old mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def render(generator: nn.Module, z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """uint8 images (N, nc, 64, 64) on the CPU for latents (N, nz), in eval mode."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two, got {chunk}")
    parameter = next(generator.parameters())
    outputs = []
    with eval_mode(generator), torch.inference_mode():
        for start in range(0, z.shape[0], chunk):
            part = z[start : start + chunk]
            count = part.shape[0]
            padded = _padded_size(count)
            batch = part.to(parameter.device, parameter.dtype)
            if padded > count:
                batch = torch.cat([batch, batch.new_zeros(padded - count, batch.shape[1])])
            outputs.append(imaging.to_uint8(generator(batch)[:count]).cpu())
    if not outputs:
        nc = getattr(generator, "nc", 3)
        return torch.empty(0, nc, 64, 64, dtype=torch.uint8)
    return torch.cat(outputs)


def sample_latents(seeds: Sequence[int] | str | int, nz: int, truncation: float = 1.0) -> torch.Tensor:
    """The latents :func:`sample` renders: one per seed, scaled by ``truncation``."""
    return latents(parse_seeds(seeds), nz) * check_truncation(truncation)


def interpolation_latents(
    seeds: Sequence[int] | str,
    nz: int,
    frames: int,
    *,
    method: Method = "slerp",
    closed: bool = False,
    truncation: float = 1.0,
) -> torch.Tensor:
    """The latents :func:`interpolate` renders: ``frames`` points along the seeds' path."""
    return path(sample_latents(seeds, nz, truncation), frames, method=method, closed=closed)


def sample(
    generator: nn.Module,
    seeds: Sequence[int] | str | int,
    *,
    truncation: float = 1.0,
    device: str | torch.device | None = None,
    output: imaging.Output = "pt",
    edit: Mapping[int | str, float] | None = None,
) -> torch.Tensor | list[Image.Image] | np.ndarray:
    """Images for ``seeds`` ("0-15,42" or ints); truncation scales z.

    ``output="pt"`` (default): a uint8 tensor (N, nc, 64, 64); ``"pil"``: a list of PIL images;
    ``"np"``: a uint8 array (N, 64, 64, nc). All three hold the same pixel values.
    ``edit={direction: amount}`` moves each (truncated) latent along the generator's
    ``directions`` by ``amount`` standard deviations; amounts of 0 change no pixel.
    """
    imaging.check_output(output)
    z = sample_latents(seeds, generator.nz, truncation)
    if edit:
        z = generator.directions.apply(z, edit)
    if device is not None:
        generator = generator.to(device)
    return imaging.as_output(render(generator, z), output)


def interpolate(
    generator: nn.Module,
    seeds: Sequence[int] | str,
    frames: int,
    *,
    method: Method = "slerp",
    closed: bool = False,
    truncation: float = 1.0,
    device: str | torch.device | None = None,
    output: imaging.Output = "pt",
) -> torch.Tensor | list[Image.Image] | np.ndarray:
    """uint8 frames (frames, nc, 64, 64) along seeds[0] → seeds[1] → … (→ seeds[0] if closed).

    The first frame is exactly ``sample(seeds[0])`` and, for an open path, the last is
    exactly ``sample(seeds[-1])``. ``output`` as for :func:`sample`.
    """
    imaging.check_output(output)
    z = interpolation_latents(seeds, generator.nz, frames, method=method, closed=closed, truncation=truncation)
    if device is not None:
        generator = generator.to(device)
    return imaging.as_output(render(generator, z), output)


def interpolation_gif(frames: torch.Tensor, duration_ms: int = 80) -> bytes:
    """uint8 frames → animated, looping GIF bytes."""
    return imaging.gif_bytes(imaging.to_pil(frames), duration_ms=duration_ms)
