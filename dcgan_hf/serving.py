"""Everything the demo needs that is not UI: model loading with a fallback, device and
precision choice, input validation, and one inference worker that runs all torch work -
grids, walks (from seeds or latent tokens), photo projections (``dcgan_hf.projection``,
20 optimiser steps per worker turn) and the Training tab's epochs (``dcgan_hf.revisions``).

Why one worker thread: the demo serves concurrent users on a couple of shared vCPUs.
Gradio runs each request in its own thread; if each called torch, N requests would start
N OpenMP teams on 2 cores, and a team whose threads get preempted waits in barriers (a
2-thread forward measured up to 20x slower than a 1-thread one on an oversubscribed
machine). So every torch call is queued to one thread, which also owns the intra-op
thread count (``torch.set_num_threads`` is per-thread state under OpenMP). Requests
render one ``dcgan_hf.sampling.CHUNK`` of images per turn, so a 64-image request lets a
1-image request in between its chunks instead of making it wait for all four.

Thread policy (measured in bench/sample_cpu.py, see bench/RESULTS.md §2): batches of up
to ``SMALL_BATCH`` images run on 1 thread; bigger ones on every allowed CPU but one, which
is left to the web server (HTTP, PNG/GIF encoding, file copies run beside the worker). On
2 vCPUs that is 1 thread for everything: a second thread buys ~1.9x on a 16-image chunk
only when nothing else runs, and costs 2-20x as soon as anything does. Thread counts never
change pixels (each output element is computed by one thread; tests/test_app.py checks a
seed alone and in a batch through the API).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import torch
from PIL import Image

from . import images as imaging, latent_token
from .arithmetic import CENTRE
from .completion import Completion, completer, finish as finish_completion
from .devices import resolve_device
from .directions import Directions
from .files import write_atomic
from .hub import BUNDLED_MODEL, LoadedModel, ModelSpec, hub_commit, load_model, parse_model_spec
from .layout import CONFIG_FILE, DISCRIMINATOR_DIR, HubLayout, served_folder
from .latent import SEED_LIMIT, Method, check_seed, latents, path
from .models import Discriminator, Generator, ModelLoadError
from .photos import Photo
from .projection import ProjectionResult, ProjectionSettings, Projector
from .revisions import TrainingHistory, TrainingRevision, find_history, load_revision
from .sampling import CHUNK, check_truncation as check_latent_scale, render, sample_latents

if TYPE_CHECKING:  # dcgan_hf.steering reads its requests with this module's checks
    from .steering import ArithmeticRequest, EditRequest, FaceSource, SweepRequest

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IMAGES = 64
MIN_FRAMES, MAX_FRAMES = 2, 60
MAX_KEYFRAMES = 16
METHODS: tuple[Method, ...] = ("slerp", "lerp")
SMALL_BATCH = 4
STRIP_COLUMNS = 12
GIF_FRAME_MS = 80
# fp16 is kept on a GPU only if no pixel of PRECISION_CHECK_SEEDS moves by more than this
# many uint8 levels from fp32 (1% of the range: invisible, and far below GAN sample noise).
HALF_TOLERANCE = 2
PRECISION_CHECK_SEEDS = tuple(range(16))


# --- input validation: ValueError messages are shown to users as they are -----------------


def check_whole_number(value: object, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; a JSON float like 16.0 is accepted, 16.5 is not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


def check_seed_input(value: object, name: str = "seed") -> int:
    """A seed from a form or an API call: a whole number in [0, 2**32)."""
    try:
        return check_seed(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number from 0 to {SEED_LIMIT - 1}, got {value!r}") from None


def check_truncation(value: object) -> float:
    """The latent scale: a finite number in the library's range (1.0 = no truncation)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"truncation must be a number such as 0.7 (1.0 = off), got {value!r}")
    try:
        scale = float(value)  # an int like 2**1100 has no float: OverflowError
    except OverflowError:
        raise ValueError("truncation must be in (0, 4], got a number far too large") from None
    if not math.isfinite(scale):
        raise ValueError(f"truncation must be a number such as 0.7 (1.0 = off), got {value!r}")
    return check_latent_scale(scale)


