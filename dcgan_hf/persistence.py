"""Hardened persistence for the networks: what a config.json, a safetensors file or a Hub repo
may hold, checked before anything is built or allocated, and strict save/load/push.

The mixin's ``from_pretrained`` silently builds default-sized models when config.json is
missing, loads with ``strict=False`` and falls back to pickles; :class:`HubModel` replaces it:
sizes bounded in one place (:data:`SIZE_LIMITS`), config and header read with byte and depth
limits, shapes and dtypes checked against the header, NaN/inf and negative variances refused,
every failure one :class:`~dcgan_hf.errors.ModelLoadError` line.
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from huggingface_hub.errors import EntryNotFoundError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from . import bounded_json
from .hub import card as model_card
from .errors import ModelLoadError
from .finite import require_finite
from .hub.client import download_file, ensure_repo
from .layout import CONFIG_FILE, WEIGHTS_FILE, HubLayout
from .version import __version__

# The architecture sizes a config.json, a legacy checkpoint or a training flag may ask for:
# the one place they are bounded. DCGAN uses nz 100, ngf/ndf 64, nc 3; the limits are far
# above that, and far below the sizes that take gigabytes and minutes just to build.
SIZE_LIMITS: dict[str, int] = {"nz": 1024, "ngf": 512, "ndf": 512, "nc": 4}
CONFIG_MAX_BYTES = 64 * 1024  # ours is ~80 bytes; read no more than this
CONFIG_MAX_DEPTH = 8  # ours is one flat object; deeper JSON is refused before parsing
CONFIG_JSON = bounded_json.JSONLimits(CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, max_values=4096)
HEADER_MAX_BYTES = 1024 * 1024  # a safetensors header (JSON); a DCGAN's is ~3 KB
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
FLOAT_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.bfloat16})


def check_size(name: str, value: Any) -> int:
    """``value`` as an architecture size within :data:`SIZE_LIMITS` (a bool is not an int)."""
    limit = SIZE_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ModelLoadError(f"{name} must be a positive integer (at most {limit}), got {reprlib.repr(value)}")
    return value


TensorSpec = tuple[tuple[int, ...], "torch.dtype | str"]  # shape, dtype (a str when torch has no such dtype)


def tensor_problems(expected: dict[str, TensorSpec], given: dict[str, TensorSpec]) -> list[str]:
    """What keeps ``given`` tensors from loading into a model that has ``expected`` ones.

    Float parameters and buffers need a float tensor (an integer or bool one would load by
    silent conversion and serve flat images); integer buffers need an integer one.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    common = sorted(set(expected) & set(given))
    mis_shaped = [f"{key}: expected {expected[key][0]}, got {given[key][0]}"
                  for key in common if tuple(expected[key][0]) != tuple(given[key][0])]
    wrong_dtype = []
    for key in common:
        want, got = expected[key][1], given[key][1]
        if want in FLOAT_DTYPES and got not in FLOAT_DTYPES:
            wrong_dtype.append(f"{key}: {_dtype_name(got)}, expected a float dtype")
        elif want not in FLOAT_DTYPES and (not isinstance(got, torch.dtype) or got.is_floating_point
                                           or got.is_complex or got == torch.bool):
            wrong_dtype.append(f"{key}: {_dtype_name(got)}, expected an integer dtype")
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("mis-shaped tensors", mis_shaped), ("tensors of the wrong dtype", wrong_dtype)):
        if keys:
            problems.append(f"{label} {keys}")
    return problems


