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

from .. import images as imaging
from ..data import DeviceBatches, ImageCache, load_cache, synthetic_images
from ..files import remove_stale_copies, write_atomic
from ..layout import EMA_COUNTER, TRAINING_STATE_DIR, CheckpointLayout, HubLayout, RunLayout
from ..models import Discriminator, Generator, dcgan_init
from . import artifacts, checkpoint as checkpoints, publish
from .base_model import BaseModel, load_base_model
from .config import TrainConfig
from .distributed import Distributed, setup
from .ema import EMA
from .precision import Arithmetic, Choice, choose, time_steps
from .step import GanStep, StepOptions, make_optimizers

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


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
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


# -- building a run --------------------------------------------------------------------------
def _choose_arithmetic(config: TrainConfig, layout: Distributed, device: torch.device,
                       batch_size: int) -> Choice:
    """``--precision``/``--channels-last`` resolved for this machine; under DDP rank 0 decides for all."""
    def time_candidates(candidates: list[Arithmetic]) -> dict[Arithmetic, float]:
        return time_steps(lambda arithmetic: _throwaway_step(config, arithmetic, device, batch_size),
                                    candidates)

    choice = None
    if layout.is_main:
        choice = choose(config.precision, config.channels_last, device,
                                  recorded=_recorded_arithmetic(config), time_candidates=time_candidates)
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
    if config.resume == "latest":
        source = checkpoints.latest(RunLayout(Path(config.output_dir)).checkpoints)
    else:
        source = Path(config.resume)
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
    return checkpoints.Checkpoint(
        progress=progress,
        config=run.config.to_dict(),
        data_fingerprint=run.data.fingerprint,
        generator=run.bare_generator.state_dict(),
        discriminator=run.bare_discriminator.state_dict(),
        optimizers={"g": run.opt_g.state_dict(), "d": run.opt_d.state_dict()},
        rng={"noise": run.noise.get_state()},
        ema=({**run.ema.shadow.state_dict(), EMA_COUNTER: run.ema.state_dict()["updates"]}
             if run.ema is not None else None),
        extra={ARITHMETIC_KEY: run.arithmetic.to_dict()},  # a resumed `--precision auto` run keeps it
    )


def _restore(run: Run, saved: checkpoints.Checkpoint) -> checkpoints.Progress:
    config = run.config
    old = saved.config
    for key in ("nz", "ngf", "ndf"):
        if old.get(key) != getattr(config, key):
            raise ValueError(f"cannot resume: the checkpoint has {key}={old.get(key)}, this run {getattr(config, key)}")
    trained_with = TrainConfig.from_dict(old).to_dict()  # a key older code did not write means what it did
    changed = {k: (trained_with[k], v) for k, v in config.to_dict().items()
               if k in ("recipe", "batch_size", "lr_g", "lr_d", "beta1", "beta2", "loss", "label_smoothing", "augment",
                        "r1_gamma", "r1_every", "ema_decay", "ema_start", "hflip", "seed", "init_from")
               and trained_with[k] != v}
    if changed:
        log.warning("resuming with a different recipe than the checkpoint's: %s", changed)
    if trained_with["r1_gamma"] == 0 < config.r1_gamma:
        # seen in the long run (bench/RESULTS.md §11): D's input gradients had grown large and after the
        # first penalty D stopped learning (most likely Adam's second moments, inflated for thousands of steps)
        log.warning("R1 switched on in a run trained without it: this can stall the discriminator; pass "
                    "--r1-gamma 0 to continue as trained (R1 is for runs that start with it)")
    if saved.data_fingerprint != run.data.fingerprint:
        log.warning("the training data differ from the checkpoint's (fingerprint %s, now %s)",
                    saved.data_fingerprint, run.data.fingerprint)
    run.bare_generator.load_state_dict_strict(saved.generator, source="checkpoint generator")
    run.bare_discriminator.load_state_dict_strict(saved.discriminator, source="checkpoint discriminator")
    run.opt_g.load_state_dict(saved.optimizers["g"])
    run.opt_d.load_state_dict(saved.optimizers["d"])
    run.noise.set_state(saved.rng["noise"])
    progress = saved.progress
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


def _resume_source(config: TrainConfig, checkpoint_dir: Path) -> Path | None:
    if not config.resume:
        return None
    if config.resume == "latest":
        found = checkpoints.latest(checkpoint_dir)
        if found is None:
            log.info("--resume latest: no checkpoint in %s yet, starting fresh", checkpoint_dir)
        return found
    if config.resume == "hub":
        from ..hub import download_folder

        folder = download_folder(config.push_to_hub, allow_patterns=[f"{TRAINING_STATE_DIR}/*"])
        return HubLayout(folder).training_state
    path = Path(config.resume)
    if not checkpoints.is_complete(path):
        raise FileNotFoundError(f"--resume {path}: not a checkpoint folder (no {checkpoints.STATE_FILE})")
    return path


