"""The Gradio demo (app.py) through its API: gradio_client against the app launched on
127.0.0.1 as a subprocess, the way users and Spaces run it.

Covers: generate and interpolate equal the library's images pixel for pixel; same inputs
give the same bytes; a seed gives the same image alone and in a batch; /project returns a
reconstruction and a latent token that /interpolate walks from; bad inputs (and bad tokens)
get a clear error and the server keeps serving; 8 concurrent clients × 10 mixed requests
(generate, interpolate, project) get their own images; the app serving a Hub model at a tag
(fake Hub on 127.0.0.1) and falling back when the Hub cannot be reached. Plus the serving
layer's fallback, device and fp16 checks in-process. Hostile uploads, closed routes, queue
limits and shutdown are in test_app_hardening.py.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import HfApi
from PIL import Image
from torch import nn

from dcgan_hf import Generator, ModelLoadError, interpolate, latent_token, render, sample
from dcgan_hf.devices import resolve_device
from dcgan_hf.hub.loading import BUNDLED_MODEL
from dcgan_hf.images import gif_frame_count, grid_image
from dcgan_hf.models import dcgan_init
from dcgan_hf.serving import (
    HALF_TOLERANCE,
    STRIP_COLUMNS,
    GenerateRequest,
    ModelServer,
    half_precision_difference,
    try_half_precision,
)
from conftest import ROOT, free_port
from hostile_images import encoded, face_like
from hub_server import HubServer

# -- helpers (test_browser.py uses them too) ----------------------------------------------


def make_model_folder(folder: Path, seed: int = 0, ngf: int = 16) -> Path:
    """A small random Generator whose samples are far from flat grey, saved for the app.

    DCGAN's N(0, 0.02) init gives near-constant images (eval-mode BN does not rescale),
    which would make pixel comparisons trivially true; He-like weights give vivid ones.
    """
    generator = Generator(ngf=ngf)
    dcgan_init(generator, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.ConvTranspose2d):
                module.weight.mul_(1.5 / (0.02 * math.sqrt(4 * module.in_channels)))
    generator.save_pretrained(folder)
    return folder


@dataclass
class AppProcess:
    """``python app.py …`` on a free loopback port, its log kept for failure messages."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until_ready(self, timeout: float = 120.0) -> "AppProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app.py exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"app.py did not answer within {timeout:.0f} s:\n{self.log_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_app(*args: str, workdir: Path, env: dict[str, str] | None = None, as_background_job: bool = False,
              live: bool = False) -> AppProcess:
    """``python app.py *args`` on a free port, not yet waited for (start several, then wait).

    ``as_background_job`` starts it the way ``cmd &`` in a script does: with SIGINT ignored.
    ``live``: export the model for live mode at start-up, as the app does by default; off for
    the tests that do not look at live mode (``--live-runtime off``: ~3 s less CPU per start).
    """
    port = free_port()
    log = workdir / f"app-{port}.log"
    command = [sys.executable, str(ROOT / "app.py"), *args, "--host", "127.0.0.1", "--port", str(port)]
    if not live:
        command += ["--live-runtime", "off"]
    inherit_ignored_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if as_background_job else None
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, env={**os.environ, **(env or {})}, stdout=sink, stderr=subprocess.STDOUT,
            preexec_fn=inherit_ignored_sigint,
        )
    return AppProcess(process, f"http://127.0.0.1:{port}/", log)


