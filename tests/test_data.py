"""Image sources, the decode-once cache and on-device batches."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_hf.data import DataError, DeviceBatches, find_images, load_cache, synthetic_images
from imagefiles import write_images

SHARED_ORIGINALS = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_align_2k"


def test_folder_cache_crops_and_reuses(tmp_path):
    write_images(tmp_path / "faces", 12)
    cache = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert cache.images.shape == (12, 64, 64, 3) and cache.images.dtype == np.uint8
    assert not cache.skipped
    npy = tmp_path / "cache" / f"{cache.fingerprint}.npy"
    stamp = npy.stat().st_mtime_ns
    again = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert again.fingerprint == cache.fingerprint and npy.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert isinstance(again.images, np.memmap)
    # the decode follows the classic transform: short side → 64, centre crop
    first = sorted((tmp_path / "faces").rglob("*.jpg"))[0]
    with Image.open(first) as image:
        expected = image.convert("RGB").resize((64, round(96 * 64 / 78)), Image.BILINEAR)
    top = (expected.height - 64) // 2
    reference = np.asarray(expected)[top: top + 64]
    assert np.abs(reference.astype(int) - cache.images[0].astype(int)).mean() < 3


def test_changing_a_file_invalidates_the_cache(tmp_path):
    paths = write_images(tmp_path / "faces", 6)
    first = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    Image.new("RGB", (70, 70), (255, 0, 0)).save(paths[-1])
    second = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert second.fingerprint != first.fingerprint


def test_corrupt_and_non_image_files_are_skipped_and_reported(tmp_path, caplog):
    paths = write_images(tmp_path / "faces", 10)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 3])  # truncated JPEG
    (tmp_path / "faces" / "notes.jpg").write_text("this is not an image")
    (tmp_path / "faces" / "readme.txt").write_text("ignored: not an image suffix")
    (tmp_path / "faces" / "empty.png").write_bytes(b"")
    with caplog.at_level("WARNING"):
        cache = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert len(cache) == 9
    assert len(cache.skipped) == 3
    assert any("notes.jpg" in entry for entry in cache.skipped)
    assert any("empty.png" in entry for entry in cache.skipped)
    assert "skipped 3 unreadable of 12 files" in caplog.text


def test_zip_and_folder_give_the_same_cache(tmp_path):
    write_images(tmp_path / "faces", 9)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted((tmp_path / "faces").rglob("*.jpg")):
            handle.write(path, path.relative_to(tmp_path / "faces").as_posix())
        handle.writestr("__MACOSX/._junk.jpg", b"resource fork")  # macOS zips carry these
    folder = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    zipped = load_cache(archive, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert np.array_equal(np.asarray(folder.images), np.asarray(zipped.images))


def test_celeba_root_uses_the_train_partition(tmp_path):
    root = tmp_path / "celeba"
    write_images(root / "img_align_celeba", 6)
    for path in (root / "img_align_celeba" / "nested").glob("*.jpg"):
        path.rename(root / "img_align_celeba" / path.name)
    names = sorted(p.name for p in (root / "img_align_celeba").glob("*.jpg"))
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{name} {0 if i < 4 else 1}" for i, name in enumerate(names)) + "\n")
    source = find_images(tmp_path)  # torchvision layout: <root>/celeba/…
    assert [Path(n).name for n in source.names] == names[:4]
    assert len(find_images(root, split="valid").names) == 2
    with pytest.raises(ValueError, match="split must be one of"):
        find_images(root, split="nope")


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_images(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder"):
        find_images(tmp_path / "file.txt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_text("nope")
    with pytest.raises(ValueError, match="none of the 1 files"):
        load_cache(tmp_path / "bad", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written left behind


@pytest.mark.skipif(not SHARED_ORIGINALS.is_dir(), reason="../shared/data is not beside this checkout")
def test_real_celeba_originals_decode(tmp_path):
    folder = tmp_path / "originals"
    folder.mkdir()
    for path in sorted(SHARED_ORIGINALS.glob("*.jpg"))[:16]:
        (folder / path.name).symlink_to(path)
    cache = load_cache(folder, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert cache.images.shape == (16, 64, 64, 3)
    assert 40 < cache.images.mean() < 220  # real photos, not black frames


PAGE = 4096


@contextlib.contextmanager
def small_disk(folder: Path, pages: int) -> Iterator[Path]:
    """A tmpfs of exactly ``pages`` pages at ``folder`` (root only: skipped elsewhere)."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * PAGE}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_disk_that_fills_while_the_cache_is_written_leaves_nothing_and_says_so(tmp_path):
    count = 20  # the .npy: a 128-byte header + 20 × 12288 bytes = 3 × 20 + 1 pages
    write_images(tmp_path / "faces", count)
    with small_disk(tmp_path / "disk", 3 * count + 1 + 1) as disk:  # the images and their .json, exactly
        first = load_cache(tmp_path / "faces", cache_dir=disk, workers=1, progress=False)
        npy, meta = disk / f"{first.fingerprint}.npy", disk / f"{first.fingerprint}.json"
        assert npy.is_file() and meta.is_file()
        del first

        meta.unlink()  # what a crash between the two files once left: an .npy alone, taking the space
        again = load_cache(tmp_path / "faces", cache_dir=disk, workers=1, progress=False)
        assert len(again) == count and meta.is_file()  # the orphan was no cache: decoded again, in its place
        del again

        npy.unlink(), meta.unlink()
        (disk / "filler").write_bytes(bytes(PAGE))  # room for the images, none left for their .json
        with pytest.raises(DataError, match=r"filled up while it was written .* --data-cache"):
            load_cache(tmp_path / "faces", cache_dir=disk, workers=1, progress=False)
        assert sorted(path.name for path in disk.iterdir()) == ["filler"]  # no .npy without its .json


def test_a_damaged_cache_description_is_no_cache(tmp_path):
    write_images(tmp_path / "faces", 4)
    cache = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    meta = tmp_path / "cache" / f"{cache.fingerprint}.json"
    for damage in ("{not json", '{"count": 3, "format": 1}', "[]"):
        meta.write_text(damage)
        again = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
        assert len(again) == 4 and json.loads(meta.read_text())["count"] == 4


def test_device_batches_are_deterministic_shuffled_and_sharded():
    images = torch.from_numpy(synthetic_images(40, seed=3))
    batches = DeviceBatches(images, 8, seed=5, hflip=True)
    assert batches.steps_per_epoch == 5
    epoch0 = list(batches.batches(0))
    assert len(epoch0) == 5 and epoch0[0].shape == (8, 3, 64, 64)
    assert epoch0[0].min() >= -1 and epoch0[0].max() <= 1
    assert all(torch.equal(a, b) for a, b in zip(epoch0[2:], batches.batches(0, start=2)))  # resumable
    assert not torch.equal(epoch0[0], next(batches.batches(1)))  # a new order every epoch
    order, flips = batches.epoch_plan(0)
    assert sorted(order.tolist()) == list(range(40)) and 0 < int(flips.sum()) < 40
    expected = images[order[:8]].permute(0, 3, 1, 2).float() / 127.5 - 1
    expected = torch.where(flips[:8, None, None, None], expected.flip(3), expected)
    assert torch.allclose(epoch0[0], expected)
    ranks = [DeviceBatches(images, 4, seed=5, rank=r, world_size=2).epoch_plan(0)[0] for r in (0, 1)]
    assert not set(ranks[0].tolist()) & set(ranks[1].tolist())  # disjoint shards
    with pytest.raises(ValueError, match="fewer than one batch"):
        DeviceBatches(images, 64, seed=0)
