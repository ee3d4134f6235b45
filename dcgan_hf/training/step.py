"""One DCGAN training step (D then G), eager or captured as a single CUDA graph.

The skeleton is pytorch/examples' step: D sees a real batch and a fake batch in two
separate forward passes (separate BN statistics), then G is trained through the updated D.
The recipe knobs sit inside it: the loss (BCE on logits with the non-saturating G loss, or
hinge), DiffAugment on everything D sees, and a lazy R1 penalty on real images every
``r1_every`` steps (added to D's loss, scaled by ``r1_every`` as in StyleGAN2).

The same ``_eager_step`` code is what a CUDA graph records, so the CPU path tests the
arithmetic the GPU graph replays. A step with R1 does more work than one without, so on
CUDA each kind gets its own graph. Each step is guarded (:mod:`.guard`): a half whose
losses or gradients are not finite is not applied, decided on the device without a host sync.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .augment import diff_augment, parse_policy
from .ema import EMA
from .guard import StepGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOptions:
    batch_size: int
    nz: int
    label_smoothing: float = 0.0
    loss: str = "bce"  # "bce" (non-saturating) or "hinge"
    augment: str = ""  # DiffAugment policy, e.g. "color,translation,cutout"
    r1_gamma: float = 0.0  # R1 weight on real images (0: off)
    r1_every: int = 16  # lazy regularisation interval, in steps
    autocast_dtype: torch.dtype | None = None  # torch.bfloat16 on CUDA, None = fp32
    channels_last: bool = False
    cuda_graph: bool = False
    graph_warmup: int = 3  # eager steps (on a side stream) before capture, as the CUDA docs ask
    guard: bool = True  # skip halves of steps with non-finite losses or gradients (off: benchmarks only)

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "hinge"):
            raise ValueError(f"loss must be 'bce' or 'hinge', got {self.loss!r}")
        if self.loss == "hinge" and self.label_smoothing:
            raise ValueError("label smoothing applies to the BCE loss only")
        parse_policy(self.augment)
        if self.r1_every < 1:
            raise ValueError(f"r1_every must be ≥ 1, got {self.r1_every}")

    def regularizes(self, step: int) -> bool:
        """Whether the step with this 0-based index adds the lazy R1 penalty."""
        return self.r1_gamma > 0 and step % self.r1_every == 0


def make_optimizers(
    generator: nn.Module, discriminator: nn.Module, *, lr_g: float, lr_d: float, betas: tuple[float, float],
    device: torch.device, graph_safe: bool
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Fused Adam for both nets (CPU and CUDA): its ``found_inf`` lets the guard skip an update on the
    device; capturable on CUDA so ``step()`` can live inside a graph."""
    options: dict = {"betas": betas, "fused": True}
    if device.type == "cuda":
        options.update(capturable=graph_safe)
    return (
        torch.optim.Adam(generator.parameters(), lr=lr_g, **options),
        torch.optim.Adam(discriminator.parameters(), lr=lr_d, **options),
    )


IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping how this optimizer runs (fused, capturable …).

    torch replaces the param groups with the saved ones, implementation flags included: a
    checkpoint written by a foreach Adam (older code, or the CPU) would silently turn a fused
    one back into foreach, which cannot skip steps on the device nor run inside a CUDA graph.
    """
    kept = [{key: group[key] for key in IMPLEMENTATION_KEYS if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, kept):
        group.update(flags)
        if group.get("fused") or group.get("capturable"):  # their step counts live beside the weights
            for parameter in group["params"]:
                values = optimizer.state.get(parameter, {})
                if isinstance(values.get("step"), torch.Tensor):
                    values["step"] = values["step"].to(device=parameter.device, dtype=torch.float32)


STATS = ("loss_d", "loss_g", "d_real", "d_fake", "r1", "r1_steps", "bad")  # what a step returns, in order


class GanStep:
    """Callable: real batch → stats tensor (:data:`STATS`; all 0 but ``bad`` on a bad step), no host sync.

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
        self.policy = parse_policy(options.augment)
        self.g_params = [p for p in self.generator.parameters()]
        self.d_params = [p for p in self.discriminator.parameters()]
        # one graph per kind of step (with / without R1), each with its own static buffers
        self._graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self._static_real: dict[bool, torch.Tensor] = {}
        self._static_stats: dict[bool, torch.Tensor] = {}
        self._calls: dict[bool, int] = {False: 0, True: 0}
        self._use_graph = options.cuda_graph and self.device.type == "cuda"
        distributed = self.discriminator is not self.discriminator_for_g  # a DDP wrapper
        self.guard = StepGuard(self.device, discriminator, generator, distributed=distributed) \
            if options.guard else None
        if self.guard is not None:
            self.guard.attach(opt_d, opt_g)

    # -- the arithmetic -------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.options.autocast_dtype)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.policy, self.noise, channels_last=self.options.channels_last)

    def _d_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        logits = logits.float()
        if self.options.loss == "hinge":
            return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
        return F.binary_cross_entropy_with_logits(logits, self.real_target if real else self.fake_target)

    def _g_loss(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.options.loss == "hinge":
            return -logits.mean()
        return F.binary_cross_entropy_with_logits(logits, self.gen_target)

    def _eager_step(self, real: torch.Tensor, regularize: bool = False) -> torch.Tensor:
        opts, guard = self.options, self.guard
        if guard is not None:
            guard.start()
        z = torch.randn(opts.batch_size, opts.nz, 1, 1, device=self.device, generator=self.noise)
        # D: real and fake in separate passes (BN), both augmented the same way when augmenting.
        self.opt_d.zero_grad(set_to_none=True)
        real_seen = self._augment(real)
        if regularize:
            real_seen = real_seen.detach().requires_grad_(True)
        with self._autocast():
            logits_real = self.discriminator(real_seen)
        loss_real = self._d_loss(logits_real, real=True)
        penalty = torch.zeros((), device=self.device)
        if regularize:
            # R1: ‖∇ₓ D(x)‖² on the images D saw, lazily: every r1_every steps, weighted up to match.
            (grad,) = torch.autograd.grad(logits_real.float().sum(), real_seen, create_graph=True)
            penalty = grad.float().square().sum(dim=(1, 2, 3)).mean()
            (loss_real + penalty * (opts.r1_gamma / 2 * opts.r1_every)).backward(inputs=self.d_params)
        else:
            loss_real.backward(inputs=self.d_params)
        with self._autocast():
            fake = self.generator(z)
            if opts.channels_last:
                fake = fake.contiguous(memory_format=torch.channels_last)
            logits_fake = self.discriminator(self._augment(fake.detach()))
        loss_fake = self._d_loss(logits_fake, real=False)
        loss_fake.backward(inputs=self.d_params)
        if guard is not None:
            guard.check_d((loss_real, loss_fake, penalty), self.d_params)
        self.opt_d.step()
        # G: through the updated D (fresh augmentation draws).
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            logits_gen = self.discriminator_for_g(self._augment(fake))
        loss_g = self._g_loss(logits_gen)
        loss_g.backward(inputs=self.g_params)
        if guard is not None:
            guard.check_g((loss_g,), self.g_params)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(guard.applied() if guard is not None else None)
        with torch.no_grad():
            bad = guard.finish() if guard is not None else torch.zeros((), device=self.device)
            stats = torch.stack([
                (loss_real + loss_fake).detach(),
                loss_g.detach(),
                torch.sigmoid(logits_real.detach().float()).mean(),
                torch.sigmoid(logits_fake.detach().float()).mean(),
                penalty.detach(),
                torch.ones((), device=self.device) if regularize else torch.zeros((), device=self.device),
            ])
            # a bad step's numbers (NaN, inf) must not poison the interval's means: it only counts as bad
            return torch.cat([torch.where(bad > 0, torch.zeros_like(stats), stats), bad.reshape(1)])

    def bad_steps_in_a_row(self, reset_peak: bool = True) -> tuple[int, int]:
        """(bad steps in a row now, the longest run since the last call): one host sync."""
        if self.guard is None:
            return 0, 0
        now, peak = (int(value) for value in torch.stack([self.guard.in_a_row, self.guard.peak]).tolist())
        if reset_peak:
            self.guard.peak.copy_(self.guard.in_a_row)
        return now, peak

    def set_bad_steps_in_a_row(self, count: int) -> None:
        """Continue a resumed run's count of bad steps in a row."""
        if self.guard is not None:
            self.guard.in_a_row.fill_(float(count))
            self.guard.peak.fill_(float(count))

    # -- running it -----------------------------------------------------------------------
    def __call__(self, real: torch.Tensor, step: int) -> torch.Tensor:
        """Train on ``real``; ``step`` is the run's 0-based step count (it decides lazy R1)."""
        regularize = self.options.regularizes(step)
        self._calls[regularize] += 1
        if not self._use_graph:
            return self._eager_step(real, regularize)
        graph = self._graphs.get(regularize)
        if graph is not None:
            self._static_real[regularize].copy_(real)
            graph.replay()
            return self._static_stats[regularize].clone()
        if self._calls[regularize] <= self.options.graph_warmup:
            return self._on_side_stream(lambda: self._eager_step(real, regularize))
        return self._capture(real, regularize)

    def _on_side_stream(self, work: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Warm-up iterations run on a side stream, as graph capture requires."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = work()
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, real: torch.Tensor, regularize: bool) -> torch.Tensor:
        """Record one whole step (noise, augmentation, D, G, both Adams, EMA, BN stats) and replay it."""
        try:
            static_real = real.clone()
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.noise)
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                stats = self._eager_step(static_real, regularize)
            self._graphs[regularize] = graph
            self._static_real[regularize], self._static_stats[regularize] = static_real, stats
        except RuntimeError as error:  # fall back rather than stop a training run
            log.warning("CUDA graph capture failed (%s); continuing with eager steps", error)
            self._use_graph = False
            self._graphs.clear()
            torch.cuda.synchronize()
            return self._eager_step(real, regularize)
        log.info("captured the training step%s as a CUDA graph", " with R1" if regularize else "")
        graph.replay()
        return stats.clone()

    @property
    def graphed(self) -> bool:
        return bool(self._graphs)
