"""Recipe knobs (DiffAugment, hinge, lazy R1, EMA start, --recipe presets) and --init-from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from dcgan_hf import Discriminator, Generator
from dcgan_hf.models import ModelLoadError, dcgan_init
from dcgan_hf.training import TrainConfig, train
from dcgan_hf.training.augment import color, cutout, diff_augment, parse_policy, translation
from dcgan_hf.training.ema import EMA
from dcgan_hf.training.step import GanStep, StepOptions, make_optimizers

from conftest import free_port
from imagefiles import write_images
from test_train import tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_images(folder, 48)
    return folder


def images(count: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- DiffAugment -------------------------------------------------------------------------------
def test_translation_shifts_each_image_by_whole_pixels_with_zero_fill():
    x = images()
    out = translation(x, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, [8, 8, 8, 8])
    for i in range(x.shape[0]):  # every output is the input moved by some (dy, dx) within ±8 px
        matches = [(dy, dx) for dy in range(-8, 9) for dx in range(-8, 9)
                   if torch.equal(out[i], padded[i, :, 8 + dy: 72 + dy, 8 + dx: 72 + dx])]
        assert matches, f"image {i} is not a pure translation"
    assert not torch.equal(out, x)


def test_cutout_zeroes_one_square_and_keeps_the_rest():
    x = images() + 3.0  # no pixel is zero before
    out = cutout(x, torch.Generator().manual_seed(4))
    for i in range(x.shape[0]):
        erased = out[i, 0] == 0
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        assert 0 < erased.sum() <= 32 * 32
        assert erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one solid rectangle
        assert torch.equal(out[i][:, ~erased], x[i][:, ~erased])
        assert (out[i][:, erased] == 0).all()


def test_color_is_a_per_image_change_of_brightness_saturation_contrast():
    x = images()
    out = color(x, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.equal(out, x)
    # brightness/saturation/contrast are affine per image and channel: a constant image stays constant
    flat = torch.full((2, 3, 64, 64), 0.25)
    flat_out = color(flat, torch.Generator().manual_seed(5))
    assert torch.allclose(flat_out, flat_out[:, :, :1, :1].expand_as(flat_out))


def test_diff_augment_is_reproducible_differentiable_and_empty_is_identity():
    policy = parse_policy("color,translation,cutout")
    x = images().requires_grad_(True)
    a = diff_augment(x, policy, torch.Generator().manual_seed(7))
    b = diff_augment(x, policy, torch.Generator().manual_seed(7))
    c = diff_augment(x, policy, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G gets gradients through the augmentation
    plain = images()
    assert diff_augment(plain, (), torch.Generator()) is plain
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("color,rotate")
    with pytest.raises(ValueError, match="twice"):
        parse_policy("color,color")


# -- losses and R1 -----------------------------------------------------------------------------
def tiny_step(**options) -> tuple[GanStep, Generator, Discriminator]:
    G, D = Generator(nz=16, ngf=8), Discriminator(ndf=8)
    init = torch.Generator().manual_seed(0)
    dcgan_init(G, init)
    dcgan_init(D, init)
    G.train(), D.train()
    opt_g, opt_d = make_optimizers(G, D, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), device=torch.device("cpu"),
                                   graph_safe=False)
    step = GanStep(G, D, opt_g, opt_d, StepOptions(batch_size=4, nz=16, **options),
                   noise=torch.Generator().manual_seed(1))
    return step, G, D


def test_hinge_losses_are_the_hinge_formulas():
    step, _, _ = tiny_step(loss="hinge")
    logits = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert step._d_loss(logits, real=True).item() == pytest.approx((3.0 + 1.5 + 0.5 + 0.0) / 4)
    assert step._d_loss(logits, real=False).item() == pytest.approx((0.0 + 0.5 + 1.5 + 3.0) / 4)
    assert step._g_loss(logits).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="BCE loss only"):
        StepOptions(batch_size=4, nz=16, loss="hinge", label_smoothing=0.1)


def test_lazy_r1_penalty_is_the_squared_input_gradient_on_its_steps_only():
    step, _, D = tiny_step(r1_gamma=10.0, r1_every=4)
    real = images(4)
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)  # D in train mode, as inside the step
    expected = grad.square().sum(dim=(1, 2, 3)).mean().item()
    stats = step(real, 0)  # step 0: an R1 step
    assert stats[4].item() == pytest.approx(expected, rel=1e-4)
    assert step(real, 1)[4].item() == 0.0 and step(real, 3)[4].item() == 0.0
    assert step(real, 4)[4].item() > 0
    assert [step.options.regularizes(i) for i in range(9)] == [True, False, False, False, True, False, False,
                                                                False, True]


def test_r1_changes_the_discriminator_update():
    plain, _, d_plain = tiny_step()
    regularised, _, d_reg = tiny_step(r1_gamma=50.0, r1_every=1)
    real = images(4)
    plain(real, 0)
    regularised(real, 0)
    assert not torch.allclose(d_plain.main[0].weight, d_reg.main[0].weight)


# -- EMA start ---------------------------------------------------------------------------------
def test_ema_copies_the_live_weights_until_its_start_then_averages():
    G = Generator(nz=4, ngf=4)
    ema = EMA(G, 0.999, start=2)
    for expected_equal in (True, True, False):
        with torch.no_grad():
            G.main[0].weight.add_(1.0)
        ema.update()
        same = torch.equal(ema.shadow.main[0].weight, G.main[0].weight)
        assert same == expected_equal
    with pytest.raises(ValueError):
        EMA(G, 0.999, start=-1)


def test_a_warm_ema_averages_at_full_decay_from_the_first_update():
    """--init-from loads a published EMA generator: the warm-up's d = (1+n)/(10+n) ≈ 0.1 would make the
    shadow follow the fresh optimizers' first steps; a warm EMA moves 1 − decay of the way, no more."""
    G = Generator(nz=4, ngf=4)
    before = G.main[0].weight.detach().clone()
    warm, cold = EMA(G, 0.999, warm=True), EMA(G, 0.999)
    with torch.no_grad():
        G.main[0].weight.add_(1.0)
    warm.update(), cold.update()
    assert torch.allclose(warm.shadow.main[0].weight - before, torch.full_like(before, 0.001), atol=1e-6)
    assert torch.allclose(cold.shadow.main[0].weight - before, torch.full_like(before, 9 / 11), atol=1e-6)  # d = 2/11


