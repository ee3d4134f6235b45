"""One reading of a ``--device`` value for training, evaluation, the command line and the demo.

``auto`` is CUDA when torch sees a GPU, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` must
exist on this machine. Anything else is a :class:`DeviceError` naming the value, raised
before a model or a dataset is loaded. :func:`one_thread` runs small CPU work without an
OpenMP team.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class DeviceError(ValueError):
    """A device that does not exist here, or one this library does not run on; one line."""


def resolve_device(name: str | None = "auto", *, local_rank: int | None = None) -> torch.device:
    """``name`` as a torch device that exists here (case and spaces ignored).

    ``local_rank`` (a torchrun process's GPU) gives ``auto`` and a bare ``cuda`` their index;
    without it they stay index-free (the current GPU).
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from error
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu or cuda[:N]")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} was asked for, but torch sees no CUDA GPU here")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: torch sees only {torch.cuda.device_count()} GPU(s)")
    return device


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one intra-op thread, then give the caller's count back.

    For small work (a 100 × 100 eigendecomposition, one face per optimiser step): an OpenMP team
    that shares its cores with other work costs more than it gives (the eigendecomposition took
    ~400 ms instead of ~1 ms; three CLI completions minutes instead of 7 s beside a training run).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
