#!/usr/bin/env python
"""Train a DCGAN on CelebA (or any folder / zip of images, or a Hub dataset) and publish it to the Hub.

    python train.py --data /path/to/img_align_celeba --epochs 25 --push-to-hub user/dcgan-celeba
    python train.py --data hf://datasets/OWNER/NAME --split train   # needs dcgan_hf[datasets]
    torchrun --nproc_per_node=2 train.py --data …        # DDP, one process per device
    python train.py --dry-run                            # smoke test on synthetic images

Every flag is a field of dcgan_hf.training.TrainConfig; this file only parses and runs.
Exit status: 0 done, 2 an error (one ``error:`` line), 3 a Hub push failed, 4 the collapse
watchdog stopped the run, 130 interrupted (resume with ``--resume latest``).
"""

from __future__ import annotations

import logging
import sys

from dcgan_hf.data import DataError
from dcgan_hf.devices import DeviceError
from dcgan_hf.finite import NonFiniteError
from dcgan_hf.data.hf_datasets import DatasetSourceError
from dcgan_hf.metrics import EvalDependencyError
from dcgan_hf.models import ModelLoadError
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training.loop import TrainingDiverged
from dcgan_hf.training.resume_check import ResumeMismatch

EXIT_ERROR, EXIT_PUSH_FAILED, EXIT_COLLAPSE, EXIT_INTERRUPTED = 2, 3, 4, 130


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig.from_args(argv)
    try:
        result = train(config)
    except (DataError, DatasetSourceError, DeviceError, FileNotFoundError, ModelLoadError, ResumeMismatch,
            EvalDependencyError, TrainingDiverged, NonFiniteError) as error:
        # no usable images, no disk space, an unusable --data / --init-from / --resume source or --device, a resume
        # that would change the recipe or data, a run whose steps stay non-finite: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.stopped == "collapse":
        logging.getLogger("train").warning("stopped by the collapse watchdog; the checkpoints from before the "
                                           "collapse are in %s", result.output_dir)
        return EXIT_COLLAPSE
    failed = [push for push in result.pushes if not push.ok]
    if failed:
        logging.getLogger("train").error("%d Hub push(es) failed; the local results are in %s",
                                         len(failed), result.output_dir)
        return EXIT_PUSH_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
