#!/usr/bin/env python
"""Train a DCGAN on CelebA (or any folder / zip of images, or a Hub dataset) and publish it to the Hub.

    python train.py --data /path/to/img_align_celeba --epochs 25 --push-to-hub user/dcgan-celeba
    python train.py --data hf://datasets/OWNER/NAME --split train   # needs dcgan_hf[datasets]
    torchrun --nproc_per_node=2 train.py --data …        # DDP, one process per device
    python train.py --dry-run                            # smoke test on synthetic images

Every flag is a field of dcgan_hf.training.TrainConfig; this file only parses and runs.
"""

from __future__ import annotations

import logging
import sys

from dcgan_hf.data import DataError
from dcgan_hf.devices import DeviceError
from dcgan_hf.hf_datasets import DatasetSourceError
from dcgan_hf.models import ModelLoadError
from dcgan_hf.training import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig.from_args(argv)
    try:
        result = train(config)
    except (DataError, DatasetSourceError, DeviceError, FileNotFoundError, ModelLoadError) as error:
        # no usable images, no disk space, an unusable --data / --init-from source or --device: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 130
    failed = [push for push in result.pushes if not push.ok]
    if failed:
        logging.getLogger("train").error("%d Hub push(es) failed; the local results are in %s",
                                         len(failed), result.output_dir)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
