"""``python -m dcgan_hf generate`` from the shell: grids, folders, GIFs, @revision, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from PIL import Image

from dcgan_hf import Discriminator, Generator, images, interpolate, sample
from dcgan_hf.__main__ import main
from dcgan_hf.completion import complete
from dcgan_hf.hub.loading import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(3)
    Generator(ngf=8).save_pretrained(folder)
    return folder


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def test_grid_png_equals_the_library(model_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(model_dir), "--seeds", "0-3,9", "--out", str(out)]) == 0
    assert "wrote a grid of 5 images" in capsys.readouterr().out
    G = Generator.from_pretrained(model_dir)
    assert torch.equal(read_png(out), images.grid(sample(G, [0, 1, 2, 3, 9])))


def test_folder_output_names_files_by_seed(model_dir, tmp_path):
    out = tmp_path / "each"
    assert main(["generate", "--model", str(model_dir), "--seeds", "5,7", "--out", f"{out}/"]) == 0
    G = Generator.from_pretrained(model_dir)
    assert sorted(p.name for p in out.iterdir()) == ["seed0000000005.png", "seed0000000007.png"]
    assert torch.equal(read_png(out / "seed0000000007.png"), sample(G, [7])[0])


def test_interpolation_gif_and_strip(model_dir, tmp_path):
    gif = tmp_path / "walk.gif"
    assert main(["generate", "--model", str(model_dir), "--interpolate", "3,7", "--frames", "6",
                 "--out", str(gif)]) == 0
    assert images.gif_frame_count(gif.read_bytes()) == 6
    strip = tmp_path / "walk.png"
    assert main(["generate", "--model", str(model_dir), "--interpolate", "3,7,9", "--loop", "--method", "lerp",
                 "--frames", "6", "--out", str(strip)]) == 0
    G = Generator.from_pretrained(model_dir)
    frames = interpolate(G, [3, 7, 9], 6, method="lerp", closed=True)
    assert torch.equal(read_png(strip), images.grid(frames, nrow=6))


def test_model_at_a_hub_revision(local_hub, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_cli_test")
    api = HfApi()
    api.create_repo("someone/cli-model")
    commit = api.upload_folder(repo_id="someone/cli-model", folder_path=model_dir)
    api.create_tag("someone/cli-model", tag="v1", revision=commit.oid)
    torch.manual_seed(4)
    newer = tmp_path / "newer"
    Generator(ngf=8).save_pretrained(newer)
    api.upload_folder(repo_id="someone/cli-model", folder_path=newer)  # main moves on; v1 stays
    out = tmp_path / "v1.png"
    assert main(["generate", "--model", "someone/cli-model@v1", "--seeds", "0", "--out", str(out)]) == 0
    assert torch.equal(read_png(out), images.grid(sample(Generator.from_pretrained(model_dir), [0])))


@pytest.mark.parametrize("args, message", [
    (["--seeds", "4294967296"], "--seeds: a seed is a whole number from 0 to 4294967295"),
    (["--seeds", "a-b"], "--seeds must be whole numbers and ranges like '0-15, 42', got 'a-b'"),
    (["--interpolate", "3"], "at least two seeds"),
    (["--truncation", "0"], "truncation"),
    (["--frames", "1", "--interpolate", "1,2"], "--frames must be from 2 to 1000"),
])
def test_bad_input_exits_2_with_a_message(model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    assert main(["generate", "--model", str(model_dir), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_and_gif_without_interpolation(tmp_path, model_dir, capsys):
    assert main(["generate", "--model", str(tmp_path / "nowhere" / "x" / "y"), "--out", str(tmp_path / "a.png")]) == 2
    assert "no model folder" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir), "--out", str(tmp_path / "a.gif")]) == 2
    assert "needs --interpolate" in capsys.readouterr().err


def test_python_dash_m_and_the_bundled_default(tmp_path):
    assert (BUNDLED_MODEL / "model.safetensors").is_file(), "the bundled model must ship with the code"
    out = tmp_path / "bundled.png"
    result = subprocess.run([sys.executable, "-m", "dcgan_hf", "generate", "--seeds", "0-3", "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    with Image.open(io.BytesIO(out.read_bytes())) as grid:
        assert grid.size == (2 + 2 * 66, 2 + 2 * 66)


def test_the_bundled_model_is_a_strict_hub_folder_with_a_card():
    G = Generator.from_pretrained(BUNDLED_MODEL)
    assert G.config == {"nz": 100, "ngf": 32, "nc": 3}  # the width that wins at equal CPU time (RESULTS §10)
    D = Discriminator.from_pretrained(BUNDLED_MODEL, subfolder="discriminator")  # shipped for --init-from
    assert D.config == {"nc": 3, "ndf": 32}
    card = (BUNDLED_MODEL / "README.md").read_text()
    assert "pipeline_tag: unconditional-image-generation" in card and "| FID |" in card
    assert (BUNDLED_MODEL / "model.safetensors").stat().st_size <= 15 * 2**20
    for name in ("samples.png", "interpolation.gif"):
        assert (BUNDLED_MODEL / name).is_file()
    faces = sample(G, range(16)).float()
    assert faces.std() > 30  # trained: varied, contrasty faces, not flat grey


def test_the_demo_serves_the_bundled_model_by_default():
    from dcgan_hf.serving import BUNDLED_LABEL, ModelServer

    server = ModelServer.start()
    try:
        assert server.status.serving == BUNDLED_LABEL and not server.status.fell_back
        assert str(BUNDLED_MODEL.parent) not in server.status.markdown()  # no server paths on the page
        # its history/ epochs make the Training tab show how it learned
        epochs = list(server.status.as_dict()["training_epochs"])
        assert len(epochs) >= 6 and epochs == sorted(epochs)
        revision, grid = server.training_grid(epochs[0], [0, 1])
        assert revision.epoch == epochs[0] and "history/" in revision.describe()
    finally:
        server.close()


def test_the_bundled_history_files_are_its_runs_epoch_generators():
    from dcgan_hf.epoch_history import list_epochs, load_epoch, read_metadata

    entries = list_epochs(BUNDLED_MODEL)
    G = Generator.from_pretrained(BUNDLED_MODEL)
    assert sum(entry.path.stat().st_size for entry in entries) <= 16 * 2**20  # a few MB in git
    for entry in entries:
        assert int(read_metadata(entry.path)["epoch"]) == entry.epoch
    last = load_epoch(entries[-1].path)  # the bundled epoch, in float16: the same faces within rounding
    assert last.config == G.config
    difference = (sample(last, range(8)).float() - sample(G, range(8)).float()).abs()
    assert difference.mean() < 2 and difference.max() <= 64


# -- steering: edits, sweeps, face arithmetic, completion ----------------------------------------


def test_edit_sweep_and_arithmetic_equal_the_library(model_dir, tmp_path, capsys):
    G = Generator.from_pretrained(model_dir)
    edited = tmp_path / "edited.png"
    assert main(["generate", "--model", str(model_dir), "--seeds", "7,8", "--edit", "0=2.5", "--edit", "3=-1",
                 "--out", str(edited)]) == 0
    assert torch.equal(read_png(edited), images.grid(sample(G, [7, 8], edit={0: 2.5, 3: -1})))
    strip = tmp_path / "sweep.png"
    assert main(["generate", "--model", str(model_dir), "--seeds", "7", "--sweep", "2", "--out", str(strip)]) == 0
    assert "9 frames along direction 2" in capsys.readouterr().out
    amounts = [-3 + 0.75 * step for step in range(9)]  # --frames 9 by default, -3 … +3
    swept = torch.cat([sample(G, [7], edit={2: amount}) for amount in amounts])
    assert torch.equal(read_png(strip), images.grid(swept, nrow=9))
    gif = tmp_path / "sweep.gif"
    assert main(["generate", "--model", str(model_dir), "--seeds", "7,8", "--sweep", "0", "--frames", "5",
                 "--out", str(gif)]) == 0
    assert images.gif_frame_count(gif.read_bytes()) == 8  # there and back: 5 + 3
    total = tmp_path / "sum.png"
    assert main(["generate", "--model", str(model_dir), "--arithmetic", "1,2,3 - 4,5,6 + 7,8,9",
                 "--out", str(total)]) == 0
    with Image.open(total) as picture:
        assert picture.height == 3 * 66 + 2 and picture.width > 3 * 66 + 3 * 64


def test_completion_writes_original_hidden_and_filled_rows(model_dir, tmp_path, monkeypatch):
    import dcgan_hf.__main__ as cli

    threads_seen = []

    def completing(*args, **kwargs):  # the real completion, noting the thread count it runs on
        threads_seen.append(torch.get_num_threads())
        return complete(*args, **kwargs)

    monkeypatch.setattr(cli, "complete", completing)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    out = tmp_path / "filled.png"
    try:
        assert main(["generate", "--model", str(model_dir), "--seeds", "4,5", "--complete", "left",
                     "--out", str(out)]) == 0
        assert threads_seen == [1, 1] and torch.get_num_threads() == 2  # one face at a time: 1 thread, then given back
    finally:
        torch.set_num_threads(before)
    grid = read_png(out)
    assert grid.shape == (3, 2 + 2 * 66, 2 + 3 * 66)
    G = Generator.from_pretrained(model_dir)
    assert torch.equal(grid[:, 2:66, 2:66], sample(G, [4])[0])  # the original
    assert bool((grid[:, 2:66, 68:100] == 128).all())  # the hidden half, mid-grey


@pytest.mark.parametrize("args, message", [
    (["--edit", "0=9"], "the amount for direction 0 is out of range: 9"),
    (["--edit", "12=1"], "unknown direction '12'"),
    (["--edit", "0"], "use DIRECTION=AMOUNT"),
    (["--sweep", "x"], "unknown direction 'x'"),
    (["--sweep", "0", "--frames", "31"], "--frames must be from 2 to 30"),
    (["--arithmetic", "1,2 -"], "ends with '-'"),
    (["--arithmetic", "1 - a"], "group B must be whole numbers"),
    (["--complete", "chin"], "unknown mask 'chin'"),
    (["--complete", "left", "--sweep", "0"], "--sweep and --complete cannot be combined"),
    (["--photo", "x.jpg"], "--photo needs --complete"),
    (["--arithmetic", "1", "--edit", "0=1"], "--edit works on --seeds grids and --sweep"),
])
def test_bad_steering_input_exits_2_with_a_message(model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    assert main(["generate", "--model", str(model_dir), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
