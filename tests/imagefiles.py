"""Synthetic image files for tests: CelebA may not be copied, so tests draw their own."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dcgan_hf.data import synthetic_images


def write_images(folder: Path, count: int, size: tuple[int, int] = (78, 96), seed: int = 0) -> list[Path]:
    """Small synthetic JPEGs (W×H not square, so the crop matters), some in a subfolder."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = synthetic_images(count, resolution=max(size), seed=seed)
    paths = []
    for index, array in enumerate(pixels):
        sub = folder / ("nested" if index % 3 == 0 else "")
        sub.mkdir(exist_ok=True)
        path = sub / f"img_{index:04d}.jpg"
        Image.fromarray(array).resize(size).save(path, quality=95)
        paths.append(path)
    return paths