def _dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def read_config(path: str | os.PathLike, source: str) -> Any:
    """config.json, parsed only once it is known to be small and shallow; duplicate keys,
    NaN/Infinity and out-of-range numbers are refused rather than silently resolved."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(CONFIG_MAX_BYTES + 1)
        if len(raw) > CONFIG_MAX_BYTES:
            raise ValueError(f"larger than {CONFIG_MAX_BYTES:,} bytes; a DCGAN config is a few lines")
        return bounded_json.loads(raw, CONFIG_JSON)
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError, too many digits…
        raise ModelLoadError(f"{source}: unreadable config.json ({error})") from error


def read_safetensors_header(path: str | os.PathLike, label: str) -> dict[str, TensorSpec]:
    """Every tensor's shape and dtype from a safetensors header, without reading any tensor.

    The header's size is checked before it is parsed; safetensors itself then checks that
    the offsets cover the file exactly, so loading allocates no more than the file holds.
    """
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError("shorter than a safetensors header")
        size = int.from_bytes(prefix, "little")
        if size > HEADER_MAX_BYTES:
            raise ValueError(f"its header claims {size:,} bytes; at most {HEADER_MAX_BYTES:,} are read")
        specs: dict[str, TensorSpec] = {}
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                dtype = piece.get_dtype()
                specs[key] = (tuple(piece.get_shape()), SAFETENSORS_DTYPES.get(dtype, dtype))
        return specs
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"{label}: not a readable safetensors file ({error})") from error


class HubModel(nn.Module):
    """Shared save/load logic: our own config.json and strict safetensors loading.

    The mixin's ``from_pretrained`` silently builds default-sized models when config.json
    is missing, loads with ``strict=False`` and falls back to pickles; we replace it.
    """

    model_type: ClassVar[str]
    config_keys: ClassVar[tuple[str, ...]]
    main: nn.Sequential

    @property
    def config(self) -> dict[str, Any]:
        """The architecture arguments: exactly what config.json holds, besides model_type."""
        return {key: getattr(self, key) for key in self.config_keys}

    def _save_pretrained(self, save_directory: Path) -> None:
        config = {"model_type": self.model_type, **self.config}
        (save_directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        # safetensors.save_file creates 0600 files; written bytes follow the umask like any other file
        (save_directory / WEIGHTS_FILE).write_bytes(save(state, metadata=self.weights_metadata()))

    def weights_metadata(self) -> dict[str, str]:
        """What the weights file says about itself (safetensors metadata: strings only): a file found on
        its own still names its architecture and the library that wrote it. Loading never trusts it:
        config.json and the tensors' shapes decide."""
        return {"format": "pt", "model_type": self.model_type, "library": "dcgan_hf", "library_version": __version__,
                **{key: str(value) for key, value in self.config.items()}}

    @classmethod
    def config_from_dict(cls, config: dict[str, Any], source: str = "config") -> dict[str, int]:
        """Validate a config.json payload and return the constructor arguments."""
        if not isinstance(config, dict):
            raise ModelLoadError(f"{source}: config.json must hold a JSON object")
        model_type = config.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ModelLoadError(
                f"{source} holds a {reprlib.repr(model_type)} model, not a {cls.model_type!r}; "
                f"load it with the matching class"
            )
        unknown = sorted(set(config) - set(cls.config_keys) - {"model_type"})
        if unknown:
            raise ModelLoadError(f"{source}: unknown config keys {reprlib.repr(unknown)} for {cls.__name__}")
        sizes = {}
        for key in cls.config_keys:
            if key in config:
                try:
                    sizes[key] = check_size(key, config[key])
                except ModelLoadError as error:
                    raise ModelLoadError(f"{source}: config.json: {error}") from None
        return sizes

    @classmethod
    def expected_tensors(cls, config: dict[str, int]) -> dict[str, TensorSpec]:
        """Shape and dtype of every tensor a model of ``config`` holds, allocating nothing."""
        with torch.device("meta"):
            model = cls(**config)
        return {key: (tuple(value.shape), value.dtype) for key, value in model.state_dict().items()}

    @classmethod
    def check_fits(cls, config: dict[str, int], given: dict[str, TensorSpec], source: str) -> None:
        """Refuse tensors (shapes and dtypes only) that a model of ``config`` cannot load, before building it."""
        problems = tensor_problems(cls.expected_tensors(config), given)
        if problems:
            raise ModelLoadError(f"{source} does not fit {cls.__name__}({config}): " + "; ".join(problems))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        subfolder: str | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        map_location: str | torch.device = "cpu",
        **_unsupported: Any,
    ):
        """Load from a local folder or a Hub repo id (at ``revision``), strictly.

        Only ``config.json`` + ``model.safetensors`` are read; a missing config, an
        unknown key or out-of-range size, a missing/unexpected/mis-shaped tensor, a wrong
        dtype or a NaN weight is an error naming it. The config is checked against the
        safetensors header before the model is built, and every failure is a ModelLoadError.
        ``subfolder`` selects a model inside the repo (a training push keeps D in ``discriminator/``).
        """
        if _unsupported:
            raise TypeError(f"unsupported arguments for from_pretrained: {sorted(_unsupported)}")
        source = str(pretrained_model_name_or_path)
        try:
            return cls._from_pretrained_strict(
                source, revision=revision, subfolder=subfolder, force_download=force_download, token=token,
                cache_dir=cache_dir, local_files_only=local_files_only, map_location=map_location,
            )
        except ModelLoadError:
            raise
        except (OSError, ValueError, RuntimeError, MemoryError, RecursionError, SafetensorError) as error:
            # whatever else a hostile folder or a failing disk provokes is still a load failure, in one line
            detail = " ".join(str(error).split())[:300]
            raise ModelLoadError(f"{source}: cannot load ({type(error).__name__}: {detail})") from error

    @classmethod
    def _from_pretrained_strict(
        cls, source: str, *, revision: str | None, subfolder: str | None, map_location: str | torch.device,
        **download_options: Any,
    ):
        if os.path.isdir(source):
            folder = HubLayout(Path(source) / (subfolder or ""))
            config_path, weights_path = folder.config, folder.weights
            for path in (config_path, weights_path):
                if not path.is_file():
                    raise ModelLoadError(f"{folder.root} is not a dcgan_hf model folder: {path.name} is missing")
        elif os.path.exists(source) or _looks_like_path(source):
            raise ModelLoadError(f"no model folder at {source!r}")
        else:
            download = dict(revision=revision, subfolder=subfolder, **download_options)
            config_path = download_file(source, CONFIG_FILE, **download)
            weights_path = download_file(source, WEIGHTS_FILE, **download)
        label = source if os.path.isdir(source) else f"{source}@{revision or 'main'}"
        label = f"{label}/{subfolder + '/' if subfolder else ''}{WEIGHTS_FILE}"
        config = cls.config_from_dict(read_config(config_path, source), source)
        # config and weights must agree before anything is allocated: a 100-byte config.json
        # could otherwise ask for a model of gigabytes
        cls.check_fits(config, read_safetensors_header(weights_path, label), label)
        model = cls(**config)
        model.load_weights(weights_path, label=label)
        if os.path.isdir(source):
            model._load_extras(lambda name: folder.root / name if (folder.root / name).is_file() else None, label)
        else:
            model._load_extras(lambda name: _optional_download(source, name, download), label)
        return model.to(map_location).eval()

    def _load_extras(self, fetch: Callable[[str], Path | None], label: str) -> None:
        """Files a model folder may hold beside its weights (``fetch``: name → local path, or None if absent)."""
        return None

    def load_weights(self, path: str | os.PathLike, label: str | None = None) -> None:
        """Load a safetensors file strictly; the error lists every bad key and shape.

        ``label`` names the file in errors (a repo id reads better than a cache path).
        """
        label = label or str(path)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(f"{label}: not a readable safetensors file ({error})") from error
        self.load_state_dict_strict(state, source=label)

    def load_state_dict_strict(self, state: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """``load_state_dict(strict=True)`` after checking keys, shapes, dtypes and values, with one clear message.

        NaN/inf weights or a negative BatchNorm variance are refused: they load fine and then
        serve black or grey images.
        """
        own = {key: (tuple(value.shape), value.dtype) for key, value in self.state_dict().items()}
        given = {key: (tuple(value.shape), value.dtype) for key, value in state.items()}
        problems = tensor_problems(own, given)
        if problems:
            raise ModelLoadError(
                f"{source} does not fit {type(self).__name__}({self.config}): " + "; ".join(problems)
            )
        non_finite = sorted(key for key, value in state.items()
                            if value.is_floating_point() and not bool(torch.isfinite(value).all()))
        if non_finite:
            raise ModelLoadError(f"{source}: NaN or infinite values in {non_finite}; these weights are broken")
        negative = sorted(key for key, value in state.items()
                          if key.endswith("running_var") and bool((value < 0).any()))
        if negative:
            raise ModelLoadError(f"{source}: negative BatchNorm variances in {negative}; these weights are broken")
        self.load_state_dict(state, strict=True)

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """Our card: metadata, sample grid and metrics slots (see ``dcgan_hf.hub.card``)."""
        return model_card.render(self, **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """The mixin's ``save_pretrained``, with a card whose usage snippet loads from where the model is.

        Pushing (``push_to_hub=True``) names the repo (created first, so its full id is known);
        a local save names the folder. Weights holding NaN or inf are refused before anything
        is written (:class:`dcgan_hf.finite.NonFiniteError`): no folder or push ever carries them.
        """
        require_finite(self.state_dict(), f"{type(self).__name__} weights")
        card = dict(model_card_kwargs or {})
        name = Path(save_directory).name
        card.setdefault("local_path", None if name.startswith(".") else name)  # hidden: a staging folder
        if push_to_hub:
            repo_id = _created_repo_id(repo_id or name, push_to_hub_kwargs)
            card["repo_id"] = repo_id
        super().save_pretrained(save_directory, config=config, model_card_kwargs=card)
        if not push_to_hub:
            return None
        return super().push_to_hub(repo_id, config=config, model_card_kwargs=card, **push_to_hub_kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """The mixin's ``push_to_hub``; the pushed card's usage snippet names ``repo_id`` (as the Hub resolved it)."""
        repo_id = _created_repo_id(repo_id, kwargs)
        card = {**(model_card_kwargs or {}), "repo_id": repo_id}
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)


def _created_repo_id(repo_id: str, push_kwargs: dict[str, Any]) -> str:
    """Create the repo if needed (as ``push_to_hub`` would) and return its full id ("name" → "user/name")."""
    return ensure_repo(repo_id, private=push_kwargs.get("private"), token=push_kwargs.get("token"))


def _optional_download(repo_id: str, filename: str, download: dict[str, Any]) -> Path | None:
    """A file the repo may lack: None when the Hub says it has no such file (or, offline, the cache
    has none); any other failure is a ModelLoadError like those of the required files."""
    try:
        return download_file(repo_id, filename, **download)
    except ModelLoadError as error:
        if isinstance(error.__cause__, EntryNotFoundError):  # remote 404, or not in the offline cache
            return None
        raise


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") > 1


_HubModel = HubModel  # the name before the networks moved to dcgan_hf.models' top