def parse_seed_list(text: object, name: str = "seeds", limit: int = MAX_IMAGES) -> list[int]:
    """"0-15, 42" → [0, …, 15, 42], at most ``limit`` seeds, counted before any range is expanded."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [check_seed_input(text, name)]
    if not isinstance(text, str) or len(text) > 1000:
        raise ValueError(f"{name} must be text like '0-15, 42', got {text!r:.60}")
    seeds: list[int] = []
    for part in (part for part in re.split(r"[,\s]+", text.strip()) if part):
        match = re.fullmatch(r"([0-9]{1,10})(?:-([0-9]{1,10}))?", part)
        if not match:
            raise ValueError(f"{name} must be whole numbers and ranges like '0-15, 42', got {part!r:.40}")
        first = check_seed_input(int(match.group(1)), name)
        last = check_seed_input(int(match.group(2) or first), name)
        if last < first:
            raise ValueError(f"the range {part} in {name} runs backwards")
        if len(seeds) + last - first + 1 > limit:
            raise ValueError(f"{name}: at most {limit} seeds at a time")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"{name}: give at least one seed")
    return seeds


@dataclass(frozen=True)
class GenerateRequest:
    """A validated Generate call: ``count`` consecutive seeds starting at ``seed``."""

    seed: int
    count: int
    truncation: float

    @classmethod
    def parse(cls, seed: object, count: object, truncation: object = 1.0) -> "GenerateRequest":
        first = check_seed_input(seed)
        count = check_whole_number(count, "number of images", 1, MAX_IMAGES)
        if first + count > SEED_LIMIT:
            raise ValueError(f"seeds {first}…{first + count - 1} run past the last seed {SEED_LIMIT - 1}")
        return cls(first, count, check_truncation(truncation))

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.count))

    @property
    def filename(self) -> str:
        return f"dcgan-seed{self.seed}-n{self.count}-t{self.truncation:g}.png"


@dataclass(frozen=True)
class InterpolateRequest:
    """A validated Interpolate call: a path through ``seeds`` (back to the first if closed).

    ``start_latent`` / ``end_latent`` (latent tokens from ``/project``, already checked
    against the model's nz) replace the first / second seed when given: "walk from my face
    to seed 42". Seed latents are scaled by ``truncation``; token latents are used as found.
    """

    seeds: tuple[int, ...]
    frames: int
    method: Method
    closed: bool
    truncation: float
    start_latent: str | None = None
    end_latent: str | None = None

    @classmethod
    def parse(
        cls,
        seed_a: object,
        seed_b: object,
        more_seeds: object = "",
        frames: object = 24,
        method: object = "slerp",
        closed: object = False,
        truncation: object = 1.0,
        start_latent: object = "",
        end_latent: object = "",
        *,
        nz: int | None = None,
    ) -> "InterpolateRequest":
        start = parse_latent_input(start_latent, nz, "start latent")
        end = parse_latent_input(end_latent, nz, "end latent")
        first = 0 if start is not None else check_seed_input(seed_a, "seed A")
        second = 0 if end is not None else check_seed_input(seed_b, "seed B")
        seeds = [first, second, *parse_more_seeds(more_seeds)]
        frames = check_whole_number(frames, "number of frames", MIN_FRAMES, MAX_FRAMES)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(closed, bool):
            raise ValueError(f"closed loop must be true or false, got {closed!r}")
        return cls(tuple(seeds), frames, method, closed, check_truncation(truncation), start, end)

    def keyframes(self, nz: int) -> torch.Tensor:
        """The latents the path runs through: seeds' (× truncation) with any token endpoints in place."""
        z = latents(list(self.seeds), nz) * self.truncation
        for index, token in ((0, self.start_latent), (1, self.end_latent)):
            if token is not None:
                z[index] = latent_token.decode(token, nz)
        return z

    @property
    def filename_stem(self) -> str:
        ends = [self.start_latent, self.end_latent] + [None] * (len(self.seeds) - 2)
        names = [str(seed) if token is None else f"z{_short_hash(token)}" for seed, token in zip(self.seeds, ends)]
        loop = "-loop" if self.closed else ""
        return f"dcgan-interp-{'-'.join(names)}-{self.frames}f-{self.method}{loop}-t{self.truncation:g}"


def parse_latent_input(value: object, nz: int | None, name: str) -> str | None:
    """An optional latent token from a form or API call: None when empty, else the checked token."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if nz is None:
        raise ValueError(f"{name}: latent tokens need the served model's nz")
    z = latent_token.decode(value, nz, name)
    return latent_token.encode(z)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def parse_more_seeds(text: object) -> list[int]:
    """The optional extra keyframes: "7, 99 123" → [7, 99, 123], at most MAX_KEYFRAMES - 2."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise ValueError(f"more seeds must be text like '7, 99', got {text!r}")
    parts = [part for part in re.split(r"[,\s]+", text.strip()) if part]
    if len(parts) > MAX_KEYFRAMES - 2:
        raise ValueError(f"an interpolation takes at most {MAX_KEYFRAMES} seeds, got {len(parts) + 2}")
    if not all(re.fullmatch(r"[0-9]{1,10}", part) for part in parts):
        raise ValueError(f"more seeds must be whole numbers separated by commas, got {text!r}")
    return [check_seed_input(int(part), "each of more seeds") for part in parts]


def random_seed() -> int:
    """A fresh seed for the "random seed" button (OS entropy: not model randomness)."""
    return secrets.randbelow(SEED_LIMIT)


# --- devices, CPUs and precision ------------------------------------------------------


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space, read the way the ``spaces`` package reads it."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` reports the host's cores inside a container (a Space may see 16
    and be allowed 2); more OpenMP threads than allowed CPUs is the oversubscription the
    worker exists to avoid.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


