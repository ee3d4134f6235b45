"""Fill in the hidden part of a face (semantic inpainting, Yeh et al. 2017, with a DCGAN on 64×64 CelebA).

Given a face (a photo's 64×64 crop or a generated one) and a mask of the pixels to hide,
the projection (:mod:`dcgan_hf.projection`) searches for the latent whose face matches the
*visible* pixels only: its pixel loss and its discriminator-feature loss are both masked,
the features at every position whose receptive field reaches into the hole left out. The
generated face then fills the hole, blended into the visible pixels over a few pixels at
the seam (a Gaussian ramp outside the hole; inside it every pixel is generated).

Masks are bool (64, 64), True where hidden: presets for the usual experiments
(:data:`PRESETS`), or a brushed image (:func:`mask_from_image`).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
import numpy as np
import torch
from PIL import Image

from .models import Discriminator, Generator
from .projection import ProjectionResult, ProjectionSettings, Projector

RESOLUTION = 64
MIN_VISIBLE = 0.05  # at least 5 % of the face must stay visible: there is nothing to match otherwise
SEAM_SIGMA = 1.5  # pixels: how soft the blend at the seam is
SEAM_KERNEL = 7
_MASK_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


# (top, bottom, left, right) of each preset's hidden box. Bands measured on the mean of 500
# celeba64/val faces (aligned: eyes at row ~32, mouth at ~48).
PRESET_BOXES: dict[str, tuple[int, int, int, int]] = {
    "left": (0, 64, 0, 32),  # the image's left half
    "right": (0, 64, 32, 64),
    "top": (0, 32, 0, 64),
    "bottom": (32, 64, 0, 64),
    "eyes": (25, 39, 12, 52),
    "mouth": (41, 55, 18, 46),
    "centre": (16, 48, 16, 48),  # a 32 × 32 square
}
PRESETS = tuple(PRESET_BOXES)
PRESET_LABELS = {
    "left": "left half", "right": "right half", "top": "top half", "bottom": "bottom half",
    "eyes": "eyes band", "mouth": "mouth band", "centre": "centre square",
}


def preset_mask(name: object) -> torch.Tensor:
    """The bool (64, 64) mask of a preset (True = hidden); ValueError naming the presets otherwise."""
    if not isinstance(name, str) or name not in PRESET_BOXES:
        raise ValueError(f"unknown mask {str(name)[:40]!r}: use one of {', '.join(PRESETS)}")
    top, bottom, left, right = PRESET_BOXES[name]
    mask = torch.zeros(RESOLUTION, RESOLUTION, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` as bool (64, 64) if it hides something and leaves enough visible; ValueError otherwise."""
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (RESOLUTION, RESOLUTION):
        raise ValueError(f"a mask must be {RESOLUTION}×{RESOLUTION}, got {tuple(getattr(mask, 'shape', ()))}")
    mask = mask.bool()
    hidden = int(mask.sum())
    if hidden == 0:
        raise ValueError("the mask hides nothing: brush over (or pick) the part of the face to fill in")
    if hidden > (1 - MIN_VISIBLE) * mask.numel():
        raise ValueError(f"the mask hides {hidden / mask.numel():.0%} of the face: leave at least "
                         f"{MIN_VISIBLE:.0%} visible to complete it from")
    return mask


def mask_from_image(image: Image.Image) -> torch.Tensor:
    """A brushed mask → bool (64, 64): painted (opaque, or bright where there is no alpha) is hidden.

    The drawing is framed like the photos (short side to 64, centre crop) and a 64×64 pixel is
    hidden when at least half of it was painted.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        painted = image.convert("RGBA").getchannel("A")
    else:
        painted = image.convert("L")
    width, height = painted.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = painted.crop((left, top, left + side, top + side)).resize((RESOLUTION, RESOLUTION), Image.BOX)
    return torch.from_numpy(np.asarray(square, dtype=np.uint8) >= 128)


def blend(target: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 (C, 64, 64): ``generated`` in the hole, ``target`` outside, a soft ramp just outside the seam."""
    from torchvision.transforms.functional import gaussian_blur  # imported where used, as in images.grid

    hidden = mask.float()[None, None]
    ramp = gaussian_blur(hidden, [SEAM_KERNEL, SEAM_KERNEL], [SEAM_SIGMA, SEAM_SIGMA])
    alpha = torch.maximum(ramp, hidden)[0]  # every hidden pixel fully generated
    mixed = target.float() * (1 - alpha) + generated.float() * alpha
    return mixed.round().clamp(0, 255).to(torch.uint8)


