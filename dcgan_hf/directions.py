"""Latent directions found in the generator's own weights, and edits along them.

CelebA's attribute labels are not in our data, so the directions come from the model:

- **SeFa** (closed-form factorization, Shen & Zhou, CVPR 2021): the first transposed
  convolution maps z linearly to its 4×4 output, ``y = A z`` with ``A`` the
  (ngf·8·16) × nz matrix ``main.0.weight`` (nz, ngf·8, 4, 4) makes once reshaped to
  nz × (ngf·8·16) and transposed. The unit vectors ``n`` that move ``y`` most, ``max ‖A n‖``,
  are the top eigenvectors of the nz × nz matrix ``AᵀA``: one eigendecomposition, a few
  milliseconds, no sampling.
- **GANSpace** (Härkönen et al., NeurIPS 2020): PCA of the first layer's activations
  (after BatchNorm and ReLU) over sampled latents, carried back to z by linear regression.

Every direction is a unit vector in z, so the prior's latents (z ~ N(0, I)) spread along it
with standard deviation exactly 1: an edit's amount is in those standard deviations, and
±3 spans 99.7 % of the faces the model draws along that direction. Signs follow one fixed
convention (the largest component of each vector is positive), so the same weights always
give the same directions.

A model folder keeps its directions in ``directions.safetensors`` (one float32 tensor,
``directions``, k × nz) and ``directions.json`` (the method and a name per direction):
``Generator.save_pretrained`` writes them, ``from_pretrained`` reads them strictly, and a
model without them computes SeFa on the fly.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .devices import one_thread
from .errors import ModelLoadError
from .persistence import read_safetensors_header
from .layout import DIRECTION_NAMES_FILE, DIRECTIONS_FILE
from .sampling import eval_mode

DEFAULT_COUNT = 10  # directions a model ships with: the ones that carry most of the first layer's energy
MAX_DIRECTIONS = 64  # a file may hold at most this many (and at most nz)
SWEEP_SPAN = 3.0  # a sweep runs from -3 to +3 standard deviations by default
MAX_SWEEP_FRAMES = 60
MAX_AMOUNT = 6.0  # |amount| of an edit, in standard deviations of the prior: beyond ±6 faces fall apart
MAX_NAME_CHARS = 40
NAMES_MAX_BYTES = 16 * 1024  # directions.json: a method and up to 64 short names
DIRECTIONS_MAX_BYTES = 1024 * 1024  # 64 × 1024 float32 values and a small header: 262 kB at most
UNIT_TOLERANCE = 1e-3  # |‖n‖ - 1| a stored direction may have (float32 rounding is ~1e-7)
METHODS = ("sefa", "ganspace")
GANSPACE_SAMPLES = 2048
_NAME = re.compile(r"[^\x00-\x1f\x7f=,]+")  # printable, and free of the edit grammar's "=" and ","


@dataclass(frozen=True)
class Directions:
    """k unit directions in z (a float32 tensor k × nz), their names and how they were found."""

    vectors: torch.Tensor
    names: tuple[str, ...]
    method: str = "sefa"

    def __post_init__(self) -> None:
        problems = _problems(self.vectors, self.names, self.method)
        if problems:
            raise ValueError("unusable directions: " + "; ".join(problems))

    @property
    def count(self) -> int:
        return self.vectors.shape[0]

    @property
    def nz(self) -> int:
        return self.vectors.shape[1]

    def label(self, index: int) -> str:
        """How a direction is shown: its index, and its name when it has one of its own."""
        name = self.names[index]
        return f"direction {index}" if name == default_name(index) else f"direction {index} ({name})"

    def index(self, key: object) -> int:
        """A direction by index (0, "0") or name ("smile"); ValueError naming the valid ones otherwise."""
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        if isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < self.count:
                return key
        elif isinstance(key, str):
            wanted = " ".join(key.split()).lower()
            for index, name in enumerate(self.names):
                if name.lower() == wanted:
                    return index
        named = [f"{index} ({name})" for index, name in enumerate(self.names) if name != default_name(index)]
        known = f"0 to {self.count - 1}" + (f"; names: {', '.join(named)}" if named else "")
        raise ValueError(f"unknown direction {str(key)[:40]!r}: this model has directions {known}")

    def amounts(self, edit: Mapping[object, object] | None) -> dict[int, float]:
        """``{direction: amount}`` with each key resolved to an index and each amount checked."""
        resolved: dict[int, float] = {}
        for key, amount in (edit or {}).items():
            index = self.index(key)
            if index in resolved:
                raise ValueError(f"{self.label(index)} is given twice")
            resolved[index] = check_amount(amount, self.label(index))
        return resolved

    def apply(self, z: torch.Tensor, edit: Mapping[object, object] | None) -> torch.Tensor:
        """Latents (N, nz) moved by ``amount`` standard deviations along each direction.

        Amounts of 0 are skipped, so an edit of zeros returns ``z`` itself: the same pixels.
        """
        moves = {index: amount for index, amount in self.amounts(edit).items() if amount != 0.0}
        if not moves:
            return z
        if z.shape[-1] != self.nz:
            raise ValueError(f"latents have {z.shape[-1]} values; these directions are for nz={self.nz}")
        shift = sum(amount * self.vectors[index].double() for index, amount in moves.items())
        return (z.double() + shift).to(z.dtype)

    def sweep(self, z: torch.Tensor, key: object, frames: int, span: float = SWEEP_SPAN,
              edit: Mapping[object, object] | None = None) -> torch.Tensor:
        """``frames`` latents per row of ``z`` (N, nz), amounts -span … +span along one direction.

        Rows stay together: latent i's frames are rows ``i·frames … i·frames + frames - 1``. Other
        directions keep their amounts from ``edit``; the swept one's amount in it is replaced.
        """
        index = self.index(key)
        if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= MAX_SWEEP_FRAMES:
            raise ValueError(f"a sweep has 2 to {MAX_SWEEP_FRAMES} frames, got {frames!r}")
        span = check_amount(span, f"the sweep of {self.label(index)}")
        if span <= 0:
            raise ValueError(f"the sweep's span must be positive, got {span:g}")
        others = {i: amount for i, amount in self.amounts(edit).items() if i != index}
        base = self.apply(z, others)
        steps = torch.linspace(-span, span, frames, dtype=torch.float64)
        moved = base.double()[:, None, :] + steps[None, :, None] * self.vectors[index].double()
        return moved.reshape(-1, self.nz).to(z.dtype)

    def save(self, folder: str | os.PathLike) -> None:
        """``directions.safetensors`` + ``directions.json`` in ``folder``."""
        folder = Path(folder)
        tensors = {"directions": self.vectors.detach().float().cpu().contiguous()}
        (folder / DIRECTIONS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))
        names = {"method": self.method, "names": list(self.names)}
        (folder / DIRECTION_NAMES_FILE).write_text(json.dumps(names, indent=2, ensure_ascii=False) + "\n")

    def renamed(self, names: Mapping[int, str]) -> "Directions":
        """The same directions with some names replaced (index → name); the rest keep theirs."""
        updated = list(self.names)
        for index, name in names.items():
            updated[self.index(index)] = name
        return Directions(self.vectors, tuple(updated), self.method)


def default_name(index: int) -> str:
    return f"direction {index}"


def check_amount(amount: object, label: str = "the direction") -> float:
    """An edit's amount: a finite number within ±MAX_AMOUNT standard deviations."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"the amount for {label} must be a number, got {str(amount)[:40]!r}")
    try:
        value = float(amount)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or abs(value) > MAX_AMOUNT:
        shown = f"{amount:g}" if isinstance(amount, float) else str(amount)[:20]
        raise ValueError(f"the amount for {label} is out of range: {shown} "
                         f"(use -{MAX_AMOUNT:g} to {MAX_AMOUNT:g} standard deviations)")
    return value


