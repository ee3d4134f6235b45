#!/usr/bin/env python
"""Training speed: the classic pytorch/examples step vs our step vs our whole loop, one run.

    python bench/train_step.py                 # CUDA if present (batch 128 and 64), else a small CPU config
    python bench/train_step.py --device cpu --ngf 64 --batch-sizes 64

Prints img/s for each and the ratios the issue asks for: our step over the classic fp32
eager step (target ≥ 3× on a GPU at batch 128), and our end-to-end loop (data gathered,
flipped and normalised on the device) over our step alone (target ≥ 0.9). Synthetic images,
no files read. Writes the table as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_hf import Discriminator, Generator  # noqa: E402
from dcgan_hf.models import dcgan_init  # noqa: E402
from dcgan_hf.training import TrainConfig, train  # noqa: E402
from dcgan_hf.training.ema import EMA  # noqa: E402
from dcgan_hf.training.step import GanStep, StepOptions, make_optimizers  # noqa: E402


# -- the baseline: pytorch/examples dcgan/main.py, as written there ---------------------------------
class ClassicGenerator(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int = 3) -> None:
        super().__init__()
        self.main = Generator(nz, ngf, nc).main  # identical layers; the examples' class body


class ClassicDiscriminator(nn.Module):
    def __init__(self, ndf: int, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(*Discriminator(nc, ndf).main, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def classic_step_fn(nz: int, ngf: int, ndf: int, batch: int, device: torch.device):
    """One pytorch/examples iteration: D on real, D on fake, G; fp32, eager, Sigmoid + BCELoss."""
    netG, netD = ClassicGenerator(nz, ngf).to(device), ClassicDiscriminator(ndf).to(device)
    netG.forward = netG.main.forward  # type: ignore[method-assign]
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1

    def step() -> None:
        netD.zero_grad()
        label = torch.full((batch,), 1.0, device=device)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        noise = torch.randn(batch, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        optimizerG.step()

    return step


def our_step_fn(nz: int, ngf: int, ndf: int, batch: int, device: torch.device):
    """Our GanStep exactly as train.py builds it on this device (graph + bf16 + NHWC on CUDA)."""
    on_gpu = device.type == "cuda"
    fmt = torch.channels_last if on_gpu else torch.contiguous_format
    G, D = Generator(nz, ngf), Discriminator(3, ndf)
    init = torch.Generator().manual_seed(0)
    dcgan_init(G, init)
    dcgan_init(D, init)
    G, D = G.to(device, memory_format=fmt).train(), D.to(device, memory_format=fmt).train()
    opt_g, opt_d = make_optimizers(G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), device=device, graph_safe=on_gpu)
    options = StepOptions(batch_size=batch, nz=nz, autocast_dtype=torch.bfloat16 if on_gpu else None,
                          channels_last=on_gpu, cuda_graph=on_gpu)
    step = GanStep(G, D, opt_g, opt_d, options, noise=torch.Generator(device=device).manual_seed(1), ema=EMA(G, 0.999))
    real = (torch.rand(batch, 3, 64, 64, device=device) * 2 - 1).contiguous(memory_format=fmt)
    return (lambda: step(real, 1)), step  # step 1: never an R1 step


def images_per_second(step, batch: int, device: torch.device, warmup: int, iterations: int, repeats: int = 3) -> float:
    """Median over ``repeats`` timed blocks of ``iterations`` steps, after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(batch * iterations / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def end_to_end(nz: int, ngf: int, ndf: int, batch: int, device: torch.device, images: int, epochs: int) -> dict:
    """train() itself on synthetic images: loop rate (from its logs) and wall time per epoch."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(synthetic=images, output_dir=out, epochs=epochs, batch_size=batch, nz=nz, ngf=ngf,
                             ndf=ndf, device=str(device), progress=False, log_every=10**9, checkpoint_every=0,
                             threads=0)
        start = time.perf_counter()
        result = train(config)
        wall = time.perf_counter() - start
    rows = result.progress.history  # one row per epoch (log_every is huge): the loop's own img/s
    return {"loop_img_per_s": max((row["img_per_s"] for row in rows[1:] or rows), default=0.0),  # 0: stopped early
            "wall_s_per_epoch": wall / epochs, "graphed": "CUDA graph" in str(result)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default=None, help="default: 128,64 on CUDA, 32 on the CPU")
    parser.add_argument("--ngf", type=int, default=None, help="default: 64 on CUDA, 32 on the CPU")
    parser.add_argument("--iterations", type=int, default=None, help="timed steps per block")
    parser.add_argument("--epoch-images", type=int, default=None, help="synthetic images per epoch (end-to-end)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    on_gpu = device.type == "cuda"
    batches = [int(b) for b in (args.batch_sizes or ("128,64" if on_gpu else "32")).split(",")]
    ngf = args.ngf or (64 if on_gpu else 32)
    iterations = args.iterations or (200 if on_gpu else 5)
    epoch_images = args.epoch_images or (37_290 if on_gpu else 640)
    card = torch.cuda.get_device_name(device) if on_gpu else f"CPU {platform.processor() or platform.machine()}"
    print(f"device: {card}; torch {torch.__version__}; ngf=ndf={ngf}, nz=100")
    rows = []
    for batch in batches:
        classic = images_per_second(classic_step_fn(100, ngf, ngf, batch, device), batch, device,
                                    warmup=5 if on_gpu else 1, iterations=iterations)
        fn, step = our_step_fn(100, ngf, ngf, batch, device)
        ours = images_per_second(fn, batch, device, warmup=10 if on_gpu else 1, iterations=iterations)
        loop = end_to_end(100, ngf, ngf, batch, device, epoch_images, epochs=3 if on_gpu else 2)
        row = {"batch": batch, "classic_img_s": classic, "step_img_s": ours, "graphed": step.graphed,
               **loop, "step_vs_classic": ours / classic, "loop_vs_step": loop["loop_img_per_s"] / ours}
        rows.append(row)
        print(f"batch {batch:4d}: classic fp32 eager {classic:9.0f} img/s | our step {ours:9.0f} img/s "
              f"({'graph' if step.graphed else 'eager'}) | our loop {loop['loop_img_per_s']:9.0f} img/s, "
              f"{loop['wall_s_per_epoch']:.2f} s/epoch of {epoch_images} | step/classic {row['step_vs_classic']:.2f}× "
              f"| loop/step {row['loop_vs_step']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": card, "ngf": ngf, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
