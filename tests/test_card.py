"""Model cards in the Hub's own format: model-index eval results, lineage, limitations, and the repo they name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from dcgan_hf import Discriminator, Generator
from dcgan_hf.hub.card import DOCS_URL, REPO_URL, base_model_id
from dcgan_hf.scores import Scores
from dcgan_hf.hub.loading import BUNDLED_MODEL
from dcgan_hf.training import publish

TOKEN = "hf_card_test_token_0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return TOKEN


def rows() -> list[dict]:
    return Scores(epoch=4, fid=114.83, kid_mean=0.11445, kid_std=0.0017, num_generated=5000,
                  num_real=4740).card_rows(dataset="celeba64/val")


def test_fid_and_kid_are_model_index_eval_results(tmp_path):
    Generator(ngf=8).save_pretrained(tmp_path / "g", model_card_kwargs={"metrics": rows(), "title": "faces"})
    card = ModelCard.load(tmp_path / "g" / "README.md")
    assert "model-index:" in card.content
    fid, kid = card.data.eval_results
    for result in (fid, kid):
        assert result.task_type == "unconditional-image-generation"
        assert result.dataset_name == "celeba64/val" and result.dataset_type == "celeba64-val"
        assert result.metric_config == "5000 generated vs 4740 real images, InceptionV3 pool3, epoch 4"
        assert result.metric_args["num_generated"] == 5000 and result.metric_args["num_real"] == 4740
    assert (fid.metric_type, fid.metric_name, fid.metric_value) == ("fid", "FID", 114.83)
    assert (kid.metric_type, kid.metric_name, kid.metric_value) == ("kid", "KID ×1000", 114.45)
    assert kid.metric_args["kid_std_x1000"] == 1.7
    assert card.data.model_name == "faces"
    assert "| FID | 114.83 | 5000 generated vs 4740 real images" in card.text  # the table stays

    # a hand-written row is read from its name and number; other metrics stay out of the model-index
    Generator(ngf=8).save_pretrained(tmp_path / "h", model_card_kwargs={"metrics": [
        {"name": "FID", "value": "12.3", "protocol": "test"}, {"name": "IS", "value": "3.1"}]})
    (only,) = ModelCard.load(tmp_path / "h" / "README.md").data.eval_results
    assert (only.metric_type, only.metric_value, only.metric_config) == ("fid", 12.3, "test")

    Generator(ngf=8).save_pretrained(tmp_path / "none")
    none = ModelCard.load(tmp_path / "none" / "README.md")
    assert none.data.eval_results is None and "model-index" not in none.content


def test_card_sections_lineage_and_links(tmp_path):
    G = Generator(ngf=8)
    G.save_pretrained(tmp_path / "g", model_card_kwargs={"base_model": "dcgan-hf/dcgan-celeba64@epoch-4",
                                                         "datasets": ["owner/faces"]})
    card = ModelCard.load(tmp_path / "g" / "README.md")
    assert card.data.base_model == "dcgan-hf/dcgan-celeba64"
    assert card.data.to_dict()["base_model_relation"] == "finetune"
    assert card.data.datasets == ["owner/faces"]
    text = card.text
    assert "## Limitations" in text and "64×64 pixels" in text and "non-commercial research only" in text
    assert "What FID at n samples means" in text and "mostly young, light-skinned" in text
    assert "## Citation" in text and "arXiv:1511.06434" in text and "Radford, Alec and Metz, Luke and Chintala" in text
    assert f"Code: {REPO_URL}" in text and f"Docs: {DOCS_URL}" in text
    # a local folder is no Hub model id: it stays out of the metadata (the Hub would refuse the card)
    assert base_model_id(str(tmp_path / "g")) is None and base_model_id("not a repo") is None
    G.save_pretrained(tmp_path / "local-base", model_card_kwargs={"base_model": str(tmp_path / "g")})
    assert ModelCard.load(tmp_path / "local-base" / "README.md").data.base_model is None


def test_a_local_save_says_how_to_load_the_folder(tmp_path):
    Generator(ngf=8).save_pretrained(tmp_path / "my-faces")
    text = (tmp_path / "my-faces" / "README.md").read_text()
    assert 'Generator.from_pretrained("my-faces")  # this folder\'s path' in text
    assert "user/dcgan-celeba" not in text
    assert "--model my-faces " in text
    Discriminator(ndf=8).save_pretrained(tmp_path / "critic")
    assert 'Discriminator.from_pretrained("critic")' in (tmp_path / "critic" / "README.md").read_text()


def test_push_to_hub_and_save_pretrained_push_name_the_repo(local_hub, token, tmp_path):
    G = Generator(ngf=8)
    G.push_to_hub("faces")  # no namespace: the Hub makes it user/faces, and the card says so
    pushed = local_hub.files("user/faces")["README.md"].decode()
    assert 'Generator.from_pretrained("user/faces")' in pushed and "--model user/faces " in pushed
    assert torch.equal(Generator.from_pretrained("user/faces").sample("0-3"), G.sample("0-3"))

    G.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="someone/faces-2",
                      model_card_kwargs={"metrics": rows()})
    pushed = local_hub.files("someone/faces-2")["README.md"].decode()
    assert 'Generator.from_pretrained("someone/faces-2")' in pushed
    assert (tmp_path / "local" / "README.md").read_text() == pushed  # the local copy names the repo too
    assert len(ModelCard(pushed).data.eval_results) == 2

    D = Discriminator(ndf=8)
    D.push_to_hub("someone/critic")
    assert 'Discriminator.from_pretrained("someone/critic", subfolder="discriminator")' in (
        local_hub.files("someone/critic")["README.md"].decode())


def test_convert_push_to_hub_names_the_repo(local_hub, token, tmp_path):
    torch.save(Generator(ngf=8).state_dict(), tmp_path / "netG_epoch_3.pth")
    result = subprocess.run(
        [sys.executable, "-m", "dcgan_hf", "convert", str(tmp_path / "netG_epoch_3.pth"), str(tmp_path / "out"),
         "--push-to-hub", "someone/converted"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "pushed" in result.stdout and "someone/converted" in result.stdout
    card = local_hub.files("someone/converted")["README.md"].decode()
    assert 'Generator.from_pretrained("someone/converted")' in card and "netG_epoch_3.pth" in card
    assert Generator.from_pretrained("someone/converted").config["ngf"] == 8

    offline = subprocess.run(
        [sys.executable, "-m", "dcgan_hf", "convert", str(tmp_path / "netG_epoch_3.pth"), str(tmp_path / "out2"),
         "--push-to-hub", "someone/converted"], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**__import__("os").environ, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode == 2 and offline.stderr.startswith("error: ") and "Traceback" not in offline.stderr


def test_training_card_inputs(tmp_path):
    """What train.py hands build_hub_folder: metrics with the eval set, Hub datasets, base_model, the repo."""
    from dcgan_hf.training.checkpoint import EvalRecord
    from dcgan_hf.training.config import TrainConfig

    config = TrainConfig(data="hf://datasets/owner/faces@v2", eval_real="/data/celeba64/val", eval_every=1)
    metrics = [EvalRecord(epoch=2, step=10, fid=50.0, kid_mean=0.02, kid_std=0.001, num_generated=100, num_real=80)]
    card = {"title": "t", "repo_id": None, "metrics": publish.metric_rows(metrics, dataset="celeba64/val"),
            "datasets": publish.hub_datasets(config), "base_model": "user/base@epoch-3", "training": {"a": 1}}
    folder = publish.build_hub_folder(tmp_path / "run" / "hub", generator=Generator(ngf=8),
                                      discriminator=Discriminator(ndf=8), checkpoint=None, tensorboard_dir=None,
                                      extras={}, card=card)
    loaded = ModelCard.load(folder / "README.md")
    assert loaded.data.datasets == ["owner/faces"] and loaded.data.base_model == "user/base"
    assert [r.metric_value for r in loaded.data.eval_results] == [50.0, 20.0]
    assert 'Generator.from_pretrained("run/hub")' in loaded.text
    assert 'Discriminator.from_pretrained("run/hub/discriminator")' in (folder / "discriminator" / "README.md").read_text()
    assert "--data hf://datasets/owner/faces@v2" in publish.card_command(config)


def test_the_bundled_card_carries_its_metrics_as_model_index():
    card = ModelCard.load(BUNDLED_MODEL / "README.md")
    values = {result.metric_type: result.metric_value for result in card.data.eval_results}
    protocol = "5000 generated vs 4740 real images"  # the README's protocol, as the model-index states it
    assert {result.metric_config.split(",")[0] for result in card.data.eval_results} == {protocol}
    # the Hub's metadata and the card's table say the same
    assert f"| FID | {values['fid']:.2f} | {protocol}" in card.text
    assert f"| KID ×1000 | {values['kid']:.2f} ± " in card.text
    assert values["fid"] < 36.70  # better than the model it replaced (README, "The bundled model")
    assert "## Limitations" in card.text and "## Citation" in card.text


def test_a_run_card_shows_every_evaluation_as_a_curve_and_a_table(tmp_path):
    """card_inputs → build_hub_folder: the FID/KID plot beside the card, one table row per evaluation, P/R and the
    memorization check of the latest, and model-index entries for FID and KID only."""
    from dcgan_hf.training import artifacts
    from dcgan_hf.training.checkpoint import EvalRecord, Progress
    from dcgan_hf.training.config import TrainConfig

    config = TrainConfig(data="/data/celeba64/train", eval_real="/data/celeba64/val", eval_every=5, batch_size=64)
    progress = Progress(epoch=10, step=5820, metrics=[
        EvalRecord(epoch=5, step=2910, fid=99.56, kid_mean=0.09638, kid_std=0.00131, num_generated=2000, num_real=4740),
        EvalRecord(epoch=10, step=5820, fid=69.66, kid_mean=0.06125, kid_std=0.00106, num_generated=2000,
                   num_real=4740, precision=0.6123, recall=0.2871, memorized=0.0, memorization_ratio=1.18,
                   num_train=5000)])
    card = publish.card_inputs(config, progress, images_per_step=64, image_count=37290, hardware="CPU",
                               precision="fp32")
    plot = tmp_path / "fid.png"
    artifacts.plot_metrics(progress.metrics, 64, plot)
    assert plot.read_bytes().startswith(b"\x89PNG")
    folder = publish.build_hub_folder(tmp_path / "hub", generator=Generator(ngf=8), discriminator=Discriminator(ndf=8),
                                      checkpoint=None, tensorboard_dir=None, extras={"fid.png": plot}, card=card)
    text = (folder / "README.md").read_text()
    assert (folder / "fid.png").is_file() and "![FID and KID against images seen](fid.png)" in text
    assert "| 5 | 186,240 | 99.56 | 96.38 ± 1.31 |  |  | 2,000 vs 4,740 |" in text  # before P/R existed: blank
    assert "| 10 | 372,480 | 69.66 | 61.25 ± 1.06 | 0.612 | 0.287 | 2,000 vs 4,740 |" in text
    assert "| Precision | 0.612 |" in text and "| Recall | 0.287 |" in text
    assert "| Memorization | 0.00% of samples | nearer one of 5,000 training images" in text
    assert "No sign of copied training images." in text
    loaded = ModelCard.load(folder / "README.md")
    assert sorted(result.metric_type for result in loaded.data.eval_results) == ["fid", "kid"]
    bare = publish.build_hub_folder(tmp_path / "bare", generator=Generator(ngf=8), discriminator=Discriminator(ndf=8),
                                    checkpoint=None, tensorboard_dir=None, extras={}, card=card)
    assert "](fid.png)" not in (bare / "README.md").read_text()  # no picture promised that is not there


def test_the_card_shows_its_samples_in_the_hubs_gallery_and_the_weights_name_their_architecture(tmp_path):
    """Read back with huggingface_hub's own parsers, as the Hub reads them."""
    import huggingface_hub
    from safetensors import safe_open

    import dcgan_hf

    folder = tmp_path / "g"
    Generator(nz=16, ngf=8).save_pretrained(folder, model_card_kwargs={
        "sample_grid": "samples.png", "animation": "progress.gif", "animation_caption": "Training progress"})
    card = ModelCard.load(folder / "README.md")
    widget = [{"text": "Samples from this model", "output": {"url": "samples.png"}},
              {"text": "Training progress", "output": {"url": "progress.gif"}}]
    assert card.data.widget == widget and huggingface_hub.metadata_load(folder / "README.md")["widget"] == widget
    assert "<Gallery />" in card.text and card.data.pipeline_tag == "unconditional-image-generation"
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        assert weights.metadata() == {"format": "pt", "model_type": "dcgan-generator", "library": "dcgan_hf",
                                      "library_version": dcgan_hf.__version__, "nz": "16", "ngf": "8", "nc": "3"}
    Generator(ngf=8).save_pretrained(tmp_path / "plain")
    plain = ModelCard.load(tmp_path / "plain" / "README.md")
    assert "widget" not in plain.data.to_dict() and "<Gallery />" not in plain.text  # no images, no empty gallery
