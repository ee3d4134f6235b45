#!/usr/bin/env python
"""Steering the bundled model: its latent directions (SeFa vs GANSpace), edits, face arithmetic
and completion, on the CPU. Results: bench/RESULTS.md §13; pictures: docs/steering/.

Part 1 finds the directions both ways and times them, then compares them on 64 seeds: how
much a ±3 sweep changes a face (mean |Δ| of uint8 pixels between -3 and +3), how real the
ends still look to the model's discriminator (its mean logit at ±3 minus at 0), and how
distinct the directions' effects are (mean |cos| between two directions' pixel changes,
lower is more distinct). It writes one sweep picture per method (a row per direction,
seeds 1, 24 and 40 at -3, 0 and +3).

Part 2 times one edit and one completion through ``ModelServer`` (one worker thread, as the
demo runs it), against drawing one face.

Part 3 completes ``--faces`` validation faces (``celeba64/val``: other identities than
training; read from ../shared/data and never written anywhere) with every mask preset and
reports the PSNR of the filled part against the hidden truth — with the discriminator-feature
term (the default) and with the pixel loss alone — beside two baselines: the hole filled with
the mean colour of the visible pixels, and (halves) the visible half mirrored; and the same
for generated faces (seeds 100…).

Part 4 writes the README's pictures with the project's CLI (the bundled model only).

    .venv/bin/python bench/steering.py [--faces 50] [--skip-completion]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from dcgan_hf import Discriminator, Generator, render, sample  # noqa: E402
from dcgan_hf.completion import PRESETS, complete, masked_error, preset_mask, psnr  # noqa: E402
from dcgan_hf.directions import Directions, ganspace, sefa  # noqa: E402
from dcgan_hf.hub.loading import BUNDLED_MODEL  # noqa: E402
from dcgan_hf.images import grid_image, to_float  # noqa: E402
from dcgan_hf.latent import latents  # noqa: E402
from dcgan_hf.photos import photo_from_file  # noqa: E402
from dcgan_hf.serving import GenerateRequest, ModelServer, ThreadPolicy  # noqa: E402
from dcgan_hf.serving.steering import (  # noqa: E402
    MAX_SWEEP_FRAMES,
    ArithmeticRequest,
    CompletionRequest,
    EditRequest,
    SweepRequest,
)

VAL = ROOT.parent / "shared" / "data" / "celeba64" / "val"
DOCS = ROOT / "docs" / "steering"
SWEEP_SEEDS = (1, 24, 40)
STAT_SEEDS = list(range(64))


def val_faces(count: int, folder: Path = VAL) -> list[Path]:
    """``count`` faces spread over the sorted validation folder (the choice bench/demo_features.py makes)."""
    files = sorted(folder.glob("*.jpg"))
    if len(files) < count:
        raise SystemExit(f"need {count} faces in {folder}, found {len(files)}")
    return files[:: len(files) // count][:count]


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def compare_directions(generator: Generator, discriminator: Discriminator) -> dict[str, Directions]:
    found = {"sefa": sefa(generator), "ganspace": ganspace(generator)}
    print("## directions: time to find 10 (1 thread)")
    print(f"  SeFa      {median_seconds(lambda: sefa(generator), 50) * 1000:8.2f} ms (median of 50)")
    print(f"  GANSpace  {median_seconds(lambda: ganspace(generator), 3) * 1000:8.0f} ms (median of 3; 2,048 samples)")
    similarity = (found["sefa"].vectors @ found["ganspace"].vectors.T).abs()
    print("  |cos| of each SeFa direction with the closest GANSpace one:",
          " ".join(f"{value:.2f}" for value in similarity.max(1).values))
    z = latents(STAT_SEEDS, generator.nz)
    with torch.inference_mode():
        base_logit = float(discriminator(to_float(render(generator, z))).mean())
    print("## per direction, 64 seeds: mean |Δ| (-3 → +3, uint8) · D logit at ±3 minus at 0 "
          f"(at 0: {base_logit:.2f}) · mean |cos| of its pixel change with the others'")
    for name, directions in found.items():
        changes, drops = [], []
        for index in range(directions.count):
            ends = render(generator, directions.sweep(z, index, 2)).float()  # rows: -3, +3 per seed
            low, high = ends[0::2], ends[1::2]
            changes.append((high - low).flatten(1))
            with torch.inference_mode():
                logits = discriminator(to_float(ends.to(torch.uint8))).reshape(-1, 2).mean()
            drops.append(float(logits) - base_logit)
        effect = [float(change.abs().mean()) for change in changes]
        unit = [change / change.norm(dim=1, keepdim=True).clamp_min(1e-6) for change in changes]
        overlap = []
        for index in range(directions.count):
            others = [float((unit[index] * unit[other]).sum(1).abs().mean())
                      for other in range(directions.count) if other != index]
            overlap.append(sum(others) / len(others))
        print(f"  {name:9s} effect   " + " ".join(f"{value:5.1f}" for value in effect)
              + f"   mean {statistics.mean(effect):5.1f}")
        print(f"  {name:9s} D drop   " + " ".join(f"{value:5.2f}" for value in drops)
              + f"   mean {statistics.mean(drops):5.2f}")
        print(f"  {name:9s} overlap  " + " ".join(f"{value:5.2f}" for value in overlap)
              + f"   mean {statistics.mean(overlap):5.2f}")
    return found


def sweep_picture(generator: Generator, directions: Directions, path: Path, frames: int = 3) -> None:
    """A row per direction: seeds SWEEP_SEEDS side by side, each at -3, 0, +3 (few frames: small PNGs),
    labelled with the direction."""
    rows = []
    z = latents(list(SWEEP_SEEDS), generator.nz)
    for index in range(directions.count):
        rows.append(render(generator, directions.sweep(z, index, frames)))
    grid = grid_image(torch.cat(rows), nrow=frames * len(SWEEP_SEEDS))
    label_width = 150
    canvas = Image.new("RGB", (grid.width + label_width, grid.height), "white")
    canvas.paste(grid, (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    for index in range(directions.count):
        draw.text((4, 2 + index * 66 + 26), f"{index}: {directions.names[index]}"[:24], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)  # a few hundred kB less
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e3:.0f} kB)")


def serving_times(generator: Generator, discriminator: Discriminator) -> None:
    server = ModelServer.serve(generator, "cpu", policy=ThreadPolicy(max_threads=1), discriminator=discriminator)
    try:
        directions = server.directions
        one_face = median_seconds(lambda: server.generate(GenerateRequest.parse(7, 1, 1.0)), 30)
        edit = EditRequest.parse(7, 1.0, "", "9=2.5, 5=-1", directions=directions, nz=generator.nz)
        edit_time = median_seconds(lambda: server.edit(edit), 30)
        sweep = SweepRequest.parse(7, 1.0, "", "9=2", 0, MAX_SWEEP_FRAMES, directions=directions, nz=generator.nz)
        sweep_time = median_seconds(lambda: server.sweep(sweep), 5)
        groups = " - ".join(f"{start}-{start + 63}" for start in range(0, 512, 64))  # the largest: 8 × 64 seeds
        arithmetic = ArithmeticRequest.parse(groups, nz=generator.nz)
        arithmetic_time = median_seconds(lambda: server.arithmetic(arithmetic), 5)
        request = CompletionRequest.parse(7, 1.0, "", "right", nz=generator.nz)
        completion_time = median_seconds(lambda: server.complete(request.source, request.mask), 5)
    finally:
        server.close()
    print("## ModelServer on the CPU, 1 worker thread (median)")
    print(f"  one face (generate, baseline)    {one_face * 1000:7.1f} ms")
    print(f"  one edit (2 directions)          {edit_time * 1000:7.1f} ms  ({edit_time / one_face:.2f}× one face)")
    print(f"  the largest sweep (30 frames)    {sweep_time * 1000:7.1f} ms  ({sweep_time / one_face:.0f}× one face)")
    print(f"  the largest arithmetic (8 × 64)  {arithmetic_time * 1000:7.1f} ms  ({arithmetic_time / one_face:.0f}× "
          "one face)")
    print(f"  one completion (right half)      {completion_time:7.2f} s   "
          f"({completion_time / one_face:.0f}× one face)")


def mean_fill(face: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    filled = face.float().clone()
    filled[:, mask] = face.float()[:, ~mask].mean(1)[:, None]
    return filled


def mirror_fill(face: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """The visible half mirrored into the hidden one (aligned faces are nearly symmetric); halves only."""
    if torch.equal(mask, preset_mask("left")) or torch.equal(mask, preset_mask("right")):
        return torch.where(mask, face.flip(-1), face).float()
    return None


def completion_quality(generator: Generator, discriminator: Discriminator, faces: int, folder: Path) -> None:
    sets = {"celeba64/val": [photo_from_file(path).pixels for path in val_faces(faces, folder)],
            "generated (seeds 100…)": list(sample(generator, list(range(100, 100 + min(faces, 16)))))}
    for label, targets in sets.items():
        print(f"## completion on {len(targets)} {label} faces: PSNR (dB) of the filled part vs the hidden truth")
        print(f"  {'mask':8s} {'hidden px':>9s} {'pixel+D':>8s} {'worst':>6s} {'pixel':>6s} {'mean fill':>10s} "
              f"{'mirror':>7s} {'visible':>8s} {'s/face':>7s}")
        for name in PRESETS:
            mask = preset_mask(name)
            scores, pixel_only, baselines, mirrored, visible, seconds = [], [], [], [], [], []
            for target in targets:
                started = time.perf_counter()
                completion = complete(generator, target, mask, discriminator)
                seconds.append(time.perf_counter() - started)
                scores.append(completion.hidden_psnr(target))
                visible.append(psnr(completion.visible_mse))
                pixel_only.append(complete(generator, target, mask).hidden_psnr(target))
                baselines.append(psnr(masked_error(mean_fill(target, mask), target, mask)))
                mirror = mirror_fill(target, mask)
                if mirror is not None:
                    mirrored.append(psnr(masked_error(mirror, target, mask)))
            mirror_text = f"{statistics.mean(mirrored):7.2f}" if mirrored else f"{'—':>7s}"
            print(f"  {name:8s} {int(mask.sum()):9d} {statistics.mean(scores):8.2f} {min(scores):6.1f} "
                  f"{statistics.mean(pixel_only):6.2f} {statistics.mean(baselines):10.2f} {mirror_text} "
                  f"{statistics.mean(visible):8.2f} {statistics.mean(seconds):7.2f}", flush=True)


def readme_pictures() -> None:
    """The README's pictures, made with the CLI from the bundled model."""
    DOCS.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "dcgan_hf", "generate"]
    commands = {
        "sweep-smile.png": ["--seeds", "1,24,52", "--sweep", "smile", "--frames", "7"],
        "edit.png": ["--seeds", "17,29,44,61", "--edit", "dark hair=2", "--edit", "smile=2", "--nrow", "4"],
        "plain.png": ["--seeds", "17,29,44,61", "--nrow", "4"],
        "arithmetic.png": ["--arithmetic", "0,27,47 - 1,15,49 + 21,25,34"],  # PageState's default groups
        "completion.png": ["--seeds", "3,21,52", "--complete", "right"],
    }
    for name, arguments in commands.items():
        subprocess.run(cli + arguments + ["--out", str(DOCS / name)], check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=50, help="validation faces per mask preset (default 50)")
    parser.add_argument("--skip-completion", action="store_true", help="leave out part 3 (the slow one)")
    parser.add_argument("--completion-only", action="store_true", help="part 3 alone")
    parser.add_argument("--val", type=Path, default=VAL, help=f"validation faces (default {VAL})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = Generator.from_pretrained(BUNDLED_MODEL)
    discriminator = Discriminator.from_pretrained(BUNDLED_MODEL, subfolder="discriminator")
    print(f"bundled model: {generator.config}; its directions: {', '.join(generator.directions.names)}")
    if not args.completion_only:
        found = compare_directions(generator, discriminator)
        sweep_picture(generator, generator.directions, DOCS / "sefa-sweeps.png")
        sweep_picture(generator, found["ganspace"], DOCS / "ganspace-sweeps.png")
        serving_times(generator, discriminator)
        readme_pictures()
    if not args.skip_completion:
        completion_quality(generator, discriminator, args.faces, args.val)
    return 0


if __name__ == "__main__":
    sys.exit(main())
