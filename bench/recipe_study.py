#!/usr/bin/env python
"""Budgeted recipe study: every variant gets the same CPU time, then FID/KID on val faces.

    python bench/recipe_study.py --study-dir RUNS/study --data DATA/celeba64/train \
        --real DATA/celeba64/val all          # probe → train → eval → table (resumable)

Why budgets are counted in images: this machine has 2 cores and the long training run
holds one, so wall-clock seconds here depend on whatever else runs. Instead each variant's
speed relative to the baseline is measured (``probe``: interleaved rounds, one thread,
images per CPU-second of the training thread, the ratio of the two rates in the same
round), and a budget of B minutes becomes
``B × 60 × reference_rate × ratio`` images, where ``reference_rate`` is the baseline's
rate with a core to itself. Every variant therefore gets what B minutes on one idle core
buy it, whatever the load while it actually trains.

Each variant is also evaluated at the *smallest* image count of the study (the widest
net's budget), so a knob can be compared at equal images as well as at equal time.

Phases write their results as they go (``probe.json``, ``rows.jsonl``, written
atomically) and skip what is done; an interrupted study loses no finished row, and
training resumes from its checkpoints (``--resume latest``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dcgan_hf.files import write_atomic  # noqa: E402
from dcgan_hf.layout import RunLayout  # noqa: E402
from dcgan_hf.training import checkpoint as checkpoints  # noqa: E402

BASELINE = "base32"
WIDTH_VARIANTS = ("base32", "base48", "base64")
# every knob the study varies is spelled out, so the commands mean the same whatever train.py's defaults
# become (R1 is the default since this study; its baseline ran without)
COMMON = ["--batch-size", "64", "--hflip", "--ema-decay", "0.999", "--seed", "0", "--r1-gamma", "0"]
# name → (flags on top of COMMON, what the row tests)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "base32": (["--ngf", "32", "--ndf", "32"], "baseline: BCE, Adam 2e-4/2e-4, hflip, EMA 0.999, width 32"),
    "base48": (["--ngf", "48", "--ndf", "48"], "width 48"),
    "base64": (["--ngf", "64", "--ndf", "64"], "width 64 (the paper's)"),
    "ttur": (["--ngf", "32", "--ndf", "32", "--lr-g", "1e-4", "--lr-d", "4e-4"], "TTUR: G 1e-4, D 4e-4"),
    "hinge": (["--ngf", "32", "--ndf", "32", "--loss", "hinge"], "hinge loss"),
    "r1": (["--ngf", "32", "--ndf", "32", "--r1-gamma", "0.1", "--r1-every", "16"], "lazy R1 γ=0.1 every 16"),
    "diffaug": (["--ngf", "32", "--ndf", "32", "--augment", "color,translation,cutout"],
                "DiffAugment color,translation,cutout"),
    "ema9995": (["--ngf", "32", "--ndf", "32", "--ema-decay", "0.9995"], "EMA decay 0.9995"),
    "emastart": (["--ngf", "32", "--ndf", "32", "--ema-start", "1000"], "EMA from step 1000"),
    # the baseline again with another seed: how far seed noise alone moves a row
    "base32s1": (["--ngf", "32", "--ndf", "32", "--seed", "1"], "baseline, seed 1 (seed noise)"),
    "r1s1": (["--ngf", "32", "--ndf", "32", "--r1-gamma", "0.1", "--r1-every", "16", "--seed", "1"],
             "lazy R1 γ=0.1 every 16, seed 1"),
}


def flag_value(flags: list[str], name: str, default: str) -> str:
    return flags[flags.index(name) + 1] if name in flags else default


def all_flags(name: str) -> list[str]:
    """COMMON with the variant's flags on top: a flag the variant sets replaces COMMON's, in place."""
    variant = VARIANTS[name][0]
    merged: list[str] = []
    index = 0
    while index < len(COMMON):
        flag = COMMON[index]
        takes_value = index + 1 < len(COMMON) and not COMMON[index + 1].startswith("--")
        if flag not in variant:
            merged += COMMON[index:index + 1 + takes_value]
        index += 1 + takes_value
    return merged + variant


SAME_COST = {"base32s1": "base32", "r1s1": "r1"}  # variants that differ from another only in the seed
SEED_BASELINES = {"0": BASELINE, "1": "base32s1"}  # a row's ΔFID is against the baseline of its own seed

# -- probe: relative speed -------------------------------------------------------------------
def probe_rate(name: str, steps: int = 30, warmup: int = 5) -> float:
    """Images per CPU-second of this variant's training step, built exactly as train.py builds it.

    CPU time of the (single) training thread, not wall time: on a shared 2-core machine
    the wall clock measures the neighbours, while the thread's own CPU time measures the
    step. Batches come from the run's own data pipeline (synthetic images).
    """
    from dcgan_hf.training import TrainConfig
    from dcgan_hf.training.distributed import setup
    from dcgan_hf.training.loop import _build

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig.from_args(all_flags(name) + [
            "--synthetic", str(64 * (steps + warmup)), "--output-dir", out, "--threads", "1", "--no-progress"])
        layout, device = setup("cpu")
        run = _build(config, layout, device)
        batches = run.batches.batches(0)
        for index in range(warmup):
            run.step(next(batches), index)
        started = time.thread_time()
        for index in range(warmup, warmup + steps):
            run.step(next(batches), index)
        seconds = time.thread_time() - started
    return steps * run.batches.batch_size / seconds


def probe(study: Path, names: list[str], rounds: int) -> dict[str, Any]:
    """Speed ratios vs the baseline, measured once per variant and kept in probe.json (variants
    added to the study later are probed then, each round against a fresh baseline measurement)."""
    path = study / "probe.json"
    known = json.loads(path.read_text()) if path.is_file() else {"ratio": {}, "rates": {}}
    for name, twin in SAME_COST.items():  # the same arithmetic as its twin: the same speed by definition
        if name in names and name not in known["ratio"] and twin in known["ratio"]:
            known["ratio"][name] = known["ratio"][twin]
    todo = [name for name in names if name not in known["ratio"]]
    if not todo:
        return known
    ratios: dict[str, list[float]] = {name: [] for name in todo}
    rates: dict[str, list[float]] = {name: [] for name in todo}
    for round_index in range(rounds):
        order = todo if round_index % 2 == 0 else list(reversed(todo))
        base = probe_rate(BASELINE)
        for name in order:
            rate = base if name == BASELINE else probe_rate(name)
            rates[name].append(rate)
            ratios[name].append(rate / base)
            print(f"probe round {round_index + 1}: {name:10s} {rate:6.1f} img/CPU-s  ratio {rate / base:.3f}",
                  flush=True)
    known["ratio"].update({n: statistics.median(v) for n, v in ratios.items()})
    known["rates"].update(rates)
    known.update(rounds=rounds, threads=1, when=time.strftime("%Y-%m-%d %H:%M"), load=os.getloadavg())
    write_atomic(path, json.dumps(known, indent=2) + "\n")
    return known


# -- budgets ---------------------------------------------------------------------------------
def budgets(probed: dict[str, Any], names: list[str], minutes: float, reference_rate: float) -> dict[str, int]:
    """Steps each variant may train: the images ``minutes`` on one idle core buy it."""
    out = {}
    for name in names:
        batch = int(flag_value(all_flags(name), "--batch-size", "64"))
        images = minutes * 60 * reference_rate * probed["ratio"][name]
        out[name] = max(1, round(images / batch))
    return out


def width(name: str) -> str:
    return flag_value(all_flags(name), "--ngf", "64")


def plan_stops(steps: dict[str, int], names: list[str]) -> tuple[dict[str, list[int]], dict[str, dict[int, str]]]:
    """Where each variant is evaluated: its own budget (equal time), the smallest budget among
    nets of its width (equal images for the recipe knobs, which share a width and differ in
    step cost only) and, for the width variants, the smallest budget of the study (equal
    images across widths)."""
    overall = min(steps.values())
    stops: dict[str, list[int]] = {}
    kinds: dict[str, dict[int, str]] = {}
    for name in names:
        same_width = min(steps[n] for n in steps if width(n) == width(name))
        marks: dict[int, list[str]] = {}
        points = [(steps[name], "equal time"), (same_width, f"equal images (width {width(name)})")]
        if name in WIDTH_VARIANTS:  # the knobs share a width: comparing them that early says little
            points.append((overall, "equal images (all widths)"))
        for stop, label in points:
            marks.setdefault(stop, []).append(label)
        marks = {stop: "; ".join(labels) for stop, labels in marks.items()}
        stops[name], kinds[name] = sorted(marks), marks
    return stops, kinds


# -- train -----------------------------------------------------------------------------------
def train_variant(study: Path, name: str, data: str, stops: list[int], threads: int) -> None:
    """Train to each stop in turn (a checkpoint at each), resuming whatever is already there."""
    out = study / name
    log = study / f"{name}.log"
    for stop in sorted(set(stops)):
        if checkpoints.is_complete(_checkpoint(out, stop)) or _finished_beyond(out, stop):
            continue
        command = [sys.executable, str(ROOT / "train.py"), *all_flags(name), "--data", data,
                   "--output-dir", str(out), "--epochs", "1000", "--max-steps", str(stop),
                   "--threads", str(threads), "--workers", "1", "--no-progress", "--log-every", "100",
                   "--checkpoint-every", "0", "--keep-checkpoints", "10", "--resume", "latest"]
        print(f"[{time.strftime('%H:%M:%S')}] train {name} → step {stop}", flush=True)
        with open(log, "a") as handle:
            code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        if code != 0:
            raise SystemExit(f"training {name} failed with exit code {code}; see {log}")


def _checkpoint(out: Path, step: int) -> Path:
    return RunLayout(out).checkpoints / checkpoints.name_for(step)


def _finished_beyond(out: Path, stop: int) -> bool:
    return any(int(p.name.removeprefix(checkpoints.PREFIX)) > stop
               for p in checkpoints.list_checkpoints(RunLayout(out).checkpoints))


# -- eval ------------------------------------------------------------------------------------
def load_rows(study: Path) -> list[dict[str, Any]]:
    path = study / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_row(study: Path, row: dict[str, Any]) -> None:
    """Rewrite rows.jsonl with one more row, atomically: a crash never loses a finished row."""
    rows = load_rows(study) + [row]
    write_atomic(study / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def ema_generator(checkpoint: Path) -> torch.nn.Module:
    """The published (EMA, BN-recalibrated) generator stored in a training checkpoint."""
    from dcgan_hf import Generator

    saved = checkpoints.load(checkpoint)
    config = saved.config
    generator = Generator(config["nz"], config["ngf"], 3)
    weights = dict(saved.ema if saved.ema is not None else saved.generator)
    weights.pop("__ema_updates__", None)
    generator.load_state_dict_strict(weights, source=str(checkpoint))
    return generator.eval()


def eval_variant(study: Path, name: str, stops: list[int], real: str, num: int, extractor: Any,
                 kinds: dict[int, str]) -> None:
    from dcgan_hf.evaluate import evaluate

    done = {(row["name"], row["step"]) for row in load_rows(study)}
    for stop in sorted(set(stops)):
        if (name, stop) in done:
            continue
        checkpoint = _checkpoint(study / name, stop)
        if not checkpoints.is_complete(checkpoint):
            print(f"skip eval {name}@{stop}: not trained yet", flush=True)
            continue
        batch = int(flag_value(all_flags(name), "--batch-size", "64"))
        print(f"[{time.strftime('%H:%M:%S')}] eval {name} @ step {stop}", flush=True)
        result = evaluate(ema_generator(checkpoint), real, num=num, extractor=extractor, progress=False)
        append_row(study, {
            "name": name, "step": stop, "images": stop * batch, "kind": kinds[stop],
            "fid": result.fid, "kid_mean": result.kid_mean, "kid_std": result.kid_std,
            "num_generated": result.num_generated, "num_real": result.num_real,
            "eval_seconds": round(result.seconds, 1), "what": VARIANTS[name][1],
            "command": command({"name": name, "step": stop}),
        })


# -- table -----------------------------------------------------------------------------------
def command(row: dict[str, Any]) -> str:
    """The train.py command of a row, from the variant's flags as they are now (so it still reproduces
    the row after train.py's defaults change)."""
    return "python train.py " + " ".join(all_flags(row["name"])) + f" --max-steps {row['step']}"


