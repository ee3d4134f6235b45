"""The training loop: data → step → EMA → samples/metrics → checkpoint → Hub.

``train(config)`` is everything ``train.py`` does. It runs the same code on a CPU, one GPU
(CUDA graph + bf16 + channels_last) or several processes under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import epoch_history, image_cache, images as imaging
from ..data import DataError, DeviceBatches, ImageCache, load_cache, synthetic_images
from ..files import remove_stale_copies, write_atomic
from ..finite import NonFiniteError
from ..layout import BEST_TAG, EMA_COUNTER, TRAINING_STATE_DIR, CheckpointLayout, HubLayout, RunLayout
from ..models import Discriminator, Generator, dcgan_init
from . import artifacts, checkpoint as checkpoints, publish, resume_check, watchdog
from .base_model import BaseModel, load_base_model
from .config import TrainConfig
from .distributed import Distributed, setup
from .ema import EMA
from .precision import Arithmetic, Choice, choose, time_steps
from .step import STATS, GanStep, StepOptions, load_optimizer_state, make_optimizers

if TYPE_CHECKING:  # imported where used: the pusher with --push-to-hub, Inception with --eval-every
    from ..hub import HubPusher, PushResult
    from ..metrics import InceptionFeatures

log = logging.getLogger(__name__)

ARITHMETIC_KEY = "arithmetic"  # in a checkpoint's extra: what `--precision auto` chose


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    output_dir: Path
    progress: checkpoints.Progress
    interrupted: bool
    checkpoint: Path | None
    hub_folder: Path | None
    pushes: list[PushResult] = field(default_factory=list)  # every Hub push, in order (none without --push-to-hub)
    images_per_second: float = 0.0
    generator: Generator | None = None  # the live weights at the end (no DDP wrapper)
    discriminator: Discriminator | None = None
    ema_generator: Generator | None = None
    stopped: str | None = None  # "collapse": the watchdog ended the run (--on-collapse stop)
    arithmetic: str = ""  # what the step computed in, e.g. "bf16 autocast" (what --precision auto chose)


@dataclass
class Run:
    """The live objects of a run, built once by :func:`_build`."""

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


@dataclass(frozen=True)
class EpochEnd:
    """What the end of an epoch (or of the run) does: decided once, by :func:`_epoch_end`."""

    outputs: bool  # sample grids, progress GIF, loss plot
    evaluate: bool  # FID/KID
    checkpoint: bool
    publish: bool  # rebuild the Hub folder (and push it)
    watch: bool = False  # a whole epoch ended: the collapse watchdog and the epoch's history file


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and exits.

    The collapse watchdog sets ``reason`` instead: the loop ends at the epoch's end without
    checkpointing it (the run is not "interrupted": there is nothing to resume for).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.reason: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None or self.reason is not None

    @property
    def by_signal(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.signal = signum
            log.warning("got %s: saving a checkpoint after this step", signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training as ``config`` says; see ``python train.py --help``."""
    layout, device = setup(config.device)
    try:
        if layout.is_main:  # free what a killed run left (whole checkpoint copies) before using the disk
            remove_stale_copies(RunLayout(Path(config.output_dir)).hub)
            remove_stale_copies(RunLayout(Path(config.output_dir)).best)
        _check_eval_inputs(config)  # a missing package or real-image folder fails now, not after an epoch
        run = _build(config, layout, device)
        stop = StopRequest()
        if _is_main_thread():
            with stop.installed():
                return _loop(run, stop)
        return _loop(run, stop)
    finally:
        layout.close()


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _check_eval_inputs(config: TrainConfig) -> None:
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


# -- building a run --------------------------------------------------------------------------
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


def _build(config: TrainConfig, layout: Distributed, device: torch.device) -> Run:
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
    ema = EMA(generator, config.ema_decay, start=config.ema_start) if config.ema_decay > 0 else None
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