def pixels(source: str | Path | bytes | Image.Image) -> np.ndarray:
    """An image file, PNG bytes or PIL image as an RGB uint8 array."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    image = source if isinstance(source, Image.Image) else Image.open(source)
    return np.asarray(image.convert("RGB"))


def tile(grid: np.ndarray, index: int, per_row: int, size: int = 64, padding: int = 2) -> np.ndarray:
    """Image ``index`` of a torchvision make_grid layout (``padding`` px around every tile)."""
    row, column = divmod(index, per_row)
    top, left = padding + row * (size + padding), padding + column * (size + padding)
    return grid[top : top + size, left : left + size]


def expected_grid(generator: Generator, seeds: list[int], truncation: float = 1.0) -> np.ndarray:
    return pixels(grid_image(sample(generator, seeds, truncation=truncation)))


def expected_strip(generator: Generator, seeds: list[int], frames: int, **options: Any) -> np.ndarray:
    walk = interpolate(generator, seeds, frames, **options)
    return pixels(grid_image(walk, nrow=min(STRIP_COLUMNS, frames)))


def client_for(app: AppProcess, downloads: Path) -> Client:
    return Client(app.url, verbose=False, download_files=str(downloads))


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "dcgan-test")


@pytest.fixture(scope="module")
def generator(model_folder: Path) -> Generator:
    return Generator.from_pretrained(model_folder)


@pytest.fixture(scope="module")
def app(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """The app serving the test model folder, for the whole module."""
    process = start_app("--model", str(model_folder), workdir=tmp_path_factory.mktemp("app"))
    yield process.wait_until_ready()
    process.stop()


@pytest.fixture(scope="module")
def client(app: AppProcess, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return client_for(app, tmp_path_factory.mktemp("downloads"))


# -- (a) the API -----------------------------------------------------------------------------


def test_generate_returns_the_library_grid_as_png(client: Client, generator: Generator) -> None:
    path = client.predict(seed=7, n=6, truncation=0.8, api_name="/generate")
    assert Path(path).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert np.array_equal(pixels(path), expected_grid(generator, list(range(7, 13)), truncation=0.8))


def test_same_inputs_give_byte_identical_images(client: Client) -> None:
    first = Path(client.predict(seed=123, n=3, truncation=1.0, api_name="/generate")).read_bytes()
    second = Path(client.predict(seed=123, n=3, truncation=1.0, api_name="/generate")).read_bytes()
    other = Path(client.predict(seed=124, n=3, truncation=1.0, api_name="/generate")).read_bytes()
    assert first == second
    assert first != other


def test_a_seed_gives_the_same_image_alone_and_in_a_batch(client: Client) -> None:
    alone = pixels(client.predict(seed=10, n=1, truncation=1.0, api_name="/generate"))  # no border
    batch = pixels(client.predict(seed=5, n=9, truncation=1.0, api_name="/generate"))  # seeds 5…13, 3 a row
    assert alone.shape == (64, 64, 3)
    assert np.array_equal(alone, tile(batch, 10 - 5, per_row=3))
    assert not np.array_equal(tile(batch, 0, per_row=3), tile(batch, 1, per_row=3))


def test_interpolate_returns_the_library_frames_and_a_gif(client: Client, generator: Generator) -> None:
    strip, gif = client.predict(
        seed_a=3, seed_b=5, more_seeds="9", frames=7, method="lerp", closed=True, truncation=0.9,
        api_name="/interpolate",
    )
    expected = expected_strip(generator, [3, 5, 9], 7, method="lerp", closed=True, truncation=0.9)
    assert np.array_equal(pixels(strip), expected)
    assert gif_frame_count(Path(gif).read_bytes()) == 7


def test_interpolation_starts_and_ends_on_its_seeds(client: Client) -> None:
    strip, _ = client.predict(
        seed_a=40, seed_b=41, more_seeds="", frames=5, method="slerp", closed=False, truncation=1.0,
        api_name="/interpolate",
    )
    pair = pixels(client.predict(seed=40, n=2, truncation=1.0, api_name="/generate"))
    assert np.array_equal(tile(pixels(strip), 0, per_row=5), tile(pair, 0, per_row=2))
    assert np.array_equal(tile(pixels(strip), 4, per_row=5), tile(pair, 1, per_row=2))


def write_photo(folder: Path, seed: int = 0, kind: str = "JPEG") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"photo-{seed}.{kind.lower()}"
    path.write_bytes(encoded(face_like(240 + 20 * seed, 320, seed=seed), kind))
    return path


def tensor_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 (3, H, W) → (H, W, 3)."""
    return images.permute(1, 2, 0).numpy()


def test_project_returns_a_reconstruction_and_a_token_interpolate_walks_from(
    client: Client, generator: Generator, tmp_path: Path
) -> None:
    face, token, summary = client.predict(photo=handle_file(write_photo(tmp_path)), api_name="/project")
    z = latent_token.decode(token, generator.nz)
    assert Path(face).read_bytes().startswith(b"\x89PNG")
    assert np.array_equal(pixels(face), tensor_pixels(render(generator, z[None])[0]))
    assert summary["latent"] == token and summary["steps"] == 200 and summary["discriminator_features"] is False
    assert summary["psnr_db"] == pytest.approx(10 * math.log10(1 / summary["mse"]), abs=0.01)

    strip, gif = client.predict(seed_a=0, seed_b=42, more_seeds="", frames=5, method="slerp", closed=False,
                                truncation=1.0, start_latent=token, api_name="/interpolate")
    walk = pixels(strip)
    assert np.array_equal(tile(walk, 0, per_row=5), pixels(face))  # starts on my face
    assert np.array_equal(tile(walk, 4, per_row=5), tensor_pixels(sample(generator, [42])[0]))  # ends on seed 42
    assert gif_frame_count(Path(gif).read_bytes()) == 5
    back, _ = client.predict(seed_a=42, seed_b=0, frames=3, end_latent=token, api_name="/interpolate")
    assert np.array_equal(tile(pixels(back), 2, per_row=3), pixels(face))  # and as the end point
    again = client.predict(photo=handle_file(write_photo(tmp_path)), api_name="/project")
    assert again[1] == token  # the same photo finds the same latent