@dataclass(frozen=True)
class ThreadPolicy:
    """Intra-op threads for one forward pass: 1 for small batches, all allowed CPUs above."""

    max_threads: int
    small_batch: int = SMALL_BATCH

    @classmethod
    def for_device(cls, device: torch.device) -> "ThreadPolicy":
        """All allowed CPUs but one, which stays free for the web server's threads."""
        if device.type == "cuda":
            return cls(max_threads=1)  # the CPU only launches kernels
        return cls(max_threads=max(1, min(available_cpus(), torch.get_num_threads()) - 1))

    def threads_for(self, batch: int) -> int:
        return 1 if batch <= self.small_batch else self.max_threads

    def describe(self) -> str:
        if self.max_threads == 1:
            return "1 intra-op thread"
        return f"1 thread for ≤ {self.small_batch} images, {self.max_threads} threads above"


@dataclass(frozen=True)
class PrecisionChoice:
    """Which dtype serves, and the measured fp16-vs-fp32 difference that decided it."""

    precision: str
    max_difference: int | None
    note: str


def half_precision_difference(
    generator: Generator, seeds: Sequence[int] = PRECISION_CHECK_SEEDS
) -> tuple[Generator, int]:
    """An fp16 copy of ``generator`` and its max abs uint8 difference from fp32 on ``seeds``."""
    z = latents(list(seeds), generator.nz)
    reference = render(generator, z)
    half = copy.deepcopy(generator).half()
    difference = (render(half, z).int() - reference.int()).abs().max().item()
    return half, int(difference)


