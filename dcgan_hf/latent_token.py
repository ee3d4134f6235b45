"""Latent tokens: a latent z as a short piece of text that API clients and links carry.

A projected face has no seed, so ``/project`` hands out its latent as a token that
``/interpolate`` (and the page's URL) accept back. Format: ``"z1."`` + unpadded base64url
of z as little-endian float16. Half precision keeps a token short (nz=100: 270 characters)
and loses nothing that matters: the projection rounds z through float16 itself before it
renders, so a token reproduces its reconstruction bit for bit.

A token comes from outside, so :func:`decode` checks everything before it allocates:
type, length, alphabet, byte count against the served model's nz, finiteness and range.

The demo's live mode (``dcgan_hf.serving.live``) hands the browser *exact* tokens: ``"z2."`` + base64url
of z as little-endian float32 (:func:`encode_exact`), since a seed's latent is not a float16
one and the browser must draw the server's face. The server hands these out only; what it
reads (:func:`decode`) is the ``"z1."`` form.
"""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import torch

PREFIX = "z1."
EXACT_PREFIX = "z2."
MAX_NZ = 1024  # no DCGAN latent is bigger; bounds the text a caller can make us decode
LATENT_BOUND = 16.0  # |z_i| of a Gaussian latent is < 6 in practice; projection clamps to this
MAX_TOKEN_CHARS = len(PREFIX) + math.ceil(2 * MAX_NZ / 3) * 4
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


def quantize(z: torch.Tensor) -> torch.Tensor:
    """z rounded to what a token holds (float16 values, as float32), clamped to the bound."""
    return z.detach().float().clamp(-LATENT_BOUND, LATENT_BOUND).half().float()


def encode(z: torch.Tensor) -> str:
    """A token for one latent of shape (nz,) or (1, nz)."""
    flat = z.detach().reshape(-1)
    if not 1 <= flat.numel() <= MAX_NZ:
        raise ValueError(f"a latent token holds 1 to {MAX_NZ} values, got {flat.numel()}")
    raw = quantize(flat).half().cpu().numpy().astype("<f2").tobytes()
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def encode_exact(z: torch.Tensor) -> str:
    """A lossless token for one float32 latent of shape (nz,) or (1, nz): what the browser's live mode reads."""
    flat = z.detach().reshape(-1)
    if not 1 <= flat.numel() <= MAX_NZ:
        raise ValueError(f"a latent token holds 1 to {MAX_NZ} values, got {flat.numel()}")
    if flat.dtype != torch.float32 or not bool(torch.isfinite(flat).all()):
        raise ValueError("an exact token holds finite float32 values")
    raw = flat.cpu().numpy().astype("<f4").tobytes()
    return EXACT_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(token: object, nz: int, name: str = "latent token") -> torch.Tensor:
    """The float32 latent (nz,) in ``token``; ValueError with one clear line otherwise."""
    if not isinstance(token, str):
        raise ValueError(f"{name} must be text from /project (starting {PREFIX!r}), got {type(token).__name__}")
    text = token.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise ValueError(f"{name} is too long ({len(text)} characters; at most {MAX_TOKEN_CHARS})")
    if not text.startswith(PREFIX):
        raise ValueError(f"{name} must start with {PREFIX!r} (copy it whole from /project)")
    body = text[len(PREFIX) :]
    if not body or not _ALPHABET.fullmatch(body) or len(body) % 4 == 1:
        raise ValueError(f"{name} is damaged: not base64url text")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if len(raw) % 2:
        raise ValueError(f"{name} is damaged: odd byte count")
    if len(raw) // 2 != nz:
        raise ValueError(f"{name} holds a latent of {len(raw) // 2} values; this model's latents have nz={nz}")
    values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds non-finite values")
    if np.abs(values).max() > LATENT_BOUND:
        raise ValueError(f"{name} holds values beyond ±{LATENT_BOUND:g}")
    return torch.from_numpy(values.copy())


def looks_like_token(value: object) -> bool:
    """Whether ``value`` is meant as a token (so a bad one gets the token's error message)."""
    return isinstance(value, str) and value.strip().startswith(PREFIX)
