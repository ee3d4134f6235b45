"""Face arithmetic, as in the DCGAN paper (Radford et al. 2015, §6.3, Fig. 7).

"Man with glasses − man + woman = woman with glasses": single latents do not add up to
anything stable, but the *means* of small groups of faces that share a trait do. So each
group's latents are averaged, the means are combined with the expression's signs, and the
result is shown as the paper shows it: the face itself in the middle of a 3 × 3 grid, its
8 neighbours drawn from the result plus small uniform noise (±0.25, from a
``torch.Generator`` of its own, so the same expression always gives the same picture).

This module holds the expression's shape (groups and signs) and the latent math; what a
group may contain (seeds, latent tokens) is read by the caller, so seeds keep one grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

MAX_GROUPS = 8
MAX_EXPRESSION_CHARS = 4000  # 8 groups of a few latent tokens (270 characters each) fit
NEIGHBOURS = 8
NEIGHBOUR_NOISE = 0.25  # the paper's "uniform noise ±0.25 added to the resulting vector"
GRID_COLUMNS = 3
CENTRE = 4  # the result's place in the 3 × 3 grid (reading order)
EXAMPLE = "1,2,3 - 4,5,6 + 7,8,9"
# "+" or "−" anywhere, or "-" with a space on both sides: "0-3" stays a range of seeds, and the
# "-" inside a latent token (base64url) never has spaces around it
_OPERATOR = re.compile(r"\s*[+\u2212]\s*|\s+-\s+")


@dataclass(frozen=True)
class Term:
    """One group of the expression with its sign (+1 or -1), as written."""

    sign: int
    text: str


def split_expression(expression: object) -> list[Term]:
    """``"1,2,3 - 4,5,6 + 7,8,9"`` → [+"1,2,3", -"4,5,6", +"7,8,9"]; ValueError with one clear line otherwise.

    The first group may carry a sign of its own; a minus between groups needs a space on
    each side (``1-3`` is the seeds 1 to 3).
    """
    if not isinstance(expression, str):
        raise ValueError(f"an arithmetic expression must be text like {EXAMPLE!r}, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is {len(expression):,} characters long; at most {MAX_EXPRESSION_CHARS:,}")
    text = expression.strip()
    if not text:
        raise ValueError(f"give an expression such as {EXAMPLE!r}")
    if re.search(r"(^|\s)[-+\u2212]$", text):
        raise ValueError(f"the expression ends with {text[-1]!r}: give the group that follows it, e.g. {EXAMPLE!r}")
    sign = 1
    if text[0] in "+-\u2212":
        sign, text = (1 if text[0] == "+" else -1), text[1:].lstrip()
    terms: list[Term] = []
    position = 0
    for match in _OPERATOR.finditer(text):
        terms.append(Term(sign, text[position : match.start()].strip()))
        sign = 1 if match.group().strip() == "+" else -1
        position = match.end()
    terms.append(Term(sign, text[position:].strip()))
    empty = [index for index, term in enumerate(terms) if not term.text]
    if empty:
        raise ValueError(f"group {empty[0] + 1} of {expression.strip()[:60]!r} is empty: write groups of seeds "
                         f"joined by + and - (with spaces around -), e.g. {EXAMPLE!r}")
    if len(terms) > MAX_GROUPS:
        raise ValueError(f"at most {MAX_GROUPS} groups in an expression, got {len(terms)}")
    return terms


def group_letter(index: int) -> str:
    return "ABCDEFGH"[index] if index < MAX_GROUPS else str(index + 1)


def combine(groups: Sequence[torch.Tensor], signs: Sequence[int]) -> torch.Tensor:
    """Σ sign_i · mean(group_i): the latent (nz,) of the expression (computed in float64)."""
    if not groups or len(groups) != len(signs):
        raise ValueError("combine needs one sign per group, and at least one group")
    total = torch.zeros(groups[0].shape[-1], dtype=torch.float64)
    for group, sign in zip(groups, signs):
        if group.dim() != 2 or group.shape[0] == 0:
            raise ValueError(f"each group must be latents (n ≥ 1, nz), got {tuple(group.shape)}")
        total += sign * group.double().mean(0)
    return total.to(groups[0].dtype)


def neighbourhood(z: torch.Tensor, seed: int = 0, noise: float = NEIGHBOUR_NOISE,
                  count: int = NEIGHBOURS) -> torch.Tensor:
    """(count + 1, nz): ``z`` at :data:`CENTRE` and ``count`` neighbours ``z + U(-noise, noise)`` around it."""
    if not 0.0 <= noise <= 2.0:
        raise ValueError(f"the neighbours' noise must be from 0 to 2, got {noise:g}")
    draws = torch.Generator(device="cpu").manual_seed(seed)
    offsets = (torch.rand(count, z.shape[-1], generator=draws, dtype=torch.float64) * 2 - 1) * noise
    around = (z.double()[None] + offsets).to(z.dtype)
    return torch.cat([around[:CENTRE], z[None], around[CENTRE:]])


def figure(mean_faces: Image.Image, signs: Sequence[int], grid: Image.Image, face: int = 64,
           padding: int = 2) -> Image.Image:
    """The paper's layout on one image: each group's mean face with its sign, "=", then the 3 × 3 grid.

    ``mean_faces`` is the row of mean faces as :func:`dcgan_hf.images.grid_image` draws it
    (``padding`` px around every face).
    """
    font = ImageFont.load_default(size=24)
    symbol_width = 28
    count = len(signs)
    width = count * (face + symbol_width) + symbol_width + grid.width
    canvas = Image.new("RGB", (width, grid.height), "white")
    draw = ImageDraw.Draw(canvas)
    top = (grid.height - face) // 2
    x = 0
    for index, sign in enumerate(signs):
        symbol = "-" if sign < 0 else ("+" if index else "")  # the default font has no U+2212
        draw.text((x + symbol_width // 2, grid.height // 2), symbol, fill="black", font=font, anchor="mm")
        x += symbol_width
        left = padding + index * (face + padding)
        canvas.paste(mean_faces.crop((left, padding, left + face, padding + face)), (x, top))
        x += face
    draw.text((x + symbol_width // 2, grid.height // 2), "=", fill="black", font=font, anchor="mm")
    canvas.paste(grid, (x + symbol_width, 0))
    return canvas