# -- the loop ---------------------------------------------------------------------------------
def _loop(run: Run, stop: StopRequest) -> TrainResult:
    config, layout, main = run.config, run.layout, run.layout.is_main
    out = Path(config.output_dir)
    paths = RunLayout(out)
    checkpoint_dir, hub_dir = paths.checkpoints, paths.hub
    progress = checkpoints.Progress()
    source = _resume_source(config, checkpoint_dir)
    if source is not None:
        progress = _restore(run, checkpoints.load(source, device=run.device))
        log.info("resumed from %s at epoch %d, batch %d (step %d)", source, progress.epoch, progress.batch,
                 progress.step)
    writer = _tensorboard(paths.tensorboard) if main else None
    pusher = _pusher(config) if main and config.push_to_hub else None
    epochs = 1 if config.dry_run else config.epochs
    max_steps = 2 if config.dry_run else config.max_steps
    steps_per_epoch = run.batches.steps_per_epoch
    latest_checkpoint: Path | None = checkpoints.latest(checkpoint_dir) if main else None
    interrupted = False
    started = time.perf_counter()
    run_seconds, resumed_step = progress.seconds, progress.step
    stats_sum = torch.zeros(5, device=run.device)
    stats_count, r1_count, interval_start, interval_images = 0, 0, time.perf_counter(), 0
    rate = 0.0
    if main:
        log.info("training %s on %s (%d images, %d steps/epoch, %s)", config.output_dir, run.device,
                 len(run.data), steps_per_epoch, run.precision)
    try:
        while (not _finished(progress, epochs=epochs, max_steps=max_steps)
               and not _stop_everywhere(stop, layout, run.device)):
            bar = tqdm(total=steps_per_epoch, initial=progress.batch, desc=f"epoch {progress.epoch + 1}/{epochs}",
                       unit="step", disable=not (main and config.progress), dynamic_ncols=True)
            for real in run.batches.batches(progress.epoch, start=progress.batch):
                r1_count += run.step.options.regularizes(progress.step)
                stats_sum += run.step(real, progress.step)
                stats_count += 1
                progress.batch += 1
                progress.step += 1
                interval_images += run.batches.batch_size * layout.world_size
                bar.update(1)
                if progress.step % config.log_every == 0 or progress.batch == steps_per_epoch:
                    row = _log_row(stats_sum, stats_count, r1_count, progress, steps_per_epoch, interval_images,
                                   time.perf_counter() - interval_start)
                    rate = row["img_per_s"]
                    stats_sum.zero_()
                    stats_count, r1_count, interval_start, interval_images = 0, 0, time.perf_counter(), 0
                    if main:
                        progress.history.append(row)
                        bar.set_postfix(img_s=f"{row['img_per_s']:.0f}", D=f"{row['loss_d']:.3f}",
                                        G=f"{row['loss_g']:.3f}")
                        if not config.progress:  # headless runs (nohup, CI) still show a pulse in their log
                            log.info("step %d (epoch %.2f): D %.3f  G %.3f  D(x) %.2f  D(G(z)) %.2f%s  %.0f img/s",
                                     progress.step, row["epoch"], row["loss_d"], row["loss_g"], row["d_real"],
                                     row["d_fake"], f"  R1 {row['r1']:.3g}" if "r1" in row else "", row["img_per_s"])
                        if writer is not None:
                            for key in ("loss_d", "loss_g", "d_real", "d_fake", "r1", "img_per_s"):
                                if key not in row:
                                    continue
                                writer.add_scalar(f"train/{key}", row[key], progress.step)
                if _stop_everywhere(stop, layout, run.device) or (max_steps and progress.step >= max_steps):
                    break
            bar.close()
            epoch_done = progress.batch >= steps_per_epoch
            if epoch_done:
                progress.epoch += 1
                progress.batch = 0
            progress.seconds = run_seconds + time.perf_counter() - started
            if main:
                end = _epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=epoch_done,
                                 stopping=bool(stop))
                latest_checkpoint = _after_epoch(run, progress, end=end, paths=paths,
                                                 latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
            layout.barrier()
        finished = _finished(progress, epochs=epochs, max_steps=max_steps)
        interrupted = bool(stop) and not finished
        if main and source is not None and progress.step == resumed_step and finished:
            # resumed a finished run (e.g. to add --push-to-hub): rebuild the Hub folder and push it
            log.info("nothing left to train at step %d; rebuilding %s", progress.step, hub_dir)
            end = _epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=False,
                             stopping=bool(stop))
            latest_checkpoint = _after_epoch(run, progress, end=end, paths=paths,
                                             latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
        if interrupted and main and (latest_checkpoint is None
                                     or latest_checkpoint.name != checkpoints.name_for(progress.step)):
            # the signal came during end-of-epoch work, after that epoch's checkpoint decision
            latest_checkpoint = checkpoints.save(checkpoint_dir, _snapshot(run, progress))
        _sync_buffers(run)
    finally:
        pushes = pusher.close() if pusher is not None else []
        if writer is not None:
            writer.close()
    if interrupted and main:
        log.warning("interrupted at step %d; resume with: python train.py … --resume latest", progress.step)
    return TrainResult(out, progress, interrupted, latest_checkpoint, hub_dir if main else None,
                       pushes=list(pushes or []), images_per_second=rate, generator=run.bare_generator,
                       discriminator=run.bare_discriminator,
                       ema_generator=run.ema.shadow if run.ema is not None else None,
                       arithmetic=run.precision)


def _sync_buffers(run: Run) -> None:
    """Give every rank rank 0's BN statistics, as DDP does at each forward, so all end equal."""
    if not run.layout.enabled:
        return
    modules = [run.bare_generator, run.bare_discriminator] + ([run.ema.shadow] if run.ema is not None else [])
    for module in modules:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _stop_everywhere(stop: StopRequest, layout: Distributed, device: torch.device) -> bool:
    """Under DDP all ranks must leave the loop at the same step, whichever got the signal."""
    if not layout.enabled:
        return bool(stop)
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    torch.distributed.all_reduce(flag)
    if flag.item() > 0 and not stop:
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
    )


