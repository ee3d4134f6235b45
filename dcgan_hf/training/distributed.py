"""Process layout: one process, or one per device under ``torchrun`` (DDP).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we read them, pick gloo on the CPU and nccl
on GPUs, and give each rank its device. Rank 0 alone writes files and talks to the Hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup(requested_device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group if there is one; return the layout and our device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    layout = Distributed(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = resolve_device(requested_device, local_rank=layout.local_rank)  # auto, cuda: this rank's GPU
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if layout.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=layout.rank, world_size=world_size)
    return layout, device
