"""FID and KID of a generator against a folder (or zip) of real images.

    python -m dcgan_hf evaluate --model user/dcgan-celeba --real data/val --num 10000

Generated images are the seeds ``0 … num-1`` (so a number is reproducible and two
models are compared on the same latents); real images are the first ``num_real`` files in
sorted order, seen through the training transform (short side to 64, centre crop 64).
Real-set features are cached on disk, keyed by the files' names, sizes and mtimes.
:func:`evaluate` is what training calls; :func:`main` is the command line.

Besides FID and KID, every evaluation reports improved precision and recall (k = 3) on the
same features, and, given training images (``--train``; training passes its own), a
memorization check: CelebA's terms forbid redistributing its images, and a generator that
copies training faces would do exactly that (:func:`dcgan_hf.metrics.memorization`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .data.folders import ImageSource, find_images, read_image
from .data.decoding import decode_or_reason
from .devices import resolve_device
from .files import write_atomic
from .hub.loading import load_generator
from .metrics import (NEIGHBOURS, EvalDependencyError, FeatureCache, InceptionFeatures, Memorization, fid, kid,
                      memorization, precision_recall)
from .models import ModelLoadError
from .sampling import sample
from .scores import Scores

IMAGE_SIZE = 64


EvalResult = Scores  # evaluate()'s result: the one evaluation record (dcgan_hf.scores)


@dataclass(frozen=True)
class RealImages:
    """The first ``limit`` images, in the sorted order of :func:`dcgan_hf.data.folders.find_images`.

    Listing, fingerprints (names, sizes, mtimes or CRCs) and decoding (short side to 64,
    centre crop: the training transform) are those of ``dcgan_hf.data.folders``, so FID compares
    the generator with exactly what it was trained to imitate.
    """

    files: ImageSource

    @classmethod
    def open(cls, path: str | os.PathLike, limit: int | None = None, split: str = "valid",
             spread: bool = False) -> RealImages:
        """List (not decode) a folder (recursive), a zip, or a CelebA root's ``split`` partition.

        ``limit`` keeps the first ``limit`` files, or with ``spread`` at most ``limit`` evenly spaced
        ones (training images for the memorization check: CelebA's sorted names group identities).
        """
        if limit is not None and limit < 2:
            raise ValueError(f"need at least 2 real images, got num_real={limit}")
        files = find_images(path, split)
        if limit is not None and spread:
            picks = spaced_indices(len(files.names), limit)
            files = dataclasses.replace(files, names=tuple(files.names[i] for i in picks),
                                        stamps=tuple(files.stamps[i] for i in picks))
        elif limit is not None:
            if len(files.names) < limit:
                raise ValueError(f"{files.root} holds only {len(files.names)} images, fewer than num_real={limit}")
            files = dataclasses.replace(files, names=files.names[:limit], stamps=files.stamps[:limit])
        if len(files.names) < 2:
            raise ValueError(f"{files.root} holds {len(files.names)} image; FID needs at least 2")
        return cls(files)

    @property
    def root(self) -> Path:
        return self.files.root

    @property
    def fingerprint(self) -> str:
        """Changes when any of the selected files, their order or the transform does."""
        return self.files.fingerprint(IMAGE_SIZE)

    def __len__(self) -> int:
        return len(self.files.names)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 batches (B, 3, 64, 64), decoded on the fly; an unreadable file is an error naming it."""
        archive = zipfile.ZipFile(self.root) if self.files.kind == "zip" else None
        try:
            for start in range(0, len(self), batch_size):
                names = self.files.names[start : start + batch_size]
                pixels = np.stack([self._decode(name, archive) for name in names])
                yield torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        finally:
            if archive is not None:
                archive.close()

    def _decode(self, name: str, archive: zipfile.ZipFile | None) -> np.ndarray:
        decoded = decode_or_reason(functools.partial(read_image, archive, self.root, name), IMAGE_SIZE)
        if isinstance(decoded, str):
            raise ValueError(f"cannot read real image {self.root / name}: {decoded}")
        return decoded

    def describe(self) -> str:
        return f"{len(self)} images from {self.root}"


def spaced_indices(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(count)``, evenly spaced, first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(index * (count - 1) / (limit - 1)) for index in range(limit)})


@dataclass(frozen=True)
class DecodedImages:
    """Images already decoded (a training run's uint8 cache, (N, 64, 64, 3)): evenly spaced ``limit`` of them.

    ``content`` (the cache's content hash) keys their cached features, so they are computed once per dataset.
    """

    images: np.ndarray
    content: str
    limit: int

    @property
    def picks(self) -> list[int]:
        return spaced_indices(len(self.images), self.limit)

    @property
    def fingerprint(self) -> str:
        return f"decoded:{self.content}:{len(self.images)}:spaced"

    def __len__(self) -> int:
        return len(self.picks)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        picks = self.picks
        for start in range(0, len(picks), batch_size):
            rows = np.asarray(self.images[picks[start : start + batch_size]])
            yield torch.from_numpy(rows).permute(0, 3, 1, 2).contiguous()

    def describe(self) -> str:
        return f"{len(self)} training images (content {self.content})"