# -- checkpoints -------------------------------------------------------------------------------
def _snapshot(run: Run, progress: checkpoints.Progress) -> checkpoints.Checkpoint:
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
        from ..hub import download_folder

        folder = download_folder(config.push_to_hub, allow_patterns=[f"{TRAINING_STATE_DIR}/*"])
        return HubLayout(folder).training_state
    path = Path(config.resume)
    if not checkpoints.is_complete(path):
        raise FileNotFoundError(f"--resume {path}: not a checkpoint folder (no {checkpoints.STATE_FILE})")
    return path


def _resume(run: Run, paths: RunLayout) -> tuple[checkpoints.Progress, Path | None]:
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


# -- the loop ---------------------------------------------------------------------------------
class TrainingDiverged(RuntimeError):
    """``--max-bad-steps`` steps in a row were not finite: nothing of them was applied, the run stops."""


class Interval:
    """Step statistics (:data:`STATS`) summed on the device between two log rows: one host sync per row."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(STATS), device=device)
        self.steps, self.images, self.started = 0, 0, time.perf_counter()

    def add(self, stats: torch.Tensor, images: int) -> None:
        self.sums += stats
        self.steps += 1
        self.images += images

    def row(self, progress: checkpoints.Progress, steps_per_epoch: int) -> dict[str, float]:
        """Means over the interval's good steps (and R1 over the steps that computed it); then start anew."""
        totals = dict(zip(STATS, self.sums.tolist()))  # the one host sync per interval
        good = max(self.steps - totals["bad"], 1)
        row = {"step": progress.step, "epoch": progress.epoch + progress.batch / steps_per_epoch,
               **{key: totals[key] / good for key in ("loss_d", "loss_g", "d_real", "d_fake")},
               "img_per_s": self.images / max(time.perf_counter() - self.started, 1e-9)}
        if totals["r1_steps"]:
            row["r1"] = totals["r1"] / totals["r1_steps"]
        if totals["bad"]:
            row["bad_steps"] = int(totals["bad"])
        self.sums.zero_()
        self.steps, self.images, self.started = 0, 0, time.perf_counter()
        return row


