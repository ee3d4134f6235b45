"""The two DCGAN-64 networks of Radford et al. (2015), arXiv:1511.06434, and their init.

Read them like the paper's figure: the generator projects z to a 4×4 map and doubles it
four times with strided transposed convolutions (BatchNorm + ReLU between, Tanh at the end);
the discriminator mirrors it with strided convolutions (LeakyReLU 0.2, BatchNorm except on
the first layer) down to one logit. Layer indices inside ``self.main`` are those of the
PyTorch DCGAN tutorial and pytorch/examples, so their checkpoints load key for key
(``main.0.weight`` …). Saving, loading and pushing, strict and bounded, are
:mod:`dcgan_hf.persistence`'s (:class:`~dcgan_hf.persistence.HubModel`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from . import directions as latent_directions
from .errors import ModelLoadError  # noqa: F401  (from dcgan_hf.models import ModelLoadError)
from .hub import card as model_card
from .layout import DIRECTION_NAMES_FILE, DIRECTIONS_FILE
from .persistence import (  # noqa: F401  (re-exported: dcgan_hf.models is where users found them)
    CONFIG_MAX_BYTES,
    SIZE_LIMITS,
    HubModel,
    TensorSpec,
    check_size,
    read_config,
    read_safetensors_header,
    tensor_problems,
)

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



class Generator(HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """DCGAN-64 generator: z (N, nz) or (N, nz, 1, 1) → images (N, nc, 64, 64) in [-1, 1]."""

    model_type = "dcgan-generator"
    config_keys = ("nz", "ngf", "nc")

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.nz, self.ngf, self.nc = (check_size(k, v) for k, v in (("nz", nz), ("ngf", ngf), ("nc", nc)))
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
        self._directions: latent_directions.Directions | None = None  # None: SeFa of the current weights

    @property
    def directions(self) -> latent_directions.Directions:
        """The latent directions edits move along: those loaded or set, else SeFa of the weights (ms)."""
        return self._directions if self._directions is not None else latent_directions.sefa(self)

    @directions.setter
    def directions(self, directions: latent_directions.Directions | None) -> None:
        if directions is not None and directions.nz != self.nz:
            raise ValueError(f"directions for nz={directions.nz} do not fit a generator with nz={self.nz}")
        self._directions = directions

    def _save_pretrained(self, save_directory: Path) -> None:
        """config.json and weights, plus the directions (computed now when none were loaded or set)."""
        super()._save_pretrained(save_directory)
        self.directions.save(save_directory)

    def load_state_dict_strict(self, state: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """As for every model; directions loaded or set before belong to the old weights and are dropped."""
        super().load_state_dict_strict(state, source)
        self._directions = None

    def _load_extras(self, fetch: Callable[[str], Path | None], label: str) -> None:
        self._directions = latent_directions.load_files(fetch(DIRECTIONS_FILE), fetch(DIRECTION_NAMES_FILE),
                                                        self.nz, label.rsplit("/", 1)[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(f"expected latents of shape (N, {self.nz}) or (N, {self.nz}, 1, 1), got {tuple(z.shape)}")
        return self.main(z)

    def sample(self, seeds: Sequence[int] | str, *, truncation: float = 1.0, device: str | torch.device | None = None,
               output: str = "pt", edit: dict[int | str, float] | None = None):
        """Images for these seeds: uint8 (N, nc, 64, 64), or ``output="pil"``/``"np"``
        (see :func:`dcgan_hf.sampling.sample`).

        ``edit={direction: amount}`` moves every latent along :attr:`directions` (index or name;
        amounts in standard deviations of the prior, ±6 at most) before it is drawn.
        """
        from .sampling import sample

        return sample(self, seeds, truncation=truncation, device=device, output=output, edit=edit)

    def interpolate(self, seeds: Sequence[int] | str, frames: int, **options: Any):
        """uint8 frames along a latent path through ``seeds``; see :func:`dcgan_hf.sampling.interpolate`."""
        from .sampling import interpolate

        return interpolate(self, seeds, frames, **options)


class Discriminator(HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """DCGAN-64 discriminator returning logits (N,): the classic Sigmoid is left to the loss."""

    model_type = "dcgan-discriminator"
    config_keys = ("nc", "ndf")

    def __init__(self, nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.nc, self.ndf = check_size("nc", nc), check_size("ndf", ndf)
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


def dcgan_init(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN paper init: conv weights N(0, 0.02), BN scale N(1, 0.02), BN shift 0.

    Pass ``generator`` to make the weights a function of its seed alone (training does). A model
    built on the meta device (shapes only: the loaders' size checks) has no values to draw, and
    drawing them there imports torch's compiler (~1.5 s of CPU) for nothing.
    """
    if any(parameter.is_meta for parameter in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(module.bias)
