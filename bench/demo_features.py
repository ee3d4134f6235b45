"""The demo's new work on the CPU: projection quality and time, and the worst case of every
call that ``spaces.GPU`` wraps (what its ``duration=`` is sized from).

Part 1 projects real faces (``celeba64/val``: other identities than training) with the
model's projection settings, against the baseline the projection starts from (the best of
its seeded candidates, no optimisation), and reports MSE and PSNR (pixels in [0, 1]) and
seconds per face. When the model folder has ``discriminator/``, the same faces are also
projected with the discriminator-feature loss. Faces are read from ../shared/data and never
written anywhere.

Part 2 times the largest request of each GPU-wrapped call through ``ModelServer`` (one
worker thread, as the app runs it): a 64-image grid, a 60-frame walk, a projection, and
the Training tab's 60-epoch GIF (revisions loaded from disk), against a 1-image grid.

    .venv/bin/python bench/demo_features.py [--model FOLDER] [--faces 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

import torch  # noqa: E402

from dcgan_hf import Discriminator, Generator  # noqa: E402
from dcgan_hf.hub.loading import BUNDLED_MODEL  # noqa: E402
from dcgan_hf.photos import photo_from_file  # noqa: E402
from dcgan_hf.projection import ProjectionSettings, project  # noqa: E402
from dcgan_hf.revisions import TrainingHistory, TrainingRevision  # noqa: E402
from dcgan_hf.serving import (  # noqa: E402
    MAX_FRAMES,
    MAX_IMAGES,
    GenerateRequest,
    InterpolateRequest,
    ModelServer,
    ThreadPolicy,
)

VAL = ROOT.parent / "shared" / "data" / "celeba64" / "val"


def val_faces(count: int) -> list[Path]:
    """``count`` faces spread over the sorted validation folder (a fixed, reproducible choice)."""
    files = sorted(VAL.glob("*.jpg"))
    if len(files) < count:
        raise SystemExit(f"need {count} faces in {VAL}, found {len(files)}")
    step = len(files) // count
    return files[::step][:count]


def projection_quality(generator: Generator, discriminator: Discriminator | None, faces: list[Path]) -> None:
    settings = ProjectionSettings()
    targets = [photo_from_file(path).pixels for path in faces]
    rows = []
    baseline = [project(generator, target, settings=ProjectionSettings(steps=0)) for target in targets]
    rows.append(("best of 16 seeds (no optimisation)", baseline, None))
    variants = [("Adam on z, pixel loss", None)]
    if discriminator is not None:
        variants.append(("Adam on z, pixel + discriminator features", discriminator))
    for name, network in variants:
        results, seconds = [], []
        for target in targets:
            started = time.perf_counter()
            results.append(project(generator, target, network, settings))
            seconds.append(time.perf_counter() - started)
        rows.append((name, results, seconds))
    print(f"\n## projection: {len(faces)} faces of celeba64/val, {settings.steps} steps, lr {settings.learning_rate}, "
          f"{settings.starts} starts, 1 thread")
    print("| method | MSE (mean) | PSNR dB (mean) | PSNR dB (min–max) | s/face (median, max) |")
    print("|---|---|---|---|---|")
    base_mse = statistics.mean(result.mse for result in baseline)
    for name, results, seconds in rows:
        mse = statistics.mean(result.mse for result in results)
        psnrs = [result.psnr for result in results]
        timing = "–" if seconds is None else f"{statistics.median(seconds):.2f}, {max(seconds):.2f}"
        print(f"| {name} | {mse:.4f} ({mse / base_mse:.2f}× baseline) | {statistics.mean(psnrs):.2f} | "
              f"{min(psnrs):.1f}–{max(psnrs):.1f} | {timing} |")


def median_seconds(work, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


def gpu_call_worst_cases(generator: Generator, faces: list[Path], rounds: int) -> None:
    server = ModelServer.serve(generator, "cpu", policy=ThreadPolicy(max_threads=1))
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = []
        for epoch in range(1, MAX_FRAMES + 1):  # a 60-epoch run: the GIF's worst case
            path = Path(folder) / f"epoch-{epoch}"
            generator.save_pretrained(path)
            checkpoints.append(TrainingRevision(epoch, str(path)))
        server.history = TrainingHistory.of(checkpoints, folder, load=lambda r: Generator.from_pretrained(r.source))
        photo = photo_from_file(faces[0])
        work = {
            "1-image grid (reference)": lambda: server.generate(GenerateRequest.parse(0, 1)),
            "generate: 64-image grid": lambda: server.generate(GenerateRequest.parse(0, MAX_IMAGES)),
            "interpolate: 60 frames, 16 keyframes": lambda: server.interpolate(
                InterpolateRequest.parse(0, 1, " ".join(map(str, range(2, 16))), MAX_FRAMES, closed=True)),
            "project: 200 steps": lambda: server.project(photo),
            "training: 64-seed grid": lambda: server.training_grid(30, list(range(64))),
            "training: GIF over 60 epochs (LRU of 4)": lambda: server.training_walk(7),
        }
        print(f"\n## GPU-wrapped calls, worst case, ModelServer on 1 CPU thread ({rounds} rounds)")
        print("| call | median s | max s | × 1-image grid |")
        print("|---|---|---|---|")
        reference = None
        for name, call in work.items():
            call()  # warm-up
            median, worst = median_seconds(call, rounds)
            reference = reference or median
            print(f"| {name} | {median:.3f} | {worst:.3f} | {median / reference:.0f} |")
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(BUNDLED_MODEL))
    parser.add_argument("--faces", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the demo's worker runs projections on one thread
    generator = Generator.from_pretrained(args.model)
    discriminator = None
    if (Path(args.model) / "discriminator" / "config.json").is_file():
        discriminator = Discriminator.from_pretrained(args.model, subfolder="discriminator")
    print(f"model {args.model}: {generator.config}, discriminator: {'yes' if discriminator else 'no'}")
    faces = val_faces(args.faces)
    projection_quality(generator, discriminator, faces)
    gpu_call_worst_cases(generator, faces, args.rounds)


if __name__ == "__main__":
    main()
