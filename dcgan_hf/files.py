"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every small output (grids, GIFs, plots, JSON, caches' side files, the demo's results) goes
through :func:`write_atomic`: written beside the target under a unique name, then renamed.
Folders (checkpoints, a run's Hub folder, ``convert``'s output) are built beside their
target and swapped in whole by :func:`replace_folder`. Temporaries named ``….tmp-<pid>``
that a killed process left behind are found by :func:`remove_stale`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

# The tail of every temporary name this package makes: ``.tmp-<pid>`` or ``.tmp-<8 hex>-<pid>``
# (``.old-`` for a folder retired by replace_folder). A pid has at most 7 digits (Linux's
# PID_MAX_LIMIT is 4194304); any other tail is someone else's file and is never touched.
STALE_TAIL = re.compile(r"\.(?:tmp|old)-(?:[0-9a-f]{8}-)?([1-9][0-9]{0,6})")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; safe with concurrent writers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging, fd = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def _create_beside(path: Path) -> tuple[Path, int]:
    """A new, uniquely named file beside ``path``, open for writing.

    Created with mode 0o666, which the kernel narrows by the process umask as for any other
    file; the umask is never read or changed (changing it races with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            return staging, os.open(staging, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_pid(name: str) -> int | None:
    """The writer's pid in a temporary name this package made (see :data:`STALE_TAIL`), else None."""
    match = STALE_TAIL.search(name)
    return int(match.group(1)) if match and match.end() == len(name) else None


def remove_stale(folder: str | os.PathLike, pattern: str) -> list[Path]:
    """Delete ``folder``'s entries matching ``pattern`` that this package named as temporaries
    (``….tmp-[<8 hex>-]<pid>``, ``….old-…``) for a process that is no longer running.

    Staging files and folders carry their writer's pid, so what a crash, ``kill -9`` or a
    full disk left behind can be told from what another live process is still writing. A
    name with any other tail (``.out.tmp-mywork``, a 30-digit "pid") was not made here: kept.
    """
    removed = []
    for stale in Path(folder).glob(pattern):
        pid = stale_pid(stale.name)
        if pid is None or process_alive(pid):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


@contextlib.contextmanager
def replace_folder(target: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Build a folder beside ``target`` and swap it in whole: readers see the old folder or the new one.

    Yields a new empty folder ``.NAME.tmp-<id>-<pid>`` beside ``target`` to fill. When the block
    ends, ``target`` (if it exists) is renamed aside to ``.NAME.old-<id>-<pid>``, the new folder
    takes its name and the old one is deleted; if that rename fails, the old folder is put back.
    A block that raises (a full disk) leaves ``target`` as it was and its half-built copy is
    deleted. Copies that killed processes left beside ``target`` are removed first.
    ``durable``: fsync the new folder before the swap and the parent after it (checkpoints).
    """
    target = Path(os.path.abspath(target))  # "." and "x/.." have no name to build beside
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_copies(target)
    tag = f"{secrets.token_hex(4)}-{os.getpid()}"
    staging = target.with_name(f".{target.name}.tmp-{tag}")
    staging.mkdir()
    retired = None
    try:
        yield staging
        if durable:
            fsync_dir(staging)
        if target.exists() or target.is_symlink():
            retired = target.with_name(f".{target.name}.old-{tag}")
            os.replace(target, retired)
        try:
            os.replace(staging, target)
        except BaseException:
            if retired is not None:
                os.replace(retired, target)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if durable:
        fsync_dir(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def remove_stale_copies(target: str | os.PathLike) -> list[Path]:
    """Delete the half-built (``.NAME.tmp-…``) and retired (``.NAME.old-…``) copies of ``target``
    that :func:`replace_folder` left in processes that died (each may be a whole checkpoint)."""
    target = Path(target)
    name = glob.escape(target.name)
    return remove_stale(target.parent, f".{name}.tmp-*") + remove_stale(target.parent, f".{name}.old-*")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
