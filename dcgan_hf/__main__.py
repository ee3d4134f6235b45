"""``python -m dcgan_hf generate | convert | evaluate | export``: the library from the shell.

    python -m dcgan_hf generate --seeds 0-15 --out grid.png                # the bundled model
    python -m dcgan_hf generate --model user/dcgan-celeba@epoch-5 --seeds 7 --out seven.png
    python -m dcgan_hf generate --interpolate 3,7 --frames 24 --out walk.gif
    python -m dcgan_hf generate --seeds 7 --edit 0=2.5 --edit smile=-1 --out edited.png
    python -m dcgan_hf generate --seeds 7 --sweep smile --frames 9 --out smile.gif   # or a .png strip
    python -m dcgan_hf generate --arithmetic "1,2,3 - 4,5,6 + 7,8,9" --out sum.png
    python -m dcgan_hf generate --seeds 7 --complete left --out filled.png         # or --photo me.jpg
    python -m dcgan_hf export user/dcgan-celeba faces.onnx                 # needs dcgan_hf[onnx]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from . import images as imaging
from .devices import one_thread, resolve_device
from .files import write_atomic
from .hub.loading import BUNDLED_MODEL, load_generator
from .latent import MAX_SEEDS, check_truncation, parse_seeds
from .models import ModelLoadError
from . import arithmetic
from .completion import PRESETS, check_mask, complete, preset_mask
from .directions import MAX_AMOUNT, METHODS as DIRECTION_METHODS, SWEEP_SPAN, find as find_directions, parse_edit
from .hub.loading import LoadedModel, parse_model_spec
from .models import Generator
from .photos import photo_from_file
from .sampling import interpolate, interpolation_gif, render, sample, sample_latents
from .serving import find_discriminator
from .serving.steering import MAX_SWEEP_FRAMES, MIN_SWEEP_FRAMES, ArithmeticRequest

MAX_STEER_SEEDS = 64  # faces swept or completed in one command (a sweep draws frames × seeds)
MAX_COMPLETIONS = 16  # each takes ~2 s on a CPU
DEFAULT_FRAMES, SWEEP_FRAMES = 24, 9
MAX_KEYFRAMES = 256  # seeds an interpolation passes through
MIN_FRAMES, MAX_FRAMES = 2, 1000
MIN_DURATION_MS, MAX_DURATION_MS = 20, 60_000  # browsers play GIF frames shorter than 20 ms at 100 ms


def _generate_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=str(BUNDLED_MODEL),
                        help="a model folder or Hub repo id, optionally @revision (default: the bundled model)")
    parser.add_argument("--seeds", default="0-15",
                        help="seeds like '0-15, 42' or '1 2 3': numbers and ranges a-b, commas or spaces between "
                             "(one image each)")
    parser.add_argument("--interpolate", metavar="SEEDS",
                        help="walk through these seeds (e.g. '3,7' or '1,2,3') instead of a grid")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames of the interpolation (default {DEFAULT_FRAMES}) "
                             f"or sweep (default {SWEEP_FRAMES})")
    parser.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="interpolation path")
    parser.add_argument("--loop", action="store_true", help="close the interpolation loop back to the first seed")
    parser.add_argument("--truncation", type=float, default=1.0, help="scale of z (1.0 = off, <1 = safer faces)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: near-square)")
    parser.add_argument("--duration", type=int, default=80, help="GIF milliseconds per frame")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    steer = parser.add_argument_group("steering (directions: the model's directions.safetensors, else SeFa)")
    steer.add_argument("--edit", action="append", default=[], metavar="DIRECTION=AMOUNT",
                       help="move every face along a direction (index or name) by AMOUNT standard deviations "
                            f"(±{MAX_AMOUNT:g} at most); repeatable")
    steer.add_argument("--sweep", metavar="DIRECTION",
                       help=f"a strip (.png) or back-and-forth GIF of each seed swept from -{SWEEP_SPAN:g} to "
                            f"+{SWEEP_SPAN:g} along DIRECTION")
    steer.add_argument("--directions", choices=("model", *DIRECTION_METHODS), default="model",
                       help="which directions: the model's own (default), or computed now by sefa or ganspace")
    steer.add_argument("--arithmetic", metavar="EXPRESSION",
                       help="face arithmetic on groups' mean latents, e.g. '1,2,3 - 4,5,6 + 7,8,9': the result "
                            "among 8 noisy neighbours (seeds as in the demo: commas or spaces, ranges a-b)")
    steer.add_argument("--complete", metavar="MASK",
                       help=f"hide MASK ({', '.join(PRESETS)}) of each seed's face, or of --photo, and fill it in; "
                            "writes original | hidden | filled, one row per face")
    steer.add_argument("--photo",
                       help="with --complete: a JPEG/PNG/WebP photo (cropped to 64×64 like the training faces)")
    parser.add_argument("--out", required=True,
                        help="output .png/.jpg/.webp (grid / strip), .gif (animation) or folder/ (one PNG per seed)")
    return parser


STEERING_MODES = ("interpolate", "sweep", "arithmetic", "complete")


def check_args(args: argparse.Namespace) -> torch.device:
    """Every flag checked before the model loads (a ValueError names the bad one); returns the device."""
    out = Path(args.out)
    to_folder = args.out.endswith(("/", "\\")) or out.is_dir()
    suffix = out.suffix.lower()
    formats = ", ".join(imaging.IMAGE_FORMATS)
    modes = [f"--{mode}" for mode in STEERING_MODES if getattr(args, mode)]
    if len(modes) > 1:
        raise ValueError(f"{' and '.join(modes)} cannot be combined: give one of them")
    if args.edit and (args.interpolate or args.arithmetic or args.complete):
        raise ValueError(f"--edit works on --seeds grids and --sweep, not with {modes[0]}")
    if args.photo and not args.complete:
        raise ValueError("--photo needs --complete MASK")
    parse_edit(",".join(args.edit))
    frames_limits = (MIN_FRAMES, MAX_FRAMES) if not args.sweep else (MIN_SWEEP_FRAMES, MAX_SWEEP_FRAMES)
    args.frames = args.frames if args.frames is not None else (SWEEP_FRAMES if args.sweep else DEFAULT_FRAMES)
    if not frames_limits[0] <= args.frames <= frames_limits[1]:
        raise ValueError(f"--frames must be from {frames_limits[0]} to {frames_limits[1]}, got {args.frames}")
    if args.interpolate or args.sweep:
        parse_seeds(args.interpolate, MAX_KEYFRAMES, "--interpolate") if args.interpolate else _steer_seeds(args.seeds)
        if to_folder or (suffix != ".gif" and suffix not in imaging.IMAGE_FORMATS):
            raise ValueError(f"--out for {modes[0]} must end in .gif (animation) or {formats} (strip), "
                             f"got {args.out!r}")
    else:
        if args.complete:
            preset_mask(args.complete)
            if not args.photo:
                _steer_seeds(args.seeds, MAX_COMPLETIONS)
        elif not args.arithmetic:
            parse_seeds(args.seeds, MAX_SEEDS, "--seeds")
        if suffix == ".gif" and not to_folder:
            raise ValueError("a .gif needs --interpolate SEEDS or --sweep DIRECTION; for a grid use .png")
        if (args.arithmetic or args.complete) and to_folder:
            raise ValueError(f"--out for {modes[0]} must be one image file ({formats}), got {args.out!r}")
        if not to_folder and suffix not in imaging.IMAGE_FORMATS:
            raise ValueError(f"--out must end in {formats} (a grid) or / (a folder), got {args.out!r}")
    if args.nrow is not None and not 1 <= args.nrow <= MAX_SEEDS:
        raise ValueError(f"--nrow must be from 1 to {MAX_SEEDS}, got {args.nrow}")
    if not MIN_DURATION_MS <= args.duration <= MAX_DURATION_MS:
        raise ValueError(f"--duration must be from {MIN_DURATION_MS} to {MAX_DURATION_MS} ms, got {args.duration}")
    check_truncation(args.truncation)
    return resolve_device(args.device)


def _steer_seeds(text: str, limit: int = MAX_STEER_SEEDS) -> list[int]:
    """The seeds a sweep or completion works on (it draws frames or runs a search for each)."""
    return parse_seeds(text, limit, "--seeds")


def generate(args: argparse.Namespace) -> int:
    """Render a grid (or individual PNGs) for seeds, or an interpolation as GIF/strip; or steer faces."""
    device = check_args(args)
    generator = load_generator(args.model, device=device)
    if args.directions != "model":
        generator.directions = find_directions(generator, args.directions)
    out = Path(args.out)
    if args.arithmetic or args.complete or args.sweep:
        steer = _arithmetic if args.arithmetic else (_complete if args.complete else _sweep)
        data, message = steer(generator, args)
        write_atomic(out, data)
        print(f"wrote {message} to {out}")
        return 0
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
    images = sample(generator, args.seeds, truncation=args.truncation, edit=parse_edit(",".join(args.edit)))
    if args.out.endswith(("/", "\\")) or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(parse_seeds(args.seeds), imaging.to_pil(images)):
            write_atomic(out / f"seed{seed:010d}.png", imaging.png_bytes(image))
        print(f"wrote {len(images)} images to {out}/")
        return 0
    write_atomic(out, imaging.image_bytes(imaging.grid_image(images, nrow=args.nrow), out.suffix))
    print(f"wrote a grid of {len(images)} images to {out}")
    return 0


def _sweep(generator: Generator, args: argparse.Namespace) -> tuple[bytes, str]:
    """One row per seed, -3 … +3 along the direction; a GIF plays the rows' frames there and back."""
    directions = generator.directions
    index = directions.index(args.sweep)
    z = sample_latents(args.seeds, generator.nz, args.truncation)
    frames = render(generator, directions.sweep(z, index, args.frames, edit=parse_edit(",".join(args.edit))))
    per_frame = frames.reshape(len(z), args.frames, *frames.shape[1:]).transpose(0, 1)
    what = f"{args.frames} frames along {directions.label(index)}"
    if Path(args.out).suffix.lower() == ".gif":
        pictures = [imaging.grid_image(batch, nrow=args.nrow) for batch in per_frame]
        return imaging.gif_bytes(pictures + pictures[-2:0:-1], duration_ms=args.duration), what
    return imaging.image_bytes(imaging.grid_image(frames, nrow=args.frames), Path(args.out).suffix), what


