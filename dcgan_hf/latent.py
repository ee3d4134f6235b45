"""Latent math: seed → z, seed lists, and interpolation paths.

A latent is a pure function of (seed, nz): each seed gets its own CPU ``torch.Generator``,
so an image never depends on the global RNG, on its batch, or on the device it runs on.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Sequence

import torch

SEED_LIMIT = 2**32  # seeds are unsigned 32-bit, like stylegan's tools and numpy's RandomState
Method = Literal["slerp", "lerp"]


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int in [0, 2**32), or raise ValueError saying what is wrong."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)
        else:
            raise ValueError(f"a seed must be a whole number, got {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed {seed} is outside [0, {SEED_LIMIT - 1}]")
    return seed


def parse_seeds(spec: str | int | Iterable[int], limit: int | None = None) -> list[int]:
    """``"0-15,42"`` → [0, 1, …, 15, 42]; ints and iterables of ints pass through checked.

    ``limit`` bounds how many seeds may be asked for, checked before the list is built
    (``"0-4294967295"`` is 4 billion of them).
    """
    if isinstance(spec, int):
        return [check_seed(spec)]
    if not isinstance(spec, str):
        seeds = [check_seed(seed) for seed in spec]
        _check_count(len(seeds), limit)
        return seeds
    seeds: list[int] = []
    for part in spec.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"cannot read seeds from {spec!r}: use numbers and ranges like '0-15,42'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"seed range {part!r} runs backwards")
        check_seed(first), check_seed(last)
        _check_count(len(seeds) + last - first + 1, limit)
        seeds.extend(range(first, last + 1))
    return seeds


def _check_count(count: int, limit: int | None) -> None:
    if limit is not None and count > limit:
        raise ValueError(f"{count:,} seeds asked for; at most {limit:,} at a time")


def latent(seed: int, nz: int) -> torch.Tensor:
    """z of shape (nz,) for one seed, drawn from its own generator on the CPU."""
    generator = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    return torch.randn(nz, generator=generator)


def latents(seeds: Sequence[int], nz: int) -> torch.Tensor:
    """z of shape (len(seeds), nz); row i is exactly ``latent(seeds[i], nz)``."""
    if len(seeds) == 0:
        return torch.empty(0, nz)
    return torch.stack([latent(seed, nz) for seed in seeds])


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Straight line from a (t=0) to b (t=1)."""
    return torch.lerp(a.double(), b.double(), t).to(a.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Great-circle path from a (t=0) to b (t=1), the usual walk for Gaussian latents.

    Norms are interpolated linearly so the path stays at a typical radius; nearly parallel
    vectors fall back to lerp, where slerp's formula divides by ~0.
    """
    a64, b64 = a.double(), b.double()
    norm_a, norm_b = a64.norm(), b64.norm()
    cos = torch.clamp(torch.dot(a64 / norm_a, b64 / norm_b), -1.0, 1.0)
    theta = torch.arccos(cos)
    if theta.abs() < 1e-6:
        return lerp(a, b, t)
    sin = torch.sin(theta)
    direction = (torch.sin((1 - t) * theta) * a64 / norm_a + torch.sin(t * theta) * b64 / norm_b) / sin
    return (direction * torch.lerp(norm_a, norm_b, t)).to(a.dtype)


def path(keyframes: torch.Tensor, frames: int, method: Method = "slerp", closed: bool = False) -> torch.Tensor:
    """``frames`` latents along keyframes[0] → keyframes[1] → … (→ keyframes[0] if closed).

    Frames are evenly spaced in "segments travelled". An open path starts on the first and
    ends on the last keyframe exactly; a closed loop starts on the first and stops one step
    short of it, so a looping GIF does not show the same frame twice.
    """
    if method not in ("slerp", "lerp"):
        raise ValueError(f"interpolation method must be 'slerp' or 'lerp', got {method!r}")
    count = keyframes.shape[0]
    if count < 2:
        raise ValueError("an interpolation needs at least two seeds")
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    stops = torch.cat([keyframes, keyframes[:1]]) if closed else keyframes
    segments = stops.shape[0] - 1
    step = segments / frames if closed else segments / (frames - 1)
    interpolate = slerp if method == "slerp" else lerp
    out = []
    for index in range(frames):
        position = index * step
        segment = min(int(position), segments - 1)
        t = position - segment
        if t <= 1e-12:
            out.append(stops[segment].clone())
        elif t >= 1 - 1e-12:
            out.append(stops[segment + 1].clone())
        else:
            out.append(interpolate(stops[segment], stops[segment + 1], t))
    return torch.stack(out)