def _loop(run: Run, stop: StopRequest) -> TrainResult:
    config, layout, main = run.config, run.layout, run.layout.is_main
    paths = RunLayout(Path(config.output_dir))
    progress, source = _resume(run, paths)
    writer = _tensorboard(paths.tensorboard) if main else None
    pusher = _pusher(config) if main and config.push_to_hub else None
    epochs = 1 if config.dry_run else config.epochs
    max_steps = 2 if config.dry_run else config.max_steps
    latest_checkpoint: Path | None = checkpoints.latest(paths.checkpoints) if main else None
    started, run_seconds, resumed_step = time.perf_counter(), progress.seconds, progress.step
    interval, rate = Interval(run.device), 0.0
    if main:
        log.info("training %s on %s (%d images, %d steps/epoch, %s)", config.output_dir, run.device,
                 len(run.data), run.batches.steps_per_epoch, run.precision)
    try:
        while (not _finished(progress, epochs=epochs, max_steps=max_steps)
               and not _stop_everywhere(stop, layout, run.device)):
            rate = _train_epoch(run, progress, interval, stop, writer, max_steps=max_steps, epochs=epochs) or rate
            epoch_done = progress.batch >= run.batches.steps_per_epoch
            if epoch_done:
                progress.epoch += 1
                progress.batch = 0
            progress.seconds = run_seconds + time.perf_counter() - started
            _check_bad_steps(run, progress, latest_checkpoint)
            if main:
                end = _epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=epoch_done,
                                 stopping=bool(stop))
                latest_checkpoint = _after_epoch(run, progress, end=end, paths=paths, stop=stop,
                                                 latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
            layout.barrier()
        finished = _finished(progress, epochs=epochs, max_steps=max_steps)
        interrupted = stop.by_signal and not finished
        if main and source is not None and progress.step == resumed_step and finished:
            # resumed a finished run (e.g. to add --push-to-hub): rebuild the Hub folder and push it
            log.info("nothing left to train at step %d; rebuilding %s", progress.step, paths.hub)
            end = _epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=False,
                             stopping=bool(stop))
            latest_checkpoint = _after_epoch(run, progress, end=end, paths=paths, stop=stop,
                                             latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
        if interrupted and main and (latest_checkpoint is None
                                     or latest_checkpoint.name != checkpoints.name_for(progress.step)):
            # the signal came during end-of-epoch work, after that epoch's checkpoint decision
            latest_checkpoint = checkpoints.save(paths.checkpoints, _snapshot(run, progress))
        _sync_buffers(run)
    finally:
        pushes = pusher.close() if pusher is not None else []
        if writer is not None:
            writer.close()
    if interrupted and main:
        log.warning("interrupted at step %d; resume with: python train.py … --resume latest", progress.step)
    return TrainResult(paths.root, progress, interrupted, latest_checkpoint, paths.hub if main else None,
                       pushes=list(pushes or []), images_per_second=rate, generator=run.bare_generator,
                       discriminator=run.bare_discriminator,
                       ema_generator=run.ema.shadow if run.ema is not None else None, stopped=stop.reason,
                       arithmetic=run.precision)


def _train_epoch(run: Run, progress: checkpoints.Progress, interval: Interval, stop: StopRequest, writer: Any, *,
                 max_steps: int, epochs: int) -> float | None:
    """Train the rest of the current epoch (or up to ``max_steps``, or a signal); return the last logged img/s."""
    config, layout, main = run.config, run.layout, run.layout.is_main
    steps_per_epoch, rate = run.batches.steps_per_epoch, None
    bar = tqdm(total=steps_per_epoch, initial=progress.batch, desc=f"epoch {progress.epoch + 1}/{epochs}",
               unit="step", disable=not (main and config.progress), dynamic_ncols=True)
    for real in run.batches.batches(progress.epoch, start=progress.batch):
        interval.add(run.step(real, progress.step), run.batches.batch_size * layout.world_size)
        progress.batch += 1
        progress.step += 1
        bar.update(1)
        if progress.step % config.log_every == 0 or progress.batch == steps_per_epoch:
            row = interval.row(progress, steps_per_epoch)
            progress.bad_steps += row.get("bad_steps", 0)
            rate = row["img_per_s"]
            if main:
                _log(row, progress, bar, writer, headless=not config.progress)
        if progress.step % config.max_bad_steps == 0:
            _check_bad_steps(run, progress, None)
        if _stop_everywhere(stop, layout, run.device) or (max_steps and progress.step >= max_steps):
            break
    bar.close()
    return rate


def _log(row: dict[str, float], progress: checkpoints.Progress, bar: Any, writer: Any, *, headless: bool) -> None:
    """One interval's row: into the history, the progress bar (or the log, headless) and TensorBoard."""
    progress.history.append(row)
    bar.set_postfix(img_s=f"{row['img_per_s']:.0f}", D=f"{row['loss_d']:.3f}", G=f"{row['loss_g']:.3f}")
    if headless:  # headless runs (nohup, CI) still show a pulse in their log
        log.info("step %d (epoch %.2f): D %.3f  G %.3f  D(x) %.2f  D(G(z)) %.2f%s  %.0f img/s", progress.step,
                 row["epoch"], row["loss_d"], row["loss_g"], row["d_real"], row["d_fake"],
                 f"  R1 {row['r1']:.3g}" if "r1" in row else "", row["img_per_s"])
    if "bad_steps" in row:
        log.warning("step %d: skipped %d step(s) of the last interval whose losses or gradients were not finite "
                    "(%d in the run)", progress.step, row["bad_steps"], progress.bad_steps)
    if writer is not None:
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "r1", "img_per_s"):
            if key in row:
                writer.add_scalar(f"train/{key}", row[key], progress.step)
        writer.add_scalar("train/bad_steps", row.get("bad_steps", 0), progress.step)


