"""The demo's Edit, Arithmetic and Complete endpoints through ``gradio_client``, against app.py
launched on 127.0.0.1 (a small random model; the bundled one in test_steering.py).

Edits equal the library's ``sample(…, edit=…)`` pixel for pixel (an edit of zeros equals
/generate); sweeps, arithmetic and completion return what the library computes; every bad
value (unknown direction, amount out of range, malformed expression, empty or oversized
mask) gets one clear message and the server keeps serving.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from dcgan_hf import Generator, latent_token, render, sample
from dcgan_hf.arithmetic import figure as arithmetic_figure
from dcgan_hf.completion import encode_mask, preset_mask
from dcgan_hf.images import gif_frame_count, grid_image
from dcgan_hf.serving.steering import ArithmeticRequest
from test_app import AppProcess, client_for, expected_grid, make_model_folder, pixels, start_app, write_photo
from test_app_hardening import read_call


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_model_folder(tmp_path_factory.mktemp("steer-model") / "dcgan-test")
    generator = Generator.from_pretrained(folder)
    generator.directions = generator.directions.renamed({1: "smile"})  # a named direction, saved with it
    generator.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def generator(model_folder: Path) -> Generator:
    return Generator.from_pretrained(model_folder)


@pytest.fixture(scope="module")
def app(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = start_app("--model", str(model_folder), workdir=tmp_path_factory.mktemp("steer-app"))
    yield process.wait_until_ready()
    process.stop()


@pytest.fixture(scope="module")
def client(app: AppProcess, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return client_for(app, tmp_path_factory.mktemp("steer-downloads"))


def face(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def test_an_edit_of_zeros_is_exactly_the_generated_face(client: Client, generator: Generator) -> None:
    path, token = client.predict(seed=7, truncation=0.8, latent="", edit="", api_name="/edit")
    plain = client.predict(seed=7, n=1, truncation=0.8, api_name="/generate")
    assert Path(path).read_bytes() == Path(plain).read_bytes()
    zeros, _ = client.predict(seed=7, truncation=0.8, latent="", edit="0=0, smile=0", api_name="/edit")
    assert np.array_equal(pixels(zeros), pixels(plain))
    assert torch.equal(latent_token.decode(token, 100), latent_token.quantize(sample_latent(7, 0.8)))


def sample_latent(seed: int, truncation: float) -> torch.Tensor:
    from dcgan_hf.latent import latent

    return latent(seed, 100) * truncation


def test_edits_equal_the_library_by_index_and_by_name(client: Client, generator: Generator) -> None:
    path, token = client.predict(seed=7, truncation=1.0, latent="", edit="0=2.5, smile=-1", api_name="/edit")
    expected = sample(generator, [7], edit={0: 2.5, 1: -1})[0]
    assert np.array_equal(pixels(path), face(expected))
    again, _ = client.predict(seed=0, truncation=1.0, latent=token, edit="", api_name="/edit")  # from its token
    assert np.array_equal(pixels(again), face(render(generator, latent_token.decode(token, 100)[None])[0]))


def test_a_sweep_returns_the_librarys_frames_and_a_back_and_forth_gif(client: Client, generator: Generator) -> None:
    strip, gif = client.predict(seed=3, truncation=1.0, latent="", edit="2=1", direction="smile", frames=5,
                                api_name="/sweep")
    swept = generator.directions.sweep(sample_latent(3, 1.0)[None], 1, 5, edit={2: 1})
    assert np.array_equal(pixels(strip), pixels(grid_image(render(generator, swept), nrow=5)))
    assert gif_frame_count(Path(gif).read_bytes()) == 8


def test_arithmetic_returns_the_papers_figure_and_the_results_token(client: Client, generator: Generator) -> None:
    expression = "1,2,3 - 4,5,6 + 7,8,9"
    path, token = client.predict(expression=expression, truncation=1.0, noise_seed=3, api_name="/arithmetic")
    request = ArithmeticRequest.parse(expression, 1.0, 3, nz=100)
    assert torch.equal(latent_token.decode(token, 100), latent_token.quantize(request.result(100)))
    grid = grid_image(render(generator, request.grid_latents(100)), nrow=3)
    means = grid_image(render(generator, request.mean_latents(100)), nrow=3)
    assert np.array_equal(pixels(path), pixels(arithmetic_figure(means, [1, -1, 1], grid)))
    single, _ = client.predict(expression="42", truncation=1.0, noise_seed=0, api_name="/arithmetic")
    centre = pixels(single)[68:132, -132:-68]  # the middle of the 3 × 3 grid: seed 42's face itself
    assert np.array_equal(centre, face(sample(generator, [42])[0]))


def test_completion_of_a_generated_face_and_of_a_photo(client: Client, generator: Generator, tmp_path: Path) -> None:
    path, summary = client.predict(seed=5, truncation=1.0, latent="", mask="left", api_name="/complete")
    composite = pixels(path)
    truth = face(sample(generator, [5])[0])
    assert np.array_equal(composite[:, 40:], truth[:, 40:])  # beyond the seam: the visible pixels themselves
    assert summary["mask"] == "left" and summary["hidden_pixels"] == 2048 and summary["steps"] == 200
    brushed = torch.zeros(64, 64, dtype=torch.bool)
    brushed[20:40, 10:50] = True
    _, summary = client.predict(seed=5, truncation=1.0, latent="", mask=encode_mask(brushed), api_name="/complete")
    assert summary["hidden_pixels"] == 800 and summary["mask"].startswith("m")
    photo = write_photo(tmp_path)
    generated, summary = client.predict(photo=handle_file(photo), mask="eyes", api_name="/complete_photo")
    assert summary["completed_png"].startswith("data:image/png;base64,")
    completed = Image.open(io.BytesIO(base64.b64decode(summary["completed_png"].split(",", 1)[1])))
    assert completed.size == (64, 64)
    z = latent_token.decode(summary["latent"], 100)
    assert np.array_equal(pixels(generated), face(render(generator, z[None])[0]))


def test_model_info_lists_the_directions(client: Client) -> None:
    info = client.predict(api_name="/model_info")
    assert info["directions"][:2] == ["direction 0", "direction 1 (smile)"] and len(info["directions"]) == 10


EDIT = dict(seed=1, truncation=1.0, latent="", edit="")
SWEEP = dict(EDIT, direction="0", frames=5)
ARITHMETIC = dict(expression="1 - 2 + 3", truncation=1.0, noise_seed=0)
COMPLETE = dict(seed=1, truncation=1.0, latent="", mask="left")
BAD_STEERING = [
    ("/edit", EDIT, dict(edit="12=1"), "unknown direction '12': this model has directions 0 to 9; names: 1 (smile)"),
    ("/edit", EDIT, dict(edit="frown=1"), "unknown direction 'frown'"),
    ("/edit", EDIT, dict(edit="0=7"), "the amount for direction 0 is out of range: 7 (use -6 to 6"),
    ("/edit", EDIT, dict(edit="smile=-9"), "the amount for direction 1 (smile) is out of range: -9"),
    ("/edit", EDIT, dict(edit="0=nan"), "out of range: nan"),
    ("/edit", EDIT, dict(edit="0:2"), "use DIRECTION=AMOUNT"),
    ("/edit", EDIT, dict(latent="z1.!!"), "latent is damaged"),
    ("/edit", EDIT, dict(seed=-3), "seed must be a whole number"),
    ("/sweep", SWEEP, dict(direction="99"), "unknown direction '99'"),
    ("/sweep", SWEEP, dict(frames=31), "number of frames must be from 2 to 30"),
    ("/arithmetic", ARITHMETIC, dict(expression="1,2 -"), "ends with '-'"),
    ("/arithmetic", ARITHMETIC, dict(expression="1 + + 2"), "group 2 of '1 + + 2' is empty"),
    ("/arithmetic", ARITHMETIC, dict(expression="1, x - 2"), "group A must be whole numbers"),
    ("/arithmetic", ARITHMETIC, dict(expression="0-1000"), "at most 64 seeds"),
    ("/arithmetic", ARITHMETIC, dict(noise_seed=-1), "noise seed must be from 0"),
    ("/complete", COMPLETE, dict(mask=""), "choose what to hide: one of left, right, top"),
    ("/complete", COMPLETE, dict(mask="chin"), "unknown mask 'chin': use one of left, right"),
    ("/complete", COMPLETE, dict(mask=encode_mask(torch.zeros(64, 64, dtype=torch.bool))), "the mask hides nothing"),
    ("/complete", COMPLETE, dict(mask=encode_mask(torch.ones(64, 64, dtype=torch.bool))), "hides 100% of the face"),
    ("/complete", COMPLETE, dict(mask="m1." + "A" * 100_000), "not a brushed mask: expected 686 characters"),
    ("/complete_photo", dict(photo=None, mask="left"), {}, "upload a photo first"),
]


def test_a_photo_with_a_bad_mask_is_still_deleted(client: Client, app: AppProcess, tmp_path: Path) -> None:
    photo = write_photo(tmp_path, seed=3)
    with pytest.raises(AppError, match="unknown mask 'chin'"):
        client.predict(photo=handle_file(photo), mask="chin", api_name="/complete_photo")
    assert list(Path(os.environ["GRADIO_TEMP_DIR"]).rglob(photo.name)) == []  # the app's Gradio cache


def test_bad_steering_input_gets_one_clear_message_and_the_server_keeps_serving(client: Client,
                                                                                 generator: Generator) -> None:
    for endpoint, defaults, bad, message in BAD_STEERING:
        with pytest.raises(AppError) as raised:
            client.predict(**{**defaults, **bad}, api_name=endpoint)
        assert message in str(raised.value) and "\n" not in str(raised.value), (bad, str(raised.value))
    assert np.array_equal(pixels(client.predict(seed=99, n=2, truncation=1.0, api_name="/generate")),
                          expected_grid(generator, [99, 100]))


def test_a_50_mb_brushed_mask_is_refused_before_it_is_read(app: AppProcess, client: Client) -> None:
    huge = httpx.post(app.url + "gradio_api/call/complete", json={"data": [1, 1.0, "", "m1." + "A" * 50_000_000]},
                      timeout=60)
    assert huge.status_code == 413 and "at most 256 kB" in huge.text
    kind, payload = read_call(app.url, "complete", [1, 1.0, "", "m1." + "A" * 200_000])
    assert kind == "error" and "not a brushed mask" in str(payload)
    assert read_call(app.url, "edit", [1, 1.0, "", "0=1"])[0] == "complete"  # still serving


def test_links_carry_the_steering_tabs_state_checked_like_the_forms(generator: Generator) -> None:
    from dcgan_hf.serving.page_checks import steering_checks
    from dcgan_hf.serving.page_state import PageState, parse_query

    checks = steering_checks(generator.directions, 100)
    brushed = torch.zeros(64, 64, dtype=torch.bool)
    brushed[5:9, 5:60] = True
    token = latent_token.encode(torch.linspace(-1, 1, 100))
    state, notes = parse_query({"tab": "edit", "es": "7", "et": "0.8", "ez": token, "edit": "smile=2, 0=-1",
                                "sweep": "3", "ga": "1 2", "gb": "3-5", "gc": token, "noise": "4", "cs": "9",
                                "cz": "", "mask": encode_mask(brushed)}, checks)
    assert notes == []
    assert state == PageState(tab="edit", edit_seed=7, edit_truncation=0.8, edit_latent=token, edit="0=-1,1=2",
                              sweep_direction=3, group_a="1 2", group_b="3-5", group_c=token, noise_seed=4,
                              complete_seed=9, mask=encode_mask(brushed))
    state, notes = parse_query({"edit": "0=9", "sweep": "12", "ga": "1 - 2", "mask": "chin", "ez": "z1.xx",
                                "tab": "complete", "cs": "-1"}, checks)
    assert state == PageState(tab="complete") and len(notes) == 6
    for key, why in (("edit", "out of range: 9"), ("sweep", "unknown direction"), ("ga", "one group"),
                     ("mask", "unknown mask 'chin'"), ("ez", "ez is damaged"), ("cs", "not a whole number")):
        assert any(note.startswith(f"ignored ?{key}=") and why in note for note in notes), (key, notes)
