"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every small output (grids, GIFs, plots, JSON, caches' side files, the demo's results) goes
through :func:`write_atomic`: written beside the target under a unique name, then renamed.
Checkpoints, being folders, have their own rename in ``training.checkpoint``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; safe with concurrent writers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(staging, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs follow the umask
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
