"""Training images through `datasets`: parquet, save_to_disk, imagefolder, and hf://datasets/… on the fake Hub."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_hf.data import load_cache, synthetic_images
from dcgan_hf.hf_datasets import DatasetSourceError, dataset_spec, hub_dataset_id

datasets = pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parent.parent


def pngs(count: int, seed: int = 0, size: tuple[int, int] = (78, 96)) -> list[bytes]:
    """Lossless, non-square synthetic images as PNG bytes (the crop matters, the pixels are exact)."""
    out = []
    for array in synthetic_images(count, resolution=max(size), seed=seed):
        buffer = io.BytesIO()
        Image.fromarray(array).resize(size).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def image_dataset(images: list[bytes], **extra_columns: list) -> "datasets.Dataset":
    features = datasets.Features({"image": datasets.Image(), **{
        name: datasets.Value("int64") for name in extra_columns}})
    rows = {"image": [{"bytes": data, "path": None} for data in images], **extra_columns}
    return datasets.Dataset.from_dict(rows, features=features)


def write_parquet(folder: Path, split: str, dataset: "datasets.Dataset") -> Path:
    path = folder / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))
    return path


def reference(images: list[bytes], tmp_path: Path) -> np.ndarray:
    """The same images written as files and read by the plain-folder path of dcgan_hf.data."""
    folder = tmp_path / "reference"
    folder.mkdir(parents=True)
    for index, data in enumerate(images):
        (folder / f"{index:04d}.png").write_bytes(data)
    return np.asarray(load_cache(folder, cache_dir=tmp_path / "ref-cache", workers=1, progress=False).images)


def test_parquet_folder_decodes_like_files_and_is_reused_until_it_changes(tmp_path, caplog):
    images = pngs(12)
    parquet = write_parquet(tmp_path / "faces", "train", image_dataset(images, label=list(range(12))))
    assert dataset_spec(tmp_path / "faces").kind == "files"
    cache = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert cache.images.shape == (12, 64, 64, 3) and cache.images.dtype == np.uint8 and not cache.skipped
    assert np.array_equal(np.asarray(cache.images), reference(images, tmp_path))
    npy = tmp_path / "cache" / f"{cache.fingerprint}.npy"
    stamp = npy.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="dcgan_hf.image_cache"):
        again = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert again.fingerprint == cache.fingerprint and npy.stat().st_mtime_ns == stamp
    assert "reusing image cache" in caplog.text
    write_parquet(tmp_path / "faces", "train", image_dataset(images[:7], label=list(range(7))))
    assert parquet.is_file()
    changed = load_cache(tmp_path / "faces", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert changed.fingerprint != cache.fingerprint and len(changed) == 7


def test_save_to_disk_splits_and_image_column_choice(tmp_path):
    train_images, test_images = pngs(6, seed=1), pngs(4, seed=2)
    both = datasets.DatasetDict({"train": image_dataset(train_images), "test": image_dataset(test_images)})
    both.save_to_disk(str(tmp_path / "saved"))
    assert dataset_spec(tmp_path / "saved").kind == "disk"
    test = load_cache(tmp_path / "saved", cache_dir=tmp_path / "cache", split="test", workers=1, progress=False)
    assert np.array_equal(np.asarray(test.images), reference(test_images, tmp_path))
    train = load_cache(tmp_path / "saved", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(train) == 6 and train.fingerprint != test.fingerprint
    with pytest.raises(DatasetSourceError, match=r"has no split 'validation' \(splits: train, test\)"):
        load_cache(tmp_path / "saved", cache_dir=tmp_path / "cache", split="validation", progress=False)

    two = datasets.Dataset.from_dict(
        {"a": [{"bytes": b, "path": None} for b in test_images], "b": [{"bytes": b, "path": None} for b in test_images]},
        features=datasets.Features({"a": datasets.Image(), "b": datasets.Image()}))
    two.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(DatasetSourceError, match=r"several Image columns \(a, b\); choose one with --image-column"):
        load_cache(tmp_path / "two", cache_dir=tmp_path / "cache", progress=False)
    chosen = load_cache(tmp_path / "two", cache_dir=tmp_path / "cache", image_column="b", workers=1, progress=False)
    assert len(chosen) == 4


def test_imagefolder_with_metadata_reads_its_files(tmp_path):
    images = pngs(5, seed=3)
    folder = tmp_path / "imagefolder" / "train"
    folder.mkdir(parents=True)
    for index, data in enumerate(images):
        (folder / f"{index:04d}.png").write_bytes(data)
    (folder / "metadata.csv").write_text("file_name,label\n" + "".join(f"{i:04d}.png,{i % 2}\n" for i in range(5)))
    assert dataset_spec(tmp_path / "imagefolder").kind == "files"
    cache = load_cache(tmp_path / "imagefolder", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert np.array_equal(np.asarray(cache.images), reference(images, tmp_path))


def test_bad_local_datasets_give_one_clear_line(tmp_path):
    (tmp_path / "text").mkdir()
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).to_parquet(str(tmp_path / "text" / "train.parquet"))
    cases = {
        tmp_path / "text": r"has no Image column \(columns: text \(Value string\), label \(Value int64\)\); "
                           r"name one with --image-column",
    }
    empty = image_dataset([]).cast_column("image", datasets.Image())
    write_parquet(tmp_path / "empty", "train", empty)
    cases[tmp_path / "empty"] = r"empty holds no rows \(its 1 parquet file\(s\) are empty\)"
    for path, message in cases.items():
        with pytest.raises(DatasetSourceError, match=message) as caught:
            load_cache(path, cache_dir=tmp_path / "cache", progress=False)
        assert "\n" not in str(caught.value)
    with pytest.raises(DatasetSourceError, match="column 'label' of .* holds Value int64, not images"):
        load_cache(tmp_path / "text", cache_dir=tmp_path / "cache", image_column="label", progress=False)
    with pytest.raises(DatasetSourceError, match="has no column 'photo'"):
        load_cache(tmp_path / "text", cache_dir=tmp_path / "cache", image_column="photo", progress=False)
    with pytest.raises(ValueError, match="--image-column applies to datasets sources"):
        (tmp_path / "plain").mkdir()
        load_cache(tmp_path / "plain", cache_dir=tmp_path / "cache", image_column="image", progress=False)


def test_undecodable_rows_are_skipped_and_counted(tmp_path):
    images = pngs(5, seed=4)
    broken = [images[0], b"not an image", images[1][: len(images[1]) // 3], images[2], images[3]]
    write_parquet(tmp_path / "broken", "train", image_dataset(broken))
    cache = load_cache(tmp_path / "broken", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(cache) == 3 and len(cache.skipped) == 2
    assert cache.skipped[0].startswith("row 1 (") and cache.skipped[1].startswith("row 2 (")
    assert np.array_equal(np.asarray(cache.images), reference([images[0], images[2], images[3]], tmp_path))


def test_rows_pointing_at_devices_or_huge_files_are_skipped_unread(tmp_path):
    """A parquet file written without `datasets` may hold paths instead of bytes: only regular,
    bounded files are read (reading /dev/zero would never end)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dcgan_hf.decoding import MAX_FILE_BYTES

    good = pngs(1, seed=9)[0]
    (tmp_path / "one.png").write_bytes(good)
    with open(tmp_path / "huge.png", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    records = [{"bytes": None, "path": "/dev/zero"}, {"bytes": None, "path": str(tmp_path / "huge.png")},
               {"bytes": None, "path": str(tmp_path / "one.png")}, {"bytes": good, "path": None}]
    column = pa.array(records, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"picture": column}), tmp_path / "raw" / "train.parquet")
    cache = load_cache(tmp_path / "raw", cache_dir=tmp_path / "cache", image_column="picture", workers=1,
                       progress=False)
    assert len(cache) == 2
    assert cache.skipped[0] == "row 0 (ValueError: the row holds no image bytes)"
    assert cache.skipped[1].startswith("row 1 (ValueError: ") and "more than" in cache.skipped[1]


