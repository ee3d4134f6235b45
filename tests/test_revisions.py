"""Watch it learn: the Training tab over a run's epoch-N tags or its local checkpoints.

End to end: ``train.py`` (tiny, synthetic images) pushes 3 tagged epochs to the fake Hub on
127.0.0.1; ``app.py`` serves that repo, and the tab's pixels (through the API) equal
``Generator.from_pretrained(repo, revision=tag).sample(...)``; served from the run folder
instead, the checkpoints give the same pixels as the tags. Plus the LRU's bound and
laziness, and the tab's absence for a model without history.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import save_file

from dcgan_hf import Generator, ModelLoadError
from dcgan_hf.hub import ModelSpec
from dcgan_hf.images import grid_image
from dcgan_hf.revisions import (
    GeneratorLRU,
    TrainingHistory,
    TrainingRevision,
    checkpoint_revisions,
    epoch_of_tag,
    find_history,
    load_checkpoint_generator,
    local_history_revisions,
)
from dcgan_hf.epoch_history import load_epoch, write_epoch
from dcgan_hf.serving import ModelServer, evenly_spaced
from hub_server import HubServer
from test_app import AppProcess, client_for, make_model_folder, pixels, start_app, tile
from test_hostile import within_address_space
from training_runs import EPOCHS, TOKEN, train_and_push

REPO = "someone/dcgan-watch"
SEEDS = list(range(6))


@pytest.fixture(scope="module")
def run(local_hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.py's output folder; its 3 epochs are tagged in REPO on the fake Hub."""
    local_hub_server.reset()
    folder = train_and_push(REPO, tmp_path_factory.mktemp("watch") / "run")
    api = HfApi(token=TOKEN)
    api.create_tag(REPO, tag="v1.0")  # not a training tag: ignored
    api.create_tag(REPO, tag="step-7")  # a mid-epoch push: ignored too
    return folder


def tagged(epoch: int) -> Generator:
    return Generator.from_pretrained(REPO, revision=f"epoch-{epoch}")


def expected_grid(generator: Generator, seeds: list[int]) -> np.ndarray:
    return pixels(grid_image(generator.sample(seeds)))


