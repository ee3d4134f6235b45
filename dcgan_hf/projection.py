"""Find the latent whose face looks most like a photo ("your face in latent space").

GAN inversion by optimisation: start from the best of a few seeded latents, then run Adam
on z (the networks stay frozen) to minimise a pixel loss, plus a feature loss from the
model's discriminator when the model has one (its middle layers respond to edges and
parts rather than exact pixels, which keeps the result sharp and face-like), plus a small
prior that keeps z at the radius Gaussian latents live at. A few hundred steps on one
64×64 image take a few seconds on a CPU.

:class:`Projector` runs in slices of steps so a server can interleave other requests
between them; :func:`project` runs one to the end. The found z is rounded through
float16 (``latent_token.quantize``) before the final render, so the token handed out
reproduces the reconstruction exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import images as imaging
from .latent_token import LATENT_BOUND, quantize
from .models import Discriminator, Generator
from .sampling import eval_mode, render

FEATURE_LAYERS = (4, 7)  # D.main indices after the 2nd and 3rd LeakyReLU: 16×16 and 8×8 maps


@dataclass(frozen=True)
class ProjectionSettings:
    """The optimiser's knobs; the defaults take ~2 s on one CPU thread for ngf=64 (bench/demo_features.py)."""

    steps: int = 200  # 0: just the best seeded candidate (the baseline in bench/demo_features.py)
    learning_rate: float = 0.3
    starts: int = 16  # seeded latents scored by one forward pass; the best one is refined
    feature_weight: float = 0.5  # discriminator feature loss, relative to the pixel loss
    prior_weight: float = 0.02  # pulls mean(z²) towards 1
    seed: int = 0  # the candidates' seed: the same photo always projects to the same latent

    def __post_init__(self) -> None:
        if not (0 <= self.steps <= 5000 and 1 <= self.starts <= 256 and self.learning_rate > 0):
            raise ValueError(f"unusable projection settings: {self}")


@dataclass(frozen=True)
class ProjectionResult:
    z: torch.Tensor  # float32 (nz,), float16-exact: what latent_token.encode stores
    image: torch.Tensor  # uint8 (nc, 64, 64): render(generator, z)
    target: torch.Tensor  # uint8 (nc, 64, 64): the photo as the model saw it
    loss: float  # the objective at the last step (pixel + features + prior)
    mse: float  # mean squared error between image and target, pixels in [0, 1]
    steps: int
    used_discriminator: bool

    @property
    def psnr(self) -> float:
        """Peak signal-to-noise ratio of the reconstruction in dB (higher is closer)."""
        return 10 * math.log10(1.0 / self.mse) if self.mse > 0 else math.inf


