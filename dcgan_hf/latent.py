"""Latent math: the seed and truncation grammar, seed → z, and interpolation paths.

A latent is a pure function of (seed, nz): each seed gets its own CPU ``torch.Generator``,
so an image never depends on the global RNG, on its batch, or on the device it runs on.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sized
from typing import Iterable, Literal, Sequence

import torch

SEED_LIMIT = 2**32  # seeds are unsigned 32-bit, like stylegan's tools and numpy's RandomState
MAX_SEEDS = 4096  # seeds one text may ask for unless the caller bounds it tighter (a grid of 4096 faces is 4226² px)
MAX_SEED_TEXT = 50_000  # characters of seed text read at all (4096 seeds written out one by one fit)
MIN_TRUNCATION, MAX_TRUNCATION = 0.0, 4.0  # truncation is in (0, 4]
Method = Literal["slerp", "lerp"]
_SEED_PART = re.compile(r"([0-9]{1,10})(?:-([0-9]{1,10}))?")
_SEPARATORS = re.compile(r"[,\s]+")


# --- the one grammar for seeds and truncation --------------------------------------------
# The library, the CLI, the demo, its API and its MCP tools all read seeds and truncation
# here, so one text means the same faces everywhere and each mistake has one message
# (tests/test_grammar.py runs the same inputs through every entry point).


def check_seed(value: object, name: str = "seed") -> int:
    """``value`` as an int in [0, 2**32); a float like 7.0 (JSON's numbers) is accepted, 7.5 is not."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        value = int(value) if math.isfinite(value) and float(value).is_integer() else value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be a whole number from 0 to {SEED_LIMIT - 1}, got {value!r:.60}")
    return int(value)


def parse_seeds(spec: str | int | Iterable[int], limit: int | None = MAX_SEEDS, name: str = "seeds") -> list[int]:
    """``"0-15, 42"`` → [0, 1, …, 15, 42]; ints and iterables of ints pass through checked.

    The grammar: whole numbers and ranges ``a-b`` (both ends included), separated by commas,
    whitespace or both. ``limit`` bounds how many seeds may be asked for, counted before any
    range is expanded (``"0-4294967295"`` is 4 billion of them); ``None`` means no bound.
    ``name`` is how error messages call the field ("--seeds", "group A", ...).
    """
    if isinstance(spec, (numbers.Real, bool)):
        return [_listed_seed(spec, name)]
    if not isinstance(spec, str):
        if isinstance(spec, Sized):
            _check_count(len(spec), limit, name)
        seeds = [_listed_seed(seed, name) for seed in spec]
        _check_count(len(seeds), limit, name)
        return seeds
    if len(spec) > MAX_SEED_TEXT:
        raise ValueError(f"{name}: the text is longer than {MAX_SEED_TEXT:,} characters")
    seeds: list[int] = []
    for part in _SEPARATORS.split(spec.strip()):
        if not part:  # "" when the text is blank
            continue
        match = _SEED_PART.fullmatch(part)
        if not match:
            raise ValueError(f"{name} must be whole numbers and ranges like '0-15, 42', got {part!r:.40}")
        first = _listed_seed(int(match.group(1)), name)
        last = _listed_seed(int(match.group(2) or first), name)
        if last < first:
            raise ValueError(f"the range {part} in {name} runs backwards")
        _check_count(len(seeds) + last - first + 1, limit, name)
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"{name}: give at least one seed, e.g. '0-15, 42'")
    return seeds


def _listed_seed(value: object, name: str) -> int:
    try:
        return check_seed(value)
    except ValueError:
        raise ValueError(f"{name}: a seed is a whole number from 0 to {SEED_LIMIT - 1}, got {value!r:.60}") from None


def _check_count(count: int, limit: int | None, name: str) -> None:
    if limit is not None and count > limit:
        raise ValueError(f"{name}: at most {limit:,} seeds at a time, {count:,} asked for")


def check_truncation(value: object) -> float:
    """The latent scale as a float in (0, 4]; 1.0 means no truncation, 0.7 gives more average faces."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"truncation must be a number such as 0.7 (1.0 = off), got {value!r:.60}")
    try:
        scale = float(value)  # an int like 2**1100 has no float: OverflowError
    except OverflowError:
        raise ValueError("truncation must be in (0, 4], got a number far too large") from None
    if not math.isfinite(scale):
        raise ValueError(f"truncation must be a number such as 0.7 (1.0 = off), got {value!r}")
    if not MIN_TRUNCATION < scale <= MAX_TRUNCATION:
        raise ValueError(f"truncation must be in (0, 4], got {value!r}")
    return scale


# --- latents -------------------------------------------------------------------------------


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
