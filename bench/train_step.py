#!/usr/bin/env python
"""Training speed: the classic pytorch/examples step vs our step vs our whole loop, one run.

    python bench/train_step.py                 # CUDA if present (batch 128 and 64), else a small CPU config
    python bench/train_step.py --device cpu --ngf 64 --batch-sizes 64

Prints img/s for each and the ratios the issue asks for: our step over the classic fp32
eager step (target ≥ 3× on a GPU at batch 128), and our end-to-end loop (data gathered,
flipped and normalised on the device) over our step alone (target ≥ 0.9). Synthetic images,
no files read. Writes the table as JSON with --json.

    python bench/train_step.py --cpu-study [--compile] [--layouts]   # the CPU throughput study

The CPU study (bench/RESULTS.md §14) measures, against today's fp32 eager step of the default
recipe (width 32, batch 64, lazy R1 every 16 steps, EMA; one thread), bf16 autocast and
channels_last on the CPU, ``torch.compile`` of the nets (inductor, ``--compile``: minutes of
compiling; R1 steps stay eager, since compiled graphs do not double-backward), the whole loop
end to end (fp32 vs what ``--precision auto`` picks here) and, with ``--layouts``, the process
layout on the machine's cores (1 process × all threads, torchrun ranks × 1 thread, 1 thread).
Rounds are interleaved and the best of each variant is kept: on a shared machine a
neighbour's burst should not decide. Step rates are images per CPU-second of this process (one
intra-op thread: what a core buys, whatever else the machine runs); the end-to-end loop and the
layouts are wall-clock rates, so run those on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
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
from dcgan_hf.training.precision import cpu_has_native_bf16  # noqa: E402
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


# -- the CPU study ------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
CPU_VARIANTS = {  # name → (bf16 autocast, channels_last, torch.compile)
    "fp32 eager (today)": (False, False, False),
    "fp32 + channels_last": (False, True, False),
    "bf16 autocast": (True, False, False),
    "bf16 + channels_last": (True, True, False),
}
COMPILED_VARIANTS = {"fp32 + compile": (False, False, True), "bf16 + channels_last + compile": (True, True, True)}


def default_recipe_step(bf16: bool, channels_last: bool, compiled: bool, *, ngf: int, batch: int):
    """Our step with the default recipe (lazy R1 γ 0.1 every 16, EMA 0.999) as train.py builds it on the CPU."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G, D = Generator(100, ngf), Discriminator(3, ngf)
    init = torch.Generator().manual_seed(0)
    dcgan_init(G, init)
    dcgan_init(D, init)
    G, D = G.to(memory_format=fmt).train(), D.to(memory_format=fmt).train()
    opt_g, opt_d = make_optimizers(G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), device=torch.device("cpu"),
                                   graph_safe=False)
    options = StepOptions(batch_size=batch, nz=100, r1_gamma=0.1, r1_every=16,
                          autocast_dtype=torch.bfloat16 if bf16 else None, channels_last=channels_last)
    ema = EMA(G, 0.999)
    if compiled:  # the modules, not the step: R1's double backward cannot go through a compiled graph
        G, D = torch.compile(G), torch.compile(D)
    step = GanStep(G, D, opt_g, opt_d, options, noise=torch.Generator().manual_seed(1), ema=ema)
    real = (torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1).contiguous(
        memory_format=fmt)
    return step, real


def step_study(variants: dict, *, ngf: int, batch: int, rounds: int, block: int, with_r1: bool) -> dict[str, float]:
    """Best img/s of each variant over interleaved rounds; a block of ``block`` steps includes one R1 step
    when ``with_r1`` (as one in 16 steps of a run does), else none."""
    built = {}
    for name, (bf16, channels_last, compiled) in variants.items():
        started = time.perf_counter()
        step, real = default_recipe_step(bf16, channels_last, compiled, ngf=ngf, batch=batch)
        for index in range(1, 4):
            step(real, index)  # warm-up (and, compiled, the compile)
        built[name] = (step, real)
        print(f"  built {name} in {time.perf_counter() - started:.1f} s", flush=True)
    best = {name: 0.0 for name in built}
    for round_index in range(rounds):
        order = list(built) if round_index % 2 == 0 else list(reversed(built))
        for name in order:
            step, real = built[name]
            started = time.process_time()  # CPU seconds of this process: a busy neighbour does not count
            for index in range(block):
                step(real, index if with_r1 else index * 16 + 1)
            best[name] = max(best[name], batch * block / (time.process_time() - started))
    return best


