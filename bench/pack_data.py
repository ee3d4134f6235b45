#!/usr/bin/env python
"""Pack a folder of face images into one zip of WebP files small enough to carry to a lent GPU.

    python bench/pack_data.py ../shared/data/celeba64/train .gpu-data/train.zip --quality 80 --max-mib 44

A lent GPU machine takes at most 64 MiB of working tree in all (code and bundled model
included), while the 37,290 64×64 training JPEGs are ~103 MiB. WebP at quality 80 keeps them
at ~1.1 KB each; ``train.py --data PACK.zip`` reads the zip directly (``dcgan_hf.data.folders``
lists .webp members and decodes them with PIL). The zip stores (does not deflate) its
members: WebP is already compressed. Prints the size and the PSNR of a sample against the
originals, and refuses to write a pack over ``--max-mib``.

The pack holds CelebA images: never commit it (``.gpu-data/`` is git-ignored) or push it.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_hf.data import find_images  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder of images (searched recursively, as train.py does)")
    parser.add_argument("out", type=Path, help="the .zip to write")
    parser.add_argument("--quality", type=int, default=80, help="WebP quality 1–100 (default 80)")
    parser.add_argument("--max-mib", type=float, default=44.0, help="refuse a pack larger than this")
    parser.add_argument("--limit", type=int, default=0, help="pack only the first N images (0: all)")
    args = parser.parse_args()
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be in 1..100")
    files = find_images(args.source)
    names = files.names[: args.limit] if args.limit else files.names
    if not names:
        parser.error(f"no images in {args.source}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    scores, total = [], 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as pack:
        for index, name in enumerate(names):
            with Image.open(files.root / name) as image:
                original = image.convert("RGB")
            buffer = io.BytesIO()
            original.save(buffer, format="WEBP", quality=args.quality, method=6)
            data = buffer.getvalue()
            total += len(data)
            if index % 100 == 0:
                with Image.open(io.BytesIO(data)) as packed:
                    scores.append(psnr(np.asarray(original), np.asarray(packed.convert("RGB"))))
            pack.writestr(str(Path(name).with_suffix(".webp")), data)
    size_mib = tmp.stat().st_size / 2**20
    print(f"{len(names)} images, {total / len(names):.0f} B each, pack {size_mib:.1f} MiB, "
          f"PSNR {np.mean(scores):.1f} dB (mean of {len(scores)} samples)")
    if size_mib > args.max_mib:
        tmp.unlink()
        print(f"error: {size_mib:.1f} MiB is over --max-mib {args.max_mib:g}; lower --quality", file=sys.stderr)
        return 2
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