def parse_edit(text: object, max_items: int = MAX_DIRECTIONS) -> dict[str, float]:
    """``"0=2.5, 3=-1"`` or ``"smile=2"`` → {"0": 2.5, "3": -1.0} (keys are resolved by :meth:`Directions.index`)."""
    if text is None:
        return {}
    if not isinstance(text, str) or len(text) > 2000:
        raise ValueError(f"an edit must be text like '0=2.5, 3=-1', got {str(text)[:40]!r}")
    edit: dict[str, float] = {}
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = " ".join(key.split())
        if not sep or not key:
            raise ValueError(f"cannot read the edit {part[:40]!r}: use DIRECTION=AMOUNT, e.g. '0=2.5' or 'smile=-1'")
        try:
            amount = float(value.strip())
        except ValueError:
            raise ValueError(f"the amount in {part[:40]!r} is not a number") from None
        if key in edit:
            raise ValueError(f"direction {key!r} is given twice")
        if len(edit) >= max_items:
            raise ValueError(f"at most {max_items} directions in one edit")
        edit[key] = amount
    return edit


def format_edit(amounts: Mapping[int, float]) -> str:
    """The text :func:`parse_edit` reads back, zero amounts left out: ``"0=2.5,3=-1"``."""
    return ",".join(f"{index}={amount:g}" for index, amount in sorted(amounts.items()) if amount != 0.0)


