"""The training loop: data → step → EMA → samples/metrics → checkpoint → Hub.

``train(config)`` is everything ``train.py`` does. It runs the same code on a CPU, one GPU
(CUDA graph + bf16 + channels_last) or several processes under torchrun (DDP).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..files import remove_stale_copies
from ..layout import RunLayout
from ..models import Discriminator, Generator
from . import checkpoint as checkpoints
from .config import TrainConfig
from .distributed import Distributed, setup
from .epoch_end import EpochEnd, after_epoch, epoch_end, hub_pusher, tensorboard, training_done  # noqa: F401
from .run import ARITHMETIC_KEY, Run, build, check_eval_inputs, resume, snapshot  # noqa: F401  (tests)
from .step import STATS
from .stop import StopRequest

if TYPE_CHECKING:  # imported where used: the pusher with --push-to-hub
    from ..hub.pusher import PushResult

log = logging.getLogger(__name__)


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


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training as ``config`` says; see ``python train.py --help``.

    The CPU thread count training picks (``--threads``) is process-wide torch state, so it is
    put back when training ends: a notebook or a test that trains in-process and then samples
    would otherwise keep an OpenMP team the size of the machine (2-20x slower beside other work).
    """
    threads = torch.get_num_threads()
    layout, device = setup(config.device)
    try:
        if layout.is_main:  # free what a killed run left (whole checkpoint copies) before using the disk
            remove_stale_copies(RunLayout(Path(config.output_dir)).hub)
            remove_stale_copies(RunLayout(Path(config.output_dir)).best)
        check_eval_inputs(config)  # a missing package or real-image folder fails now, not after an epoch
        run = build(config, layout, device)
        stop = StopRequest()
        if _is_main_thread():
            with stop.installed():
                return _loop(run, stop)
        return _loop(run, stop)
    finally:
        layout.close()
        torch.set_num_threads(threads)


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


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
    progress, source = resume(run, paths)
    writer = tensorboard(paths.tensorboard) if main else None
    pusher = hub_pusher(config) if main and config.push_to_hub else None
    epochs = 1 if config.dry_run else config.epochs
    max_steps = 2 if config.dry_run else config.max_steps
    latest_checkpoint: Path | None = checkpoints.latest(paths.checkpoints) if main else None
    started, run_seconds, resumed_step = time.perf_counter(), progress.seconds, progress.step
    interval, rate = Interval(run.device), 0.0
    if main:
        log.info("training %s on %s (%d images, %d steps/epoch, %s)", config.output_dir, run.device,
                 len(run.data), run.batches.steps_per_epoch, run.precision)
    try:
        while (not training_done(progress, epochs=epochs, max_steps=max_steps)
               and not _stop_everywhere(stop, layout, run.device)):
            rate = _train_epoch(run, progress, interval, stop, writer, max_steps=max_steps, epochs=epochs) or rate
            epoch_done = progress.batch >= run.batches.steps_per_epoch
            if epoch_done:
                progress.epoch += 1
                progress.batch = 0
            progress.seconds = run_seconds + time.perf_counter() - started
            _check_bad_steps(run, progress, latest_checkpoint)
            if main:
                end = epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=epoch_done,
                                 stopping=bool(stop))
                latest_checkpoint = after_epoch(run, progress, end=end, paths=paths, stop=stop,
                                                 latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
            layout.barrier()
        finished = training_done(progress, epochs=epochs, max_steps=max_steps)
        interrupted = stop.by_signal and not finished
        if main and source is not None and progress.step == resumed_step and finished:
            # resumed a finished run (e.g. to add --push-to-hub): rebuild the Hub folder and push it
            log.info("nothing left to train at step %d; rebuilding %s", progress.step, paths.hub)
            end = epoch_end(config, progress, epochs=epochs, max_steps=max_steps, epoch_done=False,
                             stopping=bool(stop))
            latest_checkpoint = after_epoch(run, progress, end=end, paths=paths, stop=stop,
                                             latest_checkpoint=latest_checkpoint, writer=writer, pusher=pusher)
        if interrupted and main and (latest_checkpoint is None
                                     or latest_checkpoint.name != checkpoints.name_for(progress.step)):
            # the signal came during end-of-epoch work, after that epoch's checkpoint decision
            latest_checkpoint = checkpoints.save(paths.checkpoints, snapshot(run, progress))
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




