#!/usr/bin/env python
"""Does ``--init-from`` the bundled model continue its run without a stall? (bench/RESULTS.md §11)

    python bench/continue_bundled.py --data ../shared/data/celeba64/train --real ../shared/data/celeba64/val \
        --out RUNS/continue [--images 50000] [--model dcgan_hf/pretrained/celeba64]

Trains the default recipe (the model's own widths, R1 on, as it was trained) from the model's
generator and discriminator with fresh optimizers for ``--images`` more images, then compares
FID/KID at 2,000 samples (seeds 0…1999, the run's in-training protocol) before and after. A
stall shows as a worse FID after, and in the log as D(x) or D(G(z)) running off to 0 or 1 (the
no-R1 → R1 switch of §11 did that within 50 steps); both are printed. The "before" figure is
measured here too unless ``--before FID`` gives it (the run's own evaluation of the same
generator at the same protocol).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcgan_hf.hub import BUNDLED_MODEL  # noqa: E402
from dcgan_hf.layout import RunLayout  # noqa: E402

BATCH = 64
STATS = re.compile(r"step (\d+) .*D\(x\) ([0-9.]+)\s+D\(G\(z\)\) ([0-9.]+)")


def evaluate(model: Path, real: str, num: int, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "dcgan_hf", "evaluate", "--model", str(model), "--real", real,
                    "--num", str(num), "--json", str(out)], check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--real", required=True)
    parser.add_argument("--out", type=Path, required=True, help="a run folder (outside the work tree)")
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--before", type=float, default=None, help="the model's FID at this protocol, if known")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    config = json.loads((args.model / "config.json").read_text())
    disc = json.loads((args.model / "discriminator" / "config.json").read_text())
    steps = -(-args.images // BATCH)
    command = [sys.executable, str(ROOT / "train.py"), "--init-from", str(args.model), "--data", args.data,
               "--output-dir", str(args.out), "--batch-size", str(BATCH), "--ngf", str(config["ngf"]),
               "--ndf", str(disc["ndf"]), "--nz", str(config["nz"]), "--hflip", "--ema-decay", "0.999",
               "--epochs", "300", "--max-steps", str(steps), "--threads", "1", "--workers", "1", "--no-progress",
               "--precision", args.precision, "--log-every", "25", "--resume", "latest"]
    print(" ".join(command[1:]), flush=True)
    log = args.out.with_suffix(".log")
    with open(log, "a") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    rows = [(int(step), float(real), float(fake)) for step, real, fake in STATS.findall(log.read_text())]
    before = args.before if args.before is not None else \
        evaluate(args.model, args.real, args.num, args.out.with_name(args.out.name + "-before.json"))["fid"]
    after = evaluate(RunLayout(args.out).hub, args.real, args.num, args.out.with_name(args.out.name + "-after.json"))
    print(f"{steps * BATCH:,} images from {args.model}: FID {before:.2f} → {after['fid']:.2f} "
          f"(KID×1000 {after['kid_mean'] * 1000:.1f} ± {after['kid_std'] * 1000:.1f}; {args.num} samples)")
    if rows:
        reals, fakes = [r for _, r, _ in rows], [f for _, _, f in rows]
        print(f"D(x) {min(reals):.2f}–{max(reals):.2f}, D(G(z)) {min(fakes):.2f}–{max(fakes):.2f} over "
              f"{len(rows)} log lines (steps {rows[0][0]}–{rows[-1][0]})")
    return 0 if after["fid"] <= before else 1


if __name__ == "__main__":
    sys.exit(main())
