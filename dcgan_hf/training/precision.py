"""The arithmetic of a training step — fp32 or bf16 autocast, NCHW or NHWC — chosen per machine.

On CUDA, bf16 autocast with channels_last is the fast path (tensor cores) and always chosen
by ``--precision auto``. On a CPU it depends on the chip: one with AVX-512 BF16 or AMX runs
the step about twice as fast under bf16 autocast (bench/RESULTS.md §14), one without emulates
bf16 and is slower, and NHWC helped on one CPU and hurt on another. So ``auto`` on a CPU asks
what the CPU supports, then times a few steps of each candidate on throwaway nets of the
run's shape and keeps the fastest (fp32 unless another is clearly faster). The choice is
stored in every checkpoint, and a resumed run keeps it: the arithmetic of a run never
changes behind its back. Autocast keeps fp32 master weights and optimizer states either way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

log = logging.getLogger(__name__)

# a candidate other than fp32 must beat it by this factor to be chosen: equal speed is no reason
# to change numerics, and a short timing on a shared machine is noisy
MIN_GAIN = 1.10
TIMING_ROUNDS = 3


@dataclass(frozen=True)
class Arithmetic:
    """How the step computes: ``bf16`` autocast or not, NHWC (channels_last) or not."""

    bf16: bool
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.bf16 else None

    @property
    def label(self) -> str:
        return ("bf16 autocast" if self.bf16 else "fp32") + (" + channels_last" if self.channels_last else "")

    def to_dict(self) -> dict[str, Any]:
        return {"precision": "bf16" if self.bf16 else "fp32", "channels_last": self.channels_last}

    @classmethod
    def from_dict(cls, values: Any) -> "Arithmetic | None":
        """What a checkpoint recorded, or None when it recorded nothing usable (older checkpoints)."""
        if not isinstance(values, dict) or values.get("precision") not in ("bf16", "fp32") \
                or not isinstance(values.get("channels_last"), bool):
            return None
        return cls(bf16=values["precision"] == "bf16", channels_last=values["channels_last"])


@dataclass(frozen=True)
class Choice:
    """The arithmetic a run uses and why (logged at start-up)."""

    arithmetic: Arithmetic
    reason: str


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the instructions oneDNN uses for bf16 convolutions and matmuls."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in probes if hasattr(torch.cpu, name))
    except RuntimeError:  # a torch build without the probes' backend
        return False


def choose(
    precision: str,
    channels_last: bool | None,
    device: torch.device,
    *,
    recorded: Arithmetic | None = None,
    time_candidates: Callable[[list[Arithmetic]], dict[Arithmetic, float]] | None = None,
    native_bf16: bool | None = None,
) -> Choice:
    """The arithmetic for ``--precision`` / ``--channels-last`` on ``device``.

    ``recorded``: what the checkpoint being resumed used (``auto`` keeps it on a CPU).
    ``time_candidates``: seconds per step of each candidate (lower is better); only ``auto``
    on a CPU with native bf16 calls it. ``native_bf16``: whether this CPU has it (default: ask).
    """
    on_gpu = device.type == "cuda"
    if precision in ("fp32", "bf16"):
        layout = channels_last if channels_last is not None else on_gpu
        return Choice(Arithmetic(precision == "bf16", layout), f"--precision {precision}")
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if on_gpu:
        layout = channels_last if channels_last is not None else True
        return Choice(Arithmetic(True, layout), "auto: bf16 autocast on CUDA")
    if recorded is not None and (channels_last is None or recorded.channels_last == channels_last):
        return Choice(recorded, "auto: what the resumed checkpoint trained with")
    layouts = [channels_last] if channels_last is not None else [False, True]
    native_bf16 = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if not native_bf16 or time_candidates is None:
        why = "no native bf16 on this CPU" if not native_bf16 else "no timing asked for"
        return Choice(Arithmetic(False, bool(channels_last)), f"auto: fp32 ({why})")
    candidates = [Arithmetic(False, layouts[0])] + [Arithmetic(True, layout) for layout in layouts]
    seconds = time_candidates(candidates)
    return _fastest(candidates, seconds)


def _fastest(candidates: list[Arithmetic], seconds: dict[Arithmetic, float]) -> Choice:
    baseline = candidates[0]
    best = min(candidates, key=lambda c: seconds[c])
    speedup = seconds[baseline] / max(seconds[best], 1e-12)
    timings = ", ".join(f"{c.label} {1000 * seconds[c]:.0f} ms" for c in candidates)
    if best == baseline or speedup < MIN_GAIN:
        return Choice(baseline, f"auto: {baseline.label} (timed per step: {timings}; "
                                f"nothing ≥ {MIN_GAIN:.2f}× faster)")
    return Choice(best, f"auto: {best.label}, {speedup:.2f}× {baseline.label} (timed per step: {timings})")


def time_steps(make_step: Callable[[Arithmetic], Callable[[], Any]], candidates: Iterable[Arithmetic],
               rounds: int = TIMING_ROUNDS) -> dict[Arithmetic, float]:
    """Best CPU seconds per step of each candidate: one warm-up each, then interleaved rounds.

    CPU time of this process, not wall time: on a shared machine the wall clock measures the
    neighbours (a loaded 2-core box stretched a 5 ms step to 5 s), while the process's own CPU
    time measures the step; the best of the rounds drops what cache contention remains.
    """
    steps = {candidate: make_step(candidate) for candidate in candidates}
    for step in steps.values():
        step()
    best = {candidate: float("inf") for candidate in steps}
    for _ in range(rounds):
        for candidate, step in steps.items():
            started = time.process_time()
            step()
            best[candidate] = min(best[candidate], time.process_time() - started)
    return best