def test_a_dataset_cache_is_written_like_a_folders(tmp_path):
    """The same writer as plain folders: free space checked first, stale staging files of dead runs
    removed, nothing left behind by a failed write, and a one-line DataError."""
    from dcgan_hf.image_cache import DataError

    write_parquet(tmp_path / "faces", "train", image_dataset(pngs(2)))
    cache = tmp_path / "cache"
    cache.mkdir()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = cache / f"{'0' * 24}.npy.1234abcd.tmp-{int(done.stdout)}"  # what a killed run was writing
    stale.write_bytes(b"x" * 1000)
    resolution = math.isqrt(shutil.disk_usage(tmp_path).total // 6) + 1  # two images: more than the whole disk
    with pytest.raises(DataError, match=r"not enough disk space for the image cache .* --data-cache") as caught:
        load_cache(tmp_path / "faces", resolution=resolution, cache_dir=cache, workers=1, progress=False)
    assert "\n" not in str(caught.value)
    assert list(cache.iterdir()) == []  # the stale file went, and no .tmp of this run stayed
    with pytest.raises(DataError, match=r"none of the 2 rows in split 'train' of .* could be read as an image"):
        write_parquet(tmp_path / "broken", "train", image_dataset([b"not an image", b"nor this"]))
        load_cache(tmp_path / "broken", cache_dir=cache, workers=1, progress=False)
    assert list(cache.iterdir()) == []


# -- the Hub: hf://datasets/OWNER/NAME[@rev] through HF_ENDPOINT (the fake Hub on 127.0.0.1) --


def seed_dataset_repo(hub, repo_id: str, split_images: dict[str, list[bytes]], tmp_path: Path,
                      new_revision: bool = False) -> str:
    """Commit one parquet file per split (as push_to_hub lays them out) and return the commit sha."""
    files = {}
    for split, images in split_images.items():
        path = write_parquet(tmp_path / f"upload-{len(hub.requests)}-{split}", split, image_dataset(images))
        files[f"data/{split}-00000-of-00001.parquet"] = path.read_bytes()
    if not new_revision:
        hub.create_repo(repo_id, repo_type="dataset")
    return hub.commit(repo_id, files, message="data", repo_type="dataset")


def test_hub_dataset_is_decoded_once_per_revision(local_hub, tmp_path):
    first_images, test_images = pngs(8, seed=5), pngs(3, seed=6)
    first = seed_dataset_repo(local_hub, "owner/faces", {"train": first_images, "test": test_images}, tmp_path)
    cache_dir = tmp_path / "cache"
    cache = load_cache("hf://datasets/owner/faces", cache_dir=cache_dir, workers=1, progress=False)
    assert np.array_equal(np.asarray(cache.images), reference(first_images, tmp_path))
    assert cache.source == f"hf://datasets/owner/faces@{first}"
    assert local_hub.requests_to("/datasets/owner/faces/resolve/")  # the parquet came from the fake Hub
    assert hub_dataset_id("hf://datasets/owner/faces@main") == "owner/faces"

    # unchanged revision: one revision lookup, nothing downloaded, the same cache
    before = len(local_hub.requests)
    again = load_cache("hf://datasets/owner/faces@main", cache_dir=cache_dir, workers=1, progress=False)
    assert again.fingerprint == cache.fingerprint
    assert [r.route for r in local_hub.requests[before:]] == [f"GET /api/datasets/owner/faces/revision/main"]

    # a new commit on main is decoded again; the old sha, pinned, is reused without any request
    second_images = pngs(6, seed=7)
    second = seed_dataset_repo(local_hub, "owner/faces", {"train": second_images}, tmp_path, new_revision=True)
    moved = load_cache("hf://datasets/owner/faces", cache_dir=cache_dir, workers=1, progress=False)
    assert moved.fingerprint != cache.fingerprint and moved.source.endswith(second) and len(moved) == 6
    before = len(local_hub.requests)
    pinned = load_cache(f"hf://datasets/owner/faces@{first}", cache_dir=cache_dir, workers=1, progress=False)
    assert pinned.fingerprint == cache.fingerprint and len(local_hub.requests) == before

    test = load_cache(f"hf://datasets/owner/faces@{first}", split="test", cache_dir=cache_dir, workers=1,
                      progress=False)
    assert np.array_equal(np.asarray(test.images), reference(test_images, tmp_path / "t"))


def test_hub_dataset_errors_are_one_line(local_hub, tmp_path):
    seed_dataset_repo(local_hub, "owner/faces", {"train": pngs(2)}, tmp_path)
    local_hub.create_repo("owner/text", repo_type="dataset")
    text = tmp_path / "text.parquet"
    datasets.Dataset.from_dict({"caption": ["a", "b"]}).to_parquet(str(text))
    local_hub.commit("owner/text", {"train.parquet": text.read_bytes()}, repo_type="dataset")
    cases = {
        "hf://datasets/owner/missing": r"dataset repo not found \(or private without a token\): owner/missing",
        "hf://datasets/owner/faces@nope": "revision 'nope' not found in dataset owner/faces",
        "hf://datasets/owner/text": r"has no Image column \(columns: caption \(Value string\)\)",
        "hf://datasets/not-a-repo": "expected hf://datasets/OWNER/NAME",
    }
    for url, message in cases.items():
        with pytest.raises(DatasetSourceError, match=message) as caught:
            load_cache(url, cache_dir=tmp_path / "cache", progress=False)
        assert "\n" not in str(caught.value)
    with pytest.raises(DatasetSourceError, match=r"no split 'validation'|Unknown split \"validation\""):
        load_cache("hf://datasets/owner/faces", split="validation", cache_dir=tmp_path / "cache", progress=False)
    with local_hub.down():
        with pytest.raises(DatasetSourceError, match=r"cannot reach the Hub at http://127\.0\.0\.1:\d+ for dataset"):
            load_cache("hf://datasets/owner/faces", cache_dir=tmp_path / "cache", progress=False)


def test_train_py_on_a_hub_dataset_names_it_in_the_card(local_hub, tmp_path):
    from huggingface_hub import ModelCard

    from dcgan_hf.training import TrainConfig, train

    seed_dataset_repo(local_hub, "owner/faces", {"train": pngs(8, seed=8)}, tmp_path)
    config = TrainConfig(data="hf://datasets/owner/faces", output_dir=str(tmp_path / "run"), epochs=1, batch_size=4,
                         ngf=8, ndf=8, nz=16, data_cache=str(tmp_path / "cache"), workers=1, progress=False,
                         checkpoint_every=0)
    result = train(config)
    card = ModelCard.load(result.hub_folder / "README.md")
    assert card.data.datasets == ["owner/faces"]
    assert "--data hf://datasets/owner/faces" in card.text
    assert "owner/faces (8 images" in card.text

    missing = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--data", "hf://datasets/owner/missing", "--output-dir",
         str(tmp_path / "x"), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "error: dataset repo not found (or private without a token): owner/missing")
    assert "Traceback" not in missing.stderr