def real_features(
    real: RealImages | DecodedImages,
    extractor: InceptionFeatures,
    cache: FeatureCache | None = None,
    progress: bool = True,
    description: str = "real images",
) -> np.ndarray:
    """Features of the real images, from ``cache`` when it holds them (else computed and stored)."""
    key = FeatureCache.key(real.fingerprint, len(real), extractor.fingerprint)
    if cache is not None and (cached := cache.load(key)) is not None:
        return cached
    features = extractor.extract(
        real.batches(extractor.batch_size), total=len(real), description=description, progress=progress
    )
    if cache is not None:
        cache.save(key, features, description=real.describe())
    return features


def generated_batches(generator: nn.Module, num: int, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 images for seeds 0 … num-1, ``batch_size`` at a time (batch-invariant, see sampling)."""
    for start in range(0, num, batch_size):
        yield sample(generator, range(start, min(start + batch_size, num)))


def evaluate(
    generator: nn.Module,
    real: str | os.PathLike | RealImages,
    num: int = 10000,
    *,
    num_real: int | None = None,
    real_split: str = "valid",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    extractor: InceptionFeatures | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = True,
    train: RealImages | DecodedImages | None = None,
) -> EvalResult:
    """FID, KID, precision and recall of ``generator`` (seeds 0 … num-1) against the real images.

    Pass a long-lived ``extractor`` when evaluating repeatedly (training) to load the
    Inception network once; otherwise one is made on ``device`` (default: the
    generator's). ``real_split`` only matters for a CelebA root (see ``dcgan_hf.data.folders``).
    ``train`` (training images; their features are cached like the real ones) adds the
    memorization check, with the real images as the held-out set.
    """
    started = time.perf_counter()
    if num < 2:
        raise ValueError(f"need at least 2 generated images, got num={num}")
    real_images = real if isinstance(real, RealImages) else RealImages.open(real, num_real, real_split)
    if extractor is None:
        device = device if device is not None else next(generator.parameters()).device
        extractor = InceptionFeatures(device=device, batch_size=batch_size)
    cache = FeatureCache(cache_dir) if use_cache else None
    real_feats = real_features(real_images, extractor, cache, progress=progress)
    fake_feats = extractor.extract(
        generated_batches(generator, num, extractor.batch_size), total=num, description="generated", progress=progress
    )
    kid_value = kid(fake_feats, real_feats, kid_subsets, kid_subset_size, device=extractor.device)
    # k-NN balls need more than k images on each side (tiny smoke evaluations have fewer)
    quality = precision_recall(real_feats, fake_feats) if min(len(real_feats), len(fake_feats)) > NEIGHBOURS else None
    copies: Memorization | None = None
    if train is not None:
        train_feats = real_features(train, extractor, cache, progress=progress, description="training images")
        copies = memorization(fake_feats, train_feats, real_feats)
    return EvalResult(
        fid=fid(fake_feats, real_feats),
        kid_mean=kid_value.mean,
        kid_std=kid_value.std,
        num_generated=num,
        num_real=len(real_images),
        seconds=time.perf_counter() - started,
        precision=quality.precision if quality else None,
        recall=quality.recall if quality else None,
        memorized=copies.share if copies else None,
        memorization_ratio=copies.ratio if copies else None,
        num_train=copies.num_train if copies else None,
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcgan_hf evaluate",
        description="FID and KID of a dcgan_hf generator against real images "
        "(needs the eval extra: pip install 'dcgan_hf[eval]').",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub repo id, optionally @revision")
    parser.add_argument("--real", required=True, help="folder (searched recursively) or zip of real images")
    parser.add_argument("--num", type=_positive, default=10000,
                        help="generated images, seeds 0…num-1 (default 10000)")
    parser.add_argument("--real-split", choices=("train", "valid", "test"), default="valid",
                        help="partition to use when --real is a CelebA root (default: valid)")
    parser.add_argument("--num-real", type=_positive, default=None,
                        help="use the first N real images in sorted order (default: all)")
    parser.add_argument("--batch-size", type=_positive, default=64, help="images per Inception batch (default 64)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--cache-dir", default=None, help="real-feature cache (default ~/.cache/dcgan_hf/fid)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the real-feature cache")
    parser.add_argument("--train", default=None,
                        help="the training images (folder or zip): adds the memorization check (samples nearer a "
                             "training image than any --real image is; needs --real to hold other people)")
    parser.add_argument("--train-num", type=_positive, default=5000,
                        help="training images (evenly spaced) to compare with (default 5000; features cached)")
    parser.add_argument("--kid-subsets", type=_positive, default=100, help="KID subsets (default 100)")
    parser.add_argument("--kid-subset-size", type=_positive, default=1000, help="KID subset size (default 1000)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the results to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 with a message on bad input, like the other CLIs)."""
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        real_images = RealImages.open(args.real, args.num_real, args.real_split)
        train_images = RealImages.open(args.train, args.train_num, "train", spread=True) if args.train else None
        extractor = InceptionFeatures(device=device, batch_size=args.batch_size)
        generator = load_generator(args.model, device=device)
        result = evaluate(
            generator,
            real_images,
            args.num,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            extractor=extractor,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            progress=not args.quiet,
            train=train_images,
        )
    except (EvalDependencyError, ModelLoadError, ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.describe())
    if args.json is not None:
        try:
            payload = dict(result.as_dict(), model=args.model, real=str(real_images.root), device=str(device))
            write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
        except OSError as error:
            print(f"error: cannot write {args.json}: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