def loop_study(*, ngf: int, batch: int, rounds: int, images: int) -> dict[str, dict]:
    """train() end to end on synthetic images (data gathered, flipped, normalised per step), fp32 vs auto.

    The rate is images over the CPU seconds of the whole call — start-up, auto's timing probe, both
    epochs, EMA, the epoch-end grid and history file included — so a busy neighbour does not count.
    """
    best: dict[str, dict] = {}
    epochs = 2
    for round_index in range(rounds):
        for precision in (("fp32", "auto") if round_index % 2 == 0 else ("auto", "fp32")):
            with tempfile.TemporaryDirectory() as out:
                config = TrainConfig(synthetic=images, output_dir=out, epochs=epochs, batch_size=batch, ngf=ngf,
                                     ndf=ngf, hflip=True, precision=precision, threads=1, progress=False,
                                     log_every=10**9, checkpoint_every=0)
                started, cpu_started = time.perf_counter(), time.process_time()
                result = train(config)
                cpu, wall = time.process_time() - cpu_started, time.perf_counter() - started
            rate = result.progress.step * batch / cpu
            if rate > best.get(precision, {}).get("img_per_s", 0.0):
                best[precision] = {"img_per_s": rate, "arithmetic": result.arithmetic, "cpu_s": cpu, "wall_s": wall}
    return best


def layout_study(*, ngf: int, batch: int, steps: int) -> dict[str, float]:
    """train.py as separate processes on synthetic images: how to spend the machine's cores."""
    cores = len(os.sched_getaffinity(0))
    common = ["--synthetic", str(batch * cores * (steps + 20)), "--batch-size", str(batch), "--ngf", str(ngf),
              "--ndf", str(ngf), "--hflip", "--epochs", "1", "--max-steps", str(steps), "--log-every", "10",
              "--no-progress", "--checkpoint-every", "0", "--precision", "bf16", "--no-channels-last"]
    layouts = {
        f"1 process × {cores} threads": [sys.executable, "train.py", "--threads", str(cores)],
        f"torchrun {cores} ranks × 1 thread": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               f"--nproc-per-node={cores}", "train.py", "--threads", "1"],
        "1 process × 1 thread (other cores idle)": [sys.executable, "train.py", "--threads", "1"],
    }
    rates = {}
    for name, command in layouts.items():
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(command + common + ["--output-dir", out], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=1800)
        found = [float(x) for x in re.findall(r"([0-9.]+) img/s", done.stdout + done.stderr)]
        rates[name] = max(found[1:] or found or [0.0])  # the loop's own rate, all ranks' images counted
        print(f"  {name}: {rates[name]:.0f} img/s (exit {done.returncode})", flush=True)
    return rates


def cpu_study(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    ngf, batch = args.ngf or 32, 64
    cpu = cpu_name()
    print(f"CPU study: {cpu}; native bf16: {cpu_has_native_bf16()}; torch {torch.__version__}; "
          f"ngf=ndf={ngf}, batch {batch}, 1 thread; load average {os.getloadavg()[0]:.2f}", flush=True)
    report: dict = {"cpu": cpu, "native_bf16": cpu_has_native_bf16(), "ngf": ngf, "batch": batch}
    if not args.skip_steps:
        steps = step_study(CPU_VARIANTS, ngf=ngf, batch=batch, rounds=args.rounds, block=16, with_r1=True)
        report["steps"] = steps
        print_ratios("step, default recipe (blocks of 16 steps, one with R1)", steps, "fp32 eager (today)")
    if args.compile:
        compiled = step_study({"fp32 eager (today)": CPU_VARIANTS["fp32 eager (today)"],
                               "bf16 + channels_last": CPU_VARIANTS["bf16 + channels_last"], **COMPILED_VARIANTS},
                              ngf=ngf, batch=batch, rounds=args.rounds, block=8, with_r1=False)
        report["compiled_steps"] = compiled
        print_ratios("steps without R1, eager vs torch.compile", compiled, "fp32 eager (today)")
    loops = loop_study(ngf=ngf, batch=batch, rounds=2, images=args.epoch_images or 64 * 150)
    report["loop"] = loops
    print_ratios("train() end to end (images per CPU-second)", {k: v["img_per_s"] for k, v in loops.items()}, "fp32")
    for name, row in loops.items():
        print(f"  {name}: {row['arithmetic']}")
    if args.layouts:
        report["layouts"] = layout_study(ngf=ngf, batch=batch, steps=120)
        print_ratios("process layout (bf16, train.py processes)", report["layouts"],
                     next(k for k in report["layouts"] if k.startswith("1 process × 1")))
    report["load_after"] = os.getloadavg()[0]
    return report


def print_ratios(title: str, rates: dict[str, float], baseline: str) -> None:
    print(f"{title}:")
    for name, rate in rates.items():
        print(f"  {name:42s} {rate:7.0f} img/s  {rate / rates[baseline]:5.2f}×")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-study", action="store_true", help="the CPU throughput study (see above)")
    parser.add_argument("--compile", action="store_true", help="CPU study: add torch.compile variants (slow)")
    parser.add_argument("--layouts", action="store_true", help="CPU study: add the process-layout runs")
    parser.add_argument("--rounds", type=int, default=5, help="CPU study: interleaved rounds")
    parser.add_argument("--skip-steps", action="store_true", help="CPU study: leave out the step variants")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default=None, help="default: 128,64 on CUDA, 32 on the CPU")
    parser.add_argument("--ngf", type=int, default=None, help="default: 64 on CUDA, 32 on the CPU")
    parser.add_argument("--iterations", type=int, default=None, help="timed steps per block")
    parser.add_argument("--epoch-images", type=int, default=None, help="synthetic images per epoch (end-to-end)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cpu_study:
        report = cpu_study(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0
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
