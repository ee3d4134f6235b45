"""Training: config → data → step → loop, with checkpoints and Hub pushes."""

from .config import TrainConfig
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
