"""Requests that steer faces — edits, sweeps, face arithmetic, completion — read from outside input.

The demo's forms and API, its MCP tools and the command line all build these, so a value is
checked the same way wherever it comes from and a bad one gets one clear line. A face to
start from is a seed (scaled by ``truncation``) or a latent token (a projected photo, an
interpolation frame, an earlier edit or arithmetic result); seeds in groups are read by the
library's one seed grammar (``dcgan_hf.latent.parse_seeds``: commas or spaces, ranges like ``0-15``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import torch

from .. import arithmetic, latent_token
from ..completion import PRESETS, encode_mask, parse_mask, preset_mask, psnr
from ..directions import SWEEP_SPAN, Directions, format_edit, parse_edit
from ..latent import latent
from .requests import (
    check_seed_input,
    check_truncation,
    check_whole_number,
    parse_latent_input,
    parse_seed_list,
)

MAX_GROUP_SEEDS = 64  # seeds in one group of an arithmetic expression
MIN_SWEEP_FRAMES, MAX_SWEEP_FRAMES = 2, 30
MAX_NOISE_SEED = 2**31 - 1


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class FaceSource:
    """Where an edit or a completion starts: a seed's latent × truncation, or a latent token."""

    seed: int
    truncation: float
    token: str | None = None

    @classmethod
    def parse(cls, seed: object, truncation: object = 1.0, token: object = "", *, nz: int) -> "FaceSource":
        checked = parse_latent_input(token, nz, "latent")
        if checked is not None:
            return cls(0, 1.0, checked)
        return cls(check_seed_input(seed), check_truncation(truncation))

    def latent(self, nz: int) -> torch.Tensor:
        """z of shape (1, nz)."""
        if self.token is not None:
            return latent_token.decode(self.token, nz)[None]
        return (latent(self.seed, nz) * self.truncation)[None]

    @property
    def stem(self) -> str:
        return f"z{_short_hash(self.token)}" if self.token else f"seed{self.seed}-t{self.truncation:g}"


@dataclass(frozen=True)
class EditRequest:
    """A face moved along the model's directions: ``amounts`` maps direction index → amount."""

    source: FaceSource
    amounts: tuple[tuple[int, float], ...]

    @classmethod
    def parse(cls, seed: object, truncation: object, token: object, edit: object, *, directions: Directions,
              nz: int) -> "EditRequest":
        source = FaceSource.parse(seed, truncation, token, nz=nz)
        if edit is not None and not isinstance(edit, str):
            raise ValueError(f"edit must be text like '0=2.5, 3=-1', got {type(edit).__name__}")
        amounts = directions.amounts(parse_edit(edit, max_items=directions.count))
        return cls(source, tuple(sorted(amounts.items())))

    @property
    def edit(self) -> dict[int, float]:
        return dict(self.amounts)

    @property
    def edit_text(self) -> str:
        return format_edit(self.edit)

    def latents(self, directions: Directions, nz: int) -> torch.Tensor:
        return directions.apply(self.source.latent(nz), self.edit)

    @property
    def stem(self) -> str:
        edits = "-".join(f"d{index}x{amount:g}" for index, amount in self.amounts if amount) or "plain"
        if len(edits) > 60:  # up to 64 directions: keep file names short
            edits = f"e{_short_hash(edits)}"
        return f"dcgan-edit-{self.source.stem}-{edits}"


@dataclass(frozen=True)
class SweepRequest:
    """One direction swept from -span to +span around an (edited) face."""

    edit: EditRequest
    direction: int
    frames: int
    span: float = SWEEP_SPAN

    @classmethod
    def parse(cls, seed: object, truncation: object, token: object, edit: object, direction: object,
              frames: object = 9, *, directions: Directions, nz: int) -> "SweepRequest":
        request = EditRequest.parse(seed, truncation, token, edit, directions=directions, nz=nz)
        index = directions.index(direction)
        frames = check_whole_number(frames, "number of frames", MIN_SWEEP_FRAMES, MAX_SWEEP_FRAMES)
        return cls(request, index, frames)

    def latents(self, directions: Directions, nz: int) -> torch.Tensor:
        return directions.sweep(self.edit.source.latent(nz), self.direction, self.frames, self.span,
                                self.edit.edit)

    @property
    def stem(self) -> str:
        return f"{self.edit.stem}-sweep{self.direction}-{self.frames}f"


@dataclass(frozen=True)
class Group:
    """One group of an arithmetic expression: its sign, seeds and latent tokens."""

    sign: int
    seeds: tuple[int, ...]
    tokens: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.seeds) + len(self.tokens)

    def latents(self, nz: int, truncation: float) -> torch.Tensor:
        seeds = [latent(seed, nz) * truncation for seed in self.seeds]
        tokens = [latent_token.decode(token, nz) for token in self.tokens]
        return torch.stack(seeds + tokens)


