"""The collapse watchdog: once per epoch, the two numbers that show a GAN collapsing.

The long CPU run of bench/RESULTS.md §11 collapsed after 1.2M images: first D won outright
(D(x) → 1.00, D(G(z)) → 0.00), then every sample became the same face, and nothing noticed
until an evaluation five epochs later. Both signs are cheap to watch:

- **diversity**: the mean pairwise L2 distance between the 64 fixed-seed samples (the
  epoch's grid, already rendered for ``samples/``), divided by the same for 64 fixed
  training images: ~0.8–1.0 for a healthy face generator, → 0 when every seed gives one face;
- **D saturation**: the epoch's mean D(x) and D(G(z)), from the loss log the loop keeps anyway.

It trips when the diversity falls below :data:`DIVERSITY_DROP` of the median of the
previous :data:`RECENT_EPOCHS` epochs (relative to its own history: an absolute level
depends on the data and on how far training is; a freshly initialised generator is as
uniform as a collapsed one), or when D(x) ≥ :data:`SATURATED_REAL` and D(G(z)) ≤
:data:`SATURATED_FAKE` over a whole epoch. No extra forward pass of the networks, no
host sync during the epoch: a few milliseconds per epoch (``bench/watchdog.py``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

DIVERSITY_DROP = 0.5  # trip below half the recent median (healthy runs vary by ±15 %, §11's grids)
RECENT_EPOCHS = 5
SATURATED_REAL = 0.99  # D(x) averaged over an epoch; healthy runs sit near 0.7 (R1) to 0.9
SATURATED_FAKE = 0.01
REFERENCE_COUNT = 64  # training images whose spread is the diversity's unit


@dataclass
class EpochHealth:
    """One epoch's watchdog numbers, as ``state.json`` keeps them (``Progress.health``)."""

    epoch: int
    step: int
    diversity: float  # mean pairwise distance of the fixed-seed samples / that of real images
    d_real: float | None  # mean D(x) over the epoch's logged intervals (None: none logged this session)
    d_fake: float | None  # mean D(G(z))
    bad_steps: int = 0  # steps the non-finite guard skipped in this epoch
    tripped: list[str] = field(default_factory=list)  # why it looks collapsed (empty: healthy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EpochHealth":
        return cls(**values)


def mean_pairwise_distance(images: torch.Tensor | np.ndarray) -> float:
    """Mean L2 distance over all pairs of uint8 images (N, …), pixels scaled to [0, 1]."""
    flat = torch.as_tensor(np.asarray(images)).reshape(len(images), -1).float() / 255.0
    if len(flat) < 2:
        return 0.0
    distances = torch.cdist(flat[None], flat[None])[0]
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))


def reference_spread(images: np.ndarray) -> float:
    """The diversity's unit: the mean pairwise distance of :data:`REFERENCE_COUNT` evenly spaced
    training images (uint8 (N, H, W, C), the decoded cache); computed once per run."""
    picks = np.linspace(0, len(images) - 1, min(REFERENCE_COUNT, len(images))).round().astype(int)
    return mean_pairwise_distance(np.asarray(images[picks]))


def epoch_means(history: Sequence[dict[str, float]], epoch: int) -> tuple[float | None, float | None]:
    """Mean D(x) and D(G(z)) over the log rows of ``epoch`` (1-based: rows after epoch-1, up to epoch)."""
    rows = [row for row in history if epoch - 1 < row["epoch"] <= epoch]
    if not rows:
        return None, None
    return (statistics.fmean(row["d_real"] for row in rows), statistics.fmean(row["d_fake"] for row in rows))


def judge(diversity: float, d_real: float | None, d_fake: float | None, earlier: Sequence[EpochHealth]) -> list[str]:
    """Why this epoch looks collapsed, in words with the numbers (empty: it does not)."""
    reasons = []
    recent = [row.diversity for row in earlier[-RECENT_EPOCHS:]]
    if len(recent) >= 2:
        baseline = statistics.median(recent)
        if diversity < DIVERSITY_DROP * baseline:
            reasons.append(f"sample diversity fell to {diversity:.3f} from a median of {baseline:.3f} over the "
                           f"last {len(recent)} epochs (below {DIVERSITY_DROP:g}×)")
    if d_real is not None and d_fake is not None and d_real >= SATURATED_REAL and d_fake <= SATURATED_FAKE:
        reasons.append(f"D saturated: mean D(x) {d_real:.3f}, D(G(z)) {d_fake:.3f} over the epoch "
                       f"(D wins outright; G gets no useful gradient)")
    return reasons


def check_epoch(*, epoch: int, step: int, samples: torch.Tensor, reference: float,
                history: Sequence[dict[str, float]], earlier: Sequence[EpochHealth],
                bad_steps: int = 0) -> EpochHealth:
    """The watchdog's row for the epoch that just ended: ``samples`` are its fixed-seed uint8 images."""
    diversity = mean_pairwise_distance(samples) / max(reference, 1e-12)
    d_real, d_fake = epoch_means(history, epoch)
    return EpochHealth(epoch=epoch, step=step, diversity=diversity, d_real=d_real, d_fake=d_fake,
                       bad_steps=bad_steps, tripped=judge(diversity, d_real, d_fake, earlier))
