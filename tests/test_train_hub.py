"""train.py ↔ the Hub (a fake Hub on 127.0.0.1 driven by the real huggingface_hub client)."""

from __future__ import annotations

import logging

import pytest
import torch

from dcgan_hf import Discriminator, Generator
from dcgan_hf.training import train
from imagefiles import write_images
from test_train import tiny_config

TOKEN = "hf_test_secret_token_123456"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    write_images(folder, 48)
    return folder


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return TOKEN


def test_pushes_tag_every_epoch_and_resume_from_the_hub(local_hub, token, faces, tmp_path, caplog, capfd):
    repo = "someone/dcgan-test"
    local_hub.fail_next("/commit/", times=2, status=507)  # the first two commit attempts fail
    with caplog.at_level(logging.DEBUG):
        first = train(tiny_config(tmp_path / "a", faces, push_to_hub=repo, hub_retry_delay=0.05))
    assert [push.ok for push in first.pushes] == [True, True]
    assert first.pushes[0].attempts == 3  # two failures, then it landed
    refs = local_hub.refs(repo)
    assert {"epoch-1", "epoch-2"} <= set(refs["tags"])
    files = local_hub.files(repo, "epoch-2")
    for name in ("config.json", "model.safetensors", "README.md", "samples.png", "discriminator/model.safetensors",
                 "training_state/state.json", "training_state/optimizers.safetensors"):
        assert name in files, name
    assert any(name.startswith("runs/events.out.tfevents") for name in files)
    card = files["README.md"].decode()
    assert f'Generator.from_pretrained("{repo}")' in card and "2 epochs, 12 steps" in card
    # what the Hub serves is the EMA generator of that epoch; epoch-1 is an older one
    latest = Generator.from_pretrained(repo, revision="epoch-2")
    ema = first.ema_generator.state_dict()
    assert all(torch.equal(value, ema[key]) for key, value in latest.state_dict().items())
    older = Generator.from_pretrained(repo, revision="epoch-1")
    assert not torch.equal(older.main[0].weight, latest.main[0].weight)
    assert Discriminator.from_pretrained(repo, subfolder="discriminator").config == {"nc": 3, "ndf": 8}
    # writes carried the token; nothing we printed or logged did
    writes = local_hub.requests_to(lambda request: request.method == "POST")
    assert writes and all(request.token == TOKEN for request in writes)
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text + out + err
    assert "failed (attempt 1/5)" in caplog.text

    # a fresh machine continues the run from the Hub's training state, exactly
    resumed = train(tiny_config(tmp_path / "b", faces, push_to_hub=repo, resume="hub", epochs=3,
                                hub_retry_delay=0.05))
    straight = train(tiny_config(tmp_path / "c", faces, epochs=3))
    assert resumed.progress.step == straight.progress.step == 18
    for key, value in straight.generator.state_dict().items():
        assert torch.allclose(value.float(), resumed.generator.state_dict()[key].float(), atol=1e-6), key
    assert "epoch-3" in local_hub.refs(repo)["tags"]


def test_an_unreachable_hub_never_stops_training(token, faces, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(tmp_path, faces, epochs=1, push_to_hub="someone/unreachable",
                                   hub_retry_delay=0.01))
    assert result.progress.epoch == 1 and not result.interrupted
    assert (tmp_path / "run" / "hub" / "model.safetensors").is_file()  # local results are complete
    assert [push.ok for push in result.pushes] == [False]
    assert "giving up on push" in caplog.text and TOKEN not in caplog.text


def test_resume_hub_without_a_repo_is_refused(faces, tmp_path):
    with pytest.raises(ValueError, match="--resume hub needs --push-to-hub"):
        tiny_config(tmp_path, faces, resume="hub")


def test_a_finished_run_can_be_published_later(local_hub, token, faces, tmp_path):
    offline = train(tiny_config(tmp_path, faces, epochs=1))  # trained without --push-to-hub
    card = (tmp_path / "run" / "hub" / "README.md").read_text()
    assert "| wall time |" in card
    again = train(tiny_config(tmp_path, faces, epochs=1, resume="latest", push_to_hub="someone/later"))
    assert again.progress.step == offline.progress.step == 6  # nothing retrained
    assert [push.ok for push in again.pushes] == [True]
    assert "epoch-1" in local_hub.refs("someone/later")["tags"]
    pushed = Generator.from_pretrained("someone/later", revision="epoch-1").state_dict()
    assert all(torch.equal(value, pushed[key]) for key, value in offline.ema_generator.state_dict().items())


def test_the_best_tag_moves_to_each_better_push(local_hub, token, tmp_path):
    """HfApi.delete_tag + create_tag through the project's Hub client: git tags do not move by themselves."""
    from huggingface_hub import HfApi

    from dcgan_hf.hub.client import publish_folder

    api = HfApi(token=token)
    repo = "someone/best-tag"
    api.create_repo(repo)
    folder = tmp_path / "folder"
    folder.mkdir()
    commits = []
    for epoch in (1, 2, 3):
        (folder / "epoch.txt").write_text(str(epoch))
        commits.append(publish_folder(api, repo, folder, message=f"epoch {epoch}", tag=f"epoch-{epoch}",
                                      moved_tags=("best",) if epoch != 2 else ()))
    tags = local_hub.refs(repo)["tags"]
    assert tags["best"] == commits[2] == tags["epoch-3"] and tags["epoch-1"] == commits[0]
    assert local_hub.files(repo, "best")["epoch.txt"] == b"3"


def test_training_tags_its_lowest_fid_push_best(local_hub, token, faces, tmp_path):
    repo = "someone/dcgan-best"
    real = tmp_path / "real"
    write_images(real, 10, seed=7)
    result = train(tiny_config(tmp_path, faces, epochs=3, eval_every=1, eval_real=str(real), eval_num=8,
                               eval_train_num=16, push_to_hub=repo, hub_retry_delay=0.05))
    assert all(push.ok for push in result.pushes)
    tags = local_hub.refs(repo)["tags"]
    best = min(result.progress.metrics, key=lambda row: row.fid)
    assert {"epoch-1", "epoch-2", "epoch-3"} <= set(tags) and tags["best"] == tags[f"epoch-{best.epoch}"]
    pushed = Generator.from_pretrained(repo, revision="best")
    state = local_hub.files(repo, "best")["training_state/state.json"]
    assert f'"step": {best.step},' in state.decode() and pushed.config["ngf"] == 8
