"""DiffAugment: the same random, differentiable augmentation for real and fake images.

With 37k faces, D memorises the training set after a few dozen epochs and its gradients
stop helping G. Augmenting *everything* D sees (reals, fakes in D's step and fakes in G's
step) keeps D from overfitting without teaching G to produce augmented images, because
the augmentation is differentiable and applied on both sides (Zhao et al. 2020,
arXiv:2006.10738; ops and strengths as in mit-han-lab/data-efficient-gans).

Randomness comes only from the explicit ``torch.Generator`` passed in (the run's noise
generator, saved in checkpoints), so resuming is exact, and every op is a plain tensor op
with no host sync, so a CUDA graph can record it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the image each way (8 px at 64×64)
CUTOUT_RATIO = 0.5  # erase a square half the image's side


def _uniform(x: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """One U[0, 1) number per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype, generator=noise)


def color(x: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """Brightness ±0.5, saturation ×[0, 2), contrast ×[0.5, 1.5) (images in [-1, 1])."""
    x = x + (_uniform(x, noise) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, noise) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, noise) + 0.5) + mean


def translation(x: torch.Tensor, noise: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by a random whole number of pixels, filling with zeros (mid-grey)."""
    count, _, height, width = x.shape
    shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_h, shift_h + 1, (count, 1, 1), device=x.device, generator=noise)
    dx = torch.randint(-shift_w, shift_w + 1, (count, 1, 1), device=x.device, generator=noise)
    batch, rows, cols = torch.meshgrid(
        torch.arange(count, device=x.device), torch.arange(height, device=x.device),
        torch.arange(width, device=x.device), indexing="ij")
    rows = torch.clamp(rows + dy + 1, 0, height + 1)  # +1: index into the zero-padded image
    cols = torch.clamp(cols + dx + 1, 0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, noise: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a random square (half the side) in each image."""
    count, _, height, width = x.shape
    size_h, size_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + (1 - size_h % 2), (count, 1, 1), device=x.device, generator=noise)
    left = torch.randint(0, width + (1 - size_w % 2), (count, 1, 1), device=x.device, generator=noise)
    batch, rows, cols = torch.meshgrid(
        torch.arange(count, device=x.device), torch.arange(size_h, device=x.device),
        torch.arange(size_w, device=x.device), indexing="ij")
    rows = torch.clamp(rows + top - size_h // 2, 0, height - 1)
    cols = torch.clamp(cols + left - size_w // 2, 0, width - 1)
    mask = torch.ones(count, height, width, device=x.device, dtype=x.dtype)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


OPS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` → the op names, in order; ``""`` → none. Unknown names raise."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(OPS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"augmentation policy {policy!r} names an op twice")
    return names


def diff_augment(x: torch.Tensor, policy: Sequence[str], noise: torch.Generator,
                 channels_last: bool = False) -> torch.Tensor:
    """Apply the named ops in order; the identity (same tensor) for an empty policy."""
    for name in policy:
        x = OPS[name](x, noise)
    if not policy:
        return x
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