GENERATE_DEFAULTS = dict(seed=1, n=1, truncation=1.0)
INTERPOLATE_DEFAULTS = dict(seed_a=1, seed_b=2, more_seeds="", frames=4, method="slerp", closed=False, truncation=1.0)
BAD_INPUTS = [
    ("/generate", dict(seed=-1), "seed must be a whole number from 0 to 4294967295"),
    ("/generate", dict(seed=2**32), "seed must be a whole number from 0 to 4294967295"),
    ("/generate", dict(seed="abc"), "seed must be a whole number"),
    ("/generate", dict(seed=1.5), "seed must be a whole number"),
    ("/generate", dict(n=0), "number of images must be from 1 to 64"),
    ("/generate", dict(n=10_000), "number of images must be from 1 to 64"),
    ("/generate", dict(n="lots"), "number of images must be a whole number"),
    ("/generate", dict(truncation=0), "truncation must be in (0, 4]"),
    ("/generate", dict(truncation="x"), "truncation must be a number"),
    ("/generate", dict(seed=2**32 - 1, n=2), "run past the last seed"),
    ("/interpolate", dict(frames=1000), "number of frames must be from 2 to 60"),
    ("/interpolate", dict(frames=1), "number of frames must be from 2 to 60"),
    ("/interpolate", dict(seed_b="b"), "seed B must be a whole number"),
    ("/interpolate", dict(method="cubic"), "method must be one of slerp, lerp"),
    ("/interpolate", dict(more_seeds="7, x"), "more seeds must be whole numbers"),
    ("/interpolate", dict(more_seeds="0-4294967295"), "more seeds: at most 14 seeds at a time"),
    ("/interpolate", dict(more_seeds=" ".join(map(str, range(20)))), "more seeds: at most 14 seeds"),
    ("/generate", dict(truncation=2**1100), "truncation must be in (0, 4], got a number far too large"),
    ("/interpolate", dict(truncation=2**1100), "far too large"),
    ("/generate", dict(n=2**1100), "number of images must be from 1 to 64"),
    ("/generate", dict(seed=[1, 2]), "seed must be a whole number"),
    ("/interpolate", dict(closed="yes"), "closed loop must be true or false"),
    ("/interpolate", dict(start_latent="z1.!!!"), "start latent is damaged"),
    ("/interpolate", dict(end_latent="hello"), "end latent must start with 'z1.'"),
    ("/interpolate", dict(start_latent=latent_token.encode(torch.zeros(16))), "this model's latents have nz=100"),
    ("/interpolate", dict(start_latent="z1." + "A" * 10_000), "too long"),
    ("/project", dict(photo=None), "upload a photo first"),
]


def test_bad_inputs_get_a_clear_error_and_the_server_keeps_serving(client: Client, generator: Generator) -> None:
    defaults = {"/generate": GENERATE_DEFAULTS, "/interpolate": INTERPOLATE_DEFAULTS, "/project": {}}
    for endpoint, bad, message in BAD_INPUTS:
        with pytest.raises(AppError) as raised:
            client.predict(**{**defaults[endpoint], **bad}, api_name=endpoint)
        assert str(raised.value) and message in str(raised.value), (bad, str(raised.value))  # never empty
    assert np.array_equal(
        pixels(client.predict(seed=99, n=2, truncation=1.0, api_name="/generate")), expected_grid(generator, [99, 100])
    )


def test_model_info_names_the_model_and_its_config(client: Client, model_folder: Path) -> None:
    info = client.predict(api_name="/model_info")
    assert info["serving"] == str(model_folder.resolve())
    assert info["config"] == {"nz": 100, "ngf": 16, "nc": 3}
    assert info["device"] == "cpu" and info["precision"].startswith("fp32")
    assert info["fell_back"] is False
    assert info["discriminator"] is False and info["training_epochs"] == []
    assert info["requests_running"] == 0 and info["peak_requests_running"] >= 1


