"""The end of an epoch (or of the run): sample grids, the collapse watchdog, the epoch's
generator in history/, FID/KID, checkpoints, and the Hub folder (pushed in the background).

:func:`epoch_end` decides once what is due; :func:`after_epoch` does it, on the main process.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import epoch_history, images as imaging
from ..files import write_atomic
from ..finite import NonFiniteError
from ..layout import BEST_TAG, RunLayout
from . import artifacts, checkpoint as checkpoints, publish, watchdog
from .config import TrainConfig
from .run import Run, snapshot
from .stop import StopRequest

if TYPE_CHECKING:  # imported where used: the pusher with --push-to-hub
    from ..hub.pusher import HubPusher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochEnd:
    """What the end of an epoch (or of the run) does: decided once, by :func:`epoch_end`."""

    outputs: bool  # sample grids, progress GIF, loss plot
    evaluate: bool  # FID/KID
    checkpoint: bool
    publish: bool  # rebuild the Hub folder (and push it)
    watch: bool = False  # a whole epoch ended: the collapse watchdog and the epoch's history file


def epoch_end(config: TrainConfig, progress: checkpoints.Progress, *, epochs: int, max_steps: int,
               epoch_done: bool, stopping: bool) -> EpochEnd:
    """The end-of-epoch decisions, from where the run stands once ``progress`` has moved on.

    ``epoch_done``: a whole pass over the data just ended; ``stopping``: a signal ends the run
    here. The last step of a run (finished or stopped) always checkpoints and publishes.
    """
    last = training_done(progress, epochs=epochs, max_steps=max_steps) or stopping
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


def after_epoch(run: Run, progress: checkpoints.Progress, *, end: EpochEnd, paths: RunLayout, stop: StopRequest,
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
        latest_checkpoint = checkpoints.save(paths.checkpoints, snapshot(run, progress))
        checkpoints.prune(paths.checkpoints, config.keep_checkpoints)
        log.info("checkpoint %s", latest_checkpoint)
    if best:
        checkpoints.save_as(paths.best, snapshot(run, progress))
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
    row = dataclasses.replace(result, epoch=progress.epoch, step=progress.step, seconds=None)
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


def tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no event files (pip install tensorboard)")
        return None
    return SummaryWriter(str(path))


def hub_pusher(config: TrainConfig) -> HubPusher:
    from ..hub.pusher import HubPusher

    return HubPusher(config.push_to_hub, private=config.hub_private, base_delay=config.hub_retry_delay,
                     max_delay=max(300.0, config.hub_retry_delay))


def training_done(progress: checkpoints.Progress, *, epochs: int, max_steps: int) -> bool:
    """Every epoch, or ``--max-steps`` steps, trained."""
    return progress.epoch >= epochs or bool(max_steps and progress.step >= max_steps)
