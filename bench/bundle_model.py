#!/usr/bin/env python
"""Publish a training run's checkpoint as the bundled model, evaluated with the README's protocol.

    python bench/bundle_model.py RUN_DIR --real ../shared/data/celeba64/val [--checkpoint PATH | best]

What it does, in order:
1. takes the run's newest checkpoint written at the end of an epoch (or ``--checkpoint``;
   ``best``: the run's lowest-FID checkpoint, ``RUN_DIR/best``, kept with ``--eval-every``):
   its EMA generator (BatchNorm statistics recalibrated, as published), its discriminator,
   its config and progress;
2. evaluates the generator with ``--num`` (default 5,000) samples against ``--real`` (FID, KID,
   precision/recall, and the memorization check against ``--train-num`` of the run's training
   images) and adds that row to the run's FID curve (``fid.png`` and the card's table);
3. rebuilds the Hub folder exactly as training publishes it (``publish.build_hub_folder``:
   generator + card at the root, ``discriminator/`` beside it; no ``training_state/`` or
   ``runs/``, which stay out of git for size), with the card naming ``--repo-id`` (the repo
   the bundled model is published as), the fixed-seed grid, the run's progress GIF and loss
   plot — into ``--out`` (default: the bundled folder), swapped in atomically;
4. gives the generator its latent directions (SeFa of its weights, ``dcgan_hf.directions``),
   named with ``--direction-names`` (look at ``generate --sweep N`` of each first: names belong
   to weights, so a new checkpoint needs new names), which ``save_pretrained`` writes beside
   the weights (``directions.safetensors`` + ``directions.json``);
5. copies ``--history`` (default 6) evenly spaced epoch generators of the run's ``history/``
   (float16, ~2 MB each at width 32; up to the bundled epoch) into ``OUT/history/``, so the
   demo's Training tab shows how the bundled model learned;
6. writes the README's two pictures with the project's CLI from that folder.

The memorization check reads the run's training images: from ``--data``, else the path in the
checkpoint's config (relative paths are tried from the run folder and this repository); when
neither is there it is skipped, with a note, and the card counts the images the checkpoint says
it trained on.

Prints the evaluation and the FID-vs-images curve of the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dcgan_hf import Discriminator, Generator  # noqa: E402
from dcgan_hf.data import load_cache  # noqa: E402
from dcgan_hf.directions import sefa  # noqa: E402
from dcgan_hf.epoch_history import HISTORY_DIR, evenly_spaced_epochs, list_epochs  # noqa: E402
from dcgan_hf.evaluate import DecodedImages, evaluate  # noqa: E402
from dcgan_hf.hub.loading import BUNDLED_MODEL, BUNDLED_REPO_ID  # noqa: E402
from dcgan_hf.layout import EMA_COUNTER, CheckpointLayout, RunLayout  # noqa: E402
from dcgan_hf.serving import evenly_spaced  # noqa: E402
from dcgan_hf.training import TrainConfig, artifacts, publish  # noqa: E402  (modules of the package)
from dcgan_hf.training import checkpoint as checkpoints  # noqa: E402
from dcgan_hf.training.checkpoint import EvalRecord  # noqa: E402

PROGRESS_FRAMES = 8  # epochs shown in the bundled progress GIF, first and last included


def epoch_end_checkpoint(run: RunLayout) -> Path:
    """The newest complete checkpoint taken at the end of an epoch (batch 0 of the next)."""
    for path in reversed(checkpoints.list_checkpoints(run.checkpoints)):
        progress = json.loads(CheckpointLayout(path).state.read_text())["progress"]
        if progress["batch"] == 0:
            return path
    raise SystemExit(f"no checkpoint at the end of an epoch in {run.checkpoints}")


def parse_names(text: str) -> dict[int, str]:
    """``"9=smile, 5=light hair"`` → {9: "smile", 5: "light hair"}."""
    names = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        index, _, name = part.partition("=")
        if not index.strip().isdigit() or not name.strip():
            raise SystemExit(f"--direction-names: cannot read {part!r}; use INDEX=NAME, e.g. 9=smile")
        names[int(index)] = " ".join(name.split())
    return names


def find_data(given: str | None, recorded: str | None, run: Path) -> Path | None:
    """The training data: ``--data``, else the checkpoint's path as written, from the run folder or this repo."""
    if given:
        if not Path(given).exists():
            raise SystemExit(f"--data: no such folder or zip: {given}")
        return Path(given)
    if not recorded:
        return None
    candidates = [Path(recorded)] if Path(recorded).is_absolute() else [run / recorded, ROOT / recorded, Path(recorded)]
    return next((path for path in candidates if path.exists()), None)


