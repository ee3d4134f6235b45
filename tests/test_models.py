"""The two networks: classic layer layout, DCGAN init, config.json, model card, strict loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dcgan_hf import Discriminator, Generator, ModelLoadError
from dcgan_hf.models import dcgan_init


def test_generator_layout_matches_the_classic_keys():
    G = Generator()
    convs = {f"main.{i}.weight" for i in (0, 3, 6, 9, 12)}
    bns = {f"main.{i}.{name}" for i in (1, 4, 7, 10)
           for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert set(G.state_dict()) == convs | bns
    shapes = {key: tuple(value.shape) for key, value in G.state_dict().items()}
    assert shapes["main.0.weight"] == (100, 512, 4, 4)
    assert shapes["main.3.weight"] == (512, 256, 4, 4)
    assert shapes["main.12.weight"] == (64, 3, 4, 4)
    assert all(not isinstance(m, torch.nn.ConvTranspose2d) or m.bias is None for m in G.modules())
    assert isinstance(G.main[13], torch.nn.Tanh)


def test_discriminator_layout_and_logits():
    D = Discriminator()
    keys = set(D.state_dict())
    assert {"main.0.weight", "main.2.weight", "main.5.weight", "main.8.weight", "main.11.weight"} <= keys
    assert not any(key.startswith("main.12") for key in keys)
    assert isinstance(D.main[1], torch.nn.LeakyReLU) and D.main[1].negative_slope == 0.2
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    logits = D(images)
    assert logits.shape == (5,)
    assert not isinstance(D.main[-1], torch.nn.Sigmoid)
    classic = torch.nn.Sequential(*D.main, torch.nn.Sigmoid())  # the tutorial's D: probabilities
    assert torch.allclose(torch.sigmoid(logits), classic(images).flatten(), atol=1e-6)


def test_generator_output_shape_and_range():
    G = Generator(nz=32, ngf=8).eval()
    out = G(torch.randn(3, 32))
    assert out.shape == (3, 3, 64, 64)
    assert out.abs().max() <= 1.0
    with pytest.raises(ValueError, match="latents of shape"):
        G(torch.randn(3, 31))


def test_dcgan_init_statistics_and_explicit_generator():
    G = Generator()
    dcgan_init(G, torch.Generator().manual_seed(1))
    weight = G.main[3].weight
    assert abs(weight.mean().item()) < 1e-3 and abs(weight.std().item() - 0.02) < 1e-3
    bn = G.main[4]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and abs(bn.weight.std().item() - 0.02) < 0.01
    assert torch.count_nonzero(bn.bias) == 0
    other = Generator()
    dcgan_init(other, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), other.state_dict().values()))


def test_save_pretrained_writes_config_weights_and_card(tmp_path):
    G = Generator(nz=64, ngf=16, nc=3)
    G.save_pretrained(tmp_path, model_card_kwargs={
        "sample_grid": "samples.png", "metrics": [{"name": "FID", "value": "12.3", "protocol": "test"}],
        "training": {"epochs": 5},
    })
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"model_type": "dcgan-generator", "nz": 64, "ngf": 16, "nc": 3}
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert set(weights) == set(G.state_dict())
    card = (tmp_path / "README.md").read_text()
    front = card.split("---")[1]
    for needle in ("library_name: dcgan_hf", "pipeline_tag: unconditional-image-generation", "license: mit",
                   "- dcgan", "- gan", "- unconditional-image-generation", "- pytorch"):
        assert needle in front, needle
    assert "![Samples from this model](samples.png)" in card
    assert "| FID | 12.3 | test |" in card
    assert "| epochs | 5 |" in card


def test_roundtrip_is_exact(tmp_path):
    G = Generator(ngf=8)
    for module in G.modules():  # non-trivial BN statistics make eval mode matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    G.save_pretrained(tmp_path)
    loaded = Generator.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == G.config
    original = G.state_dict()
    assert all(torch.equal(value, original[key]) for key, value in loaded.state_dict().items())
    assert torch.equal(loaded.sample("0-5"), G.sample("0-5"))
    D = Discriminator(ndf=8)
    D.save_pretrained(tmp_path / "d")
    assert Discriminator.from_pretrained(tmp_path / "d").config == {"nc": 3, "ndf": 8}


def test_strict_loading_names_the_bad_keys(tmp_path):
    G = Generator(ngf=8)
    G.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["main.3.weight"]
    state["main.99.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"missing keys \['main.3.weight'\].*unexpected keys \['main.99.weight'\]"):
        Generator.from_pretrained(tmp_path)


def test_mis_shaped_weights_are_refused(tmp_path):
    Generator(ngf=16).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["ngf"] = 8  # config and weights disagree
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"mis-shaped tensors.*main.0.weight: expected \(100, 64, 4, 4\), got \(100, 128, 4, 4\)"):
        Generator.from_pretrained(tmp_path)


@pytest.mark.parametrize("config, message", [
    ({"model_type": "dcgan-generator", "nz": 100, "ngf": 8, "nc": 3, "extra": 1}, r"unknown config keys \['extra'\]"),
    ({"model_type": "dcgan-generator", "nz": -1, "ngf": 8, "nc": 3}, "nz must be a positive integer"),
    ({"model_type": "dcgan-generator", "nz": "100", "ngf": 8, "nc": 3}, "nz must be a positive integer"),
    ({"model_type": "dcgan-discriminator", "ndf": 8, "nc": 3}, "holds a 'dcgan-discriminator' model"),
    ([1, 2, 3], "must hold a JSON object"),
])
def test_bad_configs_are_clear_errors(tmp_path, config, message):
    Generator(ngf=8).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        Generator.from_pretrained(tmp_path)


def test_corrupt_files_and_missing_paths(tmp_path):
    Generator(ngf=8).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        Generator.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable config.json"):
        Generator.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        Generator.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no model folder"):
        Generator.from_pretrained(tmp_path / "does" / "not" / "exist")


def test_pickles_beside_safetensors_are_never_read(tmp_path):
    G = Generator(ngf=8)
    G.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(G.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="model.safetensors is missing"):
        Generator.from_pretrained(tmp_path)


def test_from_pretrained_rejects_strict_false(tmp_path):
    Generator(ngf=8).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="strict"):
        Generator.from_pretrained(tmp_path, strict=False)
