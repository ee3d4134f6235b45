#!/usr/bin/env python
"""What a run that looks after itself costs: the non-finite guard per step, the watchdog and history per epoch.

    python bench/run_health.py                       # width 32, batch 64, 1 thread, the default recipe
    python bench/run_health.py --ngf 64 --batch 64 --epoch-steps 582

1. **Per step** (the guard): our ``GanStep`` as train.py builds it (fused Adam whose
   ``found_inf`` skips bad halves, finite checks, BN copies, masked EMA), against the same
   step without the guard, and against the code before it (foreach Adam, no guard). Rounds
   of ``--steps`` steps alternate between the three; img/s is the median over rounds.
2. **Per epoch** (the watchdog and the history file): the watchdog's numbers for one epoch
   (pairwise distances of the 64 fixed-seed samples, the epoch's D means), the float16
   history file, and — once per run — the spread of 64 training images; each against the
   time of an epoch of ``--epoch-steps`` steps at the guarded step's speed (582 = the 37,290
   CelebA training faces at batch 64). The samples themselves are rendered for
   ``samples/epoch-N.png`` anyway; their cost is shown apart.

Times are CPU seconds of this process (one thread): robust to the other work on the machine.
Prints a table and the ratios; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_hf import Discriminator, Generator  # noqa: E402
from dcgan_hf.data import synthetic_images  # noqa: E402
from dcgan_hf.epoch_history import write_epoch  # noqa: E402
from dcgan_hf.models import dcgan_init  # noqa: E402
from dcgan_hf.training import artifacts, watchdog  # noqa: E402
from dcgan_hf.training.ema import EMA  # noqa: E402
from dcgan_hf.training.step import GanStep, StepOptions, make_optimizers  # noqa: E402

CELEBA_CACHE_HINT = "../shared/data/celeba64/train"


def build_step(variant: str, args: argparse.Namespace) -> tuple[GanStep, torch.Tensor]:
    """``variant``: "before" (foreach Adam, no guard), "fused" (fused Adam, no guard), "guarded" (train.py's)."""
    generator, discriminator = Generator(100, args.ngf), Discriminator(3, args.ngf)
    init = torch.Generator().manual_seed(0)
    dcgan_init(generator, init)
    dcgan_init(discriminator, init)
    generator.train(), discriminator.train()
    if variant == "before":
        opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    else:
        opt_g, opt_d = make_optimizers(generator, discriminator, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999),
                                       device=torch.device("cpu"), graph_safe=False)
    options = StepOptions(batch_size=args.batch, nz=100, r1_gamma=0.1, r1_every=16, guard=variant == "guarded")
    step = GanStep(generator, discriminator, opt_g, opt_d, options, noise=torch.Generator().manual_seed(1),
                   ema=EMA(generator, 0.999))
    real = torch.rand(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return step, real


def images_per_second(step: GanStep, real: torch.Tensor, first: int, count: int) -> float:
    """Images per CPU-second of this process: with one thread, what the step costs, whatever else the
    machine runs (a training run and other work share these two cores)."""
    started = time.process_time()
    for index in range(first, first + count):
        step(real, index)
    return count * real.shape[0] / (time.process_time() - started)


def per_step(args: argparse.Namespace) -> dict[str, float]:
    steps = {variant: build_step(variant, args) for variant in ("before", "fused", "guarded")}
    for step, real in steps.values():  # warm-up (allocator, oneDNN primitives), with an R1 step
        images_per_second(step, real, 0, 3)
    rates: dict[str, list[float]] = {variant: [] for variant in steps}
    for round_index in range(args.rounds):
        order = list(steps) if round_index % 2 == 0 else list(reversed(steps))
        for variant in order:
            step, real = steps[variant]
            rates[variant].append(images_per_second(step, real, 3 + round_index * args.steps, args.steps))
    return {variant: statistics.median(values) for variant, values in rates.items()}


def guard_work(args: argparse.Namespace) -> dict[str, float]:
    """CPU seconds of the guard's own tensor work in one step (after a real step left gradients behind):
    a direct measure, far less noisy than the difference of two whole-step timings."""
    step, real = build_step("guarded", args)
    step(real, 1)
    guard, d_params, g_params = step.guard, step.d_params, step.g_params
    losses = (torch.ones(()), torch.ones(()), torch.zeros(()))

    def checks() -> None:
        guard.start()
        guard.check_d(losses, d_params)
        guard.check_g(losses[:1], g_params)
        guard.finish()

    masked = seconds(lambda: [step.ema.update(guard.applied()) for _ in range(10)]) / 10
    plain = seconds(lambda: [step.ema.update() for _ in range(10)]) / 10
    return {"checks and BN restore": seconds(lambda: [checks() for _ in range(10)]) / 10,
            "EMA mask": max(0.0, masked - plain)}


def seconds(work: Callable[[], object], repeats: int = 5) -> float:
    """Median CPU seconds of ``work`` (see :func:`images_per_second`)."""
    timings = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        timings.append(time.process_time() - started)
    return statistics.median(timings)


def training_images(count: int) -> np.ndarray:
    """The CelebA training cache when it is here (its real spread), else synthetic stand-ins of the same count."""
    from dcgan_hf.data import load_cache

    folder = Path(__file__).resolve().parent.parent / CELEBA_CACHE_HINT
    if folder.is_dir():
        return load_cache(folder, progress=False).images
    return synthetic_images(count)


def per_epoch(args: argparse.Namespace, epoch_seconds: float) -> dict[str, float]:
    generator = Generator(100, args.ngf)
    dcgan_init(generator, torch.Generator().manual_seed(0))
    shadow = EMA(generator, 0.999).recalibrate()
    samples = artifacts.fixed_seed_samples(shadow)
    images = training_images(args.epoch_steps * args.batch)
    reference = watchdog.reference_spread(images)
    history = [{"step": i, "epoch": i / 12, "d_real": 0.7, "d_fake": 0.3} for i in range(1, 12 * 40)]  # 40 epochs
    earlier = [watchdog.EpochHealth(e, e, 0.9, 0.7, 0.3) for e in range(1, 40)]
    with tempfile.TemporaryDirectory() as folder:
        timings = {
            "watchdog (per epoch)": seconds(lambda: watchdog.check_epoch(
                epoch=40, step=40, samples=samples, reference=reference, history=history, earlier=earlier)),
            "history file (per epoch)": seconds(lambda: write_epoch(folder, shadow, epoch=40, step=40)),
            "training-image spread (once per run)": seconds(lambda: watchdog.reference_spread(images), repeats=3),
            "64 samples for the grid (paid before)": seconds(lambda: artifacts.fixed_seed_samples(shadow)),
        }
    return {name: value for name, value in timings.items()} | {"epoch": epoch_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ngf", type=int, default=32, help="width of both nets (default 32, the CPU runs')")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epoch-steps", type=int, default=582, help="steps per epoch (582: CelebA at batch 64)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"ngf=ndf={args.ngf}, batch {args.batch}, default recipe (R1 0.1 / 16, EMA 0.999)", flush=True)
    rates = per_step(args)
    print("\nper step (median images per CPU-second over rounds):")
    for variant, label in (("before", "before: foreach Adam, no guard"), ("fused", "fused Adam, no guard"),
                           ("guarded", "now: fused Adam + guard")):
        print(f"  {label:<34} {rates[variant]:7.1f} img/s   {rates[variant] / rates['before']:.3f}× before")
    step_seconds = args.batch / rates["guarded"]
    work = guard_work(args)
    print(f"\nthe guard's own work per step (a step ≈ {step_seconds * 1000:.0f} CPU-ms):")
    for name, value in work.items():
        print(f"  {name:<34} {value * 1000:7.2f} ms   {100 * value / step_seconds:.2f} % of a step")
    print(f"  {'total':<34} {sum(work.values()) * 1000:7.2f} ms   {100 * sum(work.values()) / step_seconds:.2f} % "
          f"of a step")
    epoch_seconds = args.epoch_steps * args.batch / rates["guarded"]
    timings = per_epoch(args, epoch_seconds)
    print(f"\nper epoch ({args.epoch_steps} steps ≈ {epoch_seconds:.0f} CPU-s at the guarded speed):")
    for name, value in timings.items():
        if name != "epoch":
            print(f"  {name:<40} {value * 1000:8.1f} ms   {100 * value / epoch_seconds:.3f} % of an epoch")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "guard": work, "timings": timings,
                                         "args": vars(args) | {"json": None}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