# -- (c) load ---------------------------------------------------------------------------------


def mixed_requests(client_index: int, photos: Path) -> list[tuple[str, dict[str, Any]]]:
    """10 small requests per client, seeds (and photos) unique to the client so cross-talk would show."""
    requests = []
    for index in range(10):
        seed = 1000 * client_index + 10 * index
        if index == 5:
            requests.append(("/project", dict(photo=handle_file(write_photo(photos, seed=client_index)))))
        elif index % 2 == 0:
            requests.append(("/generate", dict(seed=seed, n=1 + index % 3, truncation=1.0)))
        else:
            walk = {**INTERPOLATE_DEFAULTS, "seed_a": seed, "seed_b": seed + 1, "frames": 2 + index % 3}
            requests.append(("/interpolate", walk))
    return requests


def test_eight_concurrent_clients_each_get_their_own_images(
    app: AppProcess, generator: Generator, tmp_path: Path
) -> None:
    def run_client(client_index: int) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        client = client_for(app, tmp_path / f"client-{client_index}")
        results = []
        for endpoint, inputs in mixed_requests(client_index, tmp_path / f"photos-{client_index}"):
            result = client.predict(**inputs, api_name=endpoint)
            if endpoint == "/project":
                inputs = {"token": result[1]}
            results.append((endpoint, inputs, pixels(result if endpoint == "/generate" else result[0])))
        return results

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run_client, range(8)))
    elapsed = time.monotonic() - start

    assert sum(len(results) for results in outcomes) == 80
    for results in outcomes:
        for endpoint, inputs, image in results:
            if endpoint == "/generate":
                expected = expected_grid(generator, list(range(inputs["seed"], inputs["seed"] + inputs["n"])))
            elif endpoint == "/project":
                expected = tensor_pixels(render(generator, latent_token.decode(inputs["token"], 100)[None])[0])
            else:
                expected = expected_strip(generator, [inputs["seed_a"], inputs["seed_b"]], inputs["frames"])
            assert np.array_equal(image, expected), (endpoint, inputs)
    assert len({inputs["token"] for results in outcomes for endpoint, inputs, _ in results
                if endpoint == "/project"}) == 8  # eight photos, eight latents
    assert elapsed < 180, f"80 mixed requests took {elapsed:.0f} s"


# -- (d) Hub models: served at a tag, and the fallback when the Hub is unreachable -------------


def page_config(app: AppProcess) -> str:
    """The page's component tree and values, as the browser receives them."""
    with urllib.request.urlopen(app.url + "config", timeout=10) as response:
        return json.dumps(json.load(response), ensure_ascii=False)


def test_app_serves_a_hub_model_at_a_tag(
    local_hub: HubServer, model_folder: Path, generator: Generator, tmp_path: Path
) -> None:
    api = HfApi(token="hf_test_token")
    api.create_repo("user/dcgan-demo")
    tagged = api.upload_folder(repo_id="user/dcgan-demo", folder_path=model_folder, commit_message="epoch 5").oid
    api.create_tag("user/dcgan-demo", tag="epoch-5", revision=tagged)
    newer = make_model_folder(tmp_path / "newer", seed=1)
    api.upload_folder(repo_id="user/dcgan-demo", folder_path=newer, commit_message="epoch 6")  # main moves on

    app = start_app(
        "--model", "user/dcgan-demo@epoch-5", "--fallback-model", str(newer),
        workdir=tmp_path, env={"HF_HOME": str(tmp_path / "hf_home")},
    ).wait_until_ready()
    try:
        client = client_for(app, tmp_path / "downloads")
        info = client.predict(api_name="/model_info")
        assert (info["serving"], info["revision"], info["commit"]) == ("user/dcgan-demo", "epoch-5", tagged)
        assert info["fell_back"] is False
        assert "user/dcgan-demo" in page_config(app) and tagged[:12] in page_config(app)
        grid = client.predict(seed=3, n=2, truncation=1.0, api_name="/generate")
        assert np.array_equal(pixels(grid), expected_grid(generator, [3, 4]))
    finally:
        app.stop()


