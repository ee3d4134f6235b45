"""Run under torchrun by test_ddp.py: train, then save this rank's final weights for comparison."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from dcgan_hf.training import TrainConfig, train

if __name__ == "__main__":
    out = Path(sys.argv[1])
    result = train(TrainConfig.from_args(sys.argv[2:]))
    rank = int(os.environ["RANK"])
    for name in ("generator", "discriminator"):
        state = {key: value.detach().cpu().contiguous() for key, value in getattr(result, name).state_dict().items()}
        save_file(state, str(out / f"rank{rank}-{name}.safetensors"))
