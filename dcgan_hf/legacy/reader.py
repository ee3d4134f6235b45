"""Read pre-Hub DCGAN checkpoints safely and rebuild them as our models.

Understood formats (all ``torch.save`` pickles, read with ``weights_only=True`` only):

* the DCGAN tutorial's ``{"g_model_state_dict", "d_model_state_dict", "epoch"}``, keys
  optionally prefixed ``module.`` by ``nn.DataParallel``;
* pytorch/examples ``netG_epoch_N.pth`` / ``netD_epoch_N.pth`` (one state dict each; the
  sibling of the pair is picked up when it sits next to the named file);
* HugGAN community-event models (``self.model = nn.Sequential(...)``, keys ``model.N.*``,
  same layer order as the classic ``main.N.*``);
* bare state dicts of one network, generator or discriminator.

Sizes (nz, ngf, nc / nc, ndf) are read off tensor shapes; the models' strict loader then
checks every other tensor, so an inconsistent file fails with the offending key named.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from ..models import Discriminator, Generator
from ..persistence import check_size

TUTORIAL_KEYS = ("g_model_state_dict", "d_model_state_dict")
EXAMPLES_NAME = re.compile(r"net(?P<net>[GD])_epoch_(?P<epoch>\d+)\.pth")
WRAPPER_PREFIX = "module."  # nn.DataParallel / DistributedDataParallel, possibly nested
HUGGAN_PREFIX, CLASSIC_PREFIX = "model.", "main."
GENERATOR_LAST_CONV = "main.12.weight"
DISCRIMINATOR_LAST_CONV = "main.11.weight"
MAX_PICKLE_BYTES = 16 * 1024 * 1024  # the pickled structure of a state dict (the tensors are stored beside it)
MAX_ZIP_ENTRIES = 10_000


class UnsafeCheckpointError(ModelLoadError):
    """The file holds Python objects beyond tensors and containers; loading it could run code."""


@dataclass(frozen=True)
class LegacyCheckpoint:
    """What a legacy checkpoint held, rebuilt as our (eval-mode) models."""

    format: str
    generator: Generator | None
    discriminator: Discriminator | None
    epoch: int | None
    generator_file: Path | None = None
    discriminator_file: Path | None = None


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` of a local file, with errors that say what went wrong.

    There is deliberately no fallback to ``weights_only=False``: a file that needs it is
    refused, since unpickling arbitrary objects can execute code chosen by its author.
    Nothing the file declares is allocated unchecked: a zip checkpoint's entries must be
    stored uncompressed (as ``torch.save`` writes them; a deflated one could be a bomb) and
    are memory-mapped, not read; then no tensor may claim more values than its storage holds
    (a zero-stride view of 4 bytes can claim terabytes).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        zipped = zipfile.is_zipfile(path)
        if zipped:
            _check_zip_entries(path)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except ModelLoadError:
        raise
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise _refusal(path, str(error)) from None
        raise _unreadable(path, error) from None
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read the file ({error.strerror or error})") from None
    except Exception as error:  # torch raises KeyError, EOFError, RuntimeError… for non-checkpoints
        raise _unreadable(path, error) from None
    _check_tensors(payload, path)
    return payload


def _check_zip_entries(path: Path) -> None:
    """Refuse a zip checkpoint whose entries would inflate: torch.save stores them uncompressed."""
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise ModelLoadError(f"{path}: refused: {len(entries):,} zip entries; a checkpoint has a few per tensor")
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            raise ModelLoadError(
                f"{path}: refused: the entry {entry.filename} is compressed ({entry.file_size:,} bytes unpacked from "
                f"{entry.compress_size:,}); torch.save never compresses, and inflating it could exhaust memory"
            )
        if entry.file_size > size:
            raise ModelLoadError(f"{path}: refused: the entry {entry.filename} claims {entry.file_size:,} bytes, "
                                 f"more than the whole file ({size:,})")
        if entry.filename.endswith("data.pkl") and entry.file_size > MAX_PICKLE_BYTES:
            raise ModelLoadError(f"{path}: refused: a {entry.file_size:,}-byte pickle; a state dict's is a few KB")


def _check_tensors(payload: Any, path: Path) -> None:
    """Every tensor in ``payload`` must be backed by its own bytes, with no zero-stride expansion."""
    stack, seen = [payload], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > 1_000_000:
            raise ModelLoadError(f"{path}: refused: more than a million objects; not a DCGAN checkpoint")
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, torch.Tensor):
            needed = item.numel() * item.element_size()
            available = item.untyped_storage().nbytes() - item.storage_offset() * item.element_size()
            if needed > available or any(stride == 0 and size > 1 for size, stride in zip(item.shape, item.stride())):
                raise ModelLoadError(
                    f"{path}: refused: a tensor of shape {tuple(item.shape)} and strides {item.stride()} "
                    f"repeats {available:,} stored bytes as {needed:,}; checkpoints hold each value once"
                )


def _refusal(path: Path, message: str) -> ModelLoadError:
    """Explain a weights-only failure: a named Python object is unsafe; anything else is no checkpoint."""
    found = re.search(r"GLOBAL (\S+)", message)
    if found:
        return UnsafeCheckpointError(
            f"{path}: refused: it contains the Python object {found.group(1)}, and unpickling it could run "
            f"arbitrary code. Only checkpoints of tensors and plain containers (state dicts) are converted. "
            f"If it is a whole pickled model you trust, load it in its own project and save "
            f"model.state_dict() with torch.save instead."
        )
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
    return ModelLoadError(
        f"{path}: refused: not a file that torch.load(weights_only=True) can read"
        + (f" ({detail.group(1).strip()})" if detail else "")
        + "; it is another kind of file, or a pickle of arbitrary Python objects, which is never unpickled here"
    )


def _unreadable(path: Path, error: BaseException) -> ModelLoadError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else "unexpected end of file"
    return ModelLoadError(
        f"{path}: not a readable PyTorch checkpoint (another kind of file, truncated or corrupted): "
        f"{type(error).__name__}: {detail}"
    )


def normalise_keys(state: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], bool]:
    """Strip (repeated) ``module.`` prefixes and map HugGAN ``model.N`` to ``main.N``.

    Returns the new state dict and whether it used HugGAN names.
    """
    normalised: dict[str, torch.Tensor] = {}
    huggan = False
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{source}: entry {key!r} is not a tensor, so this is not a state dict")
        name = key
        while name.startswith(WRAPPER_PREFIX):
            name = name[len(WRAPPER_PREFIX):]
        if name.startswith(HUGGAN_PREFIX):
            name, huggan = CLASSIC_PREFIX + name[len(HUGGAN_PREFIX):], True
        if name in normalised:
            raise ModelLoadError(f"{source}: {key!r} duplicates another key once prefixes are removed")
        normalised[name] = value
    return normalised, huggan


def fill_num_batches_tracked(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the BatchNorm counters that checkpoints from PyTorch < 0.4.1 lack.

    Eval-mode BatchNorm never reads the counter, so 0 changes no output.
    """
    filled = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            filled.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return filled


