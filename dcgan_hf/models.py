"""The two DCGAN-64 networks, their DCGAN init, and strict Hub (de)serialisation.

Layer indices inside ``self.main`` are those of the PyTorch DCGAN tutorial and
pytorch/examples, so their checkpoints load key for key (``main.0.weight`` …).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from . import card as model_card

CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
HUB_METADATA: dict[str, Any] = dict(
    library_name="dcgan_hf",
    license="mit",
    pipeline_tag="unconditional-image-generation",
    tags=list(model_card.TAGS),
    paper_url="https://arxiv.org/abs/1511.06434",
    repo_url=model_card.REPO_URL,
    docs_url=model_card.DOCS_URL,
    model_card_template=model_card.TEMPLATE,
)


class ModelLoadError(ValueError):
    """A model folder or repo that cannot be loaded as asked; the message says why."""


def dcgan_init(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN paper init: conv weights N(0, 0.02), BN scale N(1, 0.02), BN shift 0.

    Pass ``generator`` to make the weights a function of its seed alone (training does).
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(module.bias)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelLoadError(f"{name} must be a positive integer, got {value!r}")
    return value


class _HubModel(nn.Module):
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
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        # safetensors.save_file creates 0600 files; written bytes follow the umask like any other file
        (save_directory / WEIGHTS_NAME).write_bytes(save(state, metadata={"format": "pt"}))

    @classmethod
    def config_from_dict(cls, config: dict[str, Any], source: str = "config") -> dict[str, int]:
        """Validate a config.json payload and return the constructor arguments."""
        if not isinstance(config, dict):
            raise ModelLoadError(f"{source}: config.json must hold a JSON object")
        model_type = config.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ModelLoadError(
                f"{source} holds a {model_type!r} model, not a {cls.model_type!r}; "
                f"load it with the matching class"
            )
        unknown = sorted(set(config) - set(cls.config_keys) - {"model_type"})
        if unknown:
            raise ModelLoadError(f"{source}: unknown config keys {unknown} for {cls.__name__}")
        return {key: _positive_int(key, config[key]) for key in cls.config_keys if key in config}

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
        unknown key, a missing/unexpected/mis-shaped tensor is an error naming it.
        ``subfolder`` selects a model inside the repo (a training push keeps D in ``discriminator/``).
        """
        if _unsupported:
            raise TypeError(f"unsupported arguments for from_pretrained: {sorted(_unsupported)}")
        source = str(pretrained_model_name_or_path)
        if os.path.isdir(source):
            folder = Path(source) / (subfolder or "")
            config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
            for path in (config_path, weights_path):
                if not path.is_file():
                    raise ModelLoadError(f"{folder} is not a dcgan_hf model folder: {path.name} is missing")
        elif os.path.exists(source) or _looks_like_path(source):
            raise ModelLoadError(f"no model folder at {source!r}")
        else:
            download = dict(
                repo_id=source, revision=revision, subfolder=subfolder, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only,
            )
            config_path = Path(_download(filename=CONFIG_NAME, **download))
            weights_path = Path(_download(filename=WEIGHTS_NAME, **download))
        try:
            raw_config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{source}: unreadable config.json ({error})") from error
        model = cls(**cls.config_from_dict(raw_config, source))
        label = source if os.path.isdir(source) else f"{source}@{revision or 'main'}"
        model.load_weights(weights_path, label=f"{label}/{subfolder + '/' if subfolder else ''}{WEIGHTS_NAME}")
        return model.to(map_location).eval()

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
        """``load_state_dict(strict=True)`` plus a shape check first, with one clear message."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mis_shaped = sorted(
            f"{key}: expected {tuple(own[key].shape)}, got {tuple(state[key].shape)}"
            for key in set(own) & set(state)
            if own[key].shape != state[key].shape
        )
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mis_shaped:
            problems.append(f"mis-shaped tensors {mis_shaped}")
        if problems:
            raise ModelLoadError(
                f"{source} does not fit {type(self).__name__}({self.config}): " + "; ".join(problems)
            )
        self.load_state_dict(state, strict=True)

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """Our card: metadata, sample grid and metrics slots (see ``dcgan_hf.card``)."""
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
        a local save names the folder.
        """
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
    from .hub import ensure_repo

    return ensure_repo(repo_id, private=push_kwargs.get("private"), token=push_kwargs.get("token"))


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") > 1


