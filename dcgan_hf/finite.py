"""Nothing non-finite is ever written: the check every writer of weights makes first.

Checkpoints, a run's Hub folder (and so every push), ``save_pretrained``/``push_to_hub``,
bundles and the per-epoch history call :func:`require_finite` before the first byte goes
out: a NaN or inf weight would load into a model that serves black or grey images, and the
strict loaders refuse such files anyway.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch


class NonFiniteError(ValueError):
    """Tensors about to be written hold NaN or infinite values; nothing was written."""


def non_finite_keys(tensors: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors in ``tensors`` that hold a NaN or an inf."""
    return sorted(key for key, value in tensors.items()
                  if isinstance(value, torch.Tensor) and value.is_floating_point()
                  and not bool(torch.isfinite(value).all()))


def require_finite(tensors: Mapping[str, Any], what: str) -> None:
    """Raise :class:`NonFiniteError` naming the bad tensors (at most 5) of ``what``, if any."""
    bad = non_finite_keys(tensors)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(f"{what}: NaN or infinite values in {shown}; not written")


def require_all_finite(groups: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """:func:`require_finite` over several named groups of tensors (a checkpoint's files)."""
    for what, tensors in groups:
        require_finite(tensors, what)