def _shape(state: Mapping[str, torch.Tensor], key: str, source: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ModelLoadError(f"{source}: {key} is missing, so the {what} sizes cannot be read")
    shape = tuple(state[key].shape)
    if len(shape) != 4:
        raise ModelLoadError(f"{source}: {key} has shape {shape}; a DCGAN {what} has a 4-D conv kernel there")
    return shape


def _sizes(source: str, what: str, **sizes: int) -> dict[str, int]:
    """The sizes read off the tensors, within the models' bounds (checked before anything is built)."""
    try:
        return {name: check_size(name, value) for name, value in sizes.items()}
    except ModelLoadError as error:
        raise ModelLoadError(f"{source}: the {what}'s tensor shapes imply {error}") from None


def _build(cls: type[Generator] | type[Discriminator], sizes: dict[str, int], state: Mapping[str, torch.Tensor],
           source: str) -> Any:
    """Check every shape and dtype against a model of ``sizes`` (allocating nothing), then build and load it."""
    filled = fill_num_batches_tracked(dict(state))
    cls.check_fits(sizes, {key: (tuple(value.shape), value.dtype) for key, value in filled.items()}, source)
    model = cls(**sizes)
    model.load_state_dict_strict(filled, source=source)
    return model.eval()


def build_generator(state: Mapping[str, torch.Tensor], source: str) -> Generator:
    """A Generator sized from ``state`` (nz, 8·ngf from main.0; nc from main.12), strictly loaded."""
    nz, first_channels, _, _ = _shape(state, "main.0.weight", source, "generator")
    if first_channels % 8:
        raise ModelLoadError(
            f"{source}: main.0.weight has {first_channels} output channels; a DCGAN generator has 8·ngf there"
        )
    _, nc, _, _ = _shape(state, GENERATOR_LAST_CONV, source, "generator")
    sizes = _sizes(source, "generator", nz=nz, ngf=first_channels // 8, nc=nc)
    return _build(Generator, sizes, state, f"{source} (generator)")


def build_discriminator(state: Mapping[str, torch.Tensor], source: str) -> Discriminator:
    """A Discriminator sized from ``state`` (ndf, nc from main.0), strictly loaded."""
    ndf, nc, _, _ = _shape(state, "main.0.weight", source, "discriminator")
    return _build(Discriminator, _sizes(source, "discriminator", nc=nc, ndf=ndf), state, f"{source} (discriminator)")


def _build_either(state: Mapping[str, torch.Tensor], source: str) -> Generator | Discriminator:
    """Tell G from D by layout: G's last conv is main.12, D's is main.11 (main.12 is its Sigmoid)."""
    if GENERATOR_LAST_CONV in state:
        return build_generator(state, source)
    if DISCRIMINATOR_LAST_CONV in state:
        return build_discriminator(state, source)
    shown = sorted(state)[:8]
    raise ModelLoadError(
        f"{source}: not a DCGAN generator or discriminator state dict: expected main.N.* "
        f"(or model.N.*) keys ending at main.12 (generator) or main.11 (discriminator), found {shown}"
        + (" …" if len(state) > len(shown) else "")
    )


def _epoch(value: Any) -> int | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_legacy_file(path: str | os.PathLike) -> LegacyCheckpoint:
    """Read one legacy checkpoint file (without looking for a pytorch/examples sibling)."""
    path = Path(path)
    source = str(path)
    payload = read_checkpoint(path)
    if not isinstance(payload, Mapping):
        raise ModelLoadError(f"{source}: holds a {type(payload).__name__}, not a state dict or a checkpoint dict")
    if not payload:
        raise ModelLoadError(f"{source}: holds an empty dict, so there are no weights to convert")

    if any(key in payload for key in TUTORIAL_KEYS):
        nets: dict[str, Any] = {}
        for key in TUTORIAL_KEYS:
            if key in payload:
                if not isinstance(payload[key], Mapping):
                    raise ModelLoadError(f"{source}: {key} holds a {type(payload[key]).__name__}, not a state dict")
                nets[key] = normalise_keys(payload[key], f"{source}[{key}]")[0]
        generator_state, discriminator_state = (nets.get(key) for key in TUTORIAL_KEYS)
        return LegacyCheckpoint(
            format="tutorial",
            generator=build_generator(generator_state, source) if generator_state is not None else None,
            discriminator=(
                build_discriminator(discriminator_state, source) if discriminator_state is not None else None
            ),
            epoch=_epoch(payload.get("epoch")),
            generator_file=path if generator_state is not None else None,
            discriminator_file=path if discriminator_state is not None else None,
        )

    if not all(isinstance(value, torch.Tensor) for value in payload.values()):
        shown = sorted(map(str, payload))[:8]
        raise ModelLoadError(
            f"{source}: not a DCGAN checkpoint: its top-level keys {shown} are neither a state dict "
            f"nor the tutorial's {' / '.join(TUTORIAL_KEYS)}"
        )
    state, huggan = normalise_keys(payload, source)
    model = _build_either(state, source)
    examples_name = EXAMPLES_NAME.fullmatch(path.name)
    if huggan:
        kind, epoch = "huggan", None
    elif examples_name:
        kind, epoch = "pytorch/examples", int(examples_name["epoch"])
        if (examples_name["net"] == "G") != isinstance(model, Generator):
            found = "generator" if isinstance(model, Generator) else "discriminator"
            raise ModelLoadError(f"{source}: the name says net{examples_name['net']} but it holds a {found}")
    else:
        kind, epoch = "state_dict", None
    if isinstance(model, Generator):
        return LegacyCheckpoint(kind, model, None, epoch, generator_file=path)
    return LegacyCheckpoint(kind, None, model, epoch, discriminator_file=path)


def examples_sibling(path: str | os.PathLike) -> Path | None:
    """For ``netG_epoch_N.pth`` the existing ``netD_epoch_N.pth`` beside it (and vice versa)."""
    path = Path(path)
    match = EXAMPLES_NAME.fullmatch(path.name)
    if not match:
        return None
    other = "D" if match["net"] == "G" else "G"
    sibling = path.with_name(f"net{other}_epoch_{match['epoch']}.pth")
    return sibling if sibling.is_file() else None


def read_legacy(path: str | os.PathLike) -> LegacyCheckpoint:
    """Read a legacy checkpoint; a pytorch/examples file brings its G/D sibling along."""
    checkpoint = read_legacy_file(path)
    sibling = examples_sibling(path) if checkpoint.format == "pytorch/examples" else None
    if sibling is None:
        return _check_pair(checkpoint)
    other = read_legacy_file(sibling)
    wanted = "discriminator" if checkpoint.generator is not None else "generator"
    if other.format != "pytorch/examples" or getattr(other, wanted) is None:
        raise ModelLoadError(f"{sibling}: expected the {wanted} paired with {Path(path).name}, found something else")
    generator_side, discriminator_side = (checkpoint, other) if wanted == "discriminator" else (other, checkpoint)
    return _check_pair(
        replace(
            generator_side,
            discriminator=discriminator_side.discriminator,
            discriminator_file=discriminator_side.discriminator_file,
        )
    )


def _check_pair(checkpoint: LegacyCheckpoint) -> LegacyCheckpoint:
    """A generator and discriminator trained together must agree on the image channels."""
    generator, discriminator = checkpoint.generator, checkpoint.discriminator
    if generator is not None and discriminator is not None and generator.nc != discriminator.nc:
        raise ModelLoadError(
            f"{checkpoint.generator_file}: the generator makes nc={generator.nc} images but the "
            f"discriminator ({checkpoint.discriminator_file}) takes nc={discriminator.nc}; they are not a pair"
        )
    return checkpoint