@contextlib.contextmanager
def hub_errors(where: str, filename: str | None = None) -> Iterator[None]:
    """Turn the Hub client's errors into a ModelLoadError saying what failed (repo, revision, file)."""
    what = filename or "it"
    try:
        yield
    except RevisionNotFoundError as error:
        raise ModelLoadError(f"revision not found: {where}") from error
    except RemoteEntryNotFoundError as error:  # (LocalEntryNotFoundError is an EntryNotFoundError too)
        raise ModelLoadError(f"{where} has no {what}: not a dcgan_hf model repo") from error
    except RepositoryNotFoundError as error:
        raise ModelLoadError(f"model repo not found (or private without a token): {where}") from error
    except LocalEntryNotFoundError as error:
        raise ModelLoadError(f"cannot reach the Hub for {where} and {what} is not in the local cache") from error
    except HfHubHTTPError as error:
        raise ModelLoadError(f"Hub error for {where}{'/' + filename if filename else ''}: {error}") from error
    except ValueError as error:  # HFValidationError: not a valid repo id
        raise ModelLoadError(f"{where!r} is neither a local folder nor a valid Hub repo id ({error})") from error


def _download(**kwargs: Any) -> str:
    """hf_hub_download with errors that say which repo, revision and file failed."""
    where = f"{kwargs['repo_id']}" + (f"@{kwargs['revision']}" if kwargs.get("revision") else "")
    with hub_errors(where, kwargs["filename"]):
        return hf_hub_download(**kwargs)


class Generator(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """DCGAN-64 generator: z (N, nz) or (N, nz, 1, 1) → images (N, nc, 64, 64) in [-1, 1]."""

    model_type = "dcgan-generator"
    config_keys = ("nz", "ngf", "nc")

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.nz, self.ngf, self.nc = (_positive_int(k, v) for k, v in (("nz", nz), ("ngf", ngf), ("nc", nc)))
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # 0: 1 → 4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # 3: 4 → 8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 6: 8 → 16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 9: 16 → 32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 12: 32 → 64
            nn.Tanh(),
        )
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(f"expected latents of shape (N, {self.nz}) or (N, {self.nz}, 1, 1), got {tuple(z.shape)}")
        return self.main(z)

    def sample(self, seeds: Sequence[int] | str, *, truncation: float = 1.0, device: str | torch.device | None = None,
               output: str = "pt"):
        """Images for these seeds: uint8 (N, nc, 64, 64), or ``output="pil"``/``"np"``; see :func:`dcgan_hf.sampling.sample`."""
        from .sampling import sample

        return sample(self, seeds, truncation=truncation, device=device, output=output)

    def interpolate(self, seeds: Sequence[int] | str, frames: int, **options: Any):
        """uint8 frames along a latent path through ``seeds``; see :func:`dcgan_hf.sampling.interpolate`."""
        from .sampling import interpolate

        return interpolate(self, seeds, frames, **options)


class Discriminator(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """DCGAN-64 discriminator returning logits (N,): the classic Sigmoid is left to the loss."""

    model_type = "dcgan-discriminator"
    config_keys = ("nc", "ndf")

    def __init__(self, nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.nc, self.ndf = _positive_int("nc", nc), _positive_int("ndf", ndf)
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # 0: 64 → 32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # 2: 32 → 16
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # 5: 16 → 8
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # 8: 8 → 4
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # 11: 4 → 1 (logit)
        )
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1:] != (self.nc, 64, 64):
            raise ValueError(f"expected images of shape (N, {self.nc}, 64, 64), got {tuple(images.shape)}")
        return self.main(images).flatten()
