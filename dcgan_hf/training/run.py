"""Building a run: the networks, optimizers, data and step a config asks for, and the
checkpoint a run resumes from (restored into the run, with its changes checked).

Everything here runs once, before the first step; :mod:`.loop` runs the steps.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..data.cache import load_cache
from ..data import image_cache
from ..data.folders import DeviceBatches, synthetic_images
from ..data.image_cache import DataError, ImageCache
from ..layout import EMA_COUNTER, TRAINING_STATE_DIR, CheckpointLayout, HubLayout, RunLayout
from ..models import Discriminator, Generator, dcgan_init
from . import checkpoint as checkpoints, resume_check
from .base_model import BaseModel, load_base_model
from .config import TrainConfig
from .distributed import Distributed
from .ema import EMA
from .precision import Arithmetic, Choice, choose, time_steps
from .step import GanStep, StepOptions, load_optimizer_state, make_optimizers

log = logging.getLogger(__name__)

ARITHMETIC_KEY = "arithmetic"  # in a checkpoint's extra: what `--precision auto` chose

if TYPE_CHECKING:  # imported where used: Inception with --eval-every
    from ..metrics import InceptionFeatures


@dataclass
class Run:
    """The live objects of a run, built once by :func:`build`."""

    config: TrainConfig
    layout: Distributed
    device: torch.device
    data: ImageCache
    batches: DeviceBatches
    generator: torch.nn.Module  # possibly DDP-wrapped
    discriminator: torch.nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    step: GanStep
    precision: str
    base: BaseModel | None = None  # --init-from's source, when the run started from one
    extractor: InceptionFeatures | None = None  # the Inception network, loaded at the first evaluation and kept
    reference_spread: float | None = None  # the watchdog's unit: mean pairwise distance of 64 training images
    arithmetic: Arithmetic = Arithmetic(bf16=False, channels_last=False)

    @property
    def bare_generator(self) -> Generator:
        return getattr(self.generator, "module", self.generator)

    @property
    def bare_discriminator(self) -> Discriminator:
        return getattr(self.discriminator, "module", self.discriminator)

    @property
    def published_generator(self) -> Generator:
        """The EMA weights when there are some: smoother samples than the live ones."""
        return self.ema.shadow if self.ema is not None else self.bare_generator


def check_eval_inputs(config: TrainConfig) -> None:
    """With --eval-every: the Inception weights are installed and --eval-real lists enough images."""
    if not config.eval_every:
        return
    from ..evaluate import RealImages
    from ..metrics import inception_weights_path

    inception_weights_path()
    try:
        RealImages.open(config.eval_real)
    except DataError:
        raise
    except ValueError as error:  # e.g. a single image: FID needs two
        raise DataError(f"--eval-real: {error}") from error


def _choose_arithmetic(config: TrainConfig, layout: Distributed, device: torch.device,
                       batch_size: int) -> Choice:
    """``--precision``/``--channels-last`` resolved for this machine; under DDP rank 0 decides for all."""
    def time_candidates(candidates: list[Arithmetic]) -> dict[Arithmetic, float]:
        return time_steps(lambda arithmetic: _throwaway_step(config, arithmetic, device, batch_size),
                                    candidates)

    choice = None
    if layout.is_main:
        choice = choose(config.precision, config.channels_last, device, recorded=_recorded_arithmetic(config),
                        time_candidates=None if config.dry_run else time_candidates)  # a smoke test stays quick
    if layout.enabled:
        shared = [choice]
        torch.distributed.broadcast_object_list(shared, src=0)
        choice = shared[0]
    assert choice is not None
    return choice


def _throwaway_step(config: TrainConfig, arithmetic: Arithmetic, device: torch.device,
                    batch_size: int) -> Callable[[], torch.Tensor]:
    """One step of fresh nets of the run's shape and recipe (no R1 step, no EMA): what the timing measures."""
    fmt = torch.channels_last if arithmetic.channels_last else torch.contiguous_format
    generator = Generator(config.nz, config.ngf, 3).to(device, memory_format=fmt).train()
    discriminator = Discriminator(3, config.ndf).to(device, memory_format=fmt).train()
    opt_g, opt_d = make_optimizers(generator, discriminator, lr_g=config.lr_g, lr_d=config.lr_d,
                                   betas=(config.beta1, config.beta2), device=device, graph_safe=False)
    options = StepOptions(batch_size=batch_size, nz=config.nz, label_smoothing=config.label_smoothing,
                          loss=config.loss, augment=config.augment, autocast_dtype=arithmetic.autocast_dtype,
                          channels_last=arithmetic.channels_last)
    step = GanStep(generator, discriminator, opt_g, opt_d, options,
                   noise=torch.Generator(device=device).manual_seed(config.seed))
    real = torch.zeros(batch_size, 3, 64, 64, device=device).contiguous(memory_format=fmt)
    return lambda: step(real, 1)  # step 1: never a lazy-R1 step