def _arithmetic(generator: Generator, args: argparse.Namespace) -> tuple[bytes, str]:
    request = ArithmeticRequest.parse(args.arithmetic, args.truncation, nz=generator.nz)
    grid = imaging.grid_image(render(generator, request.grid_latents(generator.nz)), nrow=3)
    means = imaging.grid_image(render(generator, request.mean_latents(generator.nz)), nrow=len(request.groups))
    picture = arithmetic.figure(means, [group.sign for group in request.groups], grid)
    return imaging.image_bytes(picture, Path(args.out).suffix), f"{request.text} (the result among 8 neighbours)"


def _complete(generator: Generator, args: argparse.Namespace) -> tuple[bytes, str]:
    """Rows of original | the visible part (hidden mid-grey) | completed, for --photo or each seed."""
    mask = check_mask(preset_mask(args.complete))
    if args.photo:
        targets = photo_from_file(args.photo).pixels[None]
    else:
        targets = sample(generator, args.seeds, truncation=args.truncation)
    discriminator = find_discriminator(LoadedModel(generator, parse_model_spec(args.model)))
    rows = []
    with one_thread():  # one face per optimiser step: as the demo runs batches that small (RESULTS §2)
        for target in targets:
            completion = complete(generator, target, mask, discriminator)
            rows += [target, completion.masked_target, completion.composite]
    picture = imaging.grid_image(torch.stack(rows), nrow=3)
    return imaging.image_bytes(picture, Path(args.out).suffix), f"{len(targets)} completed faces ({args.complete})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("generate", "convert", "evaluate", "export")
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\ncommands: {', '.join(commands)} (each has --help)", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    command, rest = argv[0], argv[1:]
    if command == "convert":
        from .legacy.convert import main as convert_main

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