def pixel_error(image: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error of two uint8 images, on the [0, 1] scale PSNR is quoted in."""
    return float(((image.float() - target.float()) / 255.0).pow(2).mean())


class Projector:
    """One projection, advanced ``run(steps)`` at a time; the networks are never modified."""

    def __init__(
        self,
        generator: Generator,
        target: torch.Tensor,
        discriminator: Discriminator | None = None,
        settings: ProjectionSettings = ProjectionSettings(),
        *,
        hidden: torch.Tensor | None = None,
    ) -> None:
        """``hidden`` (bool (64, 64), True = unknown) restricts both losses to the other pixels:
        the hole's pixels never reach the search (:mod:`dcgan_hf.completion`)."""
        if target.dtype != torch.uint8 or tuple(target.shape) != (generator.nc, 64, 64):
            raise ValueError(f"target must be uint8 ({generator.nc}, 64, 64), got {target.dtype} {tuple(target.shape)}")
        if discriminator is not None and discriminator.nc != generator.nc:
            raise ValueError("the discriminator and generator disagree on the number of channels")
        if hidden is not None and (hidden.dtype != torch.bool or tuple(hidden.shape) != (64, 64)):
            raise ValueError(f"hidden must be bool (64, 64), got {hidden.dtype} {tuple(hidden.shape)}")
        self.generator, self.discriminator, self.settings = generator, discriminator, settings
        self.target = target
        parameter = next(generator.parameters())
        self._device, self._dtype = parameter.device, parameter.dtype
        self._hidden = None if hidden is None else hidden.to(self._device)
        self._visible = None if hidden is None else (~self._hidden).float()[None, None]
        self._goal = imaging.to_float(target[None]).to(self._device, self._dtype)
        if self._visible is not None:
            self._goal = self._goal * self._visible.to(self._dtype)  # the hole: mid-grey, whatever it held
        self._goal_features: list[torch.Tensor] = []
        self._feature_weights: list[torch.Tensor | None] = []
        self._z: torch.Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.steps_done = 0
        self.loss = math.inf

    @property
    def done(self) -> bool:
        return self.steps_done >= self.settings.steps

    def run(self, steps: int) -> bool:
        """Advance by at most ``steps`` optimiser steps; True once all are done."""
        with torch.enable_grad():
            if self._z is None:
                self._begin()
            for _ in range(min(steps, self.settings.steps - self.steps_done)):
                self._step()
        return self.done

    def result(self, finish: bool = True) -> ProjectionResult:
        """The rounded latent, its image and how close it is.

        ``finish`` runs any steps still left; without it a server that ran out of time gets
        the best latent so far (``steps`` then says how many were done).
        """
        while self._z is None or (finish and not self.done):
            self.run(self.settings.steps)
        z = quantize(self._z.detach()[0].cpu())
        image = render(self.generator, z[None])[0]
        return ProjectionResult(z, image, self.target, self.loss, pixel_error(image, self.target), self.steps_done,
                                self.discriminator is not None)

    # -- internals -----------------------------------------------------------------------------

    def _begin(self) -> None:
        settings = self.settings
        noise = torch.Generator(device="cpu").manual_seed(settings.seed)
        candidates = torch.randn(settings.starts, self.generator.nz, generator=noise)
        with torch.no_grad():
            scores = torch.cat([self._pixel_loss(self._forward(part), per_sample=True)
                                for part in candidates.split(16)])
            if self.discriminator is not None:
                self._goal_features = [f.detach() for f in self._features(self._goal)]
                self._feature_weights = self._valid_features()
        best = candidates[int(scores.argmin())][None]
        self._z = best.to(self._device).requires_grad_(True)
        self._optimizer = torch.optim.Adam([self._z], lr=settings.learning_rate)

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.generator):
            return self.generator(z.to(self._device, self._dtype))

    def _pixel_loss(self, images: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        errors = (images.float() - self._goal.float()).pow(2)
        if self._visible is not None:  # the mean over visible pixels only
            errors = errors * self._visible / self._visible.mean()
        return errors.flatten(1).mean(1) if per_sample else errors.mean()

    def _valid_features(self) -> list[torch.Tensor | None]:
        """Per feature layer, 1 where a position's receptive field holds no hidden pixel (None: no mask).

        The hole is pushed through D's convolutions with all-ones kernels of the same geometry,
        so a position is kept only if nothing it sees was hidden.
        """
        if self._hidden is None:
            return [None] * len(FEATURE_LAYERS)
        reach, weights = self._hidden.float()[None, None], []
        for index, layer in enumerate(self.discriminator.main):
            if isinstance(layer, nn.Conv2d):
                ones = torch.ones(1, 1, *layer.kernel_size, device=reach.device)
                reach = nn.functional.conv2d(reach, ones, stride=layer.stride, padding=layer.padding)
            if index in FEATURE_LAYERS:
                weights.append((reach == 0).float())
            if index >= max(FEATURE_LAYERS):
                break
        return weights

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, features = images.to(next(self.discriminator.parameters()).dtype), []
        with eval_mode(self.discriminator):
            for index, layer in enumerate(self.discriminator.main):
                out = layer(out) if not isinstance(layer, nn.LeakyReLU) else nn.functional.leaky_relu(out, 0.2)
                if index in FEATURE_LAYERS:
                    features.append(out.float())
                if index >= max(FEATURE_LAYERS):
                    break
        return features

    def _objective(self, z: torch.Tensor) -> torch.Tensor:
        images = self._forward(z)
        loss = self._pixel_loss(images)
        if self.discriminator is not None:
            terms = [
                _feature_distance(mine, goal, weight)
                for mine, goal, weight in zip(self._features(images), self._goal_features, self._feature_weights)
                if weight is None or bool(weight.any())  # a layer the hole covers entirely says nothing
            ]
            if terms:
                loss = loss + self.settings.feature_weight * (sum(terms) / len(FEATURE_LAYERS))
        return loss + self.settings.prior_weight * (z.pow(2).mean() - 1.0).pow(2)

    def _step(self) -> None:
        settings = self.settings
        # cosine decay: big moves early, fine ones at the end
        progress = self.steps_done / settings.steps
        for group in self._optimizer.param_groups:
            group["lr"] = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
        loss = self._objective(self._z)
        (gradient,) = torch.autograd.grad(loss, [self._z])  # only z's gradient: no weight grads computed
        self._z.grad = gradient
        self._optimizer.step()
        with torch.no_grad():
            self._z.clamp_(-LATENT_BOUND, LATENT_BOUND)
        self.loss = float(loss.detach())
        self.steps_done += 1


def _feature_distance(mine: torch.Tensor, goal: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Squared feature distance relative to the goal's feature energy, over the positions ``weight`` keeps."""
    if weight is None:
        return (mine - goal).pow(2).mean() / goal.pow(2).mean().clamp_min(1e-8)
    share = weight.mean()
    return ((mine - goal).pow(2) * weight).mean() / (goal.pow(2) * weight).mean().clamp_min(1e-8 * share)


def project(
    generator: Generator,
    target: torch.Tensor,
    discriminator: Discriminator | None = None,
    settings: ProjectionSettings = ProjectionSettings(),
) -> ProjectionResult:
    """The latent of ``generator`` closest to the uint8 image ``target`` (3, 64, 64)."""
    return Projector(generator, target, discriminator, settings).result()