def _recorded_arithmetic(config: TrainConfig) -> Arithmetic | None:
    """What the checkpoint that ``--resume`` names trained with (a Hub resume is read later: None)."""
    if not config.resume or config.resume == "hub":
        return None
    paths = RunLayout(Path(config.output_dir))
    if config.resume == "latest":
        source = checkpoints.latest(paths.checkpoints)
    else:
        source = paths.best if config.resume == "best" else Path(config.resume)
    state = CheckpointLayout(source).state if source is not None else None
    if state is None or not state.is_file():
        return None
    try:
        extra = json.loads(state.read_text()).get("extra", {})
    except (OSError, ValueError, AttributeError):
        return None  # _restore reports a damaged checkpoint properly
    return Arithmetic.from_dict(extra.get(ARITHMETIC_KEY) if isinstance(extra, dict) else None)


def _load_images(config: TrainConfig, layout: Distributed) -> ImageCache:
    """Rank 0 decodes (once, cached); the others wait and then map the same cache."""
    if not config.data:
        count = config.synthetic or 2 * (2 if config.dry_run else config.batch_size) * layout.world_size
        images = synthetic_images(count, seed=config.seed)
        return ImageCache(images, fingerprint=f"synthetic-{len(images)}-{config.seed}", source="synthetic")
    options = dict(cache_dir=config.data_cache or None, workers=config.workers or None, progress=config.progress,
                   split=config.split, image_column=config.image_column or None)
    if layout.is_main:
        cache = load_cache(config.data, **options)
    layout.barrier()
    if not layout.is_main:
        cache = load_cache(config.data, **{**options, "progress": False})
    return cache


