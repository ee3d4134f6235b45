"""CUDA-only paths (graph capture, bf16 autocast, channels_last, data on the GPU).

Skipped on machines without a GPU (CI has none); `bench/gpu_check.sh` runs this file on a
lent GPU machine together with the benchmarks.
"""

from __future__ import annotations

import pytest
import torch

from dcgan_hf import Discriminator, Generator, sample
from dcgan_hf.models import dcgan_init
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training.ema import EMA
from dcgan_hf.training.step import GanStep, StepOptions, make_optimizers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def build(graph: bool, autocast: torch.dtype | None, channels_last: bool, batch: int = 32, **recipe):
    device = torch.device("cuda")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G, D = Generator(nz=100, ngf=32), Discriminator(ndf=32)
    init = torch.Generator().manual_seed(0)
    dcgan_init(G, init)
    dcgan_init(D, init)
    G, D = G.to(device, memory_format=fmt).train(), D.to(device, memory_format=fmt).train()
    opt_g, opt_d = make_optimizers(G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), device=device, graph_safe=graph)
    options = StepOptions(batch_size=batch, nz=100, autocast_dtype=autocast, channels_last=channels_last,
                          cuda_graph=graph, **recipe)
    step = GanStep(G, D, opt_g, opt_d, options, noise=torch.Generator(device=device).manual_seed(1), ema=EMA(G, 0.99))
    return step, G