def seed_of(name: str) -> str:
    return flag_value(all_flags(name), "--seed", "0")


def table(study: Path, minutes: float, reference_rate: float) -> str:
    """The markdown table; ΔFID is against the baseline trained with the same seed at the same images."""
    rows = load_rows(study)
    probed = json.loads((study / "probe.json").read_text()) if (study / "probe.json").is_file() else {}
    ratios = dict(probed.get("ratio", {}))
    for name, twin in SAME_COST.items():
        ratios.setdefault(name, ratios.get(twin))
    base = {(row["name"], row["images"]): row for row in rows if row["name"] in SEED_BASELINES.values()}
    lines = [f"Budget: {minutes:g} min on one core at the baseline's idle {reference_rate:g} img/s, scaled by "
             "each variant's measured speed ratio; FID/KID from 2,000 EMA samples vs the 4,740 val faces; "
             "ΔFID against the baseline with the same seed at the same images (a seed's baseline: against seed 0's).", "",
             "| variant | what | speed vs base | kind | images | FID | ΔFID vs base | KID×1000 ± | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (list(VARIANTS).index(r["name"]), r["step"])):
        # against the baseline of the row's seed; a seed baseline itself against seed 0's: the seed noise
        versus = SEED_BASELINES.get(seed_of(row["name"])) if row["name"] not in SEED_BASELINES.values() else BASELINE
        ref = base.get((versus, row["images"]))  # when that baseline was evaluated there
        delta = f"{row['fid'] - ref['fid']:+.1f}" if ref and row["name"] != versus else "—"
        ratio = ratios.get(row["name"])
        lines.append(
            f"| {row['name']} | {row['what']} | {ratio:.2f}× | {row['kind']} | {row['images']:,} | {row['fid']:.1f} | "
            f"{delta} | {row['kid_mean'] * 1000:.1f} ± {row['kid_std'] * 1000:.1f} | `{command(row)}` |"
            if ratio is not None else f"| {row['name']} | … |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("probe", "train", "eval", "table", "all"))
    parser.add_argument("--study-dir", type=Path, required=True)
    parser.add_argument("--data", default="")
    parser.add_argument("--real", default="")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--reference-rate", type=float, default=205.0,
                        help="baseline img/s on one idle core (measured before the study)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num", type=int, default=2000, help="generated images per FID")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma list of variants (default: all)")
    args = parser.parse_args()
    study: Path = args.study_dir
    study.mkdir(parents=True, exist_ok=True)
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",") or n == BASELINE]
    torch.set_num_threads(args.threads)
    if args.phase in ("probe", "all", "train", "eval"):
        probed = probe(study, list(VARIANTS), args.rounds)
        steps = budgets(probed, list(VARIANTS), args.budget_minutes, args.reference_rate)
        stops, kinds = plan_stops(steps, names)
        write_atomic(study / "budgets.json", json.dumps({"steps": steps, "stops": stops,
                                                          "minutes": args.budget_minutes,
                                                          "reference_rate": args.reference_rate}, indent=2) + "\n")
        print(json.dumps(steps), flush=True)
    if args.phase in ("train", "all"):
        for name in names:
            train_variant(study, name, args.data, stops[name], args.threads)
    if args.phase in ("eval", "all"):
        from dcgan_hf.metrics import InceptionFeatures

        extractor = InceptionFeatures(device="cpu")
        for name in names:
            eval_variant(study, name, stops[name], args.real, args.num, extractor, kinds[name])
    if args.phase in ("table", "all", "eval"):
        print(table(study, args.budget_minutes, args.reference_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
