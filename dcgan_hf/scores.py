"""One evaluation's numbers, and the registry that says how each metric is shown.

:class:`Scores` is the one record of an evaluation: ``python -m dcgan_hf evaluate`` returns
it, training keeps one per evaluation in ``state.json`` (with its epoch and step), and the
model card's table and ``model-index`` are drawn from it. :data:`METRICS` lists the metrics
once: the name a card shows, how a value is written, and, for FID and KID, the number and
arguments the Hub's ``model-index`` carries. A new metric is a field here and a line there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

FEATURES = "InceptionV3 pool3"
MEMORIZATION_FLAG = 0.01  # more than 1 % of samples nearer a training image than any held-out image: flagged


@dataclass(frozen=True, kw_only=True)
class Scores:
    """FID, KID, precision/recall and (with training images) memorization of one evaluation."""

    epoch: int | None = None  # during training: after which epoch, at which step
    step: int | None = None
    fid: float
    kid_mean: float
    kid_std: float
    num_generated: int
    num_real: int
    precision: float | None = None  # improved precision (Kynkäänniemi et al. 2019, k = 3)
    recall: float | None = None
    memorized: float | None = None  # share of samples nearer a training image than any held-out image
    memorization_ratio: float | None = None  # median nearest-training distance, samples / held-out images
    num_train: int | None = None  # training images the memorization check compared with
    seconds: float | None = None  # how long the evaluation took (evaluate), not kept in state.json

    @property
    def protocol(self) -> tuple[int, int]:
        """What makes two FIDs comparable: generated and real image counts."""
        return self.num_generated, self.num_real

    @property
    def memorization_flagged(self) -> bool:
        """More than :data:`MEMORIZATION_FLAG` of the samples nearer a training image than any held-out
        image is: likely copies."""
        return self.memorized is not None and self.memorized > MEMORIZATION_FLAG

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (state.json, ``evaluate --json``): values that were not measured are left out."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``evaluate --json`` writes: these keys, in this order, None where not measured."""
        return {key: getattr(self, key) for key in ("fid", "kid_mean", "kid_std", "num_generated", "num_real",
                                                    "seconds", "precision", "recall", "memorized",
                                                    "memorization_ratio", "num_train")}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Scores":
        """Read :meth:`to_dict`'s JSON back; older records lack the later keys (their defaults)."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def describe(self) -> str:
        """One human line, e.g. ``FID 23.41  KID×1000 12.3 ± 1.1  precision 0.71  recall 0.45  (…)``."""
        parts = [f"FID {self.fid:.2f}", f"KID×1000 {self.kid_mean * 1000:.1f} ± {self.kid_std * 1000:.1f}"]
        if self.precision is not None and self.recall is not None:
            parts.append(f"precision {self.precision:.3f}  recall {self.recall:.3f}")
        if self.memorized is not None and self.memorization_ratio is not None:
            parts.append(f"memorized {self.memorized:.2%} (NN-distance ratio {self.memorization_ratio:.2f} vs "
                         f"{self.num_train} training images)" + (" FLAGGED: likely copies of training images"
                                                                  if self.memorization_flagged else ""))
        took = f", {self.seconds:.0f} s" if self.seconds is not None else ""
        return "  ".join(parts) + f"  ({self.num_generated} generated vs {self.num_real} real{took})"

    def card_rows(self, dataset: str | None = None, dataset_type: str | None = None) -> list[dict[str, Any]]:
        """The model card's rows: the table's text, and for model-index metrics what the Hub reads.

        ``dataset`` names the real images (a Hub dataset id, or a short local path); ``dataset_type``
        is its Hub id when there is one (default: a slug of ``dataset``)."""
        return [row for metric in METRICS if (row := metric.card_row(self, dataset, dataset_type)) is not None]


@dataclass(frozen=True)
class Metric:
    """How one metric is shown: its name, its value as text, and (model-index metrics) its number."""

    key: str
    name: str
    text: Callable[[Scores], str | None]  # None: not measured in this evaluation
    protocol: Callable[[Scores], str]
    score: Callable[[Scores], float] | None = None  # the model-index value; None: card table only
    args: Callable[[Scores], dict[str, Any]] = lambda scores: {}

    def card_row(self, scores: Scores, dataset: str | None, dataset_type: str | None) -> dict[str, Any] | None:
        text = self.text(scores)
        if text is None:
            return None
        row: dict[str, Any] = {"name": self.name, "value": text, "protocol": self.protocol(scores)}
        if self.score is not None:
            row.update(type=self.key, score=float(self.score(scores)), dataset=dataset, dataset_type=dataset_type,
                       args={"num_generated": scores.num_generated, "num_real": scores.num_real,
                             "features": FEATURES, **self.args(scores)})
        return row


def _images(scores: Scores, k: str = "") -> str:
    epoch = f", epoch {scores.epoch}" if scores.epoch is not None and not k else ""
    return f"{scores.num_generated} generated vs {scores.num_real} real images, {FEATURES}{k}{epoch}"


def _both(first: float | None, second: float | None, text: str) -> str | None:
    return None if first is None or second is None else text


METRICS: tuple[Metric, ...] = (
    Metric("fid", "FID", lambda s: f"{s.fid:.2f}", _images, score=lambda s: s.fid),
    Metric("kid", "KID ×1000", lambda s: f"{s.kid_mean * 1000:.2f} ± {s.kid_std * 1000:.2f}", _images,
           score=lambda s: s.kid_mean * 1000, args=lambda s: {"kid_std_x1000": round(float(s.kid_std * 1000), 4)}),
    Metric("precision", "Precision", lambda s: None if s.precision is None or s.recall is None
           else f"{s.precision:.3f}", lambda s: _images(s, ", k = 3")),
    Metric("recall", "Recall", lambda s: None if s.precision is None or s.recall is None else f"{s.recall:.3f}",
           lambda s: _images(s, ", k = 3")),
    Metric("memorization", "Memorization",
           lambda s: _both(s.memorized, s.memorization_ratio, f"{(s.memorized or 0):.2%} of samples"),
           lambda s: f"nearer one of {s.num_train or 0:,} training images than any of the {s.num_real} held-out "
                     f"images is; median distance ratio {(s.memorization_ratio or 0):.2f}"),
)
METRIC_NAMES = {metric.key: metric.name for metric in METRICS if metric.score is not None}