def test_datasets_that_datasets_cannot_read_are_one_line(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (tmp_path / "zero").mkdir()  # a row group of zero rows: `datasets` fails deep inside pyarrow
    pq.write_table(pa.table({"image": pa.array([], type=struct)}), tmp_path / "zero" / "train.parquet")
    (tmp_path / "mixed").mkdir()
    pq.write_table(pa.table({"image": pa.array([], type=struct)}), tmp_path / "mixed" / "train-0.parquet")
    pq.write_table(pa.table({"image": pa.array([{"bytes": pngs(1)[0], "path": None}], type=struct)}),
                   tmp_path / "mixed" / "train-1.parquet")
    folder = tmp_path / "escape" / "train"  # an imagefolder whose metadata names a file outside it
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(pngs(1)[0])
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png"}) + "\n" + json.dumps({"file_name": ".."}))
    cases = {
        "zero": r"zero holds no rows \(its 1 parquet file\(s\) are empty\)",
        "mixed": r"mixed: train-0.parquet hold\(s\) an empty row group",
        "escape": r"cannot load .*escape: ValueError: Invalid metadata file_name '\.\.'",
    }
    for name, message in cases.items():
        with pytest.raises(DatasetSourceError, match=message) as caught:
            load_cache(tmp_path / name, cache_dir=tmp_path / "cache", workers=1, progress=False)
        assert "\n" not in str(caught.value)


def test_a_row_over_the_size_bound_is_skipped_by_its_length_unread(tmp_path):
    from dcgan_hf.decoding import MAX_FILE_BYTES

    good = pngs(2, seed=5)
    huge = b"\x89PNG\r\n\x1a\n" + bytes(MAX_FILE_BYTES)  # over the bound by its signature
    image_dataset([good[0], huge, good[1]]).save_to_disk(str(tmp_path / "huge"))  # Arrow as it is: no conversion
    cache = load_cache(tmp_path / "huge", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(cache) == 2
    assert cache.skipped == [f"row 1 (ValueError: {MAX_FILE_BYTES + 8:,} bytes, more than {MAX_FILE_BYTES:,}: "
                             f"not read)"]


def test_decode_tasks_are_bounded_in_bytes():
    from dcgan_hf.decoding import MAX_FILE_BYTES
    from dcgan_hf.hf_datasets import task_spans

    mb = 2**20
    sizes = np.array([10 * mb] * 8 + [200 * mb, 1 * mb, MAX_FILE_BYTES + 1, 1 * mb] + [1000] * 600)
    spans = task_spans(sizes, max_rows=256, max_bytes=64 * mb)
    assert spans[:4] == [(0, 6), (6, 8), (8, 9), (9, 265)]  # 60 MB, 20 MB, one 200 MB row alone, then by count
    assert spans[-1][1] == len(sizes) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