def try_half_precision(generator: Generator, tolerance: int = HALF_TOLERANCE) -> tuple[Generator, PrecisionChoice]:
    """The fp16 copy if it keeps every check pixel within ``tolerance`` of fp32, else ``generator``."""
    half, difference = half_precision_difference(generator)
    checked = f"max difference from fp32 {difference}/255 on {len(PRECISION_CHECK_SEEDS)} seeds"
    if difference <= tolerance:
        return half, PrecisionChoice("fp16", difference, f"fp16 ({checked} ≤ {tolerance})")
    return generator, PrecisionChoice("fp32", difference, f"fp32 (fp16 {checked} > {tolerance})")


def choose_precision(
    generator: Generator, device: torch.device, *, zero_gpu: bool = False
) -> tuple[Generator, PrecisionChoice]:
    """fp16 on a GPU when :func:`try_half_precision` allows it; fp32 everywhere else.

    CPUs have no fast fp16 convolution, so they stay fp32. On ZeroGPU the GPU only exists
    inside ``@spaces.GPU`` calls, so the start-up check cannot run: fp32 there too.
    """
    if device.type != "cuda":
        return generator, PrecisionChoice("fp32", None, "fp32 (fp16 is only tried on a GPU)")
    if zero_gpu:
        return generator, PrecisionChoice("fp32", None, "fp32 (ZeroGPU: no GPU at start-up to check fp16)")
    return try_half_precision(generator)


# --- model loading with a fallback ----------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """What the page's model panel and the ``model_info`` API report."""

    requested: str
    serving: str
    revision: str | None
    commit: str | None
    config: dict[str, int]
    device: str
    precision: str
    threads: str
    from_cache_offline: bool = False
    fallback_reason: str | None = None
    discriminator: bool = False  # the model has a discriminator/ (the projection uses its features)
    training_epochs: tuple[int, ...] = ()  # epochs the Training tab can show (epoch-N tags or checkpoints)

    @property
    def fell_back(self) -> bool:
        return self.fallback_reason is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fell_back": self.fell_back}

    def markdown(self) -> str:
        where = f"`{self.serving}`"
        if self.revision:
            where += f" @ `{self.revision}`"
        if self.commit and self.commit != self.revision:
            where += f" (commit `{self.commit[:12]}`)"
        if self.from_cache_offline:
            where += " — from the local cache: the Hub cannot be reached"
        config = ", ".join(f"{key}={value}" for key, value in self.config.items())
        lines = [
            f"**Serving** {where}",
            f"**Config** {config} · **Device** {self.device} · **Precision** {self.precision}"
            f" · **CPU threads** {self.threads}",
        ]
        if self.training_epochs:
            epochs = self.training_epochs
            span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}–{epochs[-1]}"
            lines.append(f"**Training history** {len(epochs)} revisions ({span}): see the Training tab")
        if self.fallback_reason:
            lines.insert(
                0,
                f"⚠️ **Could not load `{self.requested}`** — {self.fallback_reason}. "
                "Serving the fallback model instead.",
            )
        return "\n\n".join(lines)


BUNDLED_LABEL = "the bundled model (dcgan_hf/pretrained/celeba64)"


def describe_source(spec: ModelSpec) -> str:
    """A repo id as is; a folder as its absolute path, except the bundled model, which is named
    rather than located (Space visitors have no use for the server's file system layout)."""
    if not spec.is_local:
        return spec.source
    path = Path(spec.source).resolve()
    return BUNDLED_LABEL if path == BUNDLED_MODEL.resolve() else str(path)


def load_with_fallback(requested: str | os.PathLike, fallback: str | os.PathLike) -> LoadedModel:
    """Load ``requested``; if it cannot be loaded, load ``fallback`` and say why.

    A fallback that cannot be loaded either is an error naming both problems.
    """
    spec = parse_model_spec(requested)
    try:
        return load_model(spec)
    except (ModelLoadError, OSError) as error:
        fallback_spec = parse_model_spec(fallback)
        if fallback_spec == spec:
            raise ModelLoadError(f"cannot load {spec}: {error}") from error
        reason = str(error)
        logger.warning("could not load model %s (%s); falling back to %s", spec, reason, fallback_spec)
    try:
        loaded = load_model(fallback_spec)
    except (ModelLoadError, OSError) as error:
        raise ModelLoadError(f"cannot load {spec} ({reason}) nor the fallback {fallback_spec} ({error})") from error
    return LoadedModel(loaded.generator, loaded.spec, loaded.from_cache_offline, fallback_reason=reason)


