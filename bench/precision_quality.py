#!/usr/bin/env python
"""Quality at equal images: does bf16 autocast on the CPU train as well as fp32? (bench/RESULTS.md §14)

    python bench/precision_quality.py --study-dir RUNS/precision --data ../shared/data/celeba64/train \
        --real ../shared/data/celeba64/val [--seeds 0,1] [--steps 1750]

For each seed and each precision, ``train.py`` with the default recipe at width 32 (the §10
study's R1 row: batch 64, hflip, EMA 0.999, lazy R1 γ 0.1 every 16) trains the same number of
steps, one thread; then FID/KID of 2,000 EMA samples against the validation faces, §10's
protocol. A speed-up only counts if quality at equal images is within seed noise, so the table
prints each seed's ΔFID (bf16 − fp32) beside the seed-to-seed spread of fp32. Each finished
row is kept (``rows.jsonl``, written atomically) and training resumes from its checkpoints,
so an interrupted study loses no finished work.

    python bench/precision_quality.py ... --from RUN/checkpoints/checkpoint-A,RUN/checkpoints/checkpoint-B --steps 400

``--from``: the long run's own question, cheaper — continue each of these checkpoints (of the
default recipe) ``--steps`` more steps once in fp32 and once in bf16, from the identical state
(weights, Adam, EMA, RNG), and compare. Each start is one replicate (two starts instead of two
seeds: a resumed run restores its RNG, so a seed flag would change nothing); the pair differs
only in the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcgan_hf.files import write_atomic  # noqa: E402
from dcgan_hf.layout import RunLayout  # noqa: E402

RECIPE = ["--batch-size", "64", "--hflip", "--ema-decay", "0.999", "--ngf", "32", "--ndf", "32",
          "--r1-gamma", "0.1", "--r1-every", "16"]
PRECISIONS = ("fp32", "bf16")


def train_command(precision: str, seed: int, steps: int, data: str, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *RECIPE, "--seed", str(seed), "--precision", precision,
            "--no-channels-last", "--device", "cpu", "--data", data, "--output-dir", str(out), "--epochs", "1000",
            "--max-steps", str(steps), "--threads", "1", "--workers", "1", "--no-progress", "--log-every", "100",
            "--checkpoint-every", "1", "--keep-checkpoints", "1", "--resume", "latest"]


def continue_command(precision: str, start: Path, steps: int, data: str, out: Path) -> list[str]:
    """train.py resuming ``start`` (copied into ``out``) with the recipe it was saved with, ``steps`` more steps."""
    saved = json.loads((start / "state.json").read_text())
    config, step = saved["config"], saved["progress"]["step"]
    target = out / "checkpoints" / start.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(start, target)
    flags = ["--batch-size", str(config["batch_size"]), "--ngf", str(config["ngf"]), "--ndf", str(config["ndf"]),
             "--ema-decay", str(config["ema_decay"]), "--r1-gamma", str(config["r1_gamma"]),
             "--r1-every", str(config["r1_every"]), "--seed", str(config["seed"]), "--epochs", str(config["epochs"])]
    flags += ["--hflip"] if config["hflip"] else []
    return [sys.executable, str(ROOT / "train.py"), *flags, "--precision", precision, "--no-channels-last",
            "--device", "cpu", "--data", data, "--output-dir", str(out), "--max-steps", str(step + steps),
            "--threads", "1", "--workers", "1", "--no-progress", "--log-every", "100", "--keep-checkpoints", "1",
            "--resume", "latest"]


def load_rows(study: Path) -> list[dict]:
    path = study / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def run_one(study: Path, precision: str, seed: int, steps: int, data: str, real: str, num: int,
            start: Path | None = None) -> dict:
    name = f"{precision}-from{start.name.rsplit('-', 1)[-1]}" if start else f"{precision}-seed{seed}"
    out = study / name
    command = continue_command(precision, start, steps, data, out) if start else \
        train_command(precision, seed, steps, data, out)
    started = time.time()
    with open(study / f"{name}.log", "a") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if code != 0:
        raise SystemExit(f"training {name} failed with exit code {code}; see {study / f'{name}.log'}")
    train_seconds = time.time() - started
    evaluation = subprocess.run(
        [sys.executable, "-m", "dcgan_hf", "evaluate", "--model", str(RunLayout(out).hub), "--real", real,
         "--num", str(num), "--device", "cpu", "--json", str(study / f"{name}.eval.json")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if evaluation.returncode != 0:
        raise SystemExit(f"evaluating {name} failed: {evaluation.stderr[-2000:]}")
    result = json.loads((study / f"{name}.eval.json").read_text())
    return {"name": name, "precision": precision, "seed": seed, "steps": steps, "images": steps * 64,
            "fid": result["fid"], "kid_mean": result["kid_mean"], "kid_std": result["kid_std"],
            "num_generated": result["num_generated"], "train_seconds": round(train_seconds),
            "command": "python train.py " + " ".join(command[2:command.index("--data")])}


def table(rows: list[dict]) -> str:
    by = {(row["precision"], row["seed"]): row for row in rows}
    lines = ["| seed | images | FID fp32 | FID bf16 | ΔFID (bf16 − fp32) | KID×1000 fp32 | KID×1000 bf16 |",
             "|---|---|---|---|---|---|---|"]
    for seed in sorted({row["seed"] for row in rows}):
        fp32, bf16 = by.get(("fp32", seed)), by.get(("bf16", seed))
        cell = lambda row, key: f"{row[key]:.1f}" if row else "…"  # noqa: E731
        kid = lambda row: f"{row['kid_mean'] * 1000:.1f} ± {row['kid_std'] * 1000:.1f}" if row else "…"  # noqa: E731
        delta = f"{bf16['fid'] - fp32['fid']:+.1f}" if fp32 and bf16 else "…"
        images = (fp32 or bf16)["images"]
        lines.append(f"| {seed} | {images:,} | {cell(fp32, 'fid')} | {cell(bf16, 'fid')} | {delta} | {kid(fp32)} "
                     f"| {kid(bf16)} |")
    fp32_fids = [row["fid"] for row in rows if row["precision"] == "fp32"]
    if len(fp32_fids) > 1:
        lines.append(f"\nSeed noise (fp32, max − min over seeds): {max(fp32_fids) - min(fp32_fids):.1f} FID")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study-dir", type=Path, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--real", required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=1750, help="steps of 64 (1750: §10's 112,000 images)")
    parser.add_argument("--num", type=int, default=2000, help="generated images per FID")
    parser.add_argument("--from", dest="starts", default="",
                        help="checkpoints to continue instead of training from scratch (comma-separated)")
    args = parser.parse_args()
    args.study_dir.mkdir(parents=True, exist_ok=True)
    if args.starts:
        return continuation_study(args)
    for seed in (int(s) for s in args.seeds.split(",")):
        for precision in PRECISIONS:
            done = {(row["precision"], row["seed"], row["steps"]) for row in load_rows(args.study_dir)}
            if (precision, seed, args.steps) in done:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {precision} seed {seed} → {args.steps} steps", flush=True)
            row = run_one(args.study_dir, precision, seed, args.steps, args.data, args.real, args.num)
            rows = load_rows(args.study_dir) + [row]
            write_atomic(args.study_dir / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
            print(json.dumps(row), flush=True)
    print(table([row for row in load_rows(args.study_dir) if row["steps"] == args.steps]))
    return 0


def continuation_study(args: argparse.Namespace) -> int:
    """--from: each start continued in fp32 and in bf16 (see the module docstring)."""
    starts = [Path(part) for part in args.starts.split(",") if part]
    for index, start in enumerate(starts):
        for precision in PRECISIONS:
            done = {(row["precision"], row.get("start"), row["steps"]) for row in load_rows(args.study_dir)}
            if (precision, start.name, args.steps) in done:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {precision} from {start.name} → +{args.steps} steps", flush=True)
            row = {**run_one(args.study_dir, precision, index, args.steps, args.data, args.real, args.num, start),
                   "start": start.name}
            rows = load_rows(args.study_dir) + [row]
            write_atomic(args.study_dir / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
            print(json.dumps(row), flush=True)
    rows = [row for row in load_rows(args.study_dir) if row["steps"] == args.steps and row.get("start")]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