def masked_error(image: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> float:
    """Mean squared error over the pixels where ``where`` is True, on the [0, 1] scale."""
    difference = ((image.float() - target.float()) / 255.0).pow(2)
    return float(difference[:, where].mean())


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


@dataclass(frozen=True)
class Completion:
    """A completed face: the latent found, its face, and the blend with the visible pixels."""

    projection: ProjectionResult  # z, the generated face, the target, loss, steps
    mask: torch.Tensor  # bool (64, 64), True where hidden
    composite: torch.Tensor  # uint8 (C, 64, 64): the visible pixels with the hole filled

    @property
    def visible_mse(self) -> float:
        """How well the generated face matches what could be seen (pixels in [0, 1])."""
        return masked_error(self.projection.image, self.projection.target, ~self.mask)

    @property
    def masked_target(self) -> torch.Tensor:
        """The face as the search saw it: hidden pixels mid-grey."""
        shown = self.projection.target.clone()
        shown[:, self.mask] = 128
        return shown

    def hidden_psnr(self, truth: torch.Tensor) -> float:
        """PSNR (dB) of the filled hole against ``truth`` (uint8 (C, 64, 64)), hidden pixels only."""
        return psnr(masked_error(self.composite, truth, self.mask))


def completer(
    generator: Generator,
    target: torch.Tensor,
    mask: torch.Tensor,
    discriminator: Discriminator | None = None,
    settings: ProjectionSettings = ProjectionSettings(),
) -> Projector:
    """A :class:`Projector` that sees only the pixels ``mask`` leaves visible (run it, then :func:`finish`)."""
    return Projector(generator, target, discriminator, settings, hidden=check_mask(mask))


def finish(projector: Projector, mask: torch.Tensor, run_all: bool = True) -> Completion:
    """The completion a (masked) projector has found so far; ``run_all`` runs any steps still left."""
    result = projector.result(run_all)
    return Completion(result, mask, blend(result.target, result.image, mask))


def complete(
    generator: Generator,
    target: torch.Tensor,
    mask: torch.Tensor,
    discriminator: Discriminator | None = None,
    settings: ProjectionSettings = ProjectionSettings(),
) -> Completion:
    """Fill the ``mask`` (True = hidden) of the uint8 face ``target`` (C, 64, 64) from the rest of it."""
    return finish(completer(generator, target, mask, discriminator, settings), mask)


# -- masks as text: the page's brush and links carry a mask as 688 characters ----------------------

MASK_PREFIX = "m1."
MASK_TOKEN_CHARS = len(MASK_PREFIX) + math.ceil(RESOLUTION * RESOLUTION / 8 / 3) * 4 - 1  # unpadded base64url


def encode_mask(mask: torch.Tensor) -> str:
    """A bool (64, 64) mask as ``"m1."`` + base64url of its bits, row by row (most significant bit first)."""
    bits = np.packbits(mask.bool().cpu().numpy().reshape(-1))
    return MASK_PREFIX + base64.urlsafe_b64encode(bits.tobytes()).decode("ascii").rstrip("=")


def decode_mask(token: object, name: str = "mask") -> torch.Tensor:
    """The bool (64, 64) mask in a mask token; ValueError with one clear line otherwise (length checked first)."""
    if not isinstance(token, str):
        raise ValueError(f"{name} must be a preset name or a brushed mask (text starting {MASK_PREFIX!r})")
    text = token.strip()
    if len(text) != MASK_TOKEN_CHARS or not text.startswith(MASK_PREFIX):
        raise ValueError(f"{name} is not a brushed mask: expected {MASK_TOKEN_CHARS} characters starting "
                         f"{MASK_PREFIX!r}, got {min(len(text), 10**9):,}")
    body = text[len(MASK_PREFIX):]
    if not _MASK_ALPHABET.fullmatch(body):
        raise ValueError(f"{name} is damaged: not base64url text")
    bits = np.frombuffer(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), dtype=np.uint8)
    return torch.from_numpy(np.unpackbits(bits)[: RESOLUTION * RESOLUTION].reshape(RESOLUTION, RESOLUTION) > 0)


def parse_mask(value: object) -> torch.Tensor:
    """A mask from a form, API call or link: a preset name or a brushed-mask token, checked (:func:`check_mask`)."""
    if isinstance(value, str) and value.strip().startswith(MASK_PREFIX):
        return check_mask(decode_mask(value))
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"choose what to hide: one of {', '.join(PRESETS)}, or brush over the face")
    return check_mask(preset_mask(value.strip() if isinstance(value, str) else value))
