"""Hub round trips with the real huggingface_hub client against the fake Hub on 127.0.0.1.

Loading: save_pretrained + upload_folder, then from_pretrained by branch, tag and commit,
clear errors for every kind of bad repo, the offline cache. Publishing: the background
pusher's tags, token handling, retries, failures and non-blocking pushes.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.utils._http as hub_http
import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import save as safetensors_bytes

from dcgan_hf import Discriminator, Generator, ModelLoadError
from dcgan_hf.hub.client import publish_folder
from dcgan_hf.hub.loading import download_folder, load_generator
from dcgan_hf.hub.pusher import HubPusher
from hub_server import HubServer

SEEDS = [0, 1, 7, 1234]
TOKEN = "hf_test_token_that_must_not_leak_0123456789"
SMALL = dict(nz=8, ngf=4)


def make_generator(seed: int, **config: int) -> Generator:
    """A small Generator with its own weights, without touching the global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Generator(**{**SMALL, **config})


def same_model(a: Generator, b: Generator) -> bool:
    return a.config == b.config and torch.equal(a.sample(SEEDS), b.sample(SEEDS))


def saved(generator: Generator, folder: Path) -> Path:
    generator.save_pretrained(folder)
    return folder


def upload(api: HfApi, repo_id: str, generator: Generator, folder: Path, message: str = "upload") -> str:
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=saved(generator, folder), commit_message=message).oid


@pytest.fixture
def api() -> HfApi:
    return HfApi(token=TOKEN)


# -- loading ------------------------------------------------------------------------------


