"""Exponential moving average of generator weights, the copy we sample from and publish.

GAN weights oscillate; their EMA gives visibly cleaner samples at no training cost. All
updates are on-device tensor ops (including the warm-up decay), so the update can sit
inside a captured CUDA graph.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = d·shadow + (1-d)·live`` with d = min(decay, (1+n)/(10+n)) after n updates.

    The warm-up keeps early samples from being dominated by the random initialisation.
    BN running statistics are copied, not averaged: they describe the live weights' activations.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(getattr(model, "module", model)).eval().requires_grad_(False)
        self._live = getattr(model, "module", model)
        device = next(self.shadow.parameters()).device
        self.updates = torch.zeros((), device=device, dtype=torch.float32)
        self._shadow_params = list(self.shadow.parameters())
        self._live_params = list(self._live.parameters())
        self._shadow_buffers = list(self.shadow.buffers())
        self._live_buffers = list(self._live.buffers())

    @torch.no_grad()
    def update(self) -> None:
        self.updates.add_(1.0)
        decay = torch.clamp((1.0 + self.updates) / (10.0 + self.updates), max=self.decay)
        weight = (1.0 - decay).to(self._shadow_params[0].dtype)
        # one 0-dim weight per tensor selects the Tensor[] overload: no host sync inside a graph
        torch._foreach_lerp_(self._shadow_params, self._live_params, [weight] * len(self._shadow_params))
        torch._foreach_copy_(self._shadow_buffers, self._live_buffers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"updates": self.updates.detach().cpu().reshape(1)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.updates.copy_(state["updates"].reshape(()))