# --- the worker -----------------------------------------------------------------------


class InferenceWorker:
    """Runs callables one at a time on one dedicated thread, in arrival order.

    ``threaded=False`` runs them in the caller instead: on ZeroGPU each ``@spaces.GPU``
    call runs in a forked process, where a thread started by the parent does not exist.
    """

    def __init__(self, policy: ThreadPolicy, threaded: bool = True) -> None:
        self.policy = policy
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcgan-inference") if threaded else None

    def run(self, fn: Callable[..., T], *args: Any, batch: int = 1) -> T:
        """``fn(*args)`` on the worker with the policy's thread count for ``batch`` images."""
        threads = self.policy.threads_for(batch)
        if self._executor is None:
            return _with_threads(threads, fn, args)
        return self._executor.submit(_with_threads, threads, fn, args).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _with_threads(threads: int, fn: Callable[..., T], args: tuple) -> T:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return fn(*args)


# --- the server -----------------------------------------------------------------------

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
    # live mode (issue 18, dcgan_hf.live): the weights in fp32 on the CPU, what the browser runs and is
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

    # -- steering: edits, sweeps, face arithmetic, completion (requests: dcgan_hf.steering) --------

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


def evenly_spaced(items: Sequence[T], limit: int) -> list[T]:
    """At most ``limit`` items, evenly spread, the first and last always included."""
    if len(items) <= limit:
        return list(items)
    picks = sorted({round(index * (len(items) - 1) / (limit - 1)) for index in range(limit)})
    return [items[index] for index in picks]


def find_discriminator(loaded: LoadedModel) -> Discriminator | None:
    """The served model's ``discriminator/`` (what train.py publishes beside it), when it has one."""
    spec = loaded.spec
    try:
        if spec.is_local:
            folder = served_folder(spec.source)
            if not (HubLayout(folder).discriminator / CONFIG_FILE).is_file():
                return None
            discriminator = Discriminator.from_pretrained(folder, subfolder=DISCRIMINATOR_DIR)
        else:
            discriminator = Discriminator.from_pretrained(
                spec.source, revision=spec.revision, subfolder=DISCRIMINATOR_DIR,
                local_files_only=loaded.from_cache_offline,
            )
    except (ModelLoadError, OSError) as error:
        logger.info("no discriminator for %s (%s): projections use the pixel loss only", spec, error)
        return None
    if discriminator.nc != loaded.generator.nc:
        logger.warning("ignoring %s's discriminator: nc=%d, the generator has nc=%d", spec, discriminator.nc,
                       loaded.generator.nc)
        return None
    return discriminator


def load_revision_on(revision: TrainingRevision, device: torch.device) -> Generator:
    """A training revision's generator, in fp32 on the serving device."""
    return load_revision(revision).to(device).eval()


# --- output files ---------------------------------------------------------------------


class OutputFolder:
    """Where results are written for Gradio to serve, named after their request.

    Same request → same bytes, so concurrent writers of one name are harmless (atomic
    replace). Gradio copies each returned file into its own cache at once, so files
    older than ``max_age_s`` are pruned on every write to keep the folder small.
    """

    def __init__(self, folder: str | os.PathLike, max_age_s: float = 600.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def write(self, name: str, data: bytes) -> str:
        self._prune()
        return str(write_atomic(self.folder / name, data))

    def _prune(self) -> None:
        cutoff = time.time() - self.max_age_s
        for entry in self.folder.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
            except FileNotFoundError:
                pass  # another request pruned it first