@dataclass(frozen=True)
class ArithmeticRequest:
    """``"1,2,3 - 4,5,6 + 7,8,9"``: each group's mean latent, combined with the signs."""

    groups: tuple[Group, ...]
    truncation: float = 1.0
    noise_seed: int = 0

    @classmethod
    def parse(cls, expression: object, truncation: object = 1.0, noise_seed: object = 0, *,
              nz: int) -> "ArithmeticRequest":
        groups = []
        for index, term in enumerate(arithmetic.split_expression(expression)):
            groups.append(_read_group(term, f"group {arithmetic.group_letter(index)}", nz))
        return cls(tuple(groups), check_truncation(truncation),
                   check_whole_number(noise_seed, "noise seed", 0, MAX_NOISE_SEED))

    def group_latents(self, nz: int) -> list[torch.Tensor]:
        return [group.latents(nz, self.truncation) for group in self.groups]

    def result(self, nz: int) -> torch.Tensor:
        """The expression's latent (nz,)."""
        return arithmetic.combine(self.group_latents(nz), [group.sign for group in self.groups])

    def grid_latents(self, nz: int) -> torch.Tensor:
        """(9, nz): the result in the middle of its 8 noisy neighbours."""
        return arithmetic.neighbourhood(self.result(nz), seed=self.noise_seed)

    def mean_latents(self, nz: int) -> torch.Tensor:
        """(groups, nz): each group's mean latent, the faces the expression adds and subtracts."""
        return torch.stack([group.mean(0) for group in self.group_latents(nz)])

    @property
    def text(self) -> str:
        """The expression written back in a normal form."""
        parts = []
        for index, group in enumerate(self.groups):
            items = ",".join([*map(str, group.seeds), *group.tokens])
            sign = ("-" if group.sign < 0 else "") if index == 0 else (" - " if group.sign < 0 else " + ")
            parts.append(sign + items)
        return "".join(parts)

    @property
    def stem(self) -> str:
        return f"dcgan-arith-{_short_hash(self.text)}-t{self.truncation:g}-n{self.noise_seed}"


def _read_group(term: arithmetic.Term, name: str, nz: int) -> Group:
    items = [item for item in re.split(r"[,\s]+", term.text) if item]
    stray = next((item for item in items if item[0] in "+-"), None)
    if stray is not None:
        raise ValueError(f"{name}: cannot read {stray[:20]!r}; write groups of seeds joined by + and - with a "
                         f"space on each side of the sign, e.g. {arithmetic.EXAMPLE!r}")
    tokens = tuple(parse_latent_input(item, nz, f"a latent token in {name}") for item in items
                   if latent_token.looks_like_token(item))
    seed_text = " ".join(item for item in items if not latent_token.looks_like_token(item))
    seeds = tuple(parse_seed_list(seed_text, name, limit=MAX_GROUP_SEEDS)) if seed_text else ()
    if len(seeds) + len(tokens) > MAX_GROUP_SEEDS:
        raise ValueError(f"{name}: at most {MAX_GROUP_SEEDS} faces in a group")
    return Group(term.sign, seeds, tokens)


@dataclass(frozen=True)
class CompletionRequest:
    """A generated face (seed or latent token) and the mask (preset or brushed) of what to fill in."""

    source: FaceSource
    mask: torch.Tensor  # bool (64, 64), True = hidden, checked

    @classmethod
    def parse(cls, seed: object, truncation: object, token: object, mask: object, *, nz: int) -> "CompletionRequest":
        return cls(FaceSource.parse(seed, truncation, token, nz=nz), parse_mask(mask))

    @property
    def stem(self) -> str:
        return f"dcgan-complete-{self.source.stem}-{mask_label(self.mask)}"


def mask_label(mask: torch.Tensor) -> str:
    """A preset's name, or a short hash of a brushed mask (for file names)."""
    for name in PRESETS:
        if torch.equal(preset_mask(name), mask):
            return name
    return "m" + _short_hash(encode_mask(mask))


def completion_summary(completion: Any, seconds: float) -> dict[str, Any]:
    """What /complete reports beside the picture: the mask, how well the visible part is kept, the latent."""
    return {
        "mask": mask_label(completion.mask), "hidden_pixels": int(completion.mask.sum()),
        "visible_psnr_db": round(psnr(completion.visible_mse), 2), "steps": completion.projection.steps,
        "seconds": round(seconds, 2), "latent": latent_token.encode(completion.projection.z),
    }
