"""One DCGAN training step (D then G), eager or captured as a single CUDA graph.

The math is pytorch/examples' step: D sees a real batch and a fake batch in two separate
forward passes (separate BN statistics), then G is trained through the updated D with the
non-saturating loss. The same ``_eager_step`` code is what a CUDA graph records, so the
CPU path tests the arithmetic the GPU graph replays.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .ema import EMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOptions:
    batch_size: int
    nz: int
    label_smoothing: float = 0.0
    autocast_dtype: torch.dtype | None = None  # torch.bfloat16 on CUDA, None = fp32
    channels_last: bool = False
    cuda_graph: bool = False
    graph_warmup: int = 3  # eager steps (on a side stream) before capture, as the CUDA docs ask


def make_optimizers(
    generator: nn.Module, discriminator: nn.Module, *, lr_g: float, lr_d: float, betas: tuple[float, float],
    device: torch.device, graph_safe: bool
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for both nets; fused + capturable on CUDA so ``step()`` can live inside a graph."""
    options: dict = {"betas": betas}
    if device.type == "cuda":
        options.update(fused=True, capturable=graph_safe)
    return (
        torch.optim.Adam(generator.parameters(), lr=lr_g, **options),
        torch.optim.Adam(discriminator.parameters(), lr=lr_d, **options),
    )


class GanStep:
    """Callable: real batch → stats tensor [loss_d, loss_g, D(x), D(G(z))] (no host sync).

    ``generator``/``discriminator`` may be DDP wrappers; G's loss goes through D's inner
    module so DDP never waits for D gradients that the G step does not compute.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        options: StepOptions,
        noise: torch.Generator,
        ema: EMA | None = None,
    ) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.discriminator_for_g = getattr(discriminator, "module", discriminator)
        self.opt_g, self.opt_d = opt_g, opt_d
        self.options = options
        self.noise = noise
        self.ema = ema
        self.device = next(self.generator.parameters()).device
        smoothing = options.label_smoothing
        shape = (options.batch_size,)
        self.real_target = torch.full(shape, 1.0 - smoothing, device=self.device)
        self.fake_target = torch.full(shape, smoothing, device=self.device)
        self.gen_target = torch.ones(shape, device=self.device)
        self.g_params = [p for p in self.generator.parameters()]
        self.d_params = [p for p in self.discriminator.parameters()]
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_real: torch.Tensor | None = None
        self._static_stats: torch.Tensor | None = None
        self._calls = 0
        self._use_graph = options.cuda_graph and self.device.type == "cuda"

    # -- the arithmetic -------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.options.autocast_dtype)

    def _eager_step(self, real: torch.Tensor) -> torch.Tensor:
        opts = self.options
        z = torch.randn(opts.batch_size, opts.nz, 1, 1, device=self.device, generator=self.noise)
        # D: maximise log D(x) + log(1 - D(G(z))), real and fake in separate passes (BN).
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            logits_real = self.discriminator(real)
        loss_real = F.binary_cross_entropy_with_logits(logits_real.float(), self.real_target)
        loss_real.backward(inputs=self.d_params)
        with self._autocast():
            fake = self.generator(z)
            if opts.channels_last:
                fake = fake.contiguous(memory_format=torch.channels_last)
            logits_fake = self.discriminator(fake.detach())
        loss_fake = F.binary_cross_entropy_with_logits(logits_fake.float(), self.fake_target)
        loss_fake.backward(inputs=self.d_params)
        self.opt_d.step()
        # G: maximise log D(G(z)) through the updated D (non-saturating loss).
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            logits_gen = self.discriminator_for_g(fake)
        loss_g = F.binary_cross_entropy_with_logits(logits_gen.float(), self.gen_target)
        loss_g.backward(inputs=self.g_params)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update()
        with torch.no_grad():
            return torch.stack([
                (loss_real + loss_fake).detach(),
                loss_g.detach(),
                torch.sigmoid(logits_real.detach().float()).mean(),
                torch.sigmoid(logits_fake.detach().float()).mean(),
            ])

    # -- running it -----------------------------------------------------------------------
    def __call__(self, real: torch.Tensor) -> torch.Tensor:
        self._calls += 1
        if not self._use_graph:
            return self._eager_step(real)
        if self._graph is not None:
            self._static_real.copy_(real)
            self._graph.replay()
            return self._static_stats.clone()
        if self._calls <= self.options.graph_warmup:
            return self._on_side_stream(lambda: self._eager_step(real))
        return self._capture(real)

    def _on_side_stream(self, work: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Warm-up iterations run on a side stream, as graph capture requires."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = work()
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, real: torch.Tensor) -> torch.Tensor:
        """Record one whole step (noise, D, G, both Adams, EMA, BN stats) and replay it."""
        try:
            self._static_real = real.clone()
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.noise)
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                self._static_stats = self._eager_step(self._static_real)
            self._graph = graph
        except RuntimeError as error:  # fall back rather than stop a training run
            log.warning("CUDA graph capture failed (%s); continuing with eager steps", error)
            self._use_graph = False
            self._graph = None
            torch.cuda.synchronize()
            return self._eager_step(real)
        log.info("captured the training step as a CUDA graph")
        graph.replay()
        return self._static_stats.clone()

    @property
    def graphed(self) -> bool:
        return self._graph is not None
