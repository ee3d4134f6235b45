"""The non-finite guard: a training step whose losses or gradients are not finite changes nothing.

A GAN step can blow up (a learning rate too high, weights too large to start from, mixed
precision): its losses or gradients turn NaN/inf, Adam writes NaN into the weights and every
later step, checkpoint and push carries them. The guard decides per step, on the device,
whether each half of the step may be applied:

- D's half when D's losses (R1 included), gradients and BatchNorm statistics are finite;
- G's half when that holds and G's loss, gradients and BatchNorm statistics are finite too.

A skipped half leaves its network's weights, its Adam moments and step count (fused Adam's
``found_inf``: the kernel skips the update and restores the step count) and its BatchNorm
running statistics (restored from a copy taken at the start of the step) as they were; the
EMA is not updated on a step whose G half was skipped. A gradient whose square overflows
float32 (what Adam's second moment computes) counts as non-finite: it would write inf/NaN.

Everything is tensor arithmetic with no host sync, so the CUDA graph records it as part of
the step and the CPU runs exactly the same code eagerly. The host reads the counters only
every few steps (``in_a_row``, ``peak``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class StepGuard:
    """Per-step finite checks, the ``found_inf`` flags fused Adam reads, and bad-step counters."""

    def __init__(self, device: torch.device, discriminator: nn.Module, generator: nn.Module,
                 distributed: bool = False) -> None:
        zero = dict(device=device, dtype=torch.float32)
        self.found_inf_d = torch.zeros((), **zero)  # 1.0: D's Adam skips this step (fused Adam reads it)
        self.found_inf_g = torch.zeros((), **zero)
        self.in_a_row = torch.zeros((), **zero)  # consecutive bad steps up to the last one
        self.peak = torch.zeros((), **zero)  # the longest such run since the host last reset it
        self.distributed = distributed
        self._d_buffers = list(getattr(discriminator, "module", discriminator).buffers())
        self._g_buffers = list(getattr(generator, "module", generator).buffers())
        self._d_statistics = [buffer for buffer in self._d_buffers if buffer.is_floating_point()]
        self._g_statistics = [buffer for buffer in self._g_buffers if buffer.is_floating_point()]
        self._d_saved = [buffer.detach().clone() for buffer in self._d_buffers]
        self._g_saved = [buffer.detach().clone() for buffer in self._g_buffers]

    def attach(self, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer) -> None:
        """Make the (fused) Adams skip their update while a flag is 1, as torch's GradScaler does."""
        for optimizer, flag in ((opt_d, self.found_inf_d), (opt_g, self.found_inf_g)):
            optimizer.grad_scale = None
            optimizer.found_inf = flag

    def start(self) -> None:
        """Copy the BatchNorm statistics the step's forward passes are about to change."""
        for saved, buffer in zip(self._d_saved + self._g_saved, self._d_buffers + self._g_buffers):
            saved.copy_(buffer)

    def check_d(self, losses: Sequence[torch.Tensor], parameters: Sequence[nn.Parameter]) -> None:
        """Set D's flag from its losses and gradients (before ``opt_d.step()``)."""
        self.found_inf_d.copy_(self._bad(losses, parameters, self._d_statistics))

    def check_g(self, losses: Sequence[torch.Tensor], parameters: Sequence[nn.Parameter]) -> None:
        """Set G's flag (before ``opt_g.step()``): a step whose D half was bad is not applied to G either."""
        self.found_inf_g.copy_(torch.maximum(self.found_inf_d, self._bad(losses, parameters, self._g_statistics)))

    def finish(self) -> torch.Tensor:
        """Put back the BN statistics of skipped halves, count the step; return 1.0 for a bad step, else 0.0."""
        self._restore(self._d_buffers, self._d_saved, self.found_inf_d)
        self._restore(self._g_buffers, self._g_saved, self.found_inf_g)
        bad = self.found_inf_g
        self.in_a_row.add_(1.0).mul_(bad)
        torch.maximum(self.peak, self.in_a_row, out=self.peak)
        return bad.clone()

    def applied(self) -> torch.Tensor:
        """1.0 when G's half (and so the whole step) is applied: the weight of this step's EMA update."""
        return 1.0 - self.found_inf_g

    def _bad(self, losses: Sequence[torch.Tensor], parameters: Sequence[nn.Parameter],
             buffers: Sequence[torch.Tensor]) -> torch.Tensor:
        grads = [p.grad for p in parameters if p.grad is not None]
        # Σ‖g‖² in float32: inf/NaN when any gradient is, or when one is so large that Adam's g² overflows
        total = torch.stack(torch._foreach_norm(grads)).float().square().sum() if grads else self.peak.new_zeros(())
        # the BN statistics this step's forward passes gathered: an activation that overflowed shows here even
        # when train-mode normalisation kept the losses and gradients finite
        if buffers:
            total = total + torch.stack(torch._foreach_norm(buffers)).float().sum() * 0.0
        for loss in losses:
            total = total + loss.detach().float() * 0.0  # NaN/inf in a loss poisons the sum; finite adds 0
        bad = (~torch.isfinite(total)).float()
        if self.distributed:  # losses differ by rank: every rank must skip the same steps
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        return bad

    @staticmethod
    def _restore(buffers: list[torch.Tensor], saved: list[torch.Tensor], flag: torch.Tensor) -> None:
        skip = flag > 0
        for buffer, copy in zip(buffers, saved):
            buffer.copy_(torch.where(skip, copy, buffer))  # where, not lerp: a NaN buffer must not leak through