def history_extras(run: RunLayout, up_to_epoch: int, count: int) -> dict[str, Path]:
    """``count`` evenly spaced epoch files of the run (≤ the bundled epoch), as Hub-folder extras."""
    entries = [entry for entry in list_epochs(run.history) if entry.epoch <= up_to_epoch]
    picks = evenly_spaced_epochs(entries, count) if entries and count else []
    return {f"{HISTORY_DIR}/{entry.path.name}": entry.path for entry in picks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a train.py --output-dir")
    parser.add_argument("--real", required=True, help="real images for FID/KID (other identities than training)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint folder, or best (RUN/best); default: the newest epoch-end checkpoint")
    parser.add_argument("--train-num", type=int, default=5000,
                        help="training images the memorization check compares with (0: no check)")
    parser.add_argument("--num", type=int, default=5000, help="generated images for the FID (default 5000)")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--repo-id", default=BUNDLED_REPO_ID, help="the repo the card's usage snippet names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data", default=None,
                        help="the run's training images (default: the checkpoint's path), for the memorization check")
    parser.add_argument("--history", type=int, default=6,
                        help="evenly spaced epoch generators to carry in OUT/history (0: none)")
    parser.add_argument("--direction-names", default="", metavar="N=NAME,…",
                        help="names of SeFa directions that read clearly, e.g. '9=smile,5=light hair' "
                             "(the rest stay 'direction N')")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunLayout(args.run)
    path = run.best if args.checkpoint == "best" else Path(args.checkpoint) if args.checkpoint \
        else epoch_end_checkpoint(run)
    if not checkpoints.is_complete(path):
        raise SystemExit(f"no complete checkpoint at {path}")
    saved = checkpoints.load(path)
    config = TrainConfig.from_dict(saved.config)
    progress = saved.progress
    generator = Generator(config.nz, config.ngf, 3)
    weights = dict(saved.ema if saved.ema is not None else saved.generator)
    weights.pop(EMA_COUNTER, None)
    generator.load_state_dict_strict(weights, source=str(path))
    discriminator = Discriminator(3, config.ndf)
    discriminator.load_state_dict_strict(saved.discriminator, source=str(path))
    generator.eval(), discriminator.eval()
    generator.directions = sefa(generator).renamed(parse_names(args.direction_names))
    print(f"checkpoint {path}: epoch {progress.epoch}, step {progress.step}, "
          f"{progress.step * config.batch_size:,} images seen", flush=True)

    data_path = find_data(args.data, config.data, run.root)
    if data_path is None and config.data:
        print(f"note: the training images ({config.data}) are not here: no memorization check "
              "(give --data)", flush=True)
    data = load_cache(str(data_path), progress=False) if data_path is not None else None
    train = DecodedImages(data.images, data.content, args.train_num) if data is not None and args.train_num else None
    result = evaluate(generator, args.real, num=args.num, progress=False, train=train)
    print(result.describe(), flush=True)
    progress.metrics.append(EvalRecord(epoch=progress.epoch, step=progress.step, fid=result.fid,
                                       kid_mean=result.kid_mean, kid_std=result.kid_std,
                                       num_generated=result.num_generated, num_real=result.num_real,
                                       precision=result.precision, recall=result.recall, memorized=result.memorized,
                                       memorization_ratio=result.memorization_ratio, num_train=result.num_train))
    config = TrainConfig.from_dict({**config.to_dict(), "eval_real": args.real})
    image_count = len(data) if data is not None else (saved.data_count or config.synthetic)
    threads = config.threads or torch.get_num_threads()
    card = publish.card_inputs(config, progress, images_per_step=config.batch_size, image_count=image_count,
                               hardware=f"CPU ({threads} thread{'s' if threads != 1 else ''})",
                               precision=config.precision, repo_id=args.repo_id)
    with tempfile.TemporaryDirectory() as scratch:
        extras = {name: Path(scratch) / name for name in ("samples.png", "progress.gif", "loss.png", "fid.png")}
        artifacts.sample_grid(generator).save(extras["samples.png"])
        # a long run has one 512×512 frame per epoch (~0.23 MB each): git gets an evenly spaced few
        artifacts.write_progress_gif(evenly_spaced(run.epoch_grids(), PROGRESS_FRAMES), extras["progress.gif"])
        artifacts.plot_losses(progress.history, extras["loss.png"])
        artifacts.plot_metrics(progress.metrics, config.batch_size, extras["fid.png"])
        history = history_extras(run, progress.epoch, args.history)
        if history:
            epochs = ", ".join(str(int(Path(name).stem.split("-")[1])) for name in sorted(history))
            card["notes"] = (f"`history/` holds this run's generator (EMA) at epochs {epochs}, in float16 "
                             "(`dcgan_hf.epoch_history.load_epoch`); the demo's Training tab shows them.")
        publish.build_hub_folder(args.out, generator=generator, discriminator=discriminator, checkpoint=None,
                                 tensorboard_dir=None, extras={**extras, **history}, card=card)
    print(f"history/: {', '.join(sorted(history)) or 'none'}", flush=True)
    cli = [sys.executable, "-m", "dcgan_hf", "generate", "--model", str(args.out)]
    subprocess.run(cli + ["--seeds", "0-63", "--out", str(args.out / "samples.png")], check=True, cwd=ROOT)
    subprocess.run(cli + ["--interpolate", "0,1,2,3", "--loop", "--frames", "48", "--duration", "100",
                          "--out", str(args.out / "interpolation.gif")], check=True, cwd=ROOT)
    print(f"bundled into {args.out}\nFID curve (images seen → FID, generated images):")
    for row in progress.metrics:
        print(f"  {row.step * config.batch_size:>10,} → {row.fid:7.2f}  ({row.num_generated})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