# -- finding directions ------------------------------------------------------------------------


def _first_layer_weight(generator: torch.nn.Module) -> torch.Tensor:
    weight = generator.main[0].weight
    if weight.dim() != 4 or weight.shape[0] != generator.nz:
        raise ValueError(f"expected main.0.weight of shape (nz, C, 4, 4), got {tuple(weight.shape)}")
    return weight.detach().to("cpu", torch.float64).reshape(weight.shape[0], -1)


def _fixed_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Each row flipped so that its largest-magnitude component is positive (the first, on a tie)."""
    largest = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, largest[:, None]))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return _fixed_signs(vectors).float()


def sefa(generator: torch.nn.Module, count: int | None = None) -> Directions:
    """The ``count`` SeFa directions of ``generator`` (default: :data:`DEFAULT_COUNT`, at most nz):
    top eigenvectors of AᵀA, strongest first."""
    nz = generator.nz
    count = _check_count(min(DEFAULT_COUNT, nz) if count is None else count, nz)
    weight = _first_layer_weight(generator)  # (nz, C·16) = Aᵀ
    with one_thread():
        _, vectors = torch.linalg.eigh(weight @ weight.T)  # AᵀA; eigenvalues ascending
    top = vectors.flip(1)[:, :count].T  # (count, nz), orthonormal
    return Directions(_unit_rows(top), tuple(default_name(index) for index in range(count)), "sefa")


def sefa_strengths(generator: torch.nn.Module) -> torch.Tensor:
    """The eigenvalues of AᵀA, largest first, as shares of their sum: how much each SeFa direction moves."""
    weight = _first_layer_weight(generator)
    with one_thread():
        values = torch.linalg.eigvalsh(weight @ weight.T).flip(0)
    return (values / values.sum()).float()


def ganspace(
    generator: torch.nn.Module, count: int | None = None, samples: int = GANSPACE_SAMPLES, seed: int = 0
) -> Directions:
    """The ``count`` GANSpace directions: PCA of the first layer's activations, regressed back to z.

    The latents come from their own ``torch.Generator(seed)``; the activations are those of
    ``main[:3]`` (transposed convolution, BatchNorm in eval mode, ReLU).
    """
    nz = generator.nz
    count = _check_count(min(DEFAULT_COUNT, nz) if count is None else count, nz)
    if not count < samples <= 65_536:
        raise ValueError(f"GANSpace needs more samples than directions (and at most 65536), got {samples}")
    noise = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(samples, nz, generator=noise, dtype=torch.float64)
    parameter = next(generator.parameters())
    with eval_mode(generator), torch.inference_mode():
        first = generator.main[:3]
        activations = torch.cat([first(part[:, :, None, None].to(parameter.device, parameter.dtype)).flatten(1)
                                 .to("cpu", torch.float64) for part in z.split(256)])
    centred = activations - activations.mean(0)
    with one_thread():
        _, vectors = torch.linalg.eigh(centred @ centred.T)  # samples × samples: the PCA's left vectors
        coefficients = vectors.flip(1)[:, :count]  # each principal component's coefficient, up to scale
        directions = torch.linalg.lstsq(coefficients, z).solution  # (count, nz): z moved per coefficient
    return Directions(_unit_rows(directions), tuple(default_name(index) for index in range(count)), "ganspace")


def find(generator: torch.nn.Module, method: str = "sefa", count: int | None = None) -> Directions:
    """Directions of ``generator`` by ``method`` ("sefa" or "ganspace")."""
    if method == "sefa":
        return sefa(generator, count)
    if method == "ganspace":
        return ganspace(generator, count)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _check_count(count: object, nz: int) -> int:
    limit = min(nz, MAX_DIRECTIONS)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise ValueError(f"the number of directions must be from 1 to {limit}, got {count!r}")
    return count


# -- files -------------------------------------------------------------------------------------


def _problems(vectors: object, names: object, method: object) -> list[str]:
    """What makes these unusable as directions (empty when they are fine)."""
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2 or not vectors.is_floating_point():
        return [f"expected a float tensor (k, nz), got {getattr(vectors, 'dtype', type(vectors).__name__)} "
                f"{tuple(getattr(vectors, 'shape', ()))}"]
    count, nz = vectors.shape
    problems = []
    if not 1 <= count <= min(nz, MAX_DIRECTIONS):
        problems.append(f"{count} directions for nz={nz} (1 to {min(nz, MAX_DIRECTIONS)} allowed)")
    if not bool(torch.isfinite(vectors).all()):
        problems.append("NaN or infinite values")
    elif count and bool(((vectors.double().norm(dim=1) - 1).abs() > UNIT_TOLERANCE).any()):
        problems.append("every direction must be a unit vector")
    if method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)}, got {str(method)[:40]!r}")
    if not isinstance(names, tuple) or len(names) != count:
        problems.append(f"expected {count} names, got {len(names) if isinstance(names, (list, tuple)) else names!r}")
    else:
        bad = [str(name)[:40] for name in names if not isinstance(name, str) or not _NAME.fullmatch(name)
               or len(name) > MAX_NAME_CHARS or name != " ".join(name.split())]
        if bad:
            problems.append(f"names must be short printable text without '=' or ',' (at most {MAX_NAME_CHARS} "
                            f"characters), got {bad[:3]}")
        lowered = [name.lower() for name in names if isinstance(name, str)]
        if len(set(lowered)) != len(lowered):
            problems.append("names must be unique")
        numeric = [name for name in names if isinstance(name, str) and name.isdigit()]
        if numeric:
            problems.append(f"a name may not be a number (it would read as an index): {numeric[:3]}")
    return problems


def load(folder: str | os.PathLike, nz: int, label: str | None = None) -> Directions | None:
    """The directions saved in ``folder``, or None when it has neither file; strict otherwise."""
    folder = Path(folder)
    return load_files(_existing(folder / DIRECTIONS_FILE), _existing(folder / DIRECTION_NAMES_FILE), nz,
                      label or str(folder))


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def load_files(tensor_path: Path | None, names_path: Path | None, nz: int, label: str) -> Directions | None:
    """Both files checked before use: sizes before reading, then keys, shape, dtype, values and names.

    Neither file: None (the caller computes SeFa). One without the other, or anything wrong:
    a ModelLoadError naming the file and the problem.
    """
    if tensor_path is None and names_path is None:
        return None
    if tensor_path is None or names_path is None:
        present, missing = ((DIRECTIONS_FILE, DIRECTION_NAMES_FILE) if names_path is None
                            else (DIRECTION_NAMES_FILE, DIRECTIONS_FILE))
        raise ModelLoadError(f"{label}: {present} without {missing}; save the model again (or delete {present})")
    vectors = _read_vectors(tensor_path, nz, f"{label}/{DIRECTIONS_FILE}")
    method, names = _read_names(names_path, f"{label}/{DIRECTION_NAMES_FILE}")
    try:
        return Directions(vectors, names, method)
    except ValueError as error:
        raise ModelLoadError(f"{label}: {error}") from None


def _read_vectors(path: Path, nz: int, label: str) -> torch.Tensor:
    size = path.stat().st_size
    if size > DIRECTIONS_MAX_BYTES:
        raise ModelLoadError(f"{label} is {size:,} bytes; directions take at most {DIRECTIONS_MAX_BYTES:,}")
    header = read_safetensors_header(path, label)
    if set(header) != {"directions"}:
        raise ModelLoadError(f"{label} must hold one tensor named 'directions', got {sorted(header)[:5]}")
    shape, dtype = header["directions"]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelLoadError(f"{label}: directions must be a float tensor, got {dtype}")
    if len(shape) != 2 or shape[1] != nz or not 1 <= shape[0] <= min(nz, MAX_DIRECTIONS):
        raise ModelLoadError(f"{label}: expected directions of shape (k, {nz}) with 1 ≤ k ≤ "
                             f"{min(nz, MAX_DIRECTIONS)}, got {tuple(shape)}")
    try:
        return load_file(str(path))["directions"].float()
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"{label}: not a readable safetensors file ({error})") from None


def _read_names(path: Path, label: str) -> tuple[str, tuple[str, ...]]:
    size = path.stat().st_size
    if size > NAMES_MAX_BYTES:
        raise ModelLoadError(f"{label} is {size:,} bytes; at most {NAMES_MAX_BYTES:,}")
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ModelLoadError(f"{label}: unreadable JSON ({type(error).__name__})") from None
    if not isinstance(payload, dict) or set(payload) != {"method", "names"} or not isinstance(payload["names"], list):
        raise ModelLoadError(f"{label} must hold {{\"method\": ..., \"names\": [...]}}")
    return payload["method"], tuple(payload["names"])
