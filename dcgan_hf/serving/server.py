"""The model server: one ModelServer runs all the demo's model work on its worker -
grids, walks (from seeds or latent tokens), photo projections (``dcgan_hf.projection``,
20 optimiser steps per worker turn) and the Training tab's epochs (``dcgan_hf.revisions``).

Requests render one ``dcgan_hf.sampling.CHUNK`` of images per worker turn, so a 64-image request
lets a 1-image request in between its chunks instead of making it wait for all four.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import torch
from PIL import Image

from .. import images as imaging, latent_token
from ..arithmetic import CENTRE
from ..completion import Completion, completer, finish as finish_completion
from ..devices import resolve_device
from ..directions import Directions
from ..epoch_history import evenly_spaced
from ..hub.loading import BUNDLED_MODEL, LoadedModel, hub_commit
from ..latent import path
from ..models import Discriminator, Generator
from ..photos import Photo
from ..projection import ProjectionResult, ProjectionSettings, Projector
from ..revisions import TrainingHistory, TrainingRevision, find_history
from ..sampling import CHUNK, render, sample_latents
from .fallback import ModelStatus, describe_source, find_discriminator, load_revision_on, load_with_fallback
from .requests import MAX_FRAMES, GenerateRequest, InterpolateRequest
from .threads import ThreadPolicy, choose_precision, on_zero_gpu
from .worker import InferenceWorker

if TYPE_CHECKING:  # the steering requests read their values with .requests' checks
    from .steering import ArithmeticRequest, EditRequest, FaceSource, SweepRequest

logger = logging.getLogger(__name__)
T = TypeVar("T")

STRIP_COLUMNS = 12  # an interpolation strip: frames to a row
GIF_FRAME_MS = 80
PROJECTION_SLICE = 20  # optimiser steps per worker turn: others' requests run in between
PROJECTION_SECONDS = 4.5  # a projection stops here with its best latent so far (the demo promises ≤ 5 s)
MAX_GIF_REVISIONS = MAX_FRAMES  # the Training tab's GIF samples at most this many epochs


@dataclass(frozen=True)
class GeneratedGrid:
    images: torch.Tensor  # uint8 (N, nc, 64, 64)
    png: bytes  # the grid, lossless

    def tile_pngs(self) -> list[bytes]:
        """Each image as its own lossless PNG (the page's gallery tiles)."""
        return [imaging.png_bytes(image) for image in imaging.to_pil(self.images)]


@dataclass(frozen=True)
class Interpolation:
    frames: torch.Tensor  # uint8 (frames, nc, 64, 64)
    strip_png: bytes  # every frame, STRIP_COLUMNS to a row
    gif: bytes  # the animation, looping


@dataclass(frozen=True)
class Projection:
    """A photo's projection: the result, its latent token and its pictures."""

    result: ProjectionResult
    token: str  # latent_token.encode(result.z): what /interpolate accepts
    reconstruction_png: bytes
    target_png: bytes  # the photo as the model saw it (64×64); shown inline, never written to disk
    seconds: float
    preview_jpeg: bytes = b""  # the photo itself, small (photos.Photo.preview_jpeg); inline only

    @property
    def filename(self) -> str:
        """The reconstruction's file name: 12 characters of its token (after the "z1." prefix)."""
        return f"dcgan-face-{self.token[3:15]}.png"

    def summary(self) -> dict[str, Any]:
        result = self.result
        return {
            "loss": round(result.loss, 6), "mse": round(result.mse, 6), "psnr_db": round(result.psnr, 2),
            "steps": result.steps, "discriminator_features": result.used_discriminator,
            "seconds": round(self.seconds, 2), "latent": self.token,
        }


@dataclass(frozen=True)
class TrainingWalk:
    """One seed at each of the run's epochs, oldest first."""

    revisions: tuple[TrainingRevision, ...]
    frames: torch.Tensor  # uint8 (len(revisions), nc, 64, 64)
    strip_png: bytes
    gif: bytes


class RequestGauge:
    """How many requests are inside the model server now, and the most there have been at once.

    ``/model_info`` reports both: the queue's concurrency limit is visible from outside.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __enter__(self) -> "RequestGauge":
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.running -= 1


def _counted(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def counted(self: "ModelServer", *args: Any, **kwargs: Any) -> T:
        with self.gauge:
            return method(self, *args, **kwargs)

    return counted


@dataclass
class ModelServer:
    """A loaded generator on its device, its status, and the worker that runs it.

    ``discriminator`` (when the model has one) sharpens projections; ``history`` (when the
    model has training revisions) feeds the Training tab.
    """

    generator: Generator
    status: ModelStatus
    worker: InferenceWorker = field(repr=False)
    discriminator: Discriminator | None = field(default=None, repr=False)
    history: TrainingHistory | None = field(default=None, repr=False)
    gauge: RequestGauge = field(default_factory=RequestGauge, repr=False)
    directions: Directions | None = field(default=None, repr=False)  # the Edit tab's; serve() fills it in
    # live mode (issue 18, dcgan_hf.serving.live): the weights in fp32 on the CPU, what the browser runs and is
    # compared with; ``generator`` itself may be an fp16 copy on a GPU. serve() fills it in.
    cpu_generator: Generator | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        model: str | os.PathLike = BUNDLED_MODEL,
        *,
        fallback: str | os.PathLike = BUNDLED_MODEL,
        device: str = "auto",
    ) -> "ModelServer":
        """Load ``model`` (or the fallback if it cannot be loaded) and serve it."""
        target = resolve_device(device)
        loaded = load_with_fallback(model, fallback)
        discriminator = find_discriminator(loaded)
        history = find_history(loaded.spec, online=not loaded.from_cache_offline,
                               load=lambda revision: load_revision_on(revision, target))
        return cls.serve(loaded.generator, target, requested=str(model), source=loaded,
                         discriminator=discriminator, history=history)

    @classmethod
    def serve(
        cls,
        generator: Generator,
        device: torch.device | str = "cpu",
        *,
        requested: str = "in-memory generator",
        source: LoadedModel | None = None,
        policy: ThreadPolicy | None = None,
        discriminator: Discriminator | None = None,
        history: TrainingHistory | None = None,
    ) -> "ModelServer":
        """Place ``generator`` on ``device``, pick its precision and start the worker."""
        target = torch.device(device)
        zero_gpu = on_zero_gpu()
        directions = generator.directions  # loaded with the model, else SeFa of its (fp32) weights
        cpu_generator = fp32_on_cpu(generator, target)  # live mode (issue 18)
        generator, precision = choose_precision(generator.to(target).eval(), target, zero_gpu=zero_gpu)
        if discriminator is not None:
            discriminator = discriminator.to(target).eval()
        policy = policy or ThreadPolicy.for_device(target)
        spec = source.spec if source else None
        status = ModelStatus(
            requested=requested,
            serving=describe_source(spec) if spec else requested,
            revision=spec.revision if spec else None,
            commit=hub_commit(spec) if spec else None,
            config=dict(generator.config),
            device=str(target),
            precision=precision.note,
            threads=policy.describe(),
            from_cache_offline=source.from_cache_offline if source else False,
            fallback_reason=source.fallback_reason if source else None,
            discriminator=discriminator is not None,
            training_epochs=tuple(history.epochs) if history else (),
        )
        logger.info("serving %s on %s, %s", status.serving, target, precision.note)
        return cls(generator, status, InferenceWorker(policy, threaded=not zero_gpu), discriminator, history,
                   directions=directions, cpu_generator=cpu_generator)

    @_counted
    def generate(self, request: GenerateRequest) -> GeneratedGrid:
        """The images for ``request.seeds`` (bit-identical to ``dcgan_hf.sample``) and their grid."""
        z = self.worker.run(self._sample_latents, request)
        images, grid = self._render(z, imaging.grid_image)
        return GeneratedGrid(images, imaging.png_bytes(grid))

    @_counted
    def interpolate(self, request: InterpolateRequest) -> Interpolation:
        """The frames of ``dcgan_hf.interpolate`` for ``request``, as a PNG strip and a GIF."""
        z = self.worker.run(self._path_latents, request)
        frames, pictures = self._render(z, self._strip_and_frames)
        strip, frame_images = pictures
        return Interpolation(frames, imaging.png_bytes(strip), imaging.gif_bytes(frame_images, GIF_FRAME_MS))

    @_counted
    def project(
        self, photo: Photo, settings: ProjectionSettings = ProjectionSettings(), seconds: float = PROJECTION_SECONDS
    ) -> Projection:
        """The latent closest to ``photo``, optimised ``PROJECTION_SLICE`` steps per worker turn.

        A busy machine cannot stretch the wait: after ``seconds`` (time queued behind other
        requests included) the best latent so far is returned; an idle one finishes every step.
        """
        started = time.perf_counter()
        projector = self.worker.run(Projector, self.generator, photo.pixels, self.discriminator, settings)
        while not self.worker.run(projector.run, PROJECTION_SLICE):
            if time.perf_counter() - started >= seconds:
                break
        result = self.worker.run(projector.result, False)
        seconds = time.perf_counter() - started
        reconstruction, target = imaging.to_pil(torch.stack([result.image, result.target]))
        logger.info("projected a %dx%d %s photo in %.2f s (PSNR %.1f dB)", *photo.size, photo.format, seconds,
                    result.psnr)
        return Projection(result, latent_token.encode(result.z), imaging.png_bytes(reconstruction),
                          imaging.png_bytes(target), seconds, photo.preview_jpeg)

    @_counted
    def training_grid(
        self, epoch: int, seeds: Sequence[int], truncation: float = 1.0
    ) -> tuple[TrainingRevision, GeneratedGrid]:
        """``seeds`` drawn by the generator of ``epoch`` (or the last epoch before it that was saved)."""
        history = self._require_history()
        revision = history.at_epoch(epoch)
        generator = history.generator(revision)  # loaded here, not on the worker: it may download
        z = sample_latents(list(seeds), generator.nz, truncation)
        images, grid = self._render(z, imaging.grid_image, generator)
        return revision, GeneratedGrid(images, imaging.png_bytes(grid))

    @_counted
    def training_walk(self, seed: int, truncation: float = 1.0) -> TrainingWalk:
        """One seed across the run's epochs (at most MAX_GIF_REVISIONS, evenly spread, ends kept)."""
        history = self._require_history()
        revisions = evenly_spaced(history.revisions, MAX_GIF_REVISIONS)
        frames = []
        for revision in revisions:
            generator = history.generator(revision)
            z = sample_latents([seed], generator.nz, truncation)
            frames.append(self.worker.run(render, generator, z, batch=1))
        images = torch.cat(frames)
        strip, pictures = self.worker.run(self._strip_and_frames, images)
        return TrainingWalk(tuple(revisions), images, imaging.png_bytes(strip),
                            imaging.gif_bytes(pictures, TRAINING_GIF_FRAME_MS))

    # -- steering: edits, sweeps, face arithmetic, completion (requests: dcgan_hf.serving.steering) --------

    @_counted
    def edit(self, request: EditRequest) -> tuple[GeneratedGrid, torch.Tensor]:
        """The edited face (bit-identical to ``sample(…, edit=…)`` for a seed) and its latent (1, nz)."""
        z = self.worker.run(request.latents, self.directions, self.generator.nz)
        images, grid = self._render(z, imaging.grid_image)
        return GeneratedGrid(images, imaging.png_bytes(grid)), z

    def walk_latent(self, request: InterpolateRequest, frame: int) -> torch.Tensor:
        """The latent (nz,) of frame ``frame`` (0-based) of ``request``'s walk: an interpolation frame to edit."""
        if not 0 <= frame < request.frames:
            raise ValueError(f"frame must be from 1 to {request.frames}, got {frame + 1}")
        return self.worker.run(self._path_latents, request)[frame]

    @_counted
    def sweep(self, request: SweepRequest) -> Interpolation:
        """One direction swept across a face: the frames as a strip (PNG) and a back-and-forth GIF."""
        z = self.worker.run(request.latents, self.directions, self.generator.nz)
        frames, pictures = self._render(z, self._strip_and_frames)
        strip, frame_images = pictures
        there_and_back = frame_images + frame_images[-2:0:-1]
        return Interpolation(frames, imaging.png_bytes(strip), imaging.gif_bytes(there_and_back, SWEEP_FRAME_MS))

    @_counted
    def arithmetic(self, request: ArithmeticRequest) -> tuple[GeneratedGrid, GeneratedGrid, torch.Tensor]:
        """The result in the middle of its 8 neighbours (3 × 3 PNG), each group's mean face (a row),
        and the result's latent (nz,)."""
        nz = self.generator.nz
        grid_z, means_z = self.worker.run(lambda: (request.grid_latents(nz), request.mean_latents(nz)))
        grid_images, grid = self._render(grid_z, lambda images: imaging.grid_image(images, nrow=3))
        mean_images, means = self._render(means_z, lambda images: imaging.grid_image(images, nrow=len(images)))
        return (GeneratedGrid(grid_images, imaging.png_bytes(grid)),
                GeneratedGrid(mean_images, imaging.png_bytes(means)), grid_z[CENTRE])

    @_counted
    def complete(
        self, target: torch.Tensor | FaceSource, mask: torch.Tensor,
        settings: ProjectionSettings = ProjectionSettings(), seconds: float = PROJECTION_SECONDS,
    ) -> Completion:
        """``target`` (uint8 (nc, 64, 64), or a generated face's source) with its ``mask`` filled in.

        Bounded in time like :meth:`project`: after ``seconds`` the best latent so far is used.
        """
        started = time.perf_counter()
        if not isinstance(target, torch.Tensor):
            target = self._render(target.latent(self.generator.nz), lambda images: None)[0][0]
        projector = self.worker.run(completer, self.generator, target, mask, self.discriminator, settings)
        while not self.worker.run(projector.run, PROJECTION_SLICE):
            if time.perf_counter() - started >= seconds:
                break
        completion = self.worker.run(finish_completion, projector, mask, False)
        logger.info("completed a face (%d of 4096 pixels hidden) in %.2f s", int(mask.sum()),
                    time.perf_counter() - started)
        return completion

    def close(self) -> None:
        self.worker.close()

    def _require_history(self) -> TrainingHistory:
        if self.history is None:
            raise ValueError("this model has no training history (no epoch-N tags, no run folder)")
        return self.history

    def _sample_latents(self, request: GenerateRequest) -> torch.Tensor:
        return sample_latents(request.seeds, self.generator.nz, request.truncation)

    def _path_latents(self, request: InterpolateRequest) -> torch.Tensor:
        return path(request.keyframes(self.generator.nz), request.frames, method=request.method,
                    closed=request.closed)

    def _render(
        self, z: torch.Tensor, finish: Callable[[torch.Tensor], T], generator: Generator | None = None
    ) -> tuple[torch.Tensor, T]:
        """Render ``z`` one CHUNK per worker turn (others' chunks can run in between), then finish."""
        generator = generator or self.generator
        parts = [self.worker.run(render, generator, chunk, batch=len(chunk)) for chunk in z.split(CHUNK)]
        return self.worker.run(_concat_and_finish, parts, finish)

    @staticmethod
    def _strip_and_frames(frames: torch.Tensor) -> tuple[Image.Image, list[Image.Image]]:
        return imaging.grid_image(frames, nrow=min(STRIP_COLUMNS, frames.shape[0])), imaging.to_pil(frames)


def fp32_on_cpu(generator: Generator, target: torch.device) -> Generator:
    """``generator`` itself when it stays an fp32 model on the CPU, else an fp32 CPU copy (live mode, issue 18)."""
    parameter = next(generator.parameters())
    if target.type == "cpu" and parameter.device.type == "cpu" and parameter.dtype == torch.float32:
        return generator
    return copy.deepcopy(generator).to("cpu", torch.float32).eval()


def _concat_and_finish(parts: list[torch.Tensor], finish: Callable[[torch.Tensor], T]) -> tuple[torch.Tensor, T]:
    images = torch.cat(parts)
    return images, finish(images)


SWEEP_FRAME_MS = 120  # a sweep's GIF runs there and back
TRAINING_GIF_FRAME_MS = 400  # epochs change a lot: a slower pace than a latent walk