def build(config: TrainConfig, layout: Distributed, device: torch.device) -> Run:
    # --init-from first: a wrong model must fail before minutes of decoding
    base = load_base_model(config.init_from, nz=config.nz, ngf=config.ngf, ndf=config.ndf) \
        if config.init_from else None
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(config.threads or max(1, cores // layout.world_size))
    data = _load_images(config, layout)
    on_gpu = device.type == "cuda"
    batch_size = 2 if config.dry_run else config.batch_size
    choice = _choose_arithmetic(config, layout, device, batch_size)
    if layout.is_main:
        log.info("arithmetic: %s (%s)", choice.arithmetic.label, choice.reason)
    channels_last = choice.arithmetic.channels_last
    images = torch.from_numpy(np.ascontiguousarray(data.images) if on_gpu else np.asarray(data.images))
    if on_gpu:
        images = images.to(device)  # the whole uint8 set lives on the GPU (CelebA: 2.5 GB)
    batches = DeviceBatches(images, batch_size, seed=config.seed, hflip=config.hflip, rank=layout.rank,
                            world_size=layout.world_size, channels_last=channels_last)
    init = torch.Generator().manual_seed(config.seed)
    generator, discriminator = Generator(config.nz, config.ngf, 3), Discriminator(3, config.ndf)
    dcgan_init(generator, init)
    dcgan_init(discriminator, init)
    if base is not None:  # (a checkpoint found by --resume later replaces these again)
        generator.load_state_dict_strict(base.generator.state_dict(), source=f"--init-from {base.spec}")
        discriminator.load_state_dict_strict(base.discriminator.state_dict(), source=f"--init-from {base.spec}")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    generator = generator.to(device, memory_format=memory_format).train()
    discriminator = discriminator.to(device, memory_format=memory_format).train()
    use_graph = config.cuda_graph and on_gpu and not layout.enabled
    if layout.enabled:
        ids = [device.index] if on_gpu else None
        generator = DistributedDataParallel(generator, device_ids=ids)
        discriminator = DistributedDataParallel(discriminator, device_ids=ids)
    # a base model's generator is a published EMA already: average on at full decay, no warm-up
    ema = EMA(generator, config.ema_decay, start=config.ema_start, warm=base is not None) \
        if config.ema_decay > 0 else None
    opt_g, opt_d = make_optimizers(generator, discriminator, lr_g=config.lr_g, lr_d=config.lr_d,
                                   betas=(config.beta1, config.beta2), device=device, graph_safe=use_graph)
    noise = torch.Generator(device=device).manual_seed(config.seed + 1 + layout.rank)
    step = GanStep(generator, discriminator, opt_g, opt_d,
                   StepOptions(batch_size=batch_size, nz=config.nz, label_smoothing=config.label_smoothing,
                               loss=config.loss, augment=config.augment, r1_gamma=config.r1_gamma,
                               r1_every=config.r1_every, autocast_dtype=choice.arithmetic.autocast_dtype,
                               channels_last=channels_last, cuda_graph=use_graph),
                   noise=noise, ema=ema)
    return Run(config, layout, device, data, batches, generator, discriminator, ema, opt_g, opt_d, noise, step,
               choice.arithmetic.label + (" + CUDA graph" if use_graph else ""), base=base,
               arithmetic=choice.arithmetic)


def snapshot(run: Run, progress: checkpoints.Progress) -> checkpoints.Checkpoint:
    progress.bad_in_a_row = run.step.bad_steps_in_a_row(reset_peak=False)[0]
    return checkpoints.Checkpoint(
        progress=progress,
        config=run.config.to_dict(),
        data_fingerprint=run.data.fingerprint,
        data_content=run.data.content,
        data_count=len(run.data),
        generator=run.bare_generator.state_dict(),
        discriminator=run.bare_discriminator.state_dict(),
        optimizers={"g": run.opt_g.state_dict(), "d": run.opt_d.state_dict()},
        rng={"noise": run.noise.get_state()},
        ema=({**run.ema.shadow.state_dict(), EMA_COUNTER: run.ema.state_dict()["updates"]}
             if run.ema is not None else None),
        extra={ARITHMETIC_KEY: run.arithmetic.to_dict()},  # a resumed `--precision auto` run keeps it
    )


def _restore(run: Run, saved: checkpoints.Checkpoint, source: Path) -> checkpoints.Progress:
    config = run.config
    # a checkpoint older than content hashes: the image cache its run built may still say what it held
    saved_content = saved.data_content or image_cache.recorded_content(config.data_cache or None,
                                                                       saved.data_fingerprint)
    changes = resume_check.check(
        saved.config, resume_check.DataIdentity(saved.data_fingerprint, saved_content, saved.data_count),
        config, resume_check.DataIdentity(run.data.fingerprint, run.data.content, len(run.data)), str(source))
    if changes:
        log.warning("resuming %s with changes (--allow-changes): %s", source, "; ".join(changes))
    if TrainConfig.from_dict(saved.config).r1_gamma == 0 < config.r1_gamma:
        # seen in the long run (bench/RESULTS.md §11): D's input gradients had grown large and after the
        # first penalty D stopped learning (most likely Adam's second moments, inflated for thousands of steps)
        log.warning("R1 switched on in a run trained without it: this can stall the discriminator; pass "
                    "--r1-gamma 0 to continue as trained (R1 is for runs that start with it)")
    run.bare_generator.load_state_dict_strict(saved.generator, source="checkpoint generator")
    run.bare_discriminator.load_state_dict_strict(saved.discriminator, source="checkpoint discriminator")
    load_optimizer_state(run.opt_g, saved.optimizers["g"])
    load_optimizer_state(run.opt_d, saved.optimizers["d"])
    run.noise.set_state(saved.rng["noise"])
    progress = saved.progress
    run.step.set_bad_steps_in_a_row(progress.bad_in_a_row)
    if (saved.ema is None) != (run.ema is None):  # metrics described the other generator (live vs EMA)
        log.warning("the published generator changes (EMA %s → %s): dropping the checkpoint's metrics",
                    "on" if saved.ema is not None else "off", "on" if run.ema is not None else "off")
        progress.metrics = []
    if run.ema is not None:
        if saved.ema is None:
            log.warning("the checkpoint has no EMA weights; starting the EMA from the live generator")
        else:
            updates = saved.ema.pop(EMA_COUNTER)
            run.ema.shadow.load_state_dict_strict(saved.ema, source="checkpoint EMA")
            run.ema.load_state_dict({"updates": updates})
    return progress


def _resume_source(config: TrainConfig, paths: RunLayout) -> Path | None:
    if not config.resume:
        return None
    if config.resume == "latest":
        found = checkpoints.latest(paths.checkpoints)
        if found is None:
            log.info("--resume latest: no checkpoint in %s yet, starting fresh", paths.checkpoints)
        return found
    if config.resume == "best":
        if not checkpoints.is_complete(paths.best):
            raise FileNotFoundError(f"--resume best: no best checkpoint in {paths.best} (one is kept when a run "
                                    f"evaluates with --eval-every)")
        return paths.best
    if config.resume == "hub":
        from ..hub.loading import download_folder

        folder = download_folder(config.push_to_hub, allow_patterns=[f"{TRAINING_STATE_DIR}/*"])
        return HubLayout(folder).training_state
    path = Path(config.resume)
    if not checkpoints.is_complete(path):
        raise FileNotFoundError(f"--resume {path}: not a checkpoint folder (no {checkpoints.STATE_FILE})")
    return path


def resume(run: Run, paths: RunLayout) -> tuple[checkpoints.Progress, Path | None]:
    """The progress to start from: fresh, or a checkpoint's (restored into the run)."""
    source = _resume_source(run.config, paths)
    if source is None:
        return checkpoints.Progress(), None
    progress = _restore(run, checkpoints.load(source, device=run.device), source)
    if run.layout.is_main:  # later checkpoints of this folder belong to a branch the run now leaves
        moved = checkpoints.set_aside_newer(paths.checkpoints, progress.step, paths.abandoned)
        if moved:
            log.warning("resuming at step %d: moved the %d later checkpoint(s) of %s to %s (kept, not used)",
                        progress.step, len(moved), paths.checkpoints, paths.abandoned)
    log.info("resumed from %s at epoch %d, batch %d (step %d)", source, progress.epoch, progress.batch, progress.step)
    return progress, source