def _after_epoch(run: Run, progress: checkpoints.Progress, *, end: EpochEnd, paths: RunLayout,
                 latest_checkpoint: Path | None, writer: Any, pusher: HubPusher | None) -> Path | None:
    """Rank 0's end-of-epoch (or end-of-run) work, as ``end`` decided: samples, metrics, checkpoint, Hub push."""
    config = run.config
    if run.ema is not None:
        run.ema.recalibrate()  # BN statistics for the averaged weights, before anything uses them
    if end.outputs:
        _epoch_outputs(run, progress, paths, writer)
    if end.evaluate:
        _evaluate(run, progress, writer)
    if end.checkpoint:
        latest_checkpoint = checkpoints.save(paths.checkpoints, _snapshot(run, progress))
        checkpoints.prune(paths.checkpoints, config.keep_checkpoints)
        log.info("checkpoint %s", latest_checkpoint)
    if end.publish:
        _publish(run, progress, paths, latest_checkpoint, writer)
        if pusher is not None:
            tag = f"epoch-{progress.epoch}" if progress.batch == 0 else f"step-{progress.step}"
            pusher.push(paths.hub, tag=tag, message=f"epoch {progress.epoch}, step {progress.step}")
    return latest_checkpoint


def _log_row(stats_sum: torch.Tensor, count: int, r1_count: int, progress: checkpoints.Progress,
             steps_per_epoch: int, images: int, seconds: float) -> dict[str, float]:
    """Interval means; the R1 penalty averaged over the steps that computed it (when any did)."""
    totals = stats_sum.tolist()  # the one host sync per interval
    loss_d, loss_g, d_real, d_fake = (value / max(count, 1) for value in totals[:4])
    row = {"step": progress.step, "epoch": progress.epoch + progress.batch / steps_per_epoch,
           "loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake,
           "img_per_s": images / max(seconds, 1e-9)}
    if r1_count:
        row["r1"] = totals[4] / r1_count
    return row


def _epoch_outputs(run: Run, progress: checkpoints.Progress, paths: RunLayout, writer: Any) -> None:
    grid = artifacts.sample_grid(run.published_generator)
    png = imaging.png_bytes(grid)
    write_atomic(paths.epoch_grid(progress.epoch), png)
    write_atomic(paths.sample_grid, png)
    artifacts.write_progress_gif(paths.epoch_grids(), paths.progress_gif)
    artifacts.plot_losses(progress.history, paths.loss_plot)
    if writer is not None:
        writer.add_image("samples/fixed_seeds", artifacts.grid_tensor(grid), progress.step)
        writer.flush()


def _evaluate(run: Run, progress: checkpoints.Progress, writer: Any) -> None:
    from ..evaluate import evaluate
    from ..metrics import InceptionFeatures

    config = run.config
    if run.extractor is None:
        run.extractor = InceptionFeatures(device=run.device)
    result = evaluate(run.published_generator, config.eval_real, num=config.eval_num, extractor=run.extractor,
                      progress=False)
    row = checkpoints.EvalRecord(epoch=progress.epoch, step=progress.step, fid=result.fid, kid_mean=result.kid_mean,
                                 kid_std=result.kid_std, num_generated=result.num_generated,
                                 num_real=result.num_real)
    progress.metrics.append(row)
    log.info("epoch %d: FID %.2f  KID×1000 %.2f ± %.2f", progress.epoch, row.fid, row.kid_mean * 1000,
             row.kid_std * 1000)
    if writer is not None:
        writer.add_scalar("eval/fid", row.fid, progress.step)
        writer.add_scalar("eval/kid_x1000", row.kid_mean * 1000, progress.step)


def _publish(run: Run, progress: checkpoints.Progress, paths: RunLayout, checkpoint: Path | None,
             writer: Any) -> None:
    config = run.config
    if writer is not None:
        writer.flush()
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