def test_app_falls_back_when_the_hub_is_unreachable(model_folder: Path, generator: Generator, tmp_path: Path) -> None:
    unreachable = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "empty_hf_home")}
    app = start_app(
        "--model", "user/dcgan-demo", "--fallback-model", str(model_folder), workdir=tmp_path, env=unreachable
    ).wait_until_ready()
    try:
        client = client_for(app, tmp_path / "downloads")
        info = client.predict(api_name="/model_info")
        assert info["fell_back"] is True and info["requested"] == "user/dcgan-demo"
        assert "cannot reach the Hub" in info["fallback_reason"]
        assert info["serving"] == str(model_folder.resolve())
        assert "Could not load `user/dcgan-demo`" in page_config(app)
        assert "falling back" in app.log_text()
        grid = client.predict(seed=11, n=2, truncation=1.0, api_name="/generate")
        assert np.array_equal(pixels(grid), expected_grid(generator, [11, 12]))
    finally:
        app.stop()


# -- the serving layer in-process ------------------------------------------------------------


def test_an_unreachable_hub_serves_a_cached_model_from_the_cache(
    local_hub: HubServer, model_folder: Path, tmp_path: Path
) -> None:
    api = HfApi(token="hf_test_token")
    api.create_repo("user/dcgan-cached")
    commit = api.upload_folder(repo_id="user/dcgan-cached", folder_path=model_folder).oid
    online = ModelServer.start("user/dcgan-cached", fallback=tmp_path / "unused", device="cpu")
    online.close()
    with local_hub.down():
        offline = ModelServer.start("user/dcgan-cached", fallback=tmp_path / "unused", device="cpu")
    offline.close()
    assert (online.status.commit, online.status.from_cache_offline) == (commit, False)
    assert (offline.status.commit, offline.status.from_cache_offline, offline.status.fell_back) == (commit, True, False)
    assert "local cache" in offline.status.markdown()
    assert torch.equal(offline.generator.sample(range(4)), online.generator.sample(range(4)))


def test_a_missing_model_falls_back_and_a_missing_fallback_is_an_error(model_folder: Path, tmp_path: Path) -> None:
    server = ModelServer.start(tmp_path / "no-such-model", fallback=model_folder, device="cpu")
    try:
        assert server.status.fell_back and "no-such-model" in server.status.fallback_reason
        assert "Could not load" in server.status.markdown()
    finally:
        server.close()
    with pytest.raises(ModelLoadError, match="nor the fallback"):
        ModelServer.start(tmp_path / "no-such-model", fallback=tmp_path / "no-fallback-either", device="cpu")


def test_device_choice() -> None:
    """The server reads --device with the library's one resolver (training and evaluation use it too)."""
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unsupported device|unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):  # before any model is loaded
        ModelServer.start(BUNDLED_MODEL, device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            ModelServer.start(BUNDLED_MODEL, device="cuda")


def test_half_precision_is_kept_only_within_tolerance(generator: Generator) -> None:
    """The GPU start-up check, run on the CPU (which computes fp16 too, just slowly)."""
    half, difference = half_precision_difference(generator, seeds=range(4))
    independent = (sample(half, range(4)).int() - sample(generator, range(4)).int()).abs().max().item()
    assert half.main[0].weight.dtype == torch.float16 and difference == independent
    kept, choice = try_half_precision(generator, tolerance=255)
    assert choice.precision == "fp16" and kept.main[0].weight.dtype == torch.float16
    kept, choice = try_half_precision(generator, tolerance=-1)
    assert choice.precision == "fp32" and kept is generator


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh runs it on one)")
def test_serving_on_cuda_keeps_fp16_only_within_tolerance_and_stays_deterministic(generator: Generator) -> None:
    server = ModelServer.serve(copy.deepcopy(generator), "cuda")
    try:
        _, difference = half_precision_difference(copy.deepcopy(generator).cuda())
        expected = "fp16" if difference <= HALF_TOLERANCE else "fp32"
        assert server.status.precision.startswith(expected) and server.status.device == "cuda"
        assert server.generator.main[0].weight.dtype == (torch.float16 if expected == "fp16" else torch.float32)
        batch = server.generate(GenerateRequest.parse(20, 16))
        again = server.generate(GenerateRequest.parse(20, 16))
        alone = [server.generate(GenerateRequest.parse(seed, 1)).images for seed in (20, 23, 35)]
        assert batch.png == again.png
        assert torch.equal(torch.cat(alone), batch.images[[0, 3, 15]])
    finally:
        server.close()