def test_from_pretrained_by_branch_tag_and_commit(local_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    first, second = make_generator(1), make_generator(2)
    first_commit = upload(api, "user/dcgan-revisions", first, tmp_path / "first", "epoch 1")
    api.create_tag("user/dcgan-revisions", tag="epoch-1", revision=first_commit)
    api.create_branch("user/dcgan-revisions", branch="first-run", revision=first_commit)
    second_commit = upload(api, "user/dcgan-revisions", second, tmp_path / "second", "epoch 2")
    assert first_commit != second_commit

    assert same_model(Generator.from_pretrained("user/dcgan-revisions"), second)
    assert same_model(Generator.from_pretrained("user/dcgan-revisions", revision="main"), second)
    assert same_model(Generator.from_pretrained("user/dcgan-revisions", revision="epoch-1"), first)
    assert same_model(Generator.from_pretrained("user/dcgan-revisions", revision="first-run"), first)
    assert same_model(Generator.from_pretrained("user/dcgan-revisions", revision=first_commit), first)
    assert same_model(load_generator("user/dcgan-revisions@epoch-1"), first)
    assert same_model(load_generator(f"user/dcgan-revisions@{second_commit}"), second)
    assert not same_model(first, second)


def test_uploads_send_the_token_as_a_bearer_header(local_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    upload(api, "user/dcgan-auth", make_generator(3), tmp_path / "model")
    writes = local_hub.requests_to(lambda r: r.method == "POST")
    for route in ("/api/repos/create", "/preupload/main", "/commit/main"):
        assert any(r.path.endswith(route) for r in writes), route
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in writes)
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(token=False).create_repo("user/anonymous")


def seed_repo(hub: HubServer, repo_id: str, files: dict[str, bytes]) -> str:
    hub.create_repo(repo_id)
    return hub.commit(repo_id, files, "seed")


def config_bytes(generator: Generator, **overrides: int) -> bytes:
    return json.dumps({"model_type": "dcgan-generator", **generator.config, **overrides}).encode()


def weights_bytes(generator: Generator) -> bytes:
    return safetensors_bytes({key: value.contiguous() for key, value in generator.state_dict().items()})


def pickle_bytes(generator: Generator) -> bytes:
    buffer = io.BytesIO()
    torch.save(generator.state_dict(), buffer)
    return buffer.getvalue()


BAD_REPOS = {
    "missing repo": (None, None, "model repo not found"),
    "missing revision": ({"config.json": "config", "model.safetensors": "weights"}, "epoch-99", "revision not found"),
    "no config.json": ({"model.safetensors": "weights"}, None, "has no config.json"),
    "corrupt safetensors": (
        {"config.json": "config", "model.safetensors": "garbage"},
        None,
        "not a readable safetensors",
    ),
    "weights of another size": ({"config.json": "config-ngf8", "model.safetensors": "weights"}, None, "mis-shaped"),
    "pickle weights only": ({"config.json": "config", "pytorch_model.bin": "pickle"}, None, "has no model.safetensors"),
}


@pytest.mark.parametrize("case", list(BAD_REPOS))
def test_bad_repos_give_a_clear_model_load_error(local_hub: HubServer, case: str) -> None:
    files, revision, message = BAD_REPOS[case]
    generator = make_generator(4)
    contents = {
        "config": config_bytes(generator),
        "config-ngf8": config_bytes(generator, ngf=8),
        "weights": weights_bytes(generator),
        "garbage": b"\x00not a safetensors file at all",
        "pickle": pickle_bytes(generator),
    }
    repo_id = f"user/bad-{case.replace(' ', '-').replace('.', '-')}"
    if files is not None:
        seed_repo(local_hub, repo_id, {name: contents[kind] for name, kind in files.items()})
    with pytest.raises(ModelLoadError, match=message) as raised:
        Generator.from_pretrained(repo_id, revision=revision)
    # The message names the repo, as "user/name" or (weights errors) as its cache folder "models--user--name".
    assert repo_id.replace("/", "--") in str(raised.value).replace("/", "--")
    # A pickle is never fetched from the Hub, whatever else happens.
    assert not local_hub.requests_to("pytorch_model.bin")


def test_a_downloaded_model_loads_offline(local_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    generator = make_generator(5)
    upload(api, "user/dcgan-offline", generator, tmp_path / "model")
    assert same_model(Generator.from_pretrained("user/dcgan-offline", cache_dir=cache), generator)
    downloads = len(local_hub.requests_to("/resolve/"))

    assert same_model(
        Generator.from_pretrained("user/dcgan-offline", cache_dir=cache, local_files_only=True), generator
    )
    assert len(local_hub.requests_to("/resolve/")) == downloads  # local_files_only really stays local
    with local_hub.down():
        assert same_model(Generator.from_pretrained("user/dcgan-offline", cache_dir=cache), generator)


def test_nothing_cached_and_no_hub_says_so(
    local_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With nothing cached the client retries a refused connection 5 times, 23 s of sleeps in
    # all; the retries still happen here, only their waits are skipped.
    monkeypatch.setattr(hub_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="cannot reach the Hub") as raised:
        Generator.from_pretrained("user/never-downloaded", cache_dir=cache, local_files_only=True)
    assert "user/never-downloaded" in str(raised.value) and not local_hub.requests
    with local_hub.down():
        with pytest.raises(ModelLoadError, match="cannot reach the Hub") as raised:
            Generator.from_pretrained("user/never-downloaded", cache_dir=cache)
    assert "user/never-downloaded" in str(raised.value)


def test_download_folder_fetches_only_matching_files(local_hub: HubServer, tmp_path: Path) -> None:
    seed_repo(local_hub, "user/dcgan-state", {"config.json": b"{}", "training/state.pt": b"first"})
    local_hub.commit("user/dcgan-state", {"training/state.pt": b"second"}, "epoch 2")

    folder = download_folder("user/dcgan-state", allow_patterns="training/*")
    assert (folder / "training" / "state.pt").read_bytes() == b"second"
    assert not (folder / "config.json").exists()
    with pytest.raises(ModelLoadError, match="no files matching"):
        download_folder("user/dcgan-state", allow_patterns="discriminator/*")
    with pytest.raises(ModelLoadError, match="revision not found"):
        download_folder("user/dcgan-state@epoch-7")


# -- publishing ----------------------------------------------------------------------------


def fast_pusher(repo_id: str, **options) -> HubPusher:
    return HubPusher(repo_id, **{"attempts": 3, "base_delay": 0.01, **options})


def test_pushes_land_with_tags_and_never_log_the_token(
    local_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    local_hub.fail_next("/tag/", times=1, status=503)  # one failure, so the retry path logs too
    first, second = make_generator(6), make_generator(7)
    with torch.random.fork_rng():
        torch.manual_seed(6)
        discriminator = Discriminator(ndf=4)
    folder = tmp_path / "push"
    discriminator.save_pretrained(folder / "discriminator")
    with fast_pusher("user/dcgan-pushed", private=True) as pusher:
        pusher.push(saved(first, folder), tag="epoch-1", message="Epoch 1")
        saved(second, folder)  # the caller keeps writing: the queued push must not see this
        (folder / "extra.txt").write_text("written after the first push")
        pusher.push(folder, tag="epoch-2")
    summary = pusher.summary()

    assert summary.ok and [r.tag for r in summary.succeeded] == ["epoch-1", "epoch-2"]
    refs = local_hub.refs("user/dcgan-pushed")
    assert refs["tags"] == {"epoch-1": summary.results[0].commit, "epoch-2": summary.results[1].commit}
    assert refs["branches"]["main"] == summary.results[1].commit
    assert "extra.txt" not in local_hub.files("user/dcgan-pushed", "epoch-1")
    assert local_hub.files("user/dcgan-pushed", "epoch-2")["extra.txt"] == b"written after the first push"
    assert same_model(Generator.from_pretrained("user/dcgan-pushed", revision="epoch-1", token=TOKEN), first)
    assert same_model(Generator.from_pretrained("user/dcgan-pushed", revision="epoch-2", token=TOKEN), second)
    pulled = Discriminator.from_pretrained("user/dcgan-pushed", revision="epoch-1", subfolder="discriminator")
    assert all(torch.equal(pulled.state_dict()[k], v) for k, v in discriminator.state_dict().items())
    with pytest.raises(ModelLoadError, match="private without a token"):
        Generator.from_pretrained("user/dcgan-pushed", token=False)

    created = local_hub.requests_to("/api/repos/create")
    assert len(created) == 1 and json.loads(created[0].body)["visibility"] == "private"
    assert all(r.token == TOKEN for r in local_hub.requests_to(lambda r: r.method == "POST"))
    assert "failed (attempt 1/3)" in caplog.text
    assert TOKEN not in caplog.text


def test_publish_folder_tags_the_commit_it_made(local_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    api.create_repo("user/dcgan-publish")
    commit = publish_folder(
        api, "user/dcgan-publish", saved(make_generator(8), tmp_path / "m"), message="Epoch 3", tag="epoch-3"
    )
    assert local_hub.refs("user/dcgan-publish") == {"branches": {"main": commit}, "tags": {"epoch-3": commit}}
    assert [c.title for c in api.list_repo_commits("user/dcgan-publish")][0] == "Epoch 3"


@pytest.mark.parametrize(
    "route, status",
    [("/commit/", 507), ("/tag/", 503)],  # statuses the client itself does not retry for these calls
)
def test_failed_attempts_are_retried(
    local_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str, status: int
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    local_hub.fail_next(route, times=2, status=status)
    with fast_pusher("user/dcgan-retried") as pusher:
        pusher.push(saved(make_generator(9), tmp_path / "m"), tag="epoch-1")
    (result,) = pusher.summary().results
    assert result.ok and result.attempts == 3
    assert [r.status for r in local_hub.requests_to(route)][-3:] == [status, status, 200]
    assert local_hub.refs("user/dcgan-retried")["tags"] == {"epoch-1": result.commit}


def test_a_hub_that_always_fails_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dcgan_hf.hub.loading")
    folder = saved(make_generator(10), tmp_path / "m")
    with HubServer() as broken, HubServer() as unreachable:
        broken.fail_next(lambda request: True, times=None, status=507)
        unreachable.stop()
        for server in (broken, unreachable):
            pusher = fast_pusher("user/dcgan-doomed", api=HfApi(endpoint=server.url, token=TOKEN))
            pusher.push(folder, tag="epoch-1")
            started = time.monotonic()
            summary = pusher.close(timeout=30)
            assert time.monotonic() - started < 5
            assert not summary.ok and not summary.unfinished
            (result,) = summary.failed
            assert result.attempts == 3 and result.commit is None and result.error
        assert len(broken.requests_to("/api/repos/create")) == 3
    assert caplog.text.count("giving up on push 'epoch-1'") == 2
    assert TOKEN not in caplog.text


def test_push_does_not_wait_for_a_slow_hub(local_hub: HubServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    local_hub.slow_down("/commit/", seconds=3.0, times=1)
    folder = saved(make_generator(11), tmp_path / "m")
    with fast_pusher("user/dcgan-slow") as pusher:
        started = time.monotonic()
        pusher.push(folder, tag="epoch-1")
        returned = time.monotonic() - started
        summary = pusher.close()
    # the commit alone took 3 s: push returning in well under that (margin for a loaded machine) did not wait
    assert time.monotonic() - started >= 3.0 and returned < 1.5, returned
    assert summary.ok and local_hub.refs("user/dcgan-slow")["tags"]["epoch-1"] == summary.results[0].commit


def test_close_with_a_timeout_reports_what_is_left(tmp_path: Path) -> None:
    folder = saved(make_generator(12), tmp_path / "m")
    with HubServer() as slow:
        slow.slow_down("/api/repos/create", seconds=2.0)
        pusher = fast_pusher("user/dcgan-late", api=HfApi(endpoint=slow.url, token=TOKEN))
        pusher.push(folder, tag="epoch-1")
        pusher.push(folder, tag="epoch-2")
        started = time.monotonic()
        summary = pusher.close(timeout=0.3)
        assert time.monotonic() - started < 1.0
    assert [result.label for result in summary.unfinished] == ["epoch-1", "epoch-2"]
    assert not summary.ok and [result.ok for result in summary] == [False, False]


def test_bad_pushes_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        HubPusher("not a repo id!")
    with pytest.raises(ValueError, match="attempts"):
        HubPusher("user/repo", attempts=0)
    pusher = fast_pusher("user/repo", api=HfApi(endpoint="http://127.0.0.1:9", token=TOKEN))
    with pytest.raises(NotADirectoryError):
        pusher.push(tmp_path / "missing", tag="epoch-1")
    with pytest.raises(ValueError, match="invalid tag"):
        pusher.push(tmp_path, tag="epoch 1")
    assert pusher.close(timeout=5).results == ()
    with pytest.raises(RuntimeError, match="closed"):
        pusher.push(tmp_path, tag="epoch-1")


def test_a_folder_that_cannot_be_copied_is_a_failed_push_not_an_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = saved(make_generator(13), tmp_path / "m")
    (folder / "dangling").symlink_to(tmp_path / "gone")
    pusher = fast_pusher("user/repo", api=HfApi(endpoint="http://127.0.0.1:9", token=TOKEN))
    pusher.push(folder, tag="epoch-1")
    (result,) = pusher.close(timeout=5).failed
    assert result.attempts == 0 and "dangling" in result.error
    assert "could not snapshot" in caplog.text