def _check_bad_steps(run: Run, progress: checkpoints.Progress, latest_checkpoint: Path | None) -> None:
    """Stop the run once ``--max-bad-steps`` steps in a row were skipped (one host sync; identical on every rank)."""
    in_a_row, longest = run.step.bad_steps_in_a_row()
    progress.bad_in_a_row = in_a_row
    limit = run.config.max_bad_steps
    if longest >= limit:
        last = checkpoints.latest(RunLayout(Path(run.config.output_dir)).checkpoints) or latest_checkpoint
        raise TrainingDiverged(
            f"{longest} training steps in a row (up to step {progress.step}) had non-finite losses, gradients or "
            f"BatchNorm statistics (--max-bad-steps {limit}); none was applied and nothing of them was written. "
            f"Last good checkpoint: {last or 'none yet'}. Lower --lr-g/--lr-d, or start from smaller weights")


def _sync_buffers(run: Run) -> None:
    """Give every rank rank 0's BN statistics, as DDP does at each forward, so all end equal."""
    if not run.layout.enabled:
        return
    modules = [run.bare_generator, run.bare_discriminator] + ([run.ema.shadow] if run.ema is not None else [])
    for module in modules:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _stop_everywhere(stop: StopRequest, layout: Distributed, device: torch.device) -> bool:
    """Under DDP all ranks must leave the loop at the same step, whichever got the signal (or saw a collapse)."""
    if not layout.enabled:
        return bool(stop)
    flag = torch.tensor([2.0 if stop.reason else 1.0 if stop else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if flag.item() == 2.0 and not stop.reason:
        stop.reason = "collapse"  # rank 0's watchdog: every rank ends the same way (not "interrupted")
    elif flag.item() > 0 and not stop:
        stop.signal = signal.SIGTERM
    return bool(stop)


def _finished(progress: checkpoints.Progress, *, epochs: int, max_steps: int) -> bool:
    """Every epoch, or ``--max-steps`` steps, trained."""
    return progress.epoch >= epochs or bool(max_steps and progress.step >= max_steps)


def _epoch_end(config: TrainConfig, progress: checkpoints.Progress, *, epochs: int, max_steps: int,
               epoch_done: bool, stopping: bool) -> EpochEnd:
    """The end-of-epoch decisions, from where the run stands once ``progress`` has moved on.

    ``epoch_done``: a whole pass over the data just ended; ``stopping``: a signal ends the run
    here. The last step of a run (finished or stopped) always checkpoints and publishes.
    """
    last = _finished(progress, epochs=epochs, max_steps=max_steps) or stopping
    # evaluated at this step already, with this protocol (re-publishing with a larger --eval-num re-evaluates)
    evaluated_now = bool(progress.metrics) and progress.metrics[-1].step == progress.step \
        and progress.metrics[-1].num_generated == config.eval_num
    run_complete = progress.epoch >= config.epochs and progress.batch == 0  # not on an interrupt
    return EpochEnd(
        outputs=epoch_done or last,
        evaluate=bool(config.eval_every) and not evaluated_now and (
            (epoch_done and progress.epoch % config.eval_every == 0) or (last and run_complete)),
        checkpoint=last or (epoch_done and bool(config.checkpoint_every)
                            and progress.epoch % config.checkpoint_every == 0),
        publish=last or (epoch_done and progress.epoch % config.hub_every == 0),
        watch=epoch_done,
    )


def _after_epoch(run: Run, progress: checkpoints.Progress, *, end: EpochEnd, paths: RunLayout, stop: StopRequest,
                 latest_checkpoint: Path | None, writer: Any, pusher: HubPusher | None) -> Path | None:
    """Rank 0's end-of-epoch (or end-of-run) work, as ``end`` decided: samples, watchdog, history, metrics,
    checkpoints (the latest, and the best), Hub push."""
    config = run.config
    if run.ema is not None:
        run.ema.recalibrate()  # BN statistics for the averaged weights, before anything uses them
    samples = _epoch_outputs(run, progress, paths, writer) if end.outputs else None
    if end.watch and samples is not None and _collapsed(run, progress, samples, writer) and config.on_collapse == "stop":
        stop.reason = "collapse"  # keep every checkpoint, the Hub folder and the history from before it
        log.warning("the collapse watchdog stops the run at epoch %d (--on-collapse stop): this epoch is not "
                    "checkpointed or published; the latest checkpoint is %s%s", progress.epoch, latest_checkpoint,
                    f", the best {paths.best}" if checkpoints.is_complete(paths.best) else "")
        return latest_checkpoint
    if end.watch and config.epoch_history:
        _save_epoch_generator(run, progress, paths)
    best = end.evaluate and _evaluate(run, progress, paths, writer)
    if end.checkpoint or best:
        latest_checkpoint = checkpoints.save(paths.checkpoints, _snapshot(run, progress))
        checkpoints.prune(paths.checkpoints, config.keep_checkpoints)
        log.info("checkpoint %s", latest_checkpoint)
    if best:
        checkpoints.save_as(paths.best, _snapshot(run, progress))
        log.info("new best FID %.2f at epoch %d: kept in %s", progress.metrics[-1].fid, progress.epoch, paths.best)
    if end.publish or best:
        _publish(run, progress, paths, latest_checkpoint, writer)
        if pusher is not None:
            tag = f"epoch-{progress.epoch}" if progress.batch == 0 else f"step-{progress.step}"
            pusher.push(paths.hub, tag=tag, message=f"epoch {progress.epoch}, step {progress.step}",
                        moved_tags=(BEST_TAG,) if best else ())
    return latest_checkpoint


def _epoch_outputs(run: Run, progress: checkpoints.Progress, paths: RunLayout, writer: Any) -> torch.Tensor:
    """Write the epoch's fixed-seed grid, the progress GIF and the loss plot; return the grid's images."""
    samples = artifacts.fixed_seed_samples(run.published_generator)
    grid = artifacts.grid_of(samples)
    png = imaging.png_bytes(grid)
    write_atomic(paths.epoch_grid(progress.epoch), png)
    write_atomic(paths.sample_grid, png)
    artifacts.write_progress_gif(paths.epoch_grids(), paths.progress_gif)
    artifacts.plot_losses(progress.history, paths.loss_plot)
    if writer is not None:
        writer.add_image("samples/fixed_seeds", artifacts.grid_tensor(grid), progress.step)
        writer.flush()
    return samples


def _collapsed(run: Run, progress: checkpoints.Progress, samples: torch.Tensor, writer: Any) -> bool:
    """The collapse watchdog's row for this epoch (logged, in TensorBoard and state.json); whether it tripped."""
    if run.reference_spread is None:
        run.reference_spread = watchdog.reference_spread(run.data.images)
    row = watchdog.check_epoch(epoch=progress.epoch, step=progress.step, samples=samples,
                               reference=run.reference_spread, history=progress.history, earlier=progress.health,
                               bad_steps=progress.bad_steps - sum(earlier.bad_steps for earlier in progress.health))
    progress.health.append(row)
    saturation = "" if row.d_real is None else f", D(x) {row.d_real:.3f}, D(G(z)) {row.d_fake:.3f}"
    log.info("epoch %d watchdog: sample diversity %.3f%s, %d bad step(s)", row.epoch, row.diversity, saturation,
             row.bad_steps)
    if writer is not None:
        writer.add_scalar("health/diversity", row.diversity, progress.step)
        writer.add_scalar("health/bad_steps", row.bad_steps, progress.step)
        if row.d_real is not None:
            writer.add_scalar("health/d_real_epoch", row.d_real, progress.step)
            writer.add_scalar("health/d_fake_epoch", row.d_fake, progress.step)
    if row.tripped:
        log.warning("epoch %d looks collapsed: %s", row.epoch, "; ".join(row.tripped))
    return bool(row.tripped)


def _save_epoch_generator(run: Run, progress: checkpoints.Progress, paths: RunLayout) -> None:
    """This epoch's published generator, float16, into history/ (a non-finite one is left out, with a warning)."""
    try:
        epoch_history.write_epoch(paths.history, run.published_generator, epoch=progress.epoch, step=progress.step)
    except NonFiniteError as error:
        log.warning("epoch %d is not added to %s: %s", progress.epoch, paths.history, error)


def _evaluate(run: Run, progress: checkpoints.Progress, paths: RunLayout, writer: Any) -> bool:
    """FID, KID, precision/recall and the memorization check of the published generator; True for a new best FID."""
    from ..evaluate import DecodedImages, evaluate
    from ..metrics import InceptionFeatures

    config = run.config
    if run.extractor is None:
        run.extractor = InceptionFeatures(device=run.device)
    train = DecodedImages(run.data.images, run.data.content, config.eval_train_num) \
        if config.eval_train_num and len(run.data) >= 2 else None
    result = evaluate(run.published_generator, config.eval_real, num=config.eval_num, extractor=run.extractor,
                      progress=False, train=train)
    row = checkpoints.EvalRecord(epoch=progress.epoch, step=progress.step, fid=result.fid, kid_mean=result.kid_mean,
                                 kid_std=result.kid_std, num_generated=result.num_generated,
                                 num_real=result.num_real, precision=result.precision, recall=result.recall,
                                 memorized=result.memorized, memorization_ratio=result.memorization_ratio,
                                 num_train=result.num_train)
    progress.metrics.append(row)
    log.info("epoch %d: %s", progress.epoch, result.describe())
    if result.memorization_flagged:
        log.warning("epoch %d: %.2f%% of the samples sit nearer a training image than any held-out image: the "
                    "generator may be copying training faces", progress.epoch, 100 * result.memorized)
    artifacts.plot_metrics(progress.metrics, run.batches.batch_size * run.layout.world_size, paths.metrics_plot)
    if writer is not None:
        writer.add_scalar("eval/fid", row.fid, progress.step)
        writer.add_scalar("eval/kid_x1000", row.kid_mean * 1000, progress.step)
        for key in ("precision", "recall", "memorized"):
            if getattr(row, key) is not None:
                writer.add_scalar(f"eval/{key}", getattr(row, key), progress.step)
    return checkpoints.is_new_best(progress.metrics)


def _publish(run: Run, progress: checkpoints.Progress, paths: RunLayout, checkpoint: Path | None,
             writer: Any) -> None:
    config = run.config
    if writer is not None:
        writer.flush()
    if progress.metrics:  # drawn again here: a resume may have dropped rows the file still shows
        artifacts.plot_metrics(progress.metrics, run.batches.batch_size * run.layout.world_size, paths.metrics_plot)
    else:
        paths.metrics_plot.unlink(missing_ok=True)
    card = publish.card_inputs(
        config, progress, images_per_step=run.batches.batch_size * run.layout.world_size,
        image_count=len(run.data), hardware=publish.hardware_name(run.device, run.layout.world_size),
        precision=run.precision, base_model=run.base.repo_id if run.base is not None else None)
    publish.build_hub_folder(paths.hub, generator=run.published_generator, discriminator=run.bare_discriminator,
                             checkpoint=checkpoint, tensorboard_dir=paths.tensorboard, extras=paths.published_files(),
                             card=card)


def _tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no event files (pip install tensorboard)")
        return None
    return SummaryWriter(str(path))


def _pusher(config: TrainConfig) -> HubPusher:
    from ..hub import HubPusher

    return HubPusher(config.push_to_hub, private=config.hub_private, base_delay=config.hub_retry_delay,
                     max_delay=max(300.0, config.hub_retry_delay))
