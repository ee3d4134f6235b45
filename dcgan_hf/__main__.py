"""``python -m dcgan_hf generate | convert | evaluate | export``: the library from the shell.

    python -m dcgan_hf generate --seeds 0-15 --out grid.png                # the bundled model
    python -m dcgan_hf generate --model user/dcgan-celeba@epoch-5 --seeds 7 --out seven.png
    python -m dcgan_hf generate --interpolate 3,7 --frames 24 --out walk.gif
    python -m dcgan_hf export user/dcgan-celeba faces.onnx                 # needs dcgan_hf[onnx]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from . import images as imaging
from .devices import resolve_device
from .files import write_atomic
from .hub import BUNDLED_MODEL, load_generator
from .latent import parse_seeds
from .models import ModelLoadError
from .sampling import check_truncation, interpolate, interpolation_gif, sample

MAX_SEEDS = 4096  # images per command: a grid of 4096 faces is 4226² pixels
MAX_KEYFRAMES = 256  # seeds an interpolation passes through
MIN_FRAMES, MAX_FRAMES = 2, 1000
MIN_DURATION_MS, MAX_DURATION_MS = 20, 60_000  # browsers play GIF frames shorter than 20 ms at 100 ms


def _generate_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=str(BUNDLED_MODEL),
                        help="a model folder or Hub repo id, optionally @revision (default: the bundled model)")
    parser.add_argument("--seeds", default="0-15", help="seeds like '0-15,42' (one image each)")
    parser.add_argument("--interpolate", metavar="SEEDS",
                        help="walk through these seeds (e.g. '3,7' or '1,2,3') instead of a grid")
    parser.add_argument("--frames", type=int, default=24, help="frames of the interpolation")
    parser.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="interpolation path")
    parser.add_argument("--loop", action="store_true", help="close the interpolation loop back to the first seed")
    parser.add_argument("--truncation", type=float, default=1.0, help="scale of z (1.0 = off, <1 = safer faces)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: near-square)")
    parser.add_argument("--duration", type=int, default=80, help="GIF milliseconds per frame")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    parser.add_argument("--out", required=True,
                        help="output .png/.jpg/.webp (grid / strip), .gif (animation) or folder/ (one PNG per seed)")
    return parser


def check_args(args: argparse.Namespace) -> torch.device:
    """Every flag checked before the model loads (a ValueError names the bad one); returns the device."""
    out = Path(args.out)
    to_folder = args.out.endswith(("/", "\\")) or out.is_dir()
    suffix = out.suffix.lower()
    formats = ", ".join(imaging.IMAGE_FORMATS)
    if args.interpolate:
        parse_seeds(args.interpolate, limit=MAX_KEYFRAMES)
        if not MIN_FRAMES <= args.frames <= MAX_FRAMES:
            raise ValueError(f"--frames must be from {MIN_FRAMES} to {MAX_FRAMES}, got {args.frames}")
        if to_folder or (suffix != ".gif" and suffix not in imaging.IMAGE_FORMATS):
            raise ValueError(f"--out for --interpolate must end in .gif (animation) or {formats} (strip), got {args.out!r}")
    else:
        parse_seeds(args.seeds, limit=MAX_SEEDS)
        if suffix == ".gif" and not to_folder:
            raise ValueError("a .gif needs --interpolate SEEDS; for a grid use .png")
        if not to_folder and suffix not in imaging.IMAGE_FORMATS:
            raise ValueError(f"--out must end in {formats} (a grid) or / (a folder), got {args.out!r}")
    if args.nrow is not None and not 1 <= args.nrow <= MAX_SEEDS:
        raise ValueError(f"--nrow must be from 1 to {MAX_SEEDS}, got {args.nrow}")
    if not MIN_DURATION_MS <= args.duration <= MAX_DURATION_MS:
        raise ValueError(f"--duration must be from {MIN_DURATION_MS} to {MAX_DURATION_MS} ms, got {args.duration}")
    check_truncation(args.truncation)
    return resolve_device(args.device)


def generate(args: argparse.Namespace) -> int:
    """Render a grid (or individual PNGs) for seeds, or an interpolation as GIF/strip."""
    device = check_args(args)
    generator = load_generator(args.model, device=device)
    out = Path(args.out)
    if args.interpolate:
        frames = interpolate(generator, args.interpolate, args.frames, method=args.method, closed=args.loop,
                             truncation=args.truncation)
        if out.suffix.lower() == ".gif":
            data = interpolation_gif(frames, duration_ms=args.duration)
        else:
            data = imaging.image_bytes(imaging.grid_image(frames, nrow=args.nrow or len(frames)), out.suffix)
        write_atomic(out, data)
        print(f"wrote {len(frames)} frames to {out}")
        return 0
    images = sample(generator, args.seeds, truncation=args.truncation)
    if args.out.endswith(("/", "\\")) or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(parse_seeds(args.seeds), imaging.to_pil(images)):
            write_atomic(out / f"seed{seed:010d}.png", imaging.png_bytes(image))
        print(f"wrote {len(images)} images to {out}/")
        return 0
    write_atomic(out, imaging.image_bytes(imaging.grid_image(images, nrow=args.nrow), out.suffix))
    print(f"wrote a grid of {len(images)} images to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("generate", "convert", "evaluate", "export")
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\ncommands: {', '.join(commands)} (each has --help)", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    command, rest = argv[0], argv[1:]
    if command == "convert":
        from .convert import main as convert_main

        return convert_main(rest)
    if command == "evaluate":
        from .evaluate import main as evaluate_main

        return evaluate_main(rest)
    if command == "export":
        from .export import main as export_main

        return export_main(rest)
    parser = _generate_parser(argparse.ArgumentParser(prog="python -m dcgan_hf generate",
                                                      description=generate.__doc__))
    args = parser.parse_args(rest)
    try:
        return generate(args)
    except (ModelLoadError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
