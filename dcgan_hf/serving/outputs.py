"""The demo's output files: results are written to one folder, named by what drew them, and
pruned after a while so a long-running Space does not fill its disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Sequence

from ..files import write_atomic


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


def tile_name(seed: int, truncation: float) -> str:
    """A gallery tile's file name: the face it shows."""
    return f"dcgan-seed{seed}-t{truncation:g}.png"


def grid_digest(seeds: Sequence[int]) -> str:
    """8 hex digits naming a list of seeds (a grid's file name stays short however many it shows)."""
    return hashlib.sha256(",".join(map(str, seeds)).encode()).hexdigest()[:8]