def test_graphed_step_matches_the_eager_step():
    batches = [torch.rand(32, 3, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(i)) * 2 - 1
               for i in range(8)]
    eager, G_eager = build(graph=False, autocast=None, channels_last=False)
    graphed, G_graph = build(graph=True, autocast=None, channels_last=False)
    stats_e = [eager(batch, i) for i, batch in enumerate(batches)]
    stats_g = [graphed(batch, i) for i, batch in enumerate(batches)]
    assert graphed.graphed, "the step was not captured"
    torch.cuda.synchronize()
    for a, b in zip(stats_e, stats_g):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)
    for (name, a), b in zip(G_eager.state_dict().items(), G_graph.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name


def test_graphed_step_with_diffaugment_r1_and_hinge_matches_the_eager_step():
    """Two graphs (with and without the lazy R1), augmentation noise drawn inside them."""
    recipe = dict(augment="color,translation,cutout", r1_gamma=0.1, r1_every=2, loss="hinge")
    batches = [torch.rand(32, 3, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(i)) * 2 - 1
               for i in range(12)]
    eager, G_eager = build(graph=False, autocast=None, channels_last=False, **recipe)
    graphed, G_graph = build(graph=True, autocast=None, channels_last=False, **recipe)
    stats_e = [eager(batch, i) for i, batch in enumerate(batches)]
    stats_g = [graphed(batch, i) for i, batch in enumerate(batches)]
    assert set(graphed._graphs) == {False, True}, "both kinds of step should be captured"
    torch.cuda.synchronize()
    for a, b in zip(stats_e, stats_g):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)
    assert all(s[4] > 0 for s in stats_g[0::2]) and all(s[4] == 0 for s in stats_g[1::2])
    for (name, a), b in zip(G_eager.state_dict().items(), G_graph.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name


def test_bf16_channels_last_graph_with_augmentation_and_r1_stays_finite():
    step, G = build(graph=True, autocast=torch.bfloat16, channels_last=True, batch=64,
                    augment="color,translation,cutout", r1_gamma=0.1, r1_every=4)
    real = (torch.rand(64, 3, 64, 64, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    stats = torch.stack([step(real, i) for i in range(24)])
    assert step.graphed and torch.isfinite(stats).all()


def test_bf16_channels_last_graph_trains_and_stays_finite():
    step, G = build(graph=True, autocast=torch.bfloat16, channels_last=True, batch=64)
    real = (torch.rand(64, 3, 64, 64, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    before = G.main[0].weight.detach().clone()
    stats = torch.stack([step(real, i) for i in range(20)])
    assert step.graphed and torch.isfinite(stats).all()
    assert not torch.equal(before, G.main[0].weight)  # replays really update the weights


def test_train_loop_on_gpu_with_graph(tmp_path):
    config = TrainConfig(synthetic=2048, output_dir=str(tmp_path), epochs=2, batch_size=128, ngf=32, ndf=32,
                         progress=False, log_every=4)
    result = train(config)
    assert result.progress.step == 2 * (2048 // 128)
    assert result.images_per_second > 0
    G = Generator.from_pretrained(tmp_path / "hub")
    cpu = sample(G, range(8))
    gpu = sample(G.to("cuda"), range(8))
    assert (cpu.int() - gpu.int()).abs().max() <= 2  # same latents, other kernels: ±1-2 levels at most


def test_the_non_finite_guard_works_inside_the_graph():
    """The guard's flags, BN restores, EMA mask and counters are recorded in the graph: no host sync per step."""
    from dcgan_hf.training.step import STATS

    step, G = build(graph=True, autocast=torch.bfloat16, channels_last=True, batch=32, r1_gamma=0.1, r1_every=2)
    D = step.discriminator
    real = (torch.rand(32, 3, 64, 64, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    for index in range(8):  # warm-up and capture of both graphs, on healthy weights
        assert step(real, index)[-1] == 0.0
    assert set(step._graphs) == {False, True}
    with torch.no_grad():  # finite weights whose activations overflow: every replay must change nothing
        for parameter in D.parameters():
            if parameter.dim() == 4:
                parameter.mul_(1e10)
    before = {**{f"G.{k}": v.clone() for k, v in G.state_dict().items()},
              **{f"D.{k}": v.clone() for k, v in D.state_dict().items()},
              **{f"ema.{k}": v.clone() for k, v in step.ema.shadow.state_dict().items()},
              **{f"opt_d.{i}.{k}": v.clone() for i, s in enumerate(step.opt_d.state.values()) for k, v in s.items()},
              **{f"opt_g.{i}.{k}": v.clone() for i, s in enumerate(step.opt_g.state.values()) for k, v in s.items()}}
    stats = torch.stack([step(real, index) for index in range(8, 14)])  # replays, with and without R1
    torch.cuda.synchronize()
    assert (stats[:, STATS.index("bad")] == 1.0).all() and torch.isfinite(stats).all()
    after = {**{f"G.{k}": v for k, v in G.state_dict().items()}, **{f"D.{k}": v for k, v in D.state_dict().items()},
             **{f"ema.{k}": v for k, v in step.ema.shadow.state_dict().items()},
             **{f"opt_d.{i}.{k}": v for i, s in enumerate(step.opt_d.state.values()) for k, v in s.items()},
             **{f"opt_g.{i}.{k}": v for i, s in enumerate(step.opt_g.state.values()) for k, v in s.items()}}
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert not changed, changed
    assert step.bad_steps_in_a_row() == (6, 6)
    with torch.no_grad():
        for parameter in D.parameters():
            if parameter.dim() == 4:
                parameter.div_(1e10)
    assert step(real, 14)[-1] == 0.0 and step.bad_steps_in_a_row() == (0, 6)  # healthy again: applied


def test_train_loop_on_gpu_stops_when_steps_stay_non_finite(tmp_path):
    """The issue's reproduction on the GPU path (graph + bf16): one clear error, nothing written."""
    from dcgan_hf.hub.loading import BUNDLED_MODEL
    from dcgan_hf.training.loop import TrainingDiverged
    from test_train import scaled_copy

    broken = scaled_copy(BUNDLED_MODEL, tmp_path / "broken", 1e10)
    config = TrainConfig(synthetic=1024, output_dir=str(tmp_path / "run"), epochs=1, batch_size=64, ngf=32, ndf=32,
                         progress=False, init_from=str(broken), max_bad_steps=8, r1_gamma=0.0)
    with pytest.raises(TrainingDiverged, match="8 training steps in a row"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "hub").exists()


def test_steering_on_the_gpu_matches_the_cpu():
    """Edits and completion where the demo serves on a GPU (fp32 here; fp16 is ModelServer's choice)."""
    from dcgan_hf.completion import complete, preset_mask
    from dcgan_hf.projection import ProjectionSettings

    G = Generator(ngf=16)
    dcgan_init(G, torch.Generator().manual_seed(0))
    cpu = G.sample([3, 4], edit={0: 2.5, 1: -1})
    gpu = G.to("cuda").sample([3, 4], edit={0: 2.5, 1: -1})
    assert (gpu.int() - cpu.int()).abs().max() <= 2  # cuDNN sums in another order
    assert torch.equal(G.sample([3], edit={0: 0}), G.sample([3]))
    target = G.sample([5])[0]
    completion = complete(G, target, preset_mask("left"), Discriminator(ndf=16).cuda(), ProjectionSettings(steps=20))
    assert completion.composite.device.type == "cpu" and completion.projection.steps == 20
    assert torch.equal(completion.composite[:, :, 40:], target[:, :, 40:])
