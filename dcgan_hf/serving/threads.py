"""Devices, CPUs and precision for serving: how many threads a batch gets, and whether a GPU keeps
fp16 (only when it changes no pixel of the check seeds by more than HALF_TOLERANCE levels).

Thread policy (measured in bench/sample_cpu.py, bench/RESULTS.md §2): batches of up to
``SMALL_BATCH`` images run on 1 thread; bigger ones on every allowed CPU but one, which is left
to the web server. On 2 vCPUs that is 1 thread for everything. Thread counts never change pixels.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..latent import latents
from ..models import Generator
from ..sampling import render

SMALL_BATCH = 4
# fp16 is kept on a GPU only if no pixel of PRECISION_CHECK_SEEDS moves by more than this
# many uint8 levels from fp32 (1% of the range: invisible, and far below GAN sample noise).
HALF_TOLERANCE = 2
PRECISION_CHECK_SEEDS = tuple(range(16))


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space, read the way the ``spaces`` package reads it."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` reports the host's cores inside a container (a Space may see 16
    and be allowed 2); more OpenMP threads than allowed CPUs is the oversubscription the
    worker exists to avoid.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


@dataclass(frozen=True)
class ThreadPolicy:
    """Intra-op threads for one forward pass: 1 for small batches, all allowed CPUs above."""

    max_threads: int
    small_batch: int = SMALL_BATCH

    @classmethod
    def for_device(cls, device: torch.device) -> "ThreadPolicy":
        """All allowed CPUs but one, which stays free for the web server's threads."""
        if device.type == "cuda":
            return cls(max_threads=1)  # the CPU only launches kernels
        return cls(max_threads=max(1, min(available_cpus(), torch.get_num_threads()) - 1))

    def threads_for(self, batch: int) -> int:
        return 1 if batch <= self.small_batch else self.max_threads

    def describe(self) -> str:
        if self.max_threads == 1:
            return "1 intra-op thread"
        return f"1 thread for ≤ {self.small_batch} images, {self.max_threads} threads above"


@dataclass(frozen=True)
class PrecisionChoice:
    """Which dtype serves, and the measured fp16-vs-fp32 difference that decided it."""

    precision: str
    max_difference: int | None
    note: str


def half_precision_difference(
    generator: Generator, seeds: Sequence[int] = PRECISION_CHECK_SEEDS
) -> tuple[Generator, int]:
    """An fp16 copy of ``generator`` and its max abs uint8 difference from fp32 on ``seeds``."""
    z = latents(list(seeds), generator.nz)
    reference = render(generator, z)
    half = copy.deepcopy(generator).half()
    difference = (render(half, z).int() - reference.int()).abs().max().item()
    return half, int(difference)


def try_half_precision(generator: Generator, tolerance: int = HALF_TOLERANCE) -> tuple[Generator, PrecisionChoice]:
    """The fp16 copy if it keeps every check pixel within ``tolerance`` of fp32, else ``generator``."""
    half, difference = half_precision_difference(generator)
    checked = f"max difference from fp32 {difference}/255 on {len(PRECISION_CHECK_SEEDS)} seeds"
    if difference <= tolerance:
        return half, PrecisionChoice("fp16", difference, f"fp16 ({checked} ≤ {tolerance})")
    return generator, PrecisionChoice("fp32", difference, f"fp32 (fp16 {checked} > {tolerance})")


def choose_precision(
    generator: Generator, device: torch.device, *, zero_gpu: bool = False
) -> tuple[Generator, PrecisionChoice]:
    """fp16 on a GPU when :func:`try_half_precision` allows it; fp32 everywhere else.

    CPUs have no fast fp16 convolution, so they stay fp32. On ZeroGPU the GPU only exists
    inside ``@spaces.GPU`` calls, so the start-up check cannot run: fp32 there too.
    """
    if device.type != "cuda":
        return generator, PrecisionChoice("fp32", None, "fp32 (fp16 is only tried on a GPU)")
    if zero_gpu:
        return generator, PrecisionChoice("fp32", None, "fp32 (ZeroGPU: no GPU at start-up to check fp16)")
    return try_half_precision(generator)