@pytest.fixture(scope="module")
def hub_app(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = start_app("--model", REPO, workdir=tmp_path_factory.mktemp("hub-app")).wait_until_ready()
    yield process
    process.stop()


# -- the pieces ---------------------------------------------------------------------------------


def test_epoch_tags() -> None:
    assert [epoch_of_tag(name) for name in ("epoch-1", "epoch-25", "epoch-0", "epoch-01", "step-5", "v1")] == [
        1, 25, None, None, None, None]


def test_the_lru_loads_lazily_and_keeps_at_most_its_capacity() -> None:
    revisions = [TrainingRevision(epoch, "user/repo", f"epoch-{epoch}") for epoch in range(1, 7)]
    made: list[int] = []

    def load(revision: TrainingRevision) -> Generator:
        made.append(revision.epoch)
        return Generator(nz=4, ngf=2)

    history = TrainingHistory.of(revisions, "user/repo", capacity=2, load=load)
    assert made == [] and len(history.cache) == 0  # nothing loaded up front
    first = history.generator(history.at_epoch(3))
    assert history.generator(history.at_epoch(3)) is first and made == [3]
    for epoch in (1, 2, 3, 4):
        history.generator(history.at_epoch(epoch))
    assert made == [3, 1, 2, 3, 4] and len(history.cache) == 2  # 3 was evicted by 1 and 2
    assert history.cache.loads == 5
    with pytest.raises(ValueError, match="capacity"):
        GeneratorLRU(load, capacity=0)


def test_epochs_snap_to_the_last_saved_one_and_one_epoch_is_no_history() -> None:
    revisions = [TrainingRevision(epoch, "r", f"epoch-{epoch}") for epoch in (2, 4, 6)]
    history = TrainingHistory.of(revisions, "r")
    assert [history.at_epoch(epoch).epoch for epoch in (1, 2, 3, 5, 6, 99)] == [2, 2, 2, 4, 6, 6]
    assert TrainingHistory.of(revisions[:1], "r") is None and TrainingHistory.of([], "r") is None
    assert evenly_spaced(list(range(100)), 5) == [0, 25, 50, 74, 99] and evenly_spaced([1, 2], 5) == [1, 2]


# -- hostile run folders --------------------------------------------------------------------------


def hand_made_run(folder: Path, states: dict[int, str | bytes | dict]) -> Path:
    """A run folder (hub/ model + one checkpoint per entry) whose state.json files say what ``states`` holds."""
    generator = Generator(nz=16, ngf=8)
    generator.save_pretrained(folder / "hub")
    for step, state in states.items():
        checkpoint = folder / "checkpoints" / f"checkpoint-{step:09d}"
        checkpoint.mkdir(parents=True)
        save_file(generator.state_dict(), str(checkpoint / "generator.safetensors"))
        text = json.dumps(state) if isinstance(state, dict) else state
        (checkpoint / "state.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def state_at(epoch: object, **extra: object) -> dict:
    return {"progress": {"epoch": epoch, "batch": 0}, "config": {"nz": 16, "ngf": 8}, "has_ema": False, **extra}


def test_hostile_state_files_are_skipped_with_a_warning_and_the_rest_is_served(tmp_path: Path, caplog) -> None:
    run = hand_made_run(tmp_path / "run", {
        1: state_at(1),
        2: "[" * 100_000 + "]" * 100_000,  # json.loads would recurse 100k levels
        3: state_at(10**30),  # an epoch no slider can show
        4: state_at(4, history=[{}] * 3_000_000),  # 9 MB of JSON that parses into ~200 MB of dicts
        5: b'{"progress": {"epoch": 5, "batch": 0}, "pad": "' + b"x" * (17 * 2**20) + b'"}',  # 17 MB
        6: state_at(6, history=[{"loss_g": float("nan")}]),  # a run's NaN loss is no reason to hide it
        7: state_at(True), 8: state_at(2.0), 9: '{"progress": {"epoch": ' + "9" * 5000 + ', "batch": 0}}',
    })
    with caplog.at_level("WARNING"):
        revisions = checkpoint_revisions(run)
    assert [revision.epoch for revision in revisions] == [1, 6]
    for step, reason in [(2, "nested 100000 levels deep"), (4, r"3,000,0\d\d values and keys \(at most 1,000,000\)"), (5, "larger than 16,777,216 bytes"),
                         (9, "Exceeds the limit")]:
        assert re.search(rf"skipping checkpoint \S+checkpoint-{step:09d}: .*{reason}", caplog.text), (step, caplog.text)
    server = ModelServer.start(str(run / "hub"), fallback=str(run / "hub"), device="cpu")  # what app.py starts
    try:
        assert server.history.epochs == [1, 6]
    finally:
        server.close()


def test_a_state_claiming_a_bigger_model_is_refused_from_the_weights_header(tmp_path: Path) -> None:
    run = hand_made_run(tmp_path / "run", {1: state_at(1, config={"nz": 1024, "ngf": 512})})
    # the model it claims (nz=1024, ngf=512) is ~1 GB of float32: with 300 MB of address space to
    # spare, only a refusal from the safetensors header (nothing built) can say what is wrong
    checkpoint = run / "checkpoints" / "checkpoint-000000001"
    done = within_address_space(f"try:\n    load_checkpoint_generator({str(checkpoint)!r})\n"
                                "except ModelLoadError as error:\n    print('refused:', error)", 300,
                                prelude="from dcgan_hf import ModelLoadError\n"
                                        "from dcgan_hf.revisions import load_checkpoint_generator")
    assert done.returncode == 0 and re.search(r"refused: .*mis-shaped tensors .*main.0.weight: expected "
                                              r"\(1024, 4096, 4, 4\), got \(16, 64, 4, 4\)", done.stdout), done.stderr
    run = hand_made_run(tmp_path / "ema", {1: state_at(1, has_ema="yes")})  # only true means the EMA file
    assert load_checkpoint_generator(run / "checkpoints" / "checkpoint-000000001").ngf == 8


# -- end to end ---------------------------------------------------------------------------------


def test_train_py_tags_each_epoch_and_its_checkpoints_match(run: Path, local_hub_server: HubServer) -> None:
    tags = local_hub_server.refs(REPO)["tags"]
    assert {f"epoch-{epoch}" for epoch in range(1, EPOCHS + 1)} <= set(tags)
    history = find_history(ModelSpec(REPO))
    assert history.epochs == [1, 2, 3] and [r.revision for r in history.revisions] == ["epoch-1", "epoch-2", "epoch-3"]
    local = checkpoint_revisions(run)
    assert [revision.epoch for revision in local] == [1, 2, 3]
    for revision in local:  # a checkpoint's EMA generator is what that epoch's push published
        mine, pushed = load_checkpoint_generator(revision.source).state_dict(), tagged(revision.epoch).state_dict()
        assert all(torch.equal(value, pushed[key]) for key, value in mine.items())


def test_the_training_tab_draws_what_each_tag_holds(hub_app: AppProcess, run: Path, tmp_path: Path) -> None:
    client = client_for(hub_app, tmp_path)
    info = client.predict(api_name="/model_info")
    assert info["training_epochs"] == [1, 2, 3]
    grids = []
    for epoch in range(1, EPOCHS + 1):
        grid, caption = client.predict(epoch=epoch, seeds="0-5", truncation=1.0, api_name="/training_grid")
        assert np.array_equal(pixels(grid), expected_grid(tagged(epoch), SEEDS)), epoch
        assert f"epoch-{epoch}" in caption
        grids.append(pixels(grid))
    assert not np.array_equal(grids[0], grids[-1])  # the model did change while training
    newest, _ = client.predict(epoch=0, seeds="0-5", truncation=1.0, api_name="/training_grid")
    assert np.array_equal(pixels(newest), grids[-1])
    gif, strip, epochs = client.predict(seed=4, truncation=1.0, api_name="/training_gif")
    assert Path(gif).read_bytes().startswith(b"GIF8") and "epoch-1, epoch-2, epoch-3" in epochs
    for index, epoch in enumerate(range(1, EPOCHS + 1)):
        expected = tagged(epoch).sample([4])[0].permute(1, 2, 0).numpy()
        assert np.array_equal(tile(pixels(strip), index, per_row=EPOCHS), expected), epoch


def test_bad_training_inputs_get_messages(hub_app: AppProcess, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    client = client_for(hub_app, tmp_path)
    for inputs, message in [
        (dict(epoch=1, seeds="0-4294967295", truncation=1.0), "at most 64 seeds"),
        (dict(epoch=1, seeds="5-1", truncation=1.0), "runs backwards"),
        (dict(epoch=-1, seeds="0", truncation=1.0), "epoch must be from 0"),
        (dict(epoch=1, seeds="0", truncation=2**1100), "far too large"),
    ]:
        with pytest.raises(AppError, match=message):
            client.predict(**inputs, api_name="/training_grid")


def test_a_run_folder_serves_its_checkpoints_with_the_same_pixels(run: Path) -> None:
    # in-process: the HTTP path of the Training tab is the same as for tags (test_the_training_tab_draws_…)
    server = ModelServer.start(str(run), fallback=str(run), device="cpu")
    try:
        info = server.status.as_dict()
        assert list(info["training_epochs"]) == [1, 2, 3] and info["config"]["nz"] == 16
        for epoch in (1, 3):
            revision, grid = server.training_grid(epoch, SEEDS)
            assert np.array_equal(pixels(grid.png), expected_grid(tagged(epoch), SEEDS)), epoch
            assert "checkpoint-" in revision.describe()
    finally:
        server.close()


def test_revisions_are_loaded_only_when_asked_for(run: Path) -> None:
    server = ModelServer.start(REPO, fallback=REPO, device="cpu")
    try:
        assert server.history.cache.loads == 0
        revision, grid = server.training_grid(2, SEEDS)
        assert revision.revision == "epoch-2" and server.history.cache.loads == 1
        assert np.array_equal(pixels(grid.png), expected_grid(tagged(2), SEEDS))
        server.training_walk(0)
        assert server.history.cache.loads == 3 and len(server.history.cache) == 3
    finally:
        server.close()


def test_no_history_means_no_training_tab(tmp_path: Path) -> None:
    import app  # the page built in-process: what a browser gets from /config, without starting a server

    model = make_model_folder(tmp_path / "plain")
    server = ModelServer.start(str(model), fallback=str(model), device="cpu")
    try:
        config = app.build_demo(server, tmp_path / "out").get_config_file()
        ids = {component.get("props", {}).get("elem_id") for component in config["components"]}
        assert "tab-generate" in ids and "tab-training" not in ids
        assert not any(dependency.get("api_name") == "training_grid" for dependency in config["dependencies"])
        assert not server.status.as_dict()["training_epochs"]  # what /model_info reports
    finally:
        server.close()


# -- a model folder or repo that carries a few epochs in history/ (the bundled model) ---------------


def with_history(folder: Path, epochs: tuple[int, ...] = (2, 5, 9)) -> Path:
    """A model folder with three epoch generators in history/ (as bench/bundle_model.py --history writes)."""
    make_model_folder(folder)
    for index, epoch in enumerate(epochs):
        write_epoch(folder / "history", Generator.from_pretrained(make_model_folder(folder.parent / f"e{epoch}",
                                                                                     seed=index + 1)),
                    epoch=epoch, step=epoch * 10)
    (folder / "history" / "epoch-000000.safetensors").write_bytes(b"not an epoch")  # epoch 0 is not shown
    (folder / "history" / "notes.txt").write_text("ignored")
    return folder


def test_a_model_folder_with_history_shows_its_epochs_with_their_pixels(tmp_path: Path) -> None:
    model = with_history(tmp_path / "bundled")
    server = ModelServer.start(str(model), fallback=str(model), device="cpu")
    try:
        assert list(server.status.as_dict()["training_epochs"]) == [2, 5, 9]
        for epoch, shown in ((2, 2), (7, 5), (9, 9)):  # an epoch between two files snaps to the earlier one
            revision, grid = server.training_grid(epoch, SEEDS)
            expected = load_epoch(model / "history" / f"epoch-{shown:06d}.safetensors")
            assert revision.epoch == shown and f"history/epoch-{shown:06d}" in revision.describe()
            assert np.array_equal(pixels(grid.png), expected_grid(expected, SEEDS)), epoch
    finally:
        server.close()


def test_a_broken_history_file_is_a_message_and_the_model_keeps_serving(tmp_path: Path) -> None:
    model = with_history(tmp_path / "bundled")
    (model / "history" / "epoch-000005.safetensors").write_bytes(b"\xff" * 64)
    server = ModelServer.start(str(model), fallback=str(model), device="cpu")
    try:
        with pytest.raises(Exception, match="epoch-000005"):
            server.training_grid(5, SEEDS)
        revision, _ = server.training_grid(9, SEEDS)
        assert revision.epoch == 9
    finally:
        server.close()


def test_a_run_folder_shows_every_epoch_of_its_history_and_checkpoints_where_it_has_them(run: Path) -> None:
    history = find_history(ModelSpec(str(run)))
    assert history.epochs == [1, 2, 3]
    files = [revision.epoch for revision in local_history_revisions(run)]
    assert files == [1, 2, 3]  # train.py writes one per epoch
    checkpoints = {revision.epoch for revision in checkpoint_revisions(run)}
    for revision in history.revisions:  # exact float32 checkpoints win over the float16 files
        assert ("checkpoint-" in revision.describe()) == (revision.epoch in checkpoints)


def test_a_hub_repo_without_tags_shows_the_epoch_files_of_its_history(local_hub_server: HubServer,
                                                                       tmp_path: Path) -> None:
    model = with_history(tmp_path / "bundled")
    (model / "history" / "epoch-000000.safetensors").unlink()
    api = HfApi(token=TOKEN)
    api.create_repo("someone/bundled-history", exist_ok=True)
    api.upload_folder(repo_id="someone/bundled-history", folder_path=str(model))
    history = find_history(ModelSpec("someone/bundled-history"))
    assert history.epochs == [2, 5, 9] and history.revisions[0].file == "history/epoch-000002.safetensors"
    generator = history.generator(history.at_epoch(5))
    expected = load_epoch(model / "history" / "epoch-000005.safetensors")
    assert np.array_equal(expected_grid(generator, SEEDS), expected_grid(expected, SEEDS))