def test_init_from_starts_a_warm_ema(tmp_path, faces, published):
    result = train(tiny_config(tmp_path, faces, epochs=1, max_steps=2, init_from=str(published)))
    from safetensors.torch import load_file

    from dcgan_hf.layout import EMA_COUNTER

    counter = load_file(str(result.checkpoint / "ema.safetensors"))[EMA_COUNTER]
    assert counter.item() >= 80  # past the warm-up: tiny_config's decay 0.9 is reached at (10·0.9 − 1)/0.1 = 80


# -- presets and config ------------------------------------------------------------------------
def test_recipe_classic_is_pytorch_examples_and_explicit_flags_win():
    classic = TrainConfig.from_args(["--recipe", "classic", "--data", "x"])
    assert (classic.batch_size, classic.ngf, classic.ndf, classic.ema_decay, classic.hflip, classic.loss,
            classic.augment, classic.r1_gamma, classic.label_smoothing) == (64, 64, 64, 0.0, False, "bce", "", 0.0,
                                                                            0.0)
    assert (classic.lr_g, classic.lr_d, classic.beta1, classic.beta2) == (2e-4, 2e-4, 0.5, 0.999)
    assert classic.command_line() == "python train.py --recipe classic --data x"
    narrow = TrainConfig.from_args(["--recipe", "classic", "--data", "x", "--ngf", "32", "--hflip"])
    assert narrow.ngf == 32 and narrow.hflip and narrow.ndf == 64
    assert "--ngf 32" in narrow.command_line() and "--hflip" in narrow.command_line()
    assert TrainConfig.from_recipe("classic", data="x") == classic
    assert TrainConfig.from_dict(classic.to_dict()) == classic


