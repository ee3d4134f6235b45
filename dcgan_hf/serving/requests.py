"""The demo's requests, validated: every value from a form, a link or an API call is checked here
before anything runs. ValueError messages are shown to users as they are.

Seeds and truncation use the library's one grammar (:mod:`dcgan_hf.latent`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import torch

from .. import latent_token
from ..latent import SEED_LIMIT, Method, check_seed, check_truncation, latents, parse_seeds

MAX_IMAGES = 64
MIN_FRAMES, MAX_FRAMES = 2, 60
MAX_KEYFRAMES = 16
METHODS: tuple[Method, ...] = ("slerp", "lerp")


def check_whole_number(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; a JSON float like 16.0 is accepted, 16.5 is not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def check_seed_input(value: object, name: str = "seed") -> int:
    """A seed from a form or an API call: the library's :func:`dcgan_hf.latent.check_seed`."""
    return check_seed(value, name)


def parse_seed_list(text: object, name: str = "seeds", limit: int = MAX_IMAGES) -> list[int]:
    """Seeds from a form or an API call: the library's grammar (:func:`dcgan_hf.latent.parse_seeds`),
    at most ``limit`` (one request's worth of images)."""
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        raise ValueError(f"{name} must be text like '0-15, 42', got {text!r:.60}")
    return parse_seeds(text, limit=limit, name=name)


@dataclass(frozen=True)
class GenerateRequest:
    """A validated Generate call: ``count`` consecutive seeds starting at ``seed``."""

    seed: int
    count: int
    truncation: float

    @classmethod
    def parse(cls, seed: object, count: object, truncation: object = 1.0) -> "GenerateRequest":
        first = check_seed_input(seed)
        count = check_whole_number(count, "number of images", 1, MAX_IMAGES)
        if first + count > SEED_LIMIT:
            raise ValueError(f"seeds {first}…{first + count - 1} run past the last seed {SEED_LIMIT - 1}")
        return cls(first, count, check_truncation(truncation))

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.count))

    @property
    def filename(self) -> str:
        return f"dcgan-seed{self.seed}-n{self.count}-t{self.truncation:g}.png"


@dataclass(frozen=True)
class InterpolateRequest:
    """A validated Interpolate call: a path through ``seeds`` (back to the first if closed).

    ``start_latent`` / ``end_latent`` (latent tokens from ``/project``, already checked
    against the model's nz) replace the first / second seed when given: "walk from my face
    to seed 42". Seed latents are scaled by ``truncation``; token latents are used as found.
    """

    seeds: tuple[int, ...]
    frames: int
    method: Method
    closed: bool
    truncation: float
    start_latent: str | None = None
    end_latent: str | None = None

    @classmethod
    def parse(
        cls,
        seed_a: object,
        seed_b: object,
        more_seeds: object = "",
        frames: object = 24,
        method: object = "slerp",
        closed: object = False,
        truncation: object = 1.0,
        start_latent: object = "",
        end_latent: object = "",
        *,
        nz: int | None = None,
    ) -> "InterpolateRequest":
        start = parse_latent_input(start_latent, nz, "start latent")
        end = parse_latent_input(end_latent, nz, "end latent")
        first = 0 if start is not None else check_seed_input(seed_a, "seed A")
        second = 0 if end is not None else check_seed_input(seed_b, "seed B")
        seeds = [first, second, *parse_more_seeds(more_seeds)]
        frames = check_whole_number(frames, "number of frames", MIN_FRAMES, MAX_FRAMES)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(closed, bool):
            raise ValueError(f"closed loop must be true or false, got {closed!r}")
        return cls(tuple(seeds), frames, method, closed, check_truncation(truncation), start, end)

    def keyframes(self, nz: int) -> torch.Tensor:
        """The latents the path runs through: seeds' (× truncation) with any token endpoints in place."""
        z = latents(list(self.seeds), nz) * self.truncation
        for index, token in ((0, self.start_latent), (1, self.end_latent)):
            if token is not None:
                z[index] = latent_token.decode(token, nz)
        return z

    @property
    def filename_stem(self) -> str:
        ends = [self.start_latent, self.end_latent] + [None] * (len(self.seeds) - 2)
        names = [str(seed) if token is None else f"z{_short_hash(token)}" for seed, token in zip(self.seeds, ends)]
        loop = "-loop" if self.closed else ""
        return f"dcgan-interp-{'-'.join(names)}-{self.frames}f-{self.method}{loop}-t{self.truncation:g}"


def parse_latent_input(value: object, nz: int | None, name: str) -> str | None:
    """An optional latent token from a form or API call: None when empty, else the checked token."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if nz is None:
        raise ValueError(f"{name}: latent tokens need the served model's nz")
    z = latent_token.decode(value, nz, name)
    return latent_token.encode(z)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def parse_more_seeds(text: object) -> list[int]:
    """The optional extra keyframes: "7, 99 123" → [7, 99, 123] (the seed grammar), at most MAX_KEYFRAMES - 2."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return []
    return parse_seed_list(text, "more seeds", limit=MAX_KEYFRAMES - 2)


def random_seed() -> int:
    """A fresh seed for the "random seed" button (OS entropy: not model randomness)."""
    return secrets.randbelow(SEED_LIMIT)