@pytest.mark.parametrize("flags, message", [
    (["--lr-d", "nan"], "--lr-d must be a finite number"),
    (["--beta1", "inf"], "--beta1 must be a finite number"),
    (["--hub-retry-delay", "nan"], "--hub-retry-delay must be a finite number"),
    (["--lr-g", "0"], "--lr-g must be > 0"),
    (["--beta1", "1.5"], r"--beta1 must be in [0, 1)"),
    (["--augment", "color,blur"], "unknown op 'blur'"),
    (["--loss", "hinge", "--label-smoothing", "0.1"], "applies to --loss bce only"),
    (["--r1-gamma", "-1"], "--r1-gamma must be ≥ 0"),
    (["--r1-every", "0"], "--r1-every must be ≥ 1"),
])
def test_bad_recipe_flags_are_one_clear_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exited:
        TrainConfig.from_args(["--data", "x", *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_every_recipe_knob_is_stored_and_printed_on_the_card(tmp_path, faces):
    config = tiny_config(tmp_path, faces, epochs=1, max_steps=4, loss="hinge", label_smoothing=0.0,
                         augment="translation,cutout", r1_gamma=0.5, r1_every=2, ema_start=2, lr_d=4e-4)
    result = train(config)
    card = (result.output_dir / "hub" / "README.md").read_text()
    assert "hinge loss" in card and "DiffAugment translation,cutout" in card
    assert "R1 γ=0.5 every 2 steps" in card and "EMA 0.9 from step 2" in card and "D 0.0004" in card
    assert "--loss hinge" in card and "--augment translation,cutout" in card
    state = (result.checkpoint / "state.json").read_text()
    for key in ('"loss": "hinge"', '"augment": "translation,cutout"', '"r1_gamma": 0.5', '"ema_start": 2'):
        assert key in state
    assert any("r1" in row for row in result.progress.history)


def test_resume_is_exact_with_augmentation_r1_hinge_and_ema_start(tmp_path, faces):
    recipe = dict(loss="hinge", label_smoothing=0.0, augment="color,translation,cutout", r1_gamma=1.0, r1_every=3,
                  ema_start=4)
    straight = train(tiny_config(tmp_path / "a", faces, **recipe))
    first = train(tiny_config(tmp_path / "b", faces, max_steps=5, **recipe))
    assert first.progress.step == 5
    resumed = train(tiny_config(tmp_path / "b", faces, resume="latest", **recipe))
    assert resumed.progress.step == straight.progress.step == 12
    for name in ("generator", "discriminator", "ema_generator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), (name, key)


# -- --init-from ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published(tmp_path_factory, faces) -> Path:
    """A finished tiny run's Hub folder: EMA generator at the root, discriminator/ beside it."""
    tmp = tmp_path_factory.mktemp("published")
    result = train(tiny_config(tmp, faces, epochs=1))
    return result.output_dir / "hub"


def parameters_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.allclose(x, y, atol=1e-7, rtol=0) for x, y in zip(a.parameters(), b.parameters()))


def test_init_from_a_folder_starts_from_its_generator_and_discriminator(tmp_path, faces, published):
    base_g = Generator.from_pretrained(published)
    base_d = Discriminator.from_pretrained(published, subfolder="discriminator")
    # a learning rate this small leaves the weights where they started: the start is the base model
    result = train(tiny_config(tmp_path, faces, epochs=1, init_from=str(published), lr_g=1e-12, lr_d=1e-12))
    assert result.progress.step == 6 and not result.interrupted  # a new run: counted from zero
    assert parameters_equal(result.generator, base_g) and parameters_equal(result.discriminator, base_d)
    fresh = train(tiny_config(tmp_path / "fresh", faces, epochs=1, lr_g=1e-12, lr_d=1e-12))
    assert not parameters_equal(fresh.generator, base_g)
    card = ModelCard.load(result.output_dir / "hub" / "README.md")
    assert "initialised from" in card.text and "--init-from" in card.text
    assert card.data.base_model is None  # a local folder has no Hub id to name


def test_init_from_the_hub(local_hub, tmp_path, faces, published):
    repo = "someone/dcgan-base"
    api = HfApi(token="hf_test_token_for_uploads")
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=str(published), allow_patterns=["*.json", "*.safetensors",
                                                                                 "discriminator/*"])
    base_g = Generator.from_pretrained(published)
    result = train(tiny_config(tmp_path, faces, epochs=1, init_from=repo, lr_g=1e-12, lr_d=1e-12))
    assert parameters_equal(result.generator, base_g)
    card = ModelCard.load(result.output_dir / "hub" / "README.md")
    assert card.data.base_model == repo and card.data.base_model_relation == "finetune"
    assert f"| initialised from | {repo}" in card.text


def test_a_fresh_clone_can_fine_tune_the_bundled_model_offline(tmp_path, faces):
    """The bundled folder ships its discriminator/, and the card names the repo it is published as."""
    from dcgan_hf.hub.loading import BUNDLED_MODEL, BUNDLED_REPO_ID

    bundled = Generator.from_pretrained(BUNDLED_MODEL)
    assert (Path(BUNDLED_MODEL) / "discriminator" / "model.safetensors").is_file()
    sizes = dict(nz=bundled.nz, ngf=bundled.ngf, ndf=Discriminator.from_pretrained(
        BUNDLED_MODEL, subfolder="discriminator").ndf)
    result = train(tiny_config(tmp_path, faces, epochs=1, max_steps=1, batch_size=4, init_from=str(BUNDLED_MODEL),
                               lr_g=1e-12, lr_d=1e-12, **sizes))
    assert parameters_equal(result.generator, bundled)
    card = ModelCard.load(result.output_dir / "hub" / "README.md")
    assert card.data.base_model == BUNDLED_REPO_ID and card.data.base_model_relation == "finetune"


def test_init_from_refuses_other_sizes_a_missing_discriminator_and_repo(tmp_path, faces, published, local_hub):
    with pytest.raises(ModelLoadError, match=r"has ngf=8.*this run has ngf=16.*pass --ngf 8"):
        train(tiny_config(tmp_path / "a", faces, init_from=str(published), ngf=16))
    lonely = tmp_path / "generator-only"
    Generator.from_pretrained(published).save_pretrained(lonely)
    with pytest.raises(ModelLoadError, match="no usable discriminator"):
        train(tiny_config(tmp_path / "b", faces, init_from=str(lonely)))
    with pytest.raises(ModelLoadError, match="--init-from nobody/missing"):
        train(tiny_config(tmp_path / "c", faces, init_from="nobody/missing"))


@pytest.mark.parametrize("init_from, message", [("PUBLISHED", "pass --ngf 8"),
                                                 ("someone/dcgan-base", "cannot reach")])
def test_train_py_init_from_errors_are_one_line_before_any_training(tmp_path, faces, published, init_from, message):
    unreachable = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}
    wrong = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--data", str(faces), "--output-dir", str(tmp_path / "run"),
         "--init-from", str(published) if init_from == "PUBLISHED" else init_from, "--ngf", "16", "--ndf", "8",
         "--nz", "16", "--no-progress", "--data-cache", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=unreachable)
    assert wrong.returncode == 2, wrong.stderr
    assert "Traceback" not in wrong.stderr and "training " not in wrong.stderr
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0].lower(), wrong.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_checkpoint_from_before_r1_was_the_default_keeps_meaning_no_r1(tmp_path, faces, caplog):
    """R1 became the default after runs existed: their checkpoints (no r1_gamma key) trained without it."""
    import json
    import logging

    first = train(tiny_config(tmp_path, faces, max_steps=3, r1_gamma=0.0))
    state_file = first.checkpoint / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["r1_gamma"]  # what the code before the recipe study wrote
    state_file.write_text(json.dumps(state))
    assert TrainConfig.from_dict(state["config"]).r1_gamma == 0.0
    assert TrainConfig.__dataclass_fields__["r1_gamma"].default == 0.1
    from dcgan_hf.training.resume_check import ResumeMismatch

    with pytest.raises(ResumeMismatch, match="--r1-gamma: 0.0 in the checkpoint, 0.1 now"):  # not None: R1 was off
        train(tiny_config(tmp_path, faces, max_steps=4, resume="latest", r1_gamma=0.1))
    with caplog.at_level(logging.WARNING, logger="dcgan_hf.training"):
        train(tiny_config(tmp_path, faces, max_steps=4, resume="latest", r1_gamma=0.1, allow_changes=True))
    assert "with changes (--allow-changes): --r1-gamma: 0.0 in the checkpoint, 0.1 now" in caplog.text
    assert "R1 switched on in a run trained without it" in caplog.text
